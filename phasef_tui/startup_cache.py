"""What a start-up compiles from text, kept between runs: dataclass methods, named tuples, string annotations and
regular expressions.

Importing Textual, Rich and the app compiles ~320 snippets of Python source (the methods ``dataclasses`` writes for
each class, ``namedtuple``'s ``__new__``, ``typing``'s forward references) and ~70 regular expressions (Textual's CSS
tokenizer among them) in every process, the same ones every time: about a fifth of the instructions a ``phasef``
TUI executes before its first frame (the trace viewer: ~200 M of ~1,160 M). Then the app parses its CSS (~25
sources, ~8 ms). All three are pure functions of their text and the interpreter (the CSS: and of Textual's version
and the theme's variables), so they are kept in a file per command and interpreter build, loaded at the next start:

- Python snippets: the code object ``compile`` makes, marshalled (what ``__pycache__`` keeps for a module);
- regular expressions: the program ``re``'s compiler makes for ``_sre`` (the opcodes, flags and group names);
- CSS: the rule sets Textual's parser makes of a source, pickled (``css_rules``, asked by
  ``stylesheet.ParsedOnceStylesheet``).

How it is hooked in, without changing what the standard library does:

- ``dataclasses.exec``, ``collections.eval`` and ``typing.compile`` are set in those modules' namespaces (a module
  global is found before the builtin of that name), so their calls compile through the cache and then call the
  builtin with the same namespaces. The cached code is compiled as those modules would: file ``<string>``, no
  ``from __future__`` flags (none of them has one; this module has none either, so even the calls it passes through
  compile as the caller would).
- ``re._compiler.compile`` is wrapped: a known pattern goes to ``_sre.compile`` with its kept program. Before it is
  wrapped, a few patterns are compiled both ways and must come out equal (``Pattern.__eq__`` compares the
  program), else it is left alone.

It is used only on CPython 3.11 (the internals above are that version's), only in a process that has not yet
imported Textual (a session forked from the SSH session server is warm already), and not at all when
``PHASEF_STARTUP_CACHE=0``. Since code is run from it, a file that is not the user's own or that others may write is
not read. Anything wrong with the file (missing, torn, another format, not a regular file) makes it start empty.
It is rewritten (atomically, mode 0600) when a run compiled something new, dropping what no run used in the last
four writes. Where it is: ``$PHASEF_CACHE_DIR/startup`` (default ``$XDG_CACHE_HOME/phasef/startup``, else
``~/.cache/phasef/startup``), one file per command (``trace-view``, ``attach``, ...) and interpreter build.
"""

import binascii
import builtins
import importlib
import logging
import marshal
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import CodeType
from typing import Any

log = logging.getLogger(__name__)

ENV_SWITCH = "PHASEF_STARTUP_CACHE"
FORMAT = 4
MAX_AGE = 4
"""An entry no run used in this many writes is dropped: a text that differs from run to run (``tokenize`` builds a
pattern from a set of prefixes, in hash order) does not pile up."""
MAX_ENTRIES = 8192
"""Beyond this (a program making classes from generated names, say), only what the last run used is written."""
HOOKED_NAMES = (("dataclasses", "exec"), ("collections", "eval"), ("typing", "compile"))
SELF_CHECK_PATTERNS: tuple[tuple[str | bytes, int], ...] = (
    (r"(?P<word>\w+)\s*=\s*(?P<value>[^;]*);?", 0),
    (r"(?i)colou?r(s)?|(?<!x)\d{2,4}$", re.MULTILINE),
    (rb"[\x00-\x1f]+(?:a|b)*?", 0),
    (r"  a  # comment\n  [b-d]+ ", re.VERBOSE | re.ASCII),
)

CodeKey = tuple[str, str]  # (mode, source)
PatternKey = tuple[bool, str | bytes, int]  # (is text, pattern, flags)
Program = tuple[int, list[int], int, dict[str, int], tuple[str | None, ...]]
CssKey = str  # "css:" and the digest of what the rules are made of (``css_key``)

_real_compile = builtins.compile
_real_exec = builtins.exec
_real_eval = builtins.eval


def cache_folder() -> Path:
    from pipeline.fsio import cache_root

    return cache_root() / "startup"


def interpreter_tag() -> str:
    """The interpreter build: its full version, bytecode magic and regular-expression engine's."""
    from importlib.util import MAGIC_NUMBER

    _sre = _internal("_sre")
    text = f"{sys.version}|{MAGIC_NUMBER.hex()}|{_sre.MAGIC}|{_sre.CODESIZE}|{FORMAT}"
    return f"{sys.implementation.cache_tag}-{binascii.crc32(text.encode()):08x}"


class StartupCache:
    """The kept results of one command's start-up, and the hooks that use them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.code: dict[CodeKey, bytes] = {}  # marshalled: each use gets its own code objects, as compiling gives
        self.programs: dict[PatternKey, Program] = {}
        self.css: dict[CssKey, bytes] = {}  # pickled: each use gets its own rule objects, as parsing gives
        self.used: set[object] = set()
        self.ages: dict[object, int] = {}
        self.hits = 0
        self.misses = 0
        self.problem: str | None = None  # why the file was not read (missing is no problem)
        self._re_compile: Callable[..., re.Pattern[Any]] | None = None
        self._hooked: list[tuple[str, str]] = []

    # --- the file ---

    def load(self) -> None:
        from phasef_tui.startup_modules import untrusted
        from pipeline.fsio import open_regular

        try:
            with open_regular(self.path) as fh:
                self.problem = untrusted(self.path, os.fstat(fh.fileno()))  # (code is run from it)
                if self.problem:
                    return
                data = fh.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.problem = f"{self.path}: {exc}"
            return
        try:
            kept = marshal.loads(data)
        except (EOFError, ValueError, TypeError) as exc:
            self.problem = f"{self.path}: unreadable ({exc})"
            return
        if not (isinstance(kept, tuple) and len(kept) == 5 and kept[0] == FORMAT):
            self.problem = f"{self.path}: not a start-up cache of format {FORMAT}"
            return
        code, programs, css, ages = kept[1], kept[2], kept[3], kept[4]
        if isinstance(code, dict):
            self.code = {k: v for k, v in code.items() if _code_key(k) and isinstance(v, bytes)}
        if isinstance(programs, dict):
            self.programs = {k: v for k, v in programs.items() if _pattern_key(k) and _program(v)}
        if isinstance(css, dict):
            self.css = {k: v for k, v in css.items() if isinstance(k, str) and k[:4] == "css:" and isinstance(v, bytes)}
        if isinstance(ages, dict):
            self.ages = {
                k: v
                for k, v in ages.items()
                if isinstance(v, int) and (k in self.code or k in self.programs or k in self.css)
            }

    def save(self) -> bool:
        """Write the file when this run compiled something it did not have; True when written."""
        if not self.misses:
            return False
        # an entry's age: how many writes ago a run last used it (a run writes only when it compiled something new)
        keys: list[object] = [*self.code, *self.programs, *self.css]
        ages = {k: 0 if k in self.used else self.ages.get(k, 0) + 1 for k in keys}
        if len(ages) > MAX_ENTRIES:
            ages = {k: age for k, age in ages.items() if age == 0}
        ages = {k: age for k, age in ages.items() if age <= MAX_AGE}
        code = {k: v for k, v in self.code.items() if k in ages}
        programs = {k: v for k, v in self.programs.items() if k in ages}
        css = {k: v for k, v in self.css.items() if k in ages}
        from pipeline.fsio import atomic_write_bytes

        data = marshal.dumps((FORMAT, code, programs, css, ages))
        try:  # (mode 0600 whatever the umask: ``load`` reads no file others may write; not synced: a cache)
            atomic_write_bytes(self.path, data, fsync=False, permissions=0o600)
        except OSError as exc:  # (a read-only home, a full disk: the next start compiles as before)
            log.debug("start-up cache not written: %s", exc)
            return False
        self.code, self.programs, self.css, self.ages = code, programs, css, ages
        self.misses = 0
        return True

    # --- Python source ---

    def compiled(self, source: str, mode: str) -> CodeType:
        """The code of ``source``, a new object at each call (two classes never share one method's code object, so
        neither shares the other's inline caches), unmarshalled from the kept bytes or compiled."""
        key = (mode, source)
        kept = self.code.get(key)
        code = None
        if kept is not None:
            try:
                code = marshal.loads(kept)
            except (EOFError, ValueError, TypeError):
                code = None
        if isinstance(code, CodeType):
            self.hits += 1
        else:
            code = _real_compile(source, "<string>", mode, dont_inherit=True)
            self.code[key] = marshal.dumps(code)
            self.misses += 1
        self.used.add(key)
        return code

    def exec(self, source: Any, globals: Any = None, locals: Any = None, /) -> None:
        if isinstance(source, str):
            source = self.compiled(source, "exec")
        _real_exec(source, *_callers_namespaces(globals, locals))

    def eval(self, source: Any, globals: Any = None, locals: Any = None, /) -> Any:
        if isinstance(source, str):
            source = self.compiled(source, "eval")
        return _real_eval(source, *_callers_namespaces(globals, locals))

    def compile(
        self, source: Any, filename: Any, mode: str, flags: int = 0, dont_inherit: bool = False, optimize: int = -1
    ) -> Any:
        if isinstance(source, str) and filename == "<string>" and flags == 0 and optimize == -1:
            return self.compiled(source, mode)
        return _real_compile(source, filename, mode, flags, True, optimize)

    # --- regular expressions ---

    def compile_pattern(self, pattern: Any, flags: int = 0) -> re.Pattern[Any]:
        real = self._re_compile or _real_re_compile
        flags = int(flags)
        if not isinstance(pattern, (str, bytes)) or flags & (re.DEBUG | re.LOCALE):
            return real(pattern, flags)
        key = (isinstance(pattern, str), pattern, flags)
        program = self.programs.get(key)
        if program is None:
            program = _program_of(pattern, flags)  # (a bad pattern raises re.error here, as it would)
            self.programs[key] = program
            self.misses += 1
        else:
            self.hits += 1
        self.used.add(key)
        return _pattern(pattern, program)

    # --- CSS ---

    def css_rules(self, key: CssKey, parse: Callable[[], list[Any]]) -> list[Any]:
        """The rule sets of a CSS source (``key``: ``stylesheet.css_key``), unpickled from the kept bytes, or
        ``parse()``d (and kept when they pickle). Kept bytes that do not unpickle to a list are parsed again."""
        import pickle

        kept = self.css.get(key)
        rules = None
        if kept is not None:
            try:
                rules = pickle.loads(kept)
            except Exception:  # (whatever a stale or damaged pickle raises: the source is parsed instead)
                rules = None
        if isinstance(rules, list):
            self.hits += 1
        else:
            rules = parse()  # (a CSS error raises here, as it would)
            try:
                self.css[key] = pickle.dumps(rules, protocol=pickle.HIGHEST_PROTOCOL)
                self.misses += 1
            except Exception as exc:  # (rules holding something that does not pickle: parsed at every start)
                log.debug("CSS rules not kept: %s", exc)
                return rules
        self.used.add(key)
        return rules

    # --- hooks ---

    def hook(self) -> None:
        modules = [sys.modules.get(name) or __import__(name) for name, _ in HOOKED_NAMES]
        for module, (module_name, name) in zip(modules, HOOKED_NAMES, strict=True):
            if name not in vars(module):  # (someone else's hook stays; that module then compiles as before)
                setattr(module, name, getattr(self, name))
                self._hooked.append((module_name, name))
        re_compiler = _internal("re._compiler")
        original = re_compiler.compile
        self._re_compile = original
        try:  # (programs read from the file were made by a run of this interpreter build that passed this check)
            same = bool(self.programs) or all(
                original(p, f) == _pattern(p, _program_of(p, f)) for p, f in SELF_CHECK_PATTERNS
            )
        except Exception as exc:  # (another engine's internals)
            log.debug("regular expressions not cached: %s", exc)
            same = False
        if same:
            re_compiler.compile = self.compile_pattern
        else:
            self._re_compile = None

    def unhook(self) -> None:
        for module_name, name in self._hooked:
            module = sys.modules[module_name]
            if vars(module).get(name) == getattr(self, name):
                delattr(module, name)
        self._hooked.clear()
        if self._re_compile is not None:
            re_compiler = _internal("re._compiler")
            if re_compiler.compile == self.compile_pattern:
                re_compiler.compile = self._re_compile
            self._re_compile = None


def _callers_namespaces(globals: Any, locals: Any) -> tuple[Any, Any]:
    """The namespaces as the builtin takes them: left out, they are its caller's (the hook's caller, two frames up
    from here: the hook's own frame is not that caller)."""
    if globals is None:
        frame = sys._getframe(2)
        return frame.f_globals, frame.f_locals if locals is None else locals
    return globals, locals


def _program_of(pattern: str | bytes, flags: int) -> Program:
    """What ``re._compiler.compile`` hands to ``_sre.compile`` for ``pattern``, as plain ints (marshal keeps them)."""
    parsed = _internal("re._parser").parse(pattern, flags)
    code = [int(op) for op in _internal("re._compiler")._code(parsed, flags)]
    groupindex = {str(k): int(v) for k, v in parsed.state.groupdict.items()}
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    return int(flags | parsed.state.flags), code, parsed.state.groups - 1, groupindex, tuple(indexgroup)


def _pattern(pattern: str | bytes, program: Program) -> re.Pattern[Any]:
    flags, code, groups, groupindex, indexgroup = program
    pat: re.Pattern[Any] = _internal("_sre").compile(pattern, flags, list(code), groups, dict(groupindex), indexgroup)
    return pat


def _internal(name: str) -> Any:
    """A module of the interpreter's internals (no type stubs: they are not a public interface)."""
    return sys.modules.get(name) or importlib.import_module(name)


def _code_key(key: object) -> bool:
    return isinstance(key, tuple) and len(key) == 2 and key[0] in ("exec", "eval") and isinstance(key[1], str)


def _pattern_key(key: object) -> bool:
    return (
        isinstance(key, tuple)
        and len(key) == 3
        and isinstance(key[0], bool)
        and isinstance(key[1], str if key[0] else bytes)
        and isinstance(key[2], int)
    )


def _program(value: object) -> bool:
    if not (isinstance(value, tuple) and len(value) == 5):
        return False
    flags, code, groups, groupindex, indexgroup = value
    return (
        isinstance(flags, int)
        and isinstance(code, list)
        and set(map(type, code)) <= {int}  # (the opcodes: plain ints, checked in one pass in C)
        and isinstance(groups, int)
        and isinstance(groupindex, dict)
        and isinstance(indexgroup, tuple)
        and len(indexgroup) == groups + 1
    )


_real_re_compile: Callable[..., re.Pattern[Any]] = _internal("re._compiler").compile
active_cache: StartupCache | None = None
"""The cache ``install`` hooked in (None: none is)."""


def install(command: str, environ: Mapping[str, str] = os.environ) -> StartupCache | None:
    """Load ``command``'s start-up cache and hook it in; None when it does not apply (see the module's text)."""
    global active_cache
    if active_cache is not None:
        return active_cache
    if environ.get(ENV_SWITCH, "1") == "0" or sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
        return None
    if "textual.app" in sys.modules:
        return None  # warm already (forked from the SSH session server): nothing left to compile
    name = re.sub(r"[^a-z0-9]+", "-", command.lower()).strip("-") or "phasef"
    cache = StartupCache(cache_folder() / f"{name}-{interpreter_tag()}.bin")
    cache.load()
    if cache.problem:
        log.debug("start-up cache started empty: %s", cache.problem)
    cache.hook()
    active_cache = cache
    from phasef_tui import startup_modules

    startup_modules.install(cache.path.with_suffix(".modules"))
    return cache


def save() -> bool:
    """Write the active cache if this run compiled something new, and its modules' bundle if it imported a module
    the bundle did not serve (after a TUI's first frame, and at exit)."""
    if active_cache is None:
        return False
    from phasef_tui import startup_modules

    modules = startup_modules.save()
    return active_cache.save() or modules


def uninstall() -> None:
    global active_cache
    if active_cache is not None:
        from phasef_tui import startup_modules

        startup_modules.uninstall()
        active_cache.unhook()
        active_cache = None
