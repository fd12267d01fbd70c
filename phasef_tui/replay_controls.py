"""What the replay keys do (bound at the app level, so they work on every screen of ``phasef replay``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasef_tui.app import PhasefApp


def replay_action(app: PhasefApp, op: str) -> None:
    from phasef_tui.replay_source import ReplaySource

    source = app.source
    if not isinstance(source, ReplaySource):
        app.notify("replay keys work in phasef replay SESSION", timeout=3)
        return
    if op in ("prev", "next"):
        source.step(-1 if op == "prev" else 1)
    elif op in ("prev_mark", "next_mark"):
        if not source.jump(op == "next_mark"):
            way = "after" if op == "next_mark" else "before"
            app.notify(f"no {source.mark_kind} landmark {way} this event", timeout=3)
    elif op == "kind":
        kind = source.cycle_kind()  # (the timeline bar shows it; live in attach, the bar is hidden: a note)
        if not source.bar_shown:
            app.notify(f"landmark kind: {kind} (< > jump)", timeout=3)
    elif op == "play":
        source.toggle_play()
    elif op == "speed":
        source.cycle_speed()
    elif op == "live":
        source.live()
    elif op == "time":
        from phasef_tui.screens.jump_time import JumpTimeDialog

        def jump(text: str | None) -> None:
            if text is None:
                return
            try:
                app.notify(f"at {source.jump_to_time(text)}", timeout=3)
            except ValueError as exc:
                app.notify(str(exc), severity="error", timeout=6)

        app.push_screen(JumpTimeDialog(source.describe_position(), blink=app.blink), jump)
