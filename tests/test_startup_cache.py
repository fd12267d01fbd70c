"""The start-up cache (``phasef_tui.startup_cache``): what it gives back is what compiling would have made, a bad
file costs nothing but the compiling, and the real viewer's second start compiles nothing new."""

from __future__ import annotations

import collections
import dataclasses
import marshal
import os
import pickle
import re
import stat
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasef_tui import startup_cache
from phasef_tui.startup_cache import StartupCache
from phasef_tui.stylesheet import css_key
from tests.tui_helpers import read_pty, start_in_pty

pytestmark = pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the cache hooks CPython 3.11's internals")

ORIGINAL_RE_COMPILE = sys.modules["re._compiler"].compile  # type: ignore[attr-defined]


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[StartupCache]:
    cache = StartupCache(tmp_path / "cache.bin")
    cache.hook()
    try:
        yield cache
    finally:
        cache.unhook()


def reloaded(cache: StartupCache) -> StartupCache:
    """``cache`` written and read back by a new instance, hooked (what the next start has)."""
    cache.unhook()
    assert cache.save()
    again = StartupCache(cache.path)
    again.load()
    assert again.problem is None
    again.hook()
    return again


# --- regular expressions ---

ATOMS = st.sampled_from(
    [r"a", r"\d", r"\w+", r"[a-c]", r"[^x\n]", r".", r"\s*", r"(?:ab|c)", r"\b", r"^", r"$", r"é", r"\u00e9", r"\\"]
)
PIECES = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map("|".join),
        inner.map(lambda p: f"({p})"),
        st.tuples(st.sampled_from(["g", "name", "x1"]), inner).map(lambda t: f"(?P<{t[0]}>{t[1]})"),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{2,3}", "*?", "{1}"])).map("".join),
        inner.map(lambda p: f"(?={p})"),
        inner.map(lambda p: f"(?i:{p})"),
    ),
    max_leaves=8,
)
FLAGS = st.sampled_from([0, re.IGNORECASE, re.MULTILINE | re.DOTALL, re.VERBOSE, re.ASCII, re.IGNORECASE | re.ASCII])
SUBJECTS = ["", "a", "abc", "aab c\nab", "x12 é É", "\\", "ccc ab\n\nA1_"]


def outcomes(pattern: re.Pattern[Any]) -> list[Any]:
    subjects = [s.encode("utf-8") for s in SUBJECTS] if isinstance(pattern.pattern, bytes) else SUBJECTS
    return [[m.span() for m in pattern.finditer(s)] for s in subjects] + [
        [m.groupdict() for m in pattern.finditer(s)] for s in subjects
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pattern=PIECES, flags=FLAGS, as_bytes=st.booleans())
def test_a_kept_regular_expression_is_the_one_compiling_makes(
    tmp_path: Path, pattern: str, flags: int, as_bytes: bool
) -> None:
    if as_bytes:
        pattern = pattern.replace("é", "e").replace(r"\u00e9", "e")
        flags &= ~re.ASCII
    subject: str | bytes = pattern.encode() if as_bytes else pattern
    try:
        expected = ORIGINAL_RE_COMPILE(subject, flags)
    except re.error as exc:
        cache = StartupCache(tmp_path / "bad.bin")
        cache.hook()
        try:
            with pytest.raises(re.error) as raised:
                cache.compile_pattern(subject, flags)
            assert str(raised.value) == str(exc)
            assert not cache.programs  # nothing kept for a pattern that does not compile
        finally:
            cache.unhook()
        return
    cache = StartupCache(tmp_path / f"re-{os.getpid()}-{time.monotonic_ns()}.bin")
    cache.hook()
    try:
        first = cache.compile_pattern(subject, flags)
        assert (cache.misses, cache.hits) == (1, 0)
        again = reloaded(cache)
        try:
            kept = again.compile_pattern(subject, flags)
            assert (again.misses, again.hits) == (0, 1)
        finally:
            again.unhook()
    finally:
        cache.unhook()
    for made in (first, kept):
        assert made == expected  # (Pattern.__eq__ compares the pattern, the flags and the compiled program)
        assert (made.flags, made.groups, dict(made.groupindex)) == (
            expected.flags,
            expected.groups,
            dict(expected.groupindex),
        )
        assert outcomes(made) == outcomes(expected)


def test_re_compile_goes_through_the_cache_while_hooked_and_not_after(tmp_path: Path) -> None:
    cache = StartupCache(tmp_path / "c.bin")
    cache.hook()
    try:
        pattern = re.compile(r"(?P<k>\w+)=(?P<v>[^;]*);-hooked-" + str(time.monotonic_ns()))
        assert cache.misses == 1 and pattern.match("key=value;-hooked-") is None
        assert re.compile(r"(?P<k>x)", re.DEBUG & 0).groupindex["k"] == 1
        verbose_debug_locale = re.compile(rb"[a-z]+", re.LOCALE)  # LOCALE (and DEBUG) compile as before, unkept
        assert verbose_debug_locale.match(b"abc") and not any(k[1] == rb"[a-z]+" for k in cache.programs)
    finally:
        cache.unhook()
    assert sys.modules["re._compiler"].compile is ORIGINAL_RE_COMPILE  # type: ignore[attr-defined]
    before = cache.misses
    re.compile(r"after-unhook-" + str(time.monotonic_ns()))
    assert cache.misses == before


def test_the_self_check_leaves_re_alone_when_kept_programs_would_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = startup_cache._program_of

    def another_engine(pattern: str | bytes, flags: int) -> Any:
        made = real(pattern, flags)
        return (made[0] | re.IGNORECASE, *made[1:])

    monkeypatch.setattr(startup_cache, "_program_of", another_engine)
    cache = StartupCache(tmp_path / "c.bin")
    cache.hook()
    try:
        assert sys.modules["re._compiler"].compile is ORIGINAL_RE_COMPILE  # type: ignore[attr-defined]
        assert vars(dataclasses)["exec"] == cache.exec  # (the Python-source hooks do not depend on it)
    finally:
        cache.unhook()


# --- Python source: dataclasses, named tuples, forward references ---

NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), min_size=1, max_size=5, unique=True).filter(
    lambda names: not any(n in {"self", "if", "in", "is", "or", "and", "not", "as", "def", "for", "del"} for n in names)
)


def build(names: list[str], defaults: int, frozen: bool, order: bool, kw_only: bool, slots: bool) -> Any:
    fields = [
        (n, int, dataclasses.field(default=i)) if i >= len(names) - defaults else (n, int) for i, n in enumerate(names)
    ]
    return dataclasses.make_dataclass(
        "Made", fields, frozen=frozen, order=order, kw_only=kw_only, slots=slots, namespace={"__module__": __name__}
    )


def behaviour(cls: Any, names: list[str], defaults: int) -> list[Any]:
    required = names[: len(names) - defaults]
    a = cls(**{n: i for i, n in enumerate(required)})
    b = cls(**{n: i + 1 for i, n in enumerate(names)})
    seen: list[Any] = [repr(a), repr(b), a == b, a == cls(**{n: i for i, n in enumerate(required)})]
    seen.append([f.name for f in dataclasses.fields(cls)])
    seen.append(dataclasses.asdict(b))
    try:
        seen.append(hash(a))
    except TypeError as exc:
        seen.append(str(exc))
    try:
        seen.append(a < b)
    except TypeError as exc:
        seen.append(str(exc))
    try:
        setattr(a, names[0], 99)
        seen.append(getattr(a, names[0]))
    except dataclasses.FrozenInstanceError as exc:
        seen.append(type(exc).__name__)
    try:
        cls()
        seen.append("no argument needed")
    except TypeError as exc:
        seen.append(str(exc))
    return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=NAMES,
    data=st.data(),
    frozen=st.booleans(),
    order=st.booleans(),
    kw_only=st.booleans(),
    slots=st.booleans(),
)
def test_a_dataclass_made_from_kept_code_behaves_as_one_compiled_now(
    tmp_path: Path, names: list[str], data: st.DataObject, frozen: bool, order: bool, kw_only: bool, slots: bool
) -> None:
    defaults = data.draw(st.integers(0, len(names)))
    expected = behaviour(build(names, defaults, frozen, order, kw_only, slots), names, defaults)
    cache = StartupCache(tmp_path / f"dc-{time.monotonic_ns()}.bin")
    cache.hook()
    try:
        assert behaviour(build(names, defaults, frozen, order, kw_only, slots), names, defaults) == expected
        assert cache.misses > 0
        again = reloaded(cache)
        try:
            assert behaviour(build(names, defaults, frozen, order, kw_only, slots), names, defaults) == expected
            assert again.misses == 0 and again.hits > 0  # every method came from the file
        finally:
            again.unhook()
    finally:
        cache.unhook()


def test_named_tuples_forward_references_and_post_init_from_kept_code(hooked: StartupCache) -> None:
    Point = collections.namedtuple("Point", ["x", "y"], defaults=[0])

    @dataclasses.dataclass
    class Box:
        label: str
        items: list[int] = dataclasses.field(default_factory=list)
        scale: dataclasses.InitVar[int] = 1

        def __post_init__(self, scale: int) -> None:
            self.items = [i * scale for i in self.items]

    def check() -> None:
        assert (
            Point(1) == (1, 0)
            and Point(y=2, x=1)._asdict() == {"x": 1, "y": 2}
            and repr(Point(3, 4)) == "Point(x=3, y=4)"
        )
        assert (
            Box("b", [1, 2], 3).items == [3, 6]
            and Box("a") == Box("a")
            and repr(Box("a")).endswith("Box(label='a', items=[])")
        )
        assert typing.get_type_hints(Annotated) == {"a": int, "b": list[int]}
        with pytest.raises(SyntaxError):
            typing.ForwardRef("not an expression(")

    check()
    assert hooked.misses > 0
    again = reloaded(hooked)
    try:
        Point = collections.namedtuple("Point", ["x", "y"], defaults=[0])
        check()
        assert again.hits > 0 and again.misses == 0
    finally:
        again.unhook()


class Annotated:
    a: int
    b: list[int]


Annotated.__annotations__ = {"a": "int", "b": "list[int]"}


def test_exec_and_eval_without_namespaces_run_in_their_caller_s(hooked: StartupCache) -> None:
    local = 41  # noqa: F841 (read by the evaluated text)
    assert hooked.eval("local + 1") == 42
    hooked.exec("assert local == 41, local")  # (reads this frame's local, as the builtin would)
    namespace: dict[str, Any] = {}
    hooked.exec("result = 6 * 7", namespace)
    assert namespace["result"] == 42
    assert hooked.compile("x = 1", "a_file.py", "exec").co_filename == "a_file.py"  # not kept: compiled as asked


def test_every_use_gets_its_own_code_objects_and_bad_kept_code_is_compiled_again(tmp_path: Path) -> None:
    """Two classes with the same methods' text do not share code objects (nor their inline caches), warm or cold;
    kept bytes that do not unmarshal to code are compiled again."""
    cache = StartupCache(tmp_path / "c.bin")
    cache.hook()
    try:
        first, second = build(["a", "b"], 0, False, True, False, False), build(["a", "b"], 0, False, True, False, False)
        assert first.__init__.__code__ is not second.__init__.__code__
        assert first.__lt__.__code__ is not second.__lt__.__code__ and cache.hits > 0
        assert cache.compiled("x = 1", "exec") is not cache.compiled("x = 1", "exec")
    finally:
        cache.unhook()
    again = reloaded(cache)
    try:
        third, fourth = build(["a", "b"], 0, False, True, False, False), build(["a", "b"], 0, False, True, False, False)
        assert third.__init__.__code__ is not fourth.__init__.__code__ and again.misses == 0
        assert (
            third(1, 2) < third(1, 3) and fourth(0, 0) == fourth(0, 0) and repr(third(1, 2)).endswith("Made(a=1, b=2)")
        )
        again.code[("exec", "z = 3")] = marshal.dumps(5)
        again.code[("eval", "4 + 4")] = b"\x00not marshal"
        namespace: dict[str, Any] = {}
        again.exec("z = 3", namespace)
        assert namespace["z"] == 3 and again.eval("4 + 4") == 8 and again.misses == 2
        assert isinstance(marshal.loads(again.code[("exec", "z = 3")]), type(compile("", "", "exec")))
    finally:
        again.unhook()


def test_unhooking_leaves_the_modules_as_they_were(tmp_path: Path) -> None:
    cache = StartupCache(tmp_path / "c.bin")
    cache.hook()
    assert vars(dataclasses)["exec"] == cache.exec and vars(typing)["compile"] == cache.compile
    cache.unhook()
    assert "exec" not in vars(dataclasses) and "eval" not in vars(collections) and "compile" not in vars(typing)
    assert sys.modules["re._compiler"].compile is ORIGINAL_RE_COMPILE  # type: ignore[attr-defined]


# --- the file ---


def written(tmp_path: Path) -> Path:
    cache = StartupCache(tmp_path / "kept.bin")
    cache.hook()
    try:
        re.purge()
        re.compile(r"(?P<only>kept-file)")
        build(["a", "b"], 1, False, False, False, False)
    finally:
        cache.unhook()
    assert cache.save()
    return cache.path


@pytest.mark.parametrize(
    "damage",
    ["torn", "garbage", "empty", "other format", "wrong entries", "folder", "fifo", "unreadable", "others may write"],
)
def test_a_bad_file_starts_the_cache_empty_and_is_replaced(tmp_path: Path, damage: str) -> None:
    path = written(tmp_path)
    good = path.read_bytes()
    if damage == "torn":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other format":
        path.write_bytes(marshal.dumps((startup_cache.FORMAT + 1, {}, {})))
    elif damage == "wrong entries":
        kept = marshal.loads(good)
        kept[1][("exec", "x = 1")] = 7  # a value that is not code
        kept[1][("run", "y = 2")] = marshal.dumps(compile("y = 2", "<string>", "exec"))  # a mode that is not one
        kept[2][(True, b"bytes for text", 0)] = (0, [], 0, {}, (None,))
        kept[2][(True, "bad program", 0)] = (0, ["op"], 0, {}, (None,))
        kept[3]["css:good"] = b"(not unpickled until asked)"
        kept[3]["not css"] = b""
        kept[3]["css:not bytes"] = []
        path.write_bytes(marshal.dumps(kept))
    elif damage == "folder":
        path.unlink()
        path.mkdir()
    elif damage == "fifo":
        path.unlink()
        os.mkfifo(path)  # (no writer: an open for reading would block)
    elif damage == "others may write":  # (code is run from it: someone else's planted code must not be)
        path.chmod(0o666)
    elif damage == "unreadable":
        path.chmod(0)
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read anything")
    cache = StartupCache(path)
    started = time.monotonic()
    cache.load()
    assert time.monotonic() - started < 5
    if damage == "wrong entries":  # the good entries stay, the bad ones are dropped
        assert cache.problem is None and cache.code and cache.programs
        assert ("exec", "x = 1") not in cache.code and ("run", "y = 2") not in cache.code
        assert (True, b"bytes for text", 0) not in cache.programs and (True, "bad program", 0) not in cache.programs
        assert list(cache.css) == ["css:good"]
        return
    assert cache.problem is not None and str(path) in cache.problem
    assert not cache.code and not cache.programs
    cache.hook()
    try:
        re.purge()  # (re's own cache of this process would answer before the hook is asked)
        assert re.compile(r"(?P<only>kept-file)").match("kept-file")
    finally:
        cache.unhook()
    saved = cache.save()
    if damage in ("folder", "fifo"):  # not a regular file: left alone, the cache just is not written
        assert not saved and (path.is_dir() if damage == "folder" else path.is_fifo())
    else:
        assert saved
        again = StartupCache(path)
        again.load()
        assert again.problem is None and again.programs


def test_a_folder_that_cannot_be_written_costs_only_the_compiling(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):
        pytest.skip("running as a user who can write anything")
    cache = StartupCache(folder / "startup" / "c.bin")
    cache.hook()
    try:
        re.compile(r"unwritable-" + str(time.monotonic_ns()))
    finally:
        cache.unhook()
    assert cache.misses == 1 and not cache.save()


def test_the_file_is_the_user_s_alone_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)  # (a group-writable default, as on systems with a group per user)
    try:
        path = written(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = StartupCache(path)
    again.load()
    assert again.problem is None and again.code and again.programs
    assert not list(tmp_path.glob(".kept.bin.*.tmp"))  # no temporary file left beside it


def test_without_new_results_nothing_is_written(tmp_path: Path) -> None:
    path = written(tmp_path)
    before = path.stat()
    cache = StartupCache(path)
    cache.load()
    cache.hook()
    try:
        re.purge()
        re.compile(r"(?P<only>kept-file)")
    finally:
        cache.unhook()
    assert cache.hits == 1 and not cache.save()
    assert path.stat().st_ino == before.st_ino and path.stat().st_mtime_ns == before.st_mtime_ns


def test_install_applies_only_where_it_is_meant_to(tmp_path: Path) -> None:
    """Off with PHASEF_STARTUP_CACHE=0, and in a process that already imported Textual (a forked SSH session)."""
    script = (
        "import sys\n"
        "from phasef_tui import startup_cache\n"
        "if sys.argv[1] == 'warm':\n"
        "    import textual.app\n"
        "cache = startup_cache.install('trace view')\n"
        "print(None if cache is None else cache.path.name)\n"
    )
    env = {**os.environ, "PHASEF_CACHE_DIR": str(tmp_path)}

    def run(mode: str, **extra: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", script, mode], env={**env, **extra}, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    assert run("cold").startswith("trace-view-cpython-311-") and run("cold").endswith(".bin")
    assert run("cold", PHASEF_STARTUP_CACHE="0") == "None"
    assert run("warm") == "None"


def test_a_command_keeps_its_start_up_when_it_ends(tmp_path: Path) -> None:
    from tests.tui_helpers import sample_records, write_trace

    trace = write_trace(tmp_path / "t.jsonl", sample_records())
    # (a fixed hash seed: with a random one, stdlib's tokenize makes a new pattern text at each start; see below)
    env = {**os.environ, "PHASEF_CACHE_DIR": str(tmp_path / "cache"), "PYTHONHASHSEED": "0"}
    argv = [sys.executable, "-m", "phasef_tui.cli", "trace", "stats", str(trace)]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    [kept] = (tmp_path / "cache" / "startup").glob("trace-stats-*.bin")
    cache = StartupCache(kept)
    cache.load()
    assert cache.problem is None and cache.code and cache.programs
    before = kept.stat()
    second = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    assert second.stdout == first.stdout  # the same report from kept code
    assert (kept.stat().st_ino, kept.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    off = subprocess.run(argv, env={**env, "PHASEF_STARTUP_CACHE": "0"}, capture_output=True, text=True, check=True)
    assert off.stdout == first.stdout
    entries = len(cache.code) + len(cache.programs)
    for _ in range(startup_cache.MAX_AGE + 3):  # random hash seeds: the varying texts do not pile up
        subprocess.run(argv, env={**env, "PYTHONHASHSEED": "random"}, capture_output=True, check=True)
    grown = StartupCache(kept)
    grown.load()
    assert grown.problem is None
    assert entries <= len(grown.code) + len(grown.programs) <= entries + startup_cache.MAX_AGE + 1


def test_what_no_run_used_in_the_last_writes_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "aged.bin"
    stamp = time.monotonic_ns()

    def one_run(*patterns: str) -> StartupCache:
        cache = StartupCache(path)
        cache.load()
        assert cache.problem is None
        for pattern in patterns:
            cache.compile_pattern(pattern, 0)
        cache.save()
        return cache

    kept_in_use, left = f"in-use-{stamp}", f"left-{stamp}"
    one_run(kept_in_use, left)
    for n in range(startup_cache.MAX_AGE):
        cache = one_run(kept_in_use, f"new-{stamp}-{n}")  # each run compiles something new, so it writes
        assert cache.ages[(True, left, 0)] == n + 1 and cache.ages[(True, kept_in_use, 0)] == 0
    cache = one_run(f"new-{stamp}-last")
    assert (True, left, 0) not in cache.programs and (True, left, 0) not in cache.ages
    assert cache.ages[(True, kept_in_use, 0)] == 1 and cache.programs[(True, kept_in_use, 0)]
    again = one_run(kept_in_use)  # all known: nothing written, nothing aged
    assert again.hits == 1 and again.ages[(True, kept_in_use, 0)] == 1


# --- the real viewer ---


def start_viewer(trace: Path, cache_dir: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    argv = ["-m", "phasef_tui.cli", "trace", "view", str(trace)]
    return start_in_pty(argv, cwd, {"PHASEF_CACHE_DIR": str(cache_dir)})


def test_the_viewer_keeps_its_start_up_and_its_second_start_compiles_nothing_new(tmp_path: Path) -> None:
    from tests.tui_helpers import sample_records, write_trace

    trace = write_trace(tmp_path / "t.jsonl", sample_records())
    cache_dir = tmp_path / "cache"
    folder = cache_dir / "startup"

    def kept() -> list[Path]:
        return sorted(folder.glob("trace-view-*.bin")) if folder.is_dir() else []

    proc, master = start_viewer(trace, cache_dir, tmp_path)
    screen = read_pty(proc, master, lambda out: b"episode start" in out and bool(kept()))
    assert b"episode start" in screen, "the viewer showed no record"
    assert len(kept()) == 1, "no start-up cache was written after the first frame"
    path = kept()[0]
    first = StartupCache(path)
    first.load()
    assert first.problem is None and len(first.code) > 100 and len(first.programs) > 30 and len(first.css) >= 8
    modules = path.with_suffix(".modules")
    assert len(bundled_modules(modules)) > 200, "the modules imported before the first frame were not kept"
    assert {"textual.app", "rich.console", "phasef_tui.app", "widgets.trace_stream"} <= bundled_modules(modules)
    before, modules_before = path.stat(), modules.stat()
    shown_at: list[float] = []

    def settled(out: bytes) -> bool:  # the first frame, then a second for its save to have happened if it were due
        if b"episode start" in out and not shown_at:
            shown_at.append(time.monotonic())
        return bool(shown_at) and time.monotonic() - shown_at[0] > 1.5

    proc, master = start_viewer(trace, cache_dir, tmp_path)
    read_pty(proc, master, settled)
    assert shown_at, "the second start showed no record"
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), (
        "the second start compiled new code"
    )
    modules_after = modules.stat()  # (rewritten only when a module was imported that the bundle did not serve)
    assert (modules_after.st_ino, modules_after.st_mtime_ns) == (modules_before.st_ino, modules_before.st_mtime_ns), (
        "the second start imported modules its bundle did not serve"
    )


def bundled_modules(path: Path) -> set[str]:
    """The names of the modules a module bundle keeps (read from its header)."""
    from phasef_tui.startup_modules import FORMAT, HEADER

    data = path.read_bytes()
    header = marshal.loads(data[HEADER : HEADER + int.from_bytes(data[:4], "little")])
    assert header[0] == FORMAT
    return set(header[3])


# --- CSS ---


def rules_of(app: Any) -> list[tuple[object, ...]]:
    """The app's parsed rule sets, each as what applying it depends on."""
    return [
        (
            repr(rule.selector_set),
            repr(sorted(rule.styles.get_rules().items())),
            rule.is_default_rules,
            rule.tie_breaker,
            sorted(rule.selector_names),
            sorted(rule.pseudo_classes),
            len(rule.errors),
        )
        for rule in app.stylesheet.rules
    ]


def screen_of(app: Any) -> list[str]:
    """Every cell of the screen: its text and style."""
    return ["".join(f"{seg.text}|{seg.style}" for seg in strip) for strip in app.screen._compositor.render_strips()]


async def test_kept_css_rules_are_the_rules_parsing_makes_and_another_theme_parses_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The viewer's CSS parsed at one start and kept; the next start's rules (from the file) apply and draw exactly
    as parsed ones; a theme with other variables is parsed, not taken from the rules of the first."""
    from phasef_tui.trace_view import prepare_trace_view
    from tests.tui_helpers import sample_records, until, write_trace
    from widgets.trace_stream import TraceStream

    trace = write_trace(tmp_path / "t.jsonl", sample_records())
    path = tmp_path / "startup" / "css.bin"

    async def one_start(theme: str | None = None) -> tuple[tuple[int, int, int], list[tuple[object, ...]], list[str]]:
        """(CSS sources kept, parsed) of one start, its rules, its screen."""
        from textual.css import stylesheet

        real_parse, parsed = stylesheet.parse, []

        def counted_parse(*args: Any, **kwargs: Any) -> Any:
            parsed.append(args[1])
            return real_parse(*args, **kwargs)

        monkeypatch.setattr(stylesheet, "parse", counted_parse)
        cache = StartupCache(path)
        cache.load()
        assert cache.problem is None
        monkeypatch.setattr(startup_cache, "active_cache", cache)
        view = prepare_trace_view(trace, False)
        assert not isinstance(view, str)
        if theme is not None:
            view.app.requested_theme = theme
        async with view.app.run_test(size=(120, 40)) as pilot:
            assert await until(pilot, lambda: view.app.screen.query_one(TraceStream).count == 15)
            await pilot.pause(0.2)
            drawn = rules_of(view.app), screen_of(view.app)
        view.close()
        cache.save()
        return (len(cache.css), len(parsed)), *drawn

    (kept, parsed), parsed_rules, parsed_screen = await one_start()
    assert kept >= 8 and parsed == kept
    (kept_again, parsed), kept_rules, kept_screen = await one_start()
    assert kept_again == kept and parsed == 0
    assert kept_rules == parsed_rules
    assert kept_screen == parsed_screen
    (kept_light, parsed), light_rules, _ = await one_start("textual-light")
    assert parsed > 0 and kept_light == kept + parsed  # the light theme's variables: parsed, and kept
    assert light_rules != parsed_rules


def test_a_kept_css_entry_that_does_not_unpickle_to_rules_is_parsed_again(tmp_path: Path) -> None:
    cache = StartupCache(tmp_path / "css.bin")
    parsed: list[int] = []

    def parse() -> list[Any]:
        parsed.append(1)
        return [("a rule", len(parsed))]

    key = css_key("stamp", {"primary": "#004578"}, "Screen { layout: vertical; }", ("f", ""))
    assert key.startswith("css:") and key != css_key("stamp", {"primary": "#ffffff"}, "x", ("f", ""))
    assert cache.css_rules(key, parse) == [("a rule", 1)]
    assert cache.css_rules(key, parse) == [("a rule", 1)] and len(parsed) == 1  # (unpickled: a new list)
    for damaged in (b"not a pickle", pickle.dumps({"not": "a list"}), pickle.dumps([1])[:-3]):
        cache.css[key] = damaged
        assert cache.css_rules(key, parse)[0][0] == "a rule"
    assert len(parsed) == 4  # each damaged one parsed again
    unpicklable = lambda: [lambda: None]  # noqa: E731
    other = css_key("stamp", {}, "y")
    assert len(cache.css_rules(other, unpicklable)) == 1 and other not in cache.css  # used, not kept
