"""The row schemas that flow between the Stage C steps.

An ``Example`` is one candidate training example cut from a trace: the chat context the model saw at a tick, the
action it should have emitted there (``completion``) and, for failures, what it emitted instead (``rejected``).
Its ``label`` says which of the three kinds the plan counts it as:

``golden``            a clean step of a successful episode (context -> the action the model took)
``failure_recovery``  the step that recovered a chain: the context the recovering actor was shown -> the action
                      it took, rejected = the model's failing output just before (fallback for traces without a
                      context on the recovering tick: context of each failure -> the action that recovered)
``reject``            a failed step no one recovered from (death or still open): negative evidence only

Every row carries ``provenance`` so that any training example can be traced back to the exact bytes it came from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Label = Literal["golden", "failure_recovery", "reject"]
LABELS: tuple[Label, ...] = ("golden", "failure_recovery", "reject")
TRAINABLE_LABELS: tuple[Label, ...] = ("golden", "failure_recovery")

Role = Literal["system", "user", "assistant", "tool"]
Pairing = Literal["recovering_context", "failure_context"]
PAIRINGS: tuple[Pairing, ...] = ("recovering_context", "failure_context")


class ChatMessage(BaseModel):
    """One chat message as sent to the model (extra keys such as ``name`` are kept as they were)."""

    model_config = ConfigDict(extra="allow")
    role: Role
    content: str


class Provenance(BaseModel):
    """Where a row came from: the trace file, its hash, the episode and the ticks used."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(description="path of the trace file")
    sha256: str = Field(description="sha256 of the whole trace file when it was read")
    episode: str
    tick_start: int
    tick_end: int
    lines: list[int] = Field(default_factory=list, description="1-based line numbers of the ticks used")
    chain_id: str | None = None
    pairing: Pairing | None = Field(
        default=None,
        description="failure-recovery construction: the recovering tick's own context, or the failed tick's",
    )
    prompt_tick: int | None = Field(default=None, description="the tick whose context is the prompt")
    rejected_tick: int | None = Field(default=None, description="the tick whose output is ``rejected``")


class Example(BaseModel):
    """A candidate training example (see the module docstring for the labels)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    label: Label
    episode: str
    task_id: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, description="the context the model saw, in order")
    completion: str | None = Field(default=None, description="the action text the model should emit")
    rejected: str | None = Field(default=None, description="the failing output the model emitted")
    failure_class: str | None = None
    mechanism: str | None = None
    tokens: int | None = Field(default=None, description="longest rendered row in target tokens (set by the guard)")
    provenance: Provenance

    @model_validator(mode="after")
    def _label_fields(self) -> Example:
        if self.label in TRAINABLE_LABELS and not self.completion:
            raise ValueError(f"field 'completion': required for a {self.label} example")
        if self.label != "golden" and self.rejected is None:
            raise ValueError(f"field 'rejected': required for a {self.label} example")
        if self.messages[-1].role == "assistant":
            raise ValueError("field 'messages': the context must end before the model's turn, not with assistant")
        return self

    def prompt_messages(self) -> list[dict[str, Any]]:
        """The context as plain dicts, exactly as the model was sent it."""
        return [m.model_dump() for m in self.messages]


def pydantic_error_text(exc: Exception) -> str:
    """A one-line reason naming the field(s) for a pydantic ``ValidationError`` (or any exception)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            msg = str(err.get("msg", "invalid"))
            parts.append(f"field '{loc}': {msg}" if loc else msg)
        if parts:
            return "; ".join(parts)
    return str(exc)
