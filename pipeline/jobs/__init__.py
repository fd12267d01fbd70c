"""Job kinds: shell commands, builtin Python steps (run in a child process), gates, and registered kinds."""
