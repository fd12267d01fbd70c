"""Hypothesis profiles for the property tests (tests/test_properties_*.py).

``ci`` (the default): a fixed, small example budget, derandomized so a run is reproducible, and no per-example
deadline, since a loaded 2-core machine makes single examples slow at random. ``long``: many more examples for
local runs hunting the next bug: ``pytest tests/test_properties_*.py --hypothesis-profile=long``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_MACHINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_MACHINE,
)
settings.register_profile(
    "long",
    max_examples=2_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_MACHINE,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
