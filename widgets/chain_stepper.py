"""One tick of a recovery chain, shown the way the model met it: bounded context, raw output, what was parsed.

The stepper answers the question an auditor asks of a chain: at this tick, what did the actor see, what did it
say, was that a valid action (or which schema error), what happened, and which recovery mechanism acted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.text import Text

from widgets.text_pane import TextPane
from widgets.theme import themed
from widgets.trace_stream import OUTCOME_STYLES, TickFields

TEXT_LIMIT = 4000
"""Characters of one message or output shown before it is cut (the whole record is in the detail pane)."""

ROLE_STYLES = {"failure": "warn.b", "attempt": "info", "recovered": "good.b", "death": "bad.b"}


@dataclass(frozen=True)
class ChainStep(TickFields):
    """Tick ``position`` (0-based) of a chain of ``length`` ticks."""

    chain: str
    position: int
    length: int
    line: int
    role: str | None = None
    trap: str | None = None
    context: list[dict[str, Any]] | None = None
    raw_output: str | None = None
    action: dict[str, Any] | None = None
    schema_error: str | None = None
    observation: str | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)


def _cut(text: str, limit: int = TEXT_LIMIT) -> Text:
    if len(text) <= limit:
        return Text(text)
    return Text(text[:limit]) + Text(f" …({len(text) - limit:,} more characters)", style="dim italic")


def _message_text(message: dict[str, Any]) -> Text:
    role = str(message.get("role", "?"))
    content = message.get("content")
    if not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False)
    line = Text(f"{role:>9} │ ", style=themed("info.b") if role == "system" else "bold")
    line.append_text(_cut(content))
    return line


def render_step(step: ChainStep) -> RenderableType:
    """The whole view of one chain tick as one renderable (pure: tested without an app)."""
    head = Text()
    head.append(f"chain {step.chain}", style="bold")
    head.append(f"  tick {step.position + 1}/{step.length}", style="bold")
    head.append(f"  · episode {step.episode or '-'} · t{'' if step.tick is None else step.tick}", style="dim")
    head.append(f" · line {step.line + 1}", style="dim")
    facts = Text()
    facts.append("role ", style="dim")
    facts.append(step.role or "-", style=themed(ROLE_STYLES.get(step.role or "", "")))
    facts.append("  actor ", style="dim")
    facts.append(step.actor or "-")
    facts.append("  mechanism ", style="dim")
    facts.append(step.recovery or "none", style=themed("good.b") if step.recovery else "dim")
    facts.append("  outcome ", style="dim")
    facts.append(step.outcome or "-", style=themed(OUTCOME_STYLES.get(step.outcome or "", "")))
    if step.error_class:
        facts.append(f" ({step.error_class})", style=themed("warn"))
    if step.trap:
        facts.append("  trap ", style="dim")
        facts.append(step.trap, style=themed("attn"))
    if step.latency_s is not None:
        facts.append(f"  {step.latency_s:.2f}s", style="dim")
    parts: list[RenderableType] = [head, facts]
    for problem in step.problems:
        parts.append(Text(problem, style=themed("bad.b")))
    size = f"{step.context_chars:,} chars" if step.context_chars is not None else "size unknown"
    if step.context:
        parts.append(Rule(f"context the actor saw · {len(step.context)} messages · {size}", align="left"))
        parts.extend(_message_text(m) for m in step.context)
    else:
        parts.append(Rule(f"context · not recorded · {size}", align="left", style="dim"))
    parts.append(Rule("raw output", align="left"))
    parts.append(_cut(step.raw_output) if step.raw_output is not None else Text("(none)", style="dim"))
    if step.schema_error:
        parts.append(Rule("schema error", align="left", style=themed("warn")))
        parts.append(Text(step.schema_error, style=themed("warn")))
    parts.append(Rule("parsed action", align="left"))
    if step.action is not None:
        parts.append(Text(json.dumps(step.action, ensure_ascii=False, indent=None), style=themed("good")))
    else:
        parts.append(Text("(no valid action)", style="dim"))
    parts.append(Rule("observation", align="left"))
    parts.append(_cut(step.observation) if step.observation else Text("(none)", style="dim"))
    return Group(*parts)


class ChainStepper(TextPane):
    """Shows one ``ChainStep``; the screen decides which one."""

    BODY_ID = "chain-step-body"

    def show(self, step: ChainStep | None) -> None:
        self.show_text(
            render_step(step) if step is not None else Text("no recovery chains in this trace (yet)", style="dim")
        )
