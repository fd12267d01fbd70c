"""The parts of reading config.toml that need no model of the whole plan: the file read and parsed, every key's line,
pydantic's errors as ``file:line: key`` problems, one section validated on its own, and ``[tui]``'s model.

The viewer reads ``[tui]`` through this module alone (``read_tui``): importing the whole config model and its checker
(the step kinds' models, the registry) took 0.1-0.5 s of its start-up. ``pipeline.config`` re-exports everything.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pipeline.fsio import FileTooLarge, NotARegularFile, read_text_bounded
from pipeline.problems import Problem

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError


def key_string(value: Any) -> str:
    """A key (or keys, comma-separated) as Textual names them, cleaned: ``ctrl+f``, ``F``, ``right,l``."""
    if not isinstance(value, str) or not value.strip() or any(not k.strip() for k in value.split(",")):
        raise ValueError(f'expected a key such as "ctrl+f" or "F", got {value!r}')
    return ",".join(k.strip() for k in value.split(","))


def theme_name(value: Any) -> Any:
    """A theme's name, stripped (None: the default theme)."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError("must be the name of a theme (a string)")
    return value.strip() if isinstance(value, str) else value


class TuiValues(NamedTuple):
    """``[tui]`` as the viewer reads it (the values of ``pipeline.config_tui.TuiConfig``, without pydantic)."""

    theme: str | None = None
    keys: dict[str, str] = {}


# -- errors with file:line:key ----------------------------------------------------------------------------------------


class ConfigError(Exception):
    def __init__(self, issues: list[Problem]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every table header and ``key =`` line to its 1-based line number (first occurrence wins).

    tomllib gives no positions, so this is a light scanner of the same text: good enough to point a user at the
    right line, not a TOML parser (multi-line strings are skipped over roughly).
    """
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            table = tuple(_split_dotted(header.group(2)))
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            path = table + tuple(_split_dotted(key.group(1)))
            lines.setdefault(path, number)
            rest = line[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) == 1:
                    in_multiline = quote
    return lines


def _line_for(lines: dict[tuple[str, ...], int], loc: tuple[str | int, ...]) -> int | None:
    path = tuple(str(p) for p in loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def validation_issues(
    exc: ValidationError, file: str, lines: dict[tuple[str, ...], int], prefix: tuple[str, ...] = ()
) -> list[Problem]:
    issues = []
    for err in exc.errors():
        loc = prefix + tuple(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        if len(loc) > 2 and loc[0] == "auditors" and loc[2] in ("cli", "api"):  # the union's tag, not a key
            loc = loc[:2] + loc[3:]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        issues.append(Problem(file, _line_for(lines, loc), msg, ".".join(loc)))
    return issues


def parse_toml(text: str, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError([Problem(file, int(m.group(1)) if m else None, f"TOML syntax: {exc}", "")]) from exc


CONFIG_LIMIT_BYTES = 16 * 2**20


def read_text(p: Path) -> str:
    try:
        return read_text_bounded(p, CONFIG_LIMIT_BYTES)
    except FileNotFoundError as exc:
        raise ConfigError([Problem(str(p), None, "file not found", "")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(p), None, f"not UTF-8 ({exc.reason} at byte {exc.start})", "")]) from exc
    except (NotARegularFile, FileTooLarge) as exc:
        raise ConfigError([Problem(str(p), None, str(exc).removeprefix(f"{p}: "), "")]) from exc
    except OSError as exc:
        raise ConfigError([Problem(str(p), None, f"cannot read: {exc.strerror or exc}", "")]) from exc


class Section(NamedTuple):
    """One top-level section of a config file read on its own: its value (the section's model, bad entries left
    out), the problems with it, and the line of every key of the file."""

    value: Any
    issues: list[Problem]
    lines: dict[tuple[str, ...], int]


def _entry_path(data: Any, loc: tuple[str | int, ...]) -> tuple[str, ...]:
    """The deepest table entry of ``data`` on ``loc`` (tags and list indexes are passed over)."""
    path: tuple[str, ...] = ()
    current = data
    for part in loc:
        if isinstance(current, dict) and str(part) in current:
            path += (str(part),)
            current = current[str(part)]
    return path


def _drop_entries(data: dict[str, Any], paths: list[tuple[str, ...]]) -> bool:
    """Remove each entry (outermost first; one inside an entry already removed is gone with it)."""
    dropped: list[tuple[str, ...]] = []
    for path in sorted(set(paths), key=len):
        if not path or any(path[: len(d)] == d for d in dropped):
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
        dropped.append(path)
    return bool(dropped)


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def type_adapter(annotation: Any) -> TypeAdapter[Any]:
    """One pydantic ``TypeAdapter`` per annotation for the whole process. Building one generates its validator
    (pydantic's schema generation: tens of milliseconds and a few hundred kB of objects); validating with it changes
    nothing, so one serves every read. A process forked after a first read (the SSH session server's children)
    shares it instead of generating its own."""
    from pydantic import TypeAdapter

    try:
        return _ADAPTERS[annotation]
    except KeyError:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        _ADAPTERS[annotation] = adapter
        return adapter
    except TypeError:  # an annotation that cannot be a key: built each time
        return TypeAdapter(annotation)


def validate_section(path: str | Path, name: str, annotation: Any, default: Any, missing_ok: bool = False) -> Section:
    """Section ``name`` of a config file validated as ``annotation`` on its own (see ``pipeline.config.read_section``):
    an entry that fails validation is reported and left out, the rest kept; a section that fails as a whole is
    reported and ``default`` returned. A file that cannot be read or is not TOML raises ``ConfigError``; a missing
    one too, unless ``missing_ok`` (then ``default``, no problems)."""
    p = Path(path)
    if missing_ok and not p.exists():
        return Section(default, [], {})
    text = read_text(p)
    raw = parse_toml(text, str(p))
    lines = key_lines(text)
    if name not in raw:
        return Section(default, [], lines)
    from pydantic import ValidationError

    adapter = type_adapter(annotation)
    data = {"section": copy.deepcopy(raw[name])}  # wrapped, so that even the section itself can be dropped
    issues: list[Problem] = []
    while "section" in data:
        try:
            return Section(adapter.validate_python(data["section"]), issues, lines)
        except ValidationError as exc:
            issues += validation_issues(exc, str(p), lines, (name,))
            if not _drop_entries(data, [_entry_path(data, ("section", *err["loc"])) for err in exc.errors()]):
                break
    return Section(default, issues, lines)


def read_sessions_dir(path: str | Path) -> str:
    """``[project] sessions_dir`` of a config file, as ``pipeline.config.read_section(path, "project")`` gives it,
    without the config's models where the value is a string: the section's other entries do not change it (one that
    fails validation is left out, the rest kept). Otherwise (a value of another type, a section that is not a table)
    the models answer. Finding a session by its name needs nothing else from the config, and importing the models
    took 0.12-0.2 s of every ``phasef attach NAME``. Raises ``ConfigError`` as ``read_section`` does."""
    p = Path(path)
    project = parse_toml(read_text(p), str(p)).get("project", {})
    if isinstance(project, dict):
        value = project.get("sessions_dir", "sessions")
        if isinstance(value, str):
            return value
    from pipeline.config import read_section

    return str(read_section(p, "project").value.sessions_dir)


def read_tui(path: str | Path, missing_ok: bool = False) -> Section:
    """``[tui]`` of a config file, alone, as ``pipeline.config.read_section(path, "tui")`` reads it but with the
    values in a ``TuiValues``. A valid section is checked here without pydantic (importing it took 0.05-0.25 s of
    the viewer's start-up); one with a problem goes through the model, so the messages are the model's own."""
    p = Path(path)
    if missing_ok and not p.exists():
        return Section(TuiValues(), [], {})
    text = read_text(p)
    raw = parse_toml(text, str(p))
    lines = key_lines(text)
    section = raw.get("tui", {})
    try:
        if not isinstance(section, dict) or set(section) - {"theme", "keys"}:
            raise ValueError("not a [tui] table of theme and keys")
        keys = section.get("keys", {})
        if not isinstance(keys, dict):
            raise ValueError("keys is not a table")
        values = TuiValues(theme_name(section.get("theme")), {str(k): key_string(v) for k, v in keys.items()})
    except ValueError:
        from pipeline.config_tui import TuiConfig

        checked = validate_section(p, "tui", TuiConfig, TuiConfig(), missing_ok)
        return Section(TuiValues(checked.value.theme, dict(checked.value.keys)), checked.issues, checked.lines)
    return Section(values, [], lines)
