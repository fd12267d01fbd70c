"""Metrics, evaluation reports and comparisons, computed from dirty traces (never from a runner's own claims)."""
