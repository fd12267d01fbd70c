"""``[tui]``'s model (and ``Strict``, the base of every section's model): small, so ``pipeline.config_section`` can
check a bad ``[tui]`` with it without importing the whole plan's models. Re-exported by ``pipeline.config``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from pipeline.config_section import key_string, theme_name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


KeyString = Annotated[str, BeforeValidator(key_string)]
"""A key (or keys, comma-separated) as Textual names them: ``ctrl+f``, ``F``, ``right,l``."""


class TuiConfig(Strict):
    """``[tui]``: the viewer's look and keys (the viewer also reads this section alone, see ``read_section``)."""

    theme: str | None = Field(default=None, description="a Textual theme name, e.g. textual-light")
    keys: dict[str, KeyString] = Field(
        default_factory=dict, description="binding id -> key(s); the ids are on the help screen ('?')"
    )

    @field_validator("theme", mode="before")
    @classmethod
    def _theme_name(cls, v: Any) -> Any:
        return theme_name(v)
