"""Acting on the selected step of the dashboard: retry it (failed or cancelled) or cancel it (running).

The operator confirms in a dialog (Enter; Esc gives up), the request goes to the supervisor over the control socket
from a worker thread, and the answer (or the refusal: a viewer's role, a step in the wrong state) is shown as a
notification. The journal then records who asked.
"""

from __future__ import annotations

from textual import work

from phasef_tui.data_source import ApprovalError
from phasef_tui.screens.base import PhasefScreen
from phasef_tui.screens.reason import ReasonDialog

RETRYABLE = ("failed", "cancelled")
CANCELLABLE = ("running", "retrying", "waiting", "pending")


class StepActions(PhasefScreen):
    """Mixed into the dashboard: needs ``selected`` (a step key) and ``_view()``."""

    selected: str | None

    def _selected_step(self, allowed: tuple[str, ...], verb: str, done: str) -> str | None:
        view = self.source.session_view(self.phasef.clock())
        step = view.step(self.selected) if view is not None and self.selected else None
        if step is None:
            self.notify("no step selected (↑/↓ choose one)", timeout=3)
            return None
        if step.state not in allowed:
            self.notify(f"{step.key} is {step.state}: only a {' or '.join(allowed)} step can be {done}", timeout=4)
            return None
        role = getattr(self.source, "role", None)
        if role is not None and role != "approver":
            self.notify(f"only approvers can {verb} steps (your role: {role})", severity="error")
            return None
        return step.key

    def action_retry_step(self) -> None:
        self._confirm("retry", RETRYABLE, "retried")

    def action_cancel_step(self) -> None:
        self._confirm("cancel", CANCELLABLE, "cancelled")

    def _confirm(self, op: str, allowed: tuple[str, ...], done: str) -> None:
        """Ask for the reason (Enter sends, Esc gives up) when the selected step may be ``op``-ed."""
        key = self._selected_step(allowed, op, done)
        if key is None:
            return
        title = f"{op.upper()} {key} as {self.source.operator}"
        dialog = ReasonDialog(title, required=False, blink=self.phasef.blink)
        self.app.push_screen(dialog, lambda reason: self._send(op, key, reason))

    def _send(self, op: str, key: str, reason: str | None) -> None:
        if reason is not None:
            self._request(op, key, reason)

    @work(thread=True, exclusive=True, group="step-action", exit_on_error=False)
    def _request(self, op: str, key: str, reason: str) -> None:
        try:
            message = self.source.step_action(op, key, reason)
        except ApprovalError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        self.app.call_from_thread(self.notify, message, timeout=5)
