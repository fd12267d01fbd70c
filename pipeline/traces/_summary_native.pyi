"""The summary's hot loop in C (``_summary_native.c``); see ``summary._summarize_native``."""

from collections.abc import Callable, Container
from typing import Any

API: int

def summarize(
    lines: list[bytes] | bytes | memoryview,
    first: int,
    s: Any,
    slow: Callable[[int, bytes], Any],
    intern: Callable[[str], int],
    state: dict[int, Any],
    runs_type: Callable[[], Any],
    tick_cache: dict[bytes, tuple[int, str | None, int]],
    tick_flags: Callable[[tuple[Any, ...]], tuple[int, str | None, int]],
    actions: dict[bytes, Any],
    action_info: Callable[[Any], Any],
    bad_action: Any,
    invalid_verb: str,
    chain_number: Callable[[Any, int, str, int], int],
    death_outcomes: Container[str],
    thrash_min: int,
    deadlock_window: int,
    cache_max: int,
    chains: tuple[dict[str, int], list[str], Any, Any, Any] | None,
    /,
) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes, int, int, int, int]: ...
def narrow(data: bytes, typecode: str, /) -> bytes: ...
def all_ascii(lines: list[bytes] | bytes | memoryview, /) -> bool: ...
def newline_ends(data: bytes, base: int, /) -> bytes: ...
def place_names(table: Any, tags: Any, first: int, /) -> None: ...
def sparse_rows(values: bytes, base: int, code: str, /) -> tuple[bytes, bytes]: ...
def value_runs(values: bytes, base: int, previous: int | None, code: str, /) -> tuple[bytes, bytes]: ...
def flag_rows(flags: bytes, base: int, masks: tuple[int, ...], code: str, /) -> tuple[bytes, ...]: ...
def chain_spans(chains: bytes, base: int, first: Any, last: Any, /) -> None: ...
