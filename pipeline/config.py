"""Reading config.toml: parsed once, into the models of ``pipeline.config_model``, checked by
``pipeline.config_check``, with errors that name the file, the line and the key.

``load_config``/``parse_config`` give the whole validated plan; ``read_section`` one section on its own (the viewer
reads ``[tui]`` from a plan that is otherwise invalid). The models and the checker are re-exported here, so callers
import from ``pipeline.config``.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError

from pipeline.config_check import ConfigError, check_config, find_cycle, key_lines, validation_issues
from pipeline.config_model import (
    DEFAULT_ENV_ALLOW,
    ID_PATTERN,
    EnvConfig,
    HostConfig,
    KeyString,
    ModelConfig,
    PhasefConfig,
    ProjectConfig,
    ServiceConfig,
    StageConfig,
    StepConfig,
    Strict,
    TuiConfig,
)
from pipeline.fsio import FileTooLarge, NotARegularFile, read_text_bounded
from pipeline.problems import Problem

__all__ = [
    "CONFIG_LIMIT_BYTES",
    "DEFAULT_ENV_ALLOW",
    "ID_PATTERN",
    "ConfigError",
    "EnvConfig",
    "HostConfig",
    "KeyString",
    "ModelConfig",
    "PhasefConfig",
    "ProjectConfig",
    "Section",
    "ServiceConfig",
    "StageConfig",
    "StepConfig",
    "Strict",
    "TuiConfig",
    "dump_config",
    "find_cycle",
    "key_lines",
    "load_config",
    "parse_config",
    "read_section",
]


def _parse_toml(text: str, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError([Problem(file, int(m.group(1)) if m else None, f"TOML syntax: {exc}", "")]) from exc


def parse_config(text: str, file: str = "config.toml") -> PhasefConfig:
    """Parse and validate config text; raise ``ConfigError`` with every issue found."""
    raw = _parse_toml(text, file)
    lines = key_lines(text)
    try:
        cfg = PhasefConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_issues(exc, file, lines)) from exc
    issues = check_config(cfg, file, lines)
    if issues:
        raise ConfigError(issues)
    return cfg


CONFIG_LIMIT_BYTES = 16 * 2**20


def _read_text(p: Path) -> str:
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


def load_config(path: str | Path) -> PhasefConfig:
    """Read and validate a config file; anything but a regular file of at most ``CONFIG_LIMIT_BYTES`` is refused."""
    p = Path(path)
    return parse_config(_read_text(p), str(p))


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


def read_section(path: str | Path, name: str, missing_ok: bool = False) -> Section:
    """Section ``name`` of a config file, validated by its model, whatever the rest of the file holds (the viewer
    opens on a plan that is otherwise invalid). An entry that fails validation is reported and left out, the rest
    kept; a section that fails as a whole is reported and its default (None for ``stages``) returned. A file that
    cannot be read or is not TOML raises ``ConfigError``; a missing one too, unless ``missing_ok`` (then the
    default, no problems)."""
    field = PhasefConfig.model_fields[name]
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    p = Path(path)
    if missing_ok and not p.exists():
        return Section(default, [], {})
    text = _read_text(p)
    raw = _parse_toml(text, str(p))
    lines = key_lines(text)
    if name not in raw:
        return Section(default, [], lines)
    adapter: TypeAdapter[Any] = TypeAdapter(Any if field.annotation is None else field.annotation)
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


def dump_config(cfg: PhasefConfig) -> dict[str, Any]:
    """The resolved config as plain data for TOML (None values dropped, since TOML has no null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    data: dict[str, Any] = clean(cfg.model_dump(mode="json"))
    return data
