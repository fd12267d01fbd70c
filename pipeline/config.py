"""Reading config.toml: parsed once, into the models of ``pipeline.config_model``, checked by
``pipeline.config_check``, with errors that name the file, the line and the key.

``load_config``/``parse_config`` give the whole validated plan; ``read_section`` one section on its own (the viewer
reads ``[tui]`` from a plan that is otherwise invalid). The models and the checker are re-exported here, so callers
import from ``pipeline.config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.config_check import check_config, find_cycle
from pipeline.config_model import (
    DEFAULT_ENV_ALLOW,
    ID_PATTERN,
    EnvConfig,
    HostConfig,
    ModelConfig,
    PhasefConfig,
    ProjectConfig,
    ServiceConfig,
    StageConfig,
    StepConfig,
)
from pipeline.config_section import (
    CONFIG_LIMIT_BYTES,
    ConfigError,
    Section,
    key_lines,
    parse_toml,
    read_text,
    validate_section,
    validation_issues,
)
from pipeline.config_tui import KeyString, Strict, TuiConfig

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


def parse_config(text: str, file: str = "config.toml") -> PhasefConfig:
    """Parse and validate config text; raise ``ConfigError`` with every issue found."""
    raw = parse_toml(text, file)
    lines = key_lines(text)
    try:
        cfg = PhasefConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_issues(exc, file, lines)) from exc
    issues = check_config(cfg, file, lines)
    if issues:
        raise ConfigError(issues)
    return cfg


def load_config(path: str | Path) -> PhasefConfig:
    """Read and validate a config file; anything but a regular file of at most ``CONFIG_LIMIT_BYTES`` is refused."""
    p = Path(path)
    return parse_config(read_text(p), str(p))


def read_section(path: str | Path, name: str, missing_ok: bool = False) -> Section:
    """Section ``name`` of a config file, validated by its model, whatever the rest of the file holds (the viewer
    opens on a plan that is otherwise invalid). An entry that fails validation is reported and left out, the rest
    kept; a section that fails as a whole is reported and its default (None for ``stages``) returned. A file that
    cannot be read or is not TOML raises ``ConfigError``; a missing one too, unless ``missing_ok`` (then the
    default, no problems)."""
    field = PhasefConfig.model_fields[name]
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    annotation = Any if field.annotation is None else field.annotation
    return validate_section(path, name, annotation, default, missing_ok)


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
