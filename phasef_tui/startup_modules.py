"""The modules a command imports at start, kept in one file: one open file instead of ~190 path searches and pyc files.

A TUI's start imports ~330 modules from source files (Textual, Rich, asyncio, the app). For each one the import
system searches the path (a directory listing, path joins, stats), opens its ``__pycache__`` file, reads it and
checks its header: about a fifth of the import time before the trace viewer's first frame, on a machine where a
read into fresh memory is slow. This keeps the compiled code of the modules a run of a command imported (the
bytes of their pyc files after the header, as the interpreter wrote them) in one file, opened at the next start; a
finder in front of the others serves a module from it (one ``pread``) when nothing it depends on has changed:

- the interpreter build and optimization level, ``sys.path`` and the finders before this one are the same (the
  file's key);
- the module's source file has the same modification time and size as when its code was kept (what a pyc file
  checks);
- the directory it was found in has the same modification time (a file added there, which the regular search could
  now find first, changes it), and so has every directory of ``sys.path`` (a top-level module's shadow);
- for a submodule, the parent's search path is that one directory (a package that extends its ``__path__`` goes
  the regular way).

Otherwise the module is imported as usual, and the file is written again once the start is over (a TUI's first
frame, or the end of the command). A module served from the file has a ``SourceFileLoader`` as its loader and the
spec, ``__file__`` and ``__cached__`` the regular import gives (its source, resources and reload work as before).
Only modules loaded by the interpreter's own ``SourceFileLoader`` from a ``.py`` file whose timestamp pyc file is
valid are kept. The file is read only when it is the user's own and no one else may write it (code is run from it),
and written atomically, mode 0600. It lives beside the start-up cache (``startup_cache``), which installs and saves
it; ``PHASEF_STARTUP_CACHE=0`` turns both off.
"""

import binascii
import marshal
import os
import sys
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from importlib.util import MAGIC_NUMBER, cache_from_source, spec_from_file_location
from pathlib import Path
from types import ModuleType
from typing import Any

FORMAT = 1
HEADER = 8
"""The file: the header's length and its CRC-32 (4 bytes each, little-endian), the header (marshalled), then the
modules' code (checked as a pyc file's is: by its source's time and size)."""

Entry = tuple[str, str, int, int, int, int]
"""origin (the source file), the directory it was found in, source mtime_ns, source size, offset, length."""


class BundleLoader(SourceFileLoader):
    """A source file's loader whose first ``get_code`` is the kept code (then it reads as its base class does)."""

    def __init__(self, fullname: str, path: str, code: bytes) -> None:
        super().__init__(fullname, path)
        self._kept: bytes | None = code

    def get_code(self, fullname: str) -> Any:
        kept, self._kept = self._kept, None
        if kept is not None and fullname == self.name:
            try:
                return marshal.loads(kept)
            except (EOFError, ValueError, TypeError):
                pass  # (a damaged entry: the source's own way)
        return super().get_code(fullname)


class ModuleBundle:
    """The kept modules of one command, and the finder that serves them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}
        self.served: set[str] = set()
        self.refused: set[str] = set()  # kept, but something changed: imported the regular way
        self.before: frozenset[str] = frozenset()  # the modules there at install (not this command's to keep)
        self.key = bundle_key()
        self._search = list(self.key[3])
        self.problem: str | None = None
        self._dirs: dict[str, int] = {}
        self._fd = -1
        self._base = 0
        self._dir_checked: dict[str, bool] = {}

    # --- the file ---

    def load(self) -> None:
        """Open the file and read its header; nothing is served unless its key is this process's. The file stays
        open (read, not mapped: a module's code is read when it is imported, and its bytes freed once it is made
        into code, as a pyc file's are)."""
        from pipeline.fsio import open_regular

        try:
            with open_regular(self.path) as fh:
                st = os.fstat(fh.fileno())
                self.problem = untrusted(self.path, st) or (f"{self.path}: too short" if st.st_size <= HEADER else None)
                if self.problem:
                    return
                prefix = os.pread(fh.fileno(), HEADER, 0)
                size = int.from_bytes(prefix[:4], "little")
                data = os.pread(fh.fileno(), size, HEADER) if HEADER + size <= st.st_size else b""
                header = None
                if len(data) == size and binascii.crc32(data) == int.from_bytes(prefix[4:8], "little"):
                    try:
                        header = marshal.loads(data)
                    except (EOFError, ValueError, TypeError):
                        header = None
                if not (isinstance(header, tuple) and len(header) == 4 and header[0] == FORMAT):
                    self.problem = f"{self.path}: not a module bundle of format {FORMAT}"
                    return
                _, key, dirs, entries = header
                if key != self.key or not isinstance(dirs, dict) or not isinstance(entries, dict):
                    self.problem = f"{self.path}: kept for another interpreter or search path"
                    return  # (written anew at the end of this run)
                self._fd = os.dup(fh.fileno())
                os.set_inheritable(self._fd, False)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.problem = f"{self.path}: {exc}"
            return
        base = self._base = HEADER + size
        self.entries = {
            name: entry
            for name, entry in entries.items()
            if isinstance(name, str) and _entry(entry) and base + entry[4] + entry[5] <= st.st_size
        }
        self._dirs = {d: m for d, m in dirs.items() if isinstance(d, str) and isinstance(m, int)}
        for d in self._search:  # (a folder of the search path changed, or one appeared: a top-level module's shadow)
            if not self._dir_same(d) if d in self._dirs else os.path.isdir(d or "."):
                self.entries = {}
                break

    def save(self) -> bool:
        """Write the file when this run imported a module from source that it did not serve, or refused one; what
        was kept before and is still valid stays. True when written."""
        fresh: dict[str, tuple[tuple[str, str, int, int], bytes]] = {}
        for name, module in list(sys.modules.items()):
            if name in self.before or name in self.served or not isinstance(module, ModuleType):
                continue
            found = self._code_of(name, module)
            if found is not None:
                fresh[name] = found
        if not fresh and not self.refused:
            return False
        kept = {}
        for name, entry in self.entries.items():  # (what another run imported stays while its source is the same)
            if name not in fresh and name not in self.refused:
                try:
                    st = os.stat(entry[0])
                except OSError:
                    continue
                if (st.st_mtime_ns, st.st_size) == (entry[2], entry[3]):
                    kept[name] = ((entry[0], entry[1], entry[2], entry[3]), self._code(entry))
        try:  # (first: a folder made for the file changes the times of those above it, which are recorded next)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        entries: dict[str, Entry] = {}
        dirs: dict[str, int] = {}
        chunks: list[bytes] = []
        offset = 0
        for name, ((origin, where, mtime_ns, size), code) in {**kept, **fresh}.items():
            if where not in dirs:
                try:
                    dirs[where] = os.stat(where).st_mtime_ns
                except OSError:
                    continue
            entries[name] = (origin, where, mtime_ns, size, offset, len(code))
            chunks.append(code)
            offset += len(code)
        for d in self.key[3]:  # (the search path of the key)
            if d not in dirs and os.path.isdir(d or "."):
                dirs[d] = os.stat(d or ".").st_mtime_ns
        header = marshal.dumps((FORMAT, self.key, dirs, entries))
        from pipeline.fsio import atomic_open

        try:  # (mode 0600 whatever the umask; not synced: a cache)
            with atomic_open(self.path, "wb", fsync=False, permissions=0o600) as fh:
                fh.write(len(header).to_bytes(4, "little") + binascii.crc32(header).to_bytes(4, "little"))
                fh.write(header)
                for chunk in chunks:
                    fh.write(chunk)
        except OSError:
            return False
        self.refused.clear()
        self.served.update(fresh)
        self._adopt(entries)
        return True

    def _adopt(self, entries: dict[str, Entry]) -> None:
        """Read from the file just written from now on, so that a later save (the command's end, after a TUI's first
        frame) keeps what this one wrote; if another process replaced it meanwhile, nothing is kept from it."""
        again = ModuleBundle(self.path)
        again.key, again._search = self.key, self._search
        again.load()
        same = again.entries == entries
        old, self._fd = self._fd, again._fd if same else -1
        if not same and again._fd >= 0:
            os.close(again._fd)
        if old >= 0:
            os.close(old)
        self.entries = again.entries if same else {}
        self._base, self._dirs, self._dir_checked = again._base, again._dirs, again._dir_checked

    def _code_of(self, name: str, module: ModuleType) -> tuple[tuple[str, str, int, int], bytes] | None:
        """What to keep of a module: (origin, the folder it was found in, source mtime_ns, size) and its code."""
        spec = getattr(module, "__spec__", None)
        if not isinstance(spec, ModuleSpec) or type(spec.loader) not in (SourceFileLoader, BundleLoader):
            return None
        origin = spec.origin
        if not isinstance(origin, str) or not origin.endswith(".py") or not spec.has_location:
            return None
        package = spec.submodule_search_locations is not None
        where = os.path.dirname(os.path.dirname(origin) if package else origin)
        parent = name.rpartition(".")[0]
        if not parent and where not in self.key[3]:
            return None  # (found through an entry not spelled as its folder, "" for one: not served, so not kept)
        if parent and list(getattr(sys.modules.get(parent), "__path__", None) or ()) != [where]:
            return None  # (a package whose search path is not its one folder)
        try:
            st = os.stat(origin)
        except OSError:
            return None
        code = _pyc_code(origin, st)
        return None if code is None else ((origin, where, st.st_mtime_ns, st.st_size), code)

    def _code(self, entry: Entry) -> bytes:
        """The kept code of ``entry`` (fewer bytes, which do not unmarshal, if the file was cut since)."""
        try:
            return os.pread(self._fd, entry[5], self._base + entry[4]) if self._fd >= 0 else b""
        except OSError:
            return b""  # (the source's own way)

    def _dir_same(self, d: str) -> bool:
        same = self._dir_checked.get(d)
        if same is None:
            try:
                same = os.stat(d or ".").st_mtime_ns == self._dirs.get(d)
            except OSError:
                same = False
            self._dir_checked[d] = same
        return same

    # --- the finder ---

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        entry = self.entries.get(fullname)
        if entry is None or target is not None:
            return None
        origin, where, mtime_ns, size = entry[0], entry[1], entry[2], entry[3]
        if path is None:  # (a top-level module: found in a folder of the search path the file was kept for)
            same_place = sys.path == self._search and where in self._search
        else:  # (a submodule: its parent's search path is its one folder)
            same_place = len(path) == 1 and next(iter(path)) == where
        try:
            st = os.stat(origin)
            same = same_place and st.st_mtime_ns == mtime_ns and st.st_size == size and self._dir_same(where)
        except OSError:
            same = False
        if not same:
            self.refused.add(fullname)
            return None
        self.served.add(fullname)
        return spec_from_file_location(fullname, origin, loader=BundleLoader(fullname, origin, self._code(entry)))

    def invalidate_caches(self) -> None:
        self._dir_checked.clear()


Key = tuple[str, bytes, int, tuple[str, ...], tuple[str, ...]]


def untrusted(path: Path, st: os.stat_result) -> str | None:
    """Why a kept file code is run from must not be read (None: it may): only a file of this user's that no one else
    may write (as for a key file)."""
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        return f"{path}: not used, it is not this user's own or others may write it"
    return None


def bundle_key() -> Key:
    """What a kept module's search and code depend on beyond its own file and folder."""
    finders = []
    for finder in sys.meta_path:
        if isinstance(finder, ModuleBundle):
            continue
        if finder is PathFinder:
            break
        finders.append(f"{type(finder).__module__}.{type(finder).__qualname__}")
    return (sys.version, MAGIC_NUMBER, sys.flags.optimize, tuple(sys.path), tuple(finders))


def _entry(entry: object) -> bool:
    return (
        isinstance(entry, tuple)
        and len(entry) == 6
        and isinstance(entry[0], str)
        and isinstance(entry[1], str)
        and all(isinstance(v, int) and v >= 0 for v in entry[2:])
    )


def _pyc_code(origin: str, st: os.stat_result) -> bytes | None:
    """The marshalled code of ``origin``'s timestamp pyc file when it is valid for the source as it is now."""
    try:
        with open(cache_from_source(origin), "rb") as fh:
            data = fh.read()
    except (OSError, NotImplementedError, ValueError):
        return None
    if len(data) <= 16 or data[:4] != MAGIC_NUMBER or int.from_bytes(data[4:8], "little") != 0:
        return None  # (a hash-based pyc checks its source in another way: not kept)
    if int.from_bytes(data[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF:
        return None
    if int.from_bytes(data[12:16], "little") != st.st_size & 0xFFFFFFFF:
        return None
    return data[16:]


active: ModuleBundle | None = None


def install(path: Path) -> ModuleBundle:
    """Map ``path``'s kept modules and put their finder first; what imports after this is kept by ``save``."""
    global active
    if active is not None:
        return active
    bundle = ModuleBundle(path)  # (its key: the search path as it is now, before the command changes it)
    bundle.load()
    bundle.before = frozenset(sys.modules)  # (after the load: what it imports itself cannot be served to it)
    sys.meta_path.insert(0, bundle)
    active = bundle
    return bundle


def save() -> bool:
    return active.save() if active is not None else False


def uninstall() -> None:
    """Take the finder out and close its file (a module it served was given its code's bytes when found)."""
    global active
    if active is not None:
        if active in sys.meta_path:
            sys.meta_path.remove(active)
        if active._fd >= 0:
            os.close(active._fd)
            active._fd = -1
    active = None
