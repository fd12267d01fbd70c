"""An operator's requests to a session's supervisor through its control socket: decisions at gates, step retries and
cancels. A refusal or an unreachable supervisor is an ``ApprovalError`` whose message is shown to the operator."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from phasef_tui.data_source import ApprovalError

if TYPE_CHECKING:
    from pipeline.control import Op


def supervisor_request(session_dir: Path, control_socket: Path | None, op: Op, **fields: Any) -> dict[str, Any]:
    """Send one request (the control socket of ``session_dir`` unless ``control_socket`` names another); its data."""
    from pipeline.control import ControlClient
    from pipeline.errors import ControlError

    client = ControlClient(session_dir)
    if control_socket is not None:
        client.path = control_socket
    if not client.available():
        raise ApprovalError("no supervisor is running for this session (its control socket is gone)")
    try:
        return client.request(op, **fields)
    except ControlError as exc:
        raise ApprovalError(f"refused: {exc}") from exc
    except OSError as exc:
        raise ApprovalError(f"cannot reach the supervisor: {exc}") from exc


def signed_message(data: dict[str, Any], gate_id: str, decision: str, operator: str | None) -> str:
    """The confirmation of a signed decision, from the supervisor's answer."""
    note = ""
    if data.get("override"):
        note = " as GO-OVERRIDE of unmet pass criteria" if data.get("final") else " (override of the audit verdict)"
    return f"{data.get('gate', gate_id)}: {str(data.get('decision', decision)).upper()} signed by " + (
        f"{data.get('operator', operator)}{note}"
    )
