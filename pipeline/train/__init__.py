"""Stage D: the MLX fine-tune job (live progress, checkpoints, resume, cancel) and the training handoff package.

Modules that ``phasef config check`` or the CLI import (``params``, ``checkpoints``, ``manifest``) stay light: mlx and
mlx_lm are imported inside the functions that train.
"""
