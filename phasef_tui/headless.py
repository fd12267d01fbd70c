"""The foreground runner: engine and progress display in one process (CI, scripts, a plain terminal).

On a terminal it shows a live table redrawn from state at a fixed rate; otherwise (or with ``--plain``) one line per
meaningful event, so logs stay readable.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline.config import PhasefConfig
from pipeline.engine import Engine
from pipeline.journal import SessionLocked
from pipeline.session import supervise
from pipeline.state import SessionState

STATE_STYLE = {
    "succeeded": "green",
    "skipped": "green dim",
    "running": "cyan",
    "waiting": "yellow bold",
    "retrying": "yellow",
    "failed": "red bold",
    "blocked": "red dim",
    "cancelled": "magenta",
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
        style = STATE_STYLE.get(st.state, "")
        table.add_row(st.key, st.kind, f"[{style}]{st.state}[/]", str(st.attempts), dur, note[:70])
    for gate in state.waiting_gates():
        unmet = [c for c in gate.criteria or () if not c.get("met")]
        table.caption = (
            f"waiting at gate {gate.id}: phasef approve {where or state.session} {gate.id} "
            "--decision go|no-go --as NAME --reason TEXT"
            + (f" ({len(unmet)} pass criteria not met: a GO needs --override)" if unmet else "")
        )
    return table


def _plain_line(ev: dict[str, Any], session: str, where: str | None = None) -> str | None:
    """One plain progress line; ``where`` (the session folder) goes into the approve hint, which then works from
    any folder (``phasef approve`` takes a session folder as well as an id)."""
    t = ev["type"]
    key = f"{ev.get('stage')}.{ev.get('step')}"
    p = ev.get("payload", {})
    att = ev.get("attempt")
    if t == "session_started":
        return f"session {session} started (resume={p.get('resume')}, pid {p.get('pid')})"
    if t == "step_started":
        return f"{key}: started attempt {att}"
    if t == "step_reattached":
        return f"{key}: reattached to attempt {att} (pid {p.get('pid')}, alive={p.get('alive')})"
    if t == "step_succeeded":
        return f"{key}: succeeded in {p.get('duration_s')} s"
    if t == "step_failed":
        retry = f"; retry in {p['retry_in_s']} s" if p.get("retry_in_s") is not None else ""
        return f"{key}: FAILED attempt {att}: {p.get('error')}{retry}"
    if t == "step_skipped":
        return f"{key}: skipped ({p.get('reason')})"
    if t == "step_blocked":
        return f"{key}: blocked ({p.get('reason')})"
    if t == "step_cancelled":
        return f"{key}: cancelled ({p.get('reason')})"
    if t == "gate_opened":
        audit = p.get("audit") or {}
        verdict = f"; audit verdict {audit.get('verdict')}" if audit else ""
        unmet = [str(c.get("label")) for c in p.get("criteria") or [] if not c.get("met")]
        criteria = f"; pass criteria NOT met: {'; '.join(unmet)} (a GO needs --override)" if unmet else ""
        if p.get("criteria") and not unmet:
            criteria = "; every pass criterion met"
        return (
            f"{key}: WAITING for a decision{verdict}{criteria} (evidence {str(p.get('evidence_sha256'))[:12]}); "
            f"phasef approve {where or session} {key} --decision go|no-go --as NAME --reason TEXT"
        )
    if t == "gate_decided":
        over = " (operator OVERRIDE)" if p.get("override") else ""
        if p.get("unmet_criteria") and p.get("override"):
            over = f" (operator OVERRIDE of unmet pass criteria: {', '.join(p['unmet_criteria'])})"
        return f"{key}: {str(p.get('decision')).upper()} by {p.get('operator')}: {p.get('reason')}{over}"
    if t == "gate_refused":
        return f"{key}: decision by {p.get('operator')} refused: {p.get('reason')}"
    if t == "gate_timed_out":
        return f"{key}: gate timed out: NO-GO"
    if t in ("service_started", "service_stopped", "service_failed"):
        return f"service {p.get('name')}: {t.split('_')[1]} {p.get('url') or p.get('error') or ''}".rstrip()
    if t == "run_finished":
        report = f"; report {', '.join(p['report'])}" if p.get("report") else ""
        return (
            f"run {p.get('state')}: final decision {p.get('final_decision')}, exit {p.get('exit_code')}"
            + (f" ({p.get('error')})" if p.get("error") else "")
            + report
        )
    if t == "journal_repaired":
        return f"journal: torn last line ({p.get('torn_bytes')} bytes) set aside in {p.get('saved_to')}"
    return None


def run_headless(cfg: PhasefConfig, config_path: Path, session_dir: Path, until: str | None, plain: bool) -> int:
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
