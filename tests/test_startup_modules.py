"""The start-up's module bundle (``phasef_tui.startup_modules``): a kept module is what importing its source gives,
a change anywhere the regular search would see is imported the regular way, and a bad file costs only the bundle."""

from __future__ import annotations

import binascii
import json
import marshal
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasef_tui import startup_modules
from phasef_tui.startup_modules import HEADER, ModuleBundle

REPO = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import sys
    sys.dont_write_bytecode = False
    first, second, bundle = sys.argv[1:4]
    sys.path[:] = [first, second, *[p for p in sys.path if p]]
    from pathlib import Path
    from phasef_tui import startup_modules
    kept = startup_modules.install(Path(bundle))
    import importlib.resources, inspect, json
    from importlib.machinery import SourceFileLoader
    import mod_a, pkg, pkg.sub
    report = {
        "problem": kept.problem,
        "served": sorted(n for n in kept.served if n.startswith(("mod_a", "pkg"))),
        "refused": sorted(kept.refused),
        "values": [mod_a.VALUE, pkg.VALUE, pkg.sub.VALUE, pkg.sub.twice(21)],
        "files": [m.__file__ for m in (mod_a, pkg, pkg.sub)],
        "cached": [m.__cached__ for m in (mod_a, pkg, pkg.sub)],
        "path": list(pkg.__path__),
        "loader": all(isinstance(m.__loader__, SourceFileLoader) for m in (mod_a, pkg, pkg.sub)),
        "source": inspect.getsource(pkg.sub.twice).strip().splitlines()[0],
        "resource": importlib.resources.files("pkg").joinpath("data.txt").read_text(),
    }
    report["written"] = startup_modules.save()
    print(json.dumps(report))
    """
)


def tree(tmp_path: Path) -> tuple[Path, Path]:
    """Two search-path folders: the first empty, the second with a module and a package (a submodule, a data
    file)."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    (second / "pkg").mkdir(parents=True)
    (second / "mod_a.py").write_text("VALUE = 'a from second'\n")
    (second / "pkg" / "__init__.py").write_text("VALUE = 'pkg'\n")
    (second / "pkg" / "sub.py").write_text("VALUE = 'sub one'\n\n\ndef twice(x):\n    return 2 * x\n")
    (second / "pkg" / "data.txt").write_text("kept beside the code\n")
    return first, second


def run(first: Path, second: Path, bundle: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(first), str(second), str(bundle)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=str(first.parent),
    )
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def touch_later(path: Path, text: str) -> None:
    """``path`` rewritten with a modification time a second on (a same-second edit of the same size is what a pyc
    file cannot see either)."""
    before = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(text)
    if before is not None:
        os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def test_a_second_start_is_served_from_the_bundle_with_the_modules_as_importing_gives(tmp_path: Path) -> None:
    first, second = tree(tmp_path)
    bundle = tmp_path / "cache" / "b.modules"
    bundle.parent.mkdir()
    cold = run(first, second, bundle)
    assert cold["served"] == [] and cold["written"] and bundle.exists()
    assert bundle.stat().st_mode & 0o777 == 0o600
    warm = run(first, second, bundle)
    assert warm["problem"] is None
    assert warm["served"] == ["mod_a", "pkg", "pkg.sub"] and warm["refused"] == []
    for key in ("values", "files", "cached", "path", "source", "resource"):
        assert warm[key] == cold[key], key
    assert warm["values"] == ["a from second", "pkg", "sub one", 42]
    assert warm["loader"] and warm["source"] == "def twice(x):"
    before = bundle.stat()
    again = run(first, second, bundle)
    assert again["served"] == warm["served"] and not again["written"]
    assert (bundle.stat().st_ino, bundle.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


TWO_SAVES = textwrap.dedent(
    """
    import sys
    sys.dont_write_bytecode = False
    first, second, bundle = sys.argv[1:4]
    sys.path[:] = [first, second, *[p for p in sys.path if p]]
    from pathlib import Path
    from phasef_tui import startup_modules
    kept = startup_modules.install(Path(bundle))
    import mod_a
    print(startup_modules.save())  # (a TUI's first frame)
    import pkg.sub
    print(startup_modules.save())  # (the command's end)
    """
)


def test_a_second_save_in_one_run_keeps_what_the_first_wrote(tmp_path: Path) -> None:
    """A TUI saves after its first frame and again at its end: the second write keeps the first one's modules."""
    first, second = tree(tmp_path)
    bundle = tmp_path / "b.modules"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO)
    argv = [sys.executable, "-c", TWO_SAVES, str(first), str(second), str(bundle)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=str(tmp_path))
    assert out.stdout.split() == ["True", "True"]
    assert run(first, second, bundle)["served"] == ["mod_a", "pkg", "pkg.sub"]


def test_a_changed_source_is_imported_from_it_and_kept_anew(tmp_path: Path) -> None:
    first, second = tree(tmp_path)
    bundle = tmp_path / "b.modules"
    run(first, second, bundle)
    assert run(first, second, bundle)["served"] == ["mod_a", "pkg", "pkg.sub"]
    touch_later(second / "pkg" / "sub.py", "VALUE = 'sub two, longer'\n\n\ndef twice(x):\n    return x + x\n")
    changed = run(first, second, bundle)
    assert changed["refused"] == ["pkg.sub"] and changed["served"] == ["mod_a", "pkg"]
    assert changed["values"][2] == "sub two, longer" and changed["written"]
    after = run(first, second, bundle)
    assert after["served"] == ["mod_a", "pkg", "pkg.sub"] and after["values"][2] == "sub two, longer"


def test_a_new_file_the_search_would_find_first_is_imported_instead(tmp_path: Path) -> None:
    first, second = tree(tmp_path)
    bundle = tmp_path / "b.modules"
    run(first, second, bundle)
    (first / "mod_a.py").write_text("VALUE = 'a from first'\n")  # (a top-level module's shadow, earlier on the path)
    shadowed = run(first, second, bundle)
    assert shadowed["values"][0] == "a from first" and shadowed["files"][0] == str(first / "mod_a.py")
    assert "mod_a" not in shadowed["served"]
    run(first, second, bundle)
    (second / "pkg" / "sub").mkdir()  # (a package of the submodule's name: the search takes it before sub.py)
    (second / "pkg" / "sub" / "__init__.py").write_text("VALUE = 'sub package'\n\n\ndef twice(x):\n    return 0\n")
    package = run(first, second, bundle)
    assert package["values"][2:] == ["sub package", 0] and "pkg.sub" not in package["served"]


def test_another_search_path_is_not_served(tmp_path: Path) -> None:
    first, second = tree(tmp_path)
    bundle = tmp_path / "b.modules"
    run(first, second, bundle)
    swapped = run(second, first, bundle)  # (the same folders in another order)
    assert swapped["served"] == [] and "another interpreter or search path" in swapped["problem"]
    assert swapped["values"][0] == "a from second"


@pytest.mark.parametrize(
    "damage", ["truncated", "garbage", "header", "fifo", "folder", "others-may-write", "empty", "other format"]
)
def test_a_bad_file_serves_nothing_and_is_replaced(tmp_path: Path, damage: str) -> None:
    first, second = tree(tmp_path)
    bundle = tmp_path / "b.modules"
    run(first, second, bundle)
    data = bundle.read_bytes()
    bundle.unlink()
    if damage == "truncated":
        bundle.write_bytes(data[: HEADER + 10])
    elif damage == "garbage":
        bundle.write_bytes(os.urandom(len(data)))
    elif damage == "header":
        bundle.write_bytes(data[:HEADER] + bytes([data[HEADER] ^ 0x01]) + data[HEADER + 1 :])
    elif damage == "fifo":
        os.mkfifo(bundle)  # (no writer: an open for reading would block)
    elif damage == "folder":
        bundle.mkdir()
    elif damage == "other format":
        header = marshal.dumps((startup_modules.FORMAT + 1, (), {}, {}))
        bundle.write_bytes(len(header).to_bytes(4, "little") + binascii.crc32(header).to_bytes(4, "little") + header)
    elif damage == "others-may-write":
        bundle.write_bytes(data)
        bundle.chmod(0o666)
    else:
        bundle.write_bytes(b"")
    bad = run(first, second, bundle)
    assert bad["served"] == [] and bad["problem"] and str(bundle) in bad["problem"]
    assert bad["values"] == ["a from second", "pkg", "sub one", 42]
    if damage in ("fifo", "folder"):  # not a regular file: left alone, the bundle just is not written
        assert not bad["written"] and (bundle.is_fifo() if damage == "fifo" else bundle.is_dir())
        return
    assert bad["written"] and bundle.is_file() and bundle.stat().st_mode & 0o777 == 0o600
    assert run(first, second, bundle)["served"] == ["mod_a", "pkg", "pkg.sub"]


def test_install_and_save_go_with_the_start_up_cache(tmp_path: Path) -> None:
    """The start-up cache installs the bundle beside its own file (none with PHASEF_STARTUP_CACHE=0)."""
    script = (
        "from phasef_tui import startup_cache, startup_modules\n"
        "startup_cache.install('trace stats')\n"
        "import tomllib\n"
        "print(startup_modules.active.path.name if startup_modules.active else None, startup_cache.save())\n"
    )
    env = {**os.environ, "PHASEF_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    name, written = out.stdout.split()
    assert name.startswith("trace-stats-cpython-311-") and name.endswith(".modules") and written == "True"
    assert (tmp_path / "startup" / name).is_file()
    off = subprocess.run(
        [sys.executable, "-c", script], env={**env, "PHASEF_STARTUP_CACHE": "0"}, capture_output=True, text=True
    )
    assert off.stdout.split() == ["None", "False"]


# --- the file as input ---


@pytest.fixture(scope="module")
def kept_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, Any]]:
    """A bundle of three modules imported in this process (fresh names), and its entries."""
    root = tmp_path_factory.mktemp("fuzz")
    names = []
    for n in range(3):
        name = f"fuzz_kept_{os.getpid()}_{n}"
        (root / f"{name}.py").write_text(f"VALUE = {n}\n")
        names.append(name)
    sys.path.insert(0, str(root))
    try:
        bundle = ModuleBundle(tmp_path_factory.mktemp("kept") / "k.modules")  # (not in a folder of the path)
        bundle.before = frozenset(sys.modules)
        import importlib

        saved = sys.dont_write_bytecode
        sys.dont_write_bytecode = False
        try:
            for name in names:
                importlib.import_module(name)
        finally:
            sys.dont_write_bytecode = saved
        assert bundle.save()
        loaded = ModuleBundle(bundle.path)
        loaded.load()
        assert loaded.problem is None and set(names) <= set(loaded.entries)
        return bundle.path.read_bytes(), dict(loaded.entries)
    finally:
        sys.path.remove(str(root))
        for name in names:
            sys.modules.pop(name, None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_to_the_file_is_refused_or_leaves_what_is_whole(
    kept_file: tuple[bytes, dict[str, Any]], tmp_path: Path, data: st.DataObject
) -> None:
    """Flipped bytes in the lengths or the header, or a file cut anywhere: reading it never fails; either nothing
    is taken, or what is taken is exactly what was written, each entry's code whole."""
    original, entries = kept_file
    header_end = HEADER + int.from_bytes(original[:4], "little")
    damaged = bytearray(original)
    kind = data.draw(st.sampled_from(["flip", "cut"]))
    if kind == "flip":
        for at in data.draw(st.lists(st.integers(0, header_end - 1), min_size=1, max_size=4)):
            damaged[at] ^= data.draw(st.integers(1, 255))
    else:
        del damaged[data.draw(st.integers(0, len(original) - 1)) :]
    path = tmp_path / f"d{data.draw(st.integers(0, 10**9))}.modules"
    path.write_bytes(bytes(damaged))
    path.chmod(0o600)
    bundle = ModuleBundle(path)
    bundle.key = startup_modules.bundle_key()  # (this process's, as when the file was written)
    bundle.load()
    if kind == "flip":
        assert bundle.problem and not bundle.entries
    for name, entry in bundle.entries.items():
        assert entries[name] == entry
        code = marshal.loads(bundle._code(entry))
        assert code.co_filename == entry[0]
