"""The foreground runner: engine and progress display in one process (CI, scripts, a plain terminal).

On a terminal it shows a live table redrawn from state at a fixed rate; otherwise (or with ``--plain``) one line per
meaningful event, so logs stay readable.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any, assert_never

from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline import events
from pipeline.config import PhasefConfig
from pipeline.engine import Engine
from pipeline.journal import SessionLocked
from pipeline.session import supervise
from pipeline.state import SessionState
from widgets.theme import palette_from_theme, themed, use_palette

HEADLESS_THEME = "ansi-dark"
"""The live table of ``run --headless`` uses the terminal's ANSI colours (a Rich console honours NO_COLOR)."""

STATE_STYLE = {
    "succeeded": "good",
    "skipped": "good dim",
    "running": "info",
    "waiting": "warn.b",
    "retrying": "warn",
    "failed": "bad.b",
    "blocked": "bad dim",
    "cancelled": "attn",
    "pending": "dim",
}


def render_table(state: SessionState, where: str | None = None) -> Table:
    """The live table; ``where`` (the session folder) makes the approve hint work from any folder."""
    table = Table(title=f"phasef session {state.session}: {state.state}", expand=False)
    for col in ("step", "kind", "state", "att.", "time", "note"):
        table.add_column(col)
    for st in state.steps.values():
        note = st.error or st.skip_reason or ""
        if st.progress:
            last = st.progress[-1]
            note = note or ", ".join(f"{k}={v}" for k, v in last.items() if not k.startswith("_"))[:60]
        dur = f"{st.duration_s:.1f}s" if st.duration_s is not None else ""
        style = themed(STATE_STYLE.get(st.state, ""))
        table.add_row(st.key, st.kind, f"[{style}]{st.state}[/]", str(st.attempts), dur, note[:70])
    for gate in state.waiting_gates():
        unmet = [c for c in gate.criteria or () if not c.get("met")]
        table.caption = (
            f"waiting at gate {gate.id}: phasef approve {where or state.session} {gate.id} "
            "--decision go|no-go --as NAME --reason TEXT"
            + (f" ({len(unmet)} pass criteria not met: a GO needs --override)" if unmet else "")
        )
    return table


def _plain_line(raw: dict[str, Any], session: str, where: str | None = None) -> str | None:
    """One plain progress line; ``where`` (the session folder) goes into the approve hint, which then works from
    any folder (``phasef approve`` takes a session folder as well as an id)."""
    if raw.get("type") == "step_progress":
        return None  # the bulk of the stream; shown by the live table and the TUI, not line by line
    try:
        ev = events.TYPED_EVENT.validate_python(raw)
    except ValidationError:
        return None
    key, att = ev.key, ev.attempt
    match ev:
        case events.SessionStarted(payload=p):
            return f"session {session} started (resume={p.resume}, pid {p.pid})"
        case events.StepStarted():
            return f"{key}: started attempt {att}"
        case events.StepReattached(payload=p):
            return f"{key}: reattached to attempt {att} (pid {p.pid}, alive={p.alive})"
        case events.StepSucceeded(payload=p):
            return f"{key}: succeeded in {p.duration_s} s"
        case events.StepFailed(payload=p):
            retry = f"; retry in {p.retry_in_s} s" if p.retry_in_s is not None else ""
            return f"{key}: FAILED attempt {att}: {p.error}{retry}"
        case events.StepSkipped(payload=p) | events.StepBlocked(payload=p) | events.StepCancelled(payload=p):
            return f"{key}: {ev.type.removeprefix('step_')} ({p.reason})"  # skipped, blocked or cancelled, and why
        case events.StepRetryRequested(payload=p):
            return f"{key}: retry requested by {p.operator}" + (f": {p.reason}" if p.reason else "")
        case events.GateOpened(payload=p):
            verdict = f"; audit verdict {p.audit.get('verdict')}" if p.audit else ""
            unmet = [str(c.get("label")) for c in p.criteria or [] if not c.get("met")]
            criteria = f"; pass criteria NOT met: {'; '.join(unmet)} (a GO needs --override)" if unmet else ""
            if p.criteria and not unmet:
                criteria = "; every pass criterion met"
            override = " [--override]" if unmet else ""
            return (
                f"{key}: WAITING for a decision{verdict}{criteria} (evidence {str(p.evidence_sha256)[:12]}); "
                f"phasef approve {where or session} {key} --decision go|no-go --as NAME --reason TEXT{override}"
            )
        case events.GateDecided(payload=p):
            over = " (operator OVERRIDE)" if p.override else ""
            if p.unmet_criteria and p.override:
                over = f" (operator OVERRIDE of unmet pass criteria: {', '.join(p.unmet_criteria)})"
            return f"{key}: {str(p.decision).upper()} by {p.operator}: {p.reason}{over}"
        case events.GateRefused(payload=p):
            return f"{key}: decision by {p.operator} refused: {p.reason}"
        case events.GateTimedOut():
            return f"{key}: gate timed out: NO-GO"
        case events.ServiceStarted(payload=p):
            return f"service {p.name}: started {p.url or ''}".rstrip()
        case events.ServiceFailed(payload=p):
            return f"service {p.name}: failed {p.error or ''}".rstrip()
        case events.ServiceStopped(payload=p):
            return f"service {p.name}: stopped"
        case events.RunFinished(payload=p):
            report = f"; report {', '.join(p.report)}" if p.report else ""
            return (
                f"run {p.state}: final decision {p.final_decision}, exit {p.exit_code}"
                + (f" ({p.error})" if p.error else "")
                + report
            )
        case events.JournalRepaired(payload=p):
            return f"journal: torn last line ({p.torn_bytes} bytes) set aside in {p.saved_to}"
        case events.StepProgress() | events.StepCancelRequested() | events.RunCancelRequested():
            return None
        case _:
            assert_never(ev)


def run_headless(cfg: PhasefConfig, config_path: Path, session_dir: Path, until: str | None, plain: bool) -> int:
    use_palette(palette_from_theme(HEADLESS_THEME))  # the terminal's own colours, whatever its background
    console = Console(stderr=False)
    live_mode = console.is_terminal and not plain
    holder: dict[str, Engine] = {}
    where = shlex.quote(str(session_dir.resolve()))

    def on_engine(engine: Engine) -> None:
        holder["engine"] = engine
        if not live_mode:

            def listener(msg: dict[str, Any]) -> None:
                ev = msg.get("event")
                if ev:
                    line = _plain_line(ev, engine.state.session, where)
                    if line:
                        print(line, flush=True)

            engine.listeners.append(listener)

    async def main() -> int:
        task = asyncio.create_task(
            supervise(
                cfg,
                session_dir=session_dir,
                project_dir=config_path.parent,
                config_path=config_path,
                until=until,
                on_engine=on_engine,
            )
        )
        if live_mode:
            with Live(console=console, refresh_per_second=4) as live:
                while not task.done():
                    if "engine" in holder:
                        live.update(render_table(holder["engine"].state, where))
                    await asyncio.sleep(0.25)
                if "engine" in holder:
                    live.update(render_table(holder["engine"].state, where))
        result = await task
        if live_mode:
            console.print(
                f"run {result.state}: final decision {result.final_decision}, exit {result.exit_code}"
                + (f" ({result.error})" if result.error else "")
            )
        return result.exit_code

    try:
        return asyncio.run(main())
    except SessionLocked:
        print(f"error: session {session_dir.name} is already being run by another supervisor", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
