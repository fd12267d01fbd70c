"""Sub-commands of ``phasef``: each module defines ``register(subparsers)``; handlers import heavy code lazily."""
