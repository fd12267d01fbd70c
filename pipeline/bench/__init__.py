"""The reference workload the embedded default evaluates: a tick-based agent harness over a sandboxed copy of a
real source tree, with traps, recovery mechanisms and dirty traces (see ``harness`` for the tick loop)."""
