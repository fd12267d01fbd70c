"""Two runs compared metric by metric (``phasef.cross_comparison/1``): A, B, delta, whether it is beyond
run-to-run noise (its paired bootstrap interval), the sign test, then flipped episodes and B's residual blockers."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from widgets.theme import themed


def _num(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.4g}"


def run_label(side: dict[str, Any], fallback: str) -> str:
    """``session:STAGE.step`` for a session's evaluation, else the report's path."""
    if side.get("session"):
        return f"{side['session']}:{side['step']}" if side.get("step") else str(side["session"])
    return str(side.get("report") or side.get("ref") or fallback)


def render_head(doc: dict[str, Any] | None, state: str, a: str, b: str) -> Text:
    text = Text(overflow="ellipsis")
    for tag, side, fallback in (("A", "a", a), ("B", "b", b)):
        text.append(f"{tag} ", style=themed("warn.b reverse"))
        text.append(f" {run_label((doc or {}).get(side) or {}, fallback)}\n")
    if state == "running" or doc is None:
        text.append("comparing… (paired bootstrap over episodes)", style="italic")
        return text
    if doc.get("status") != "compared":
        text.append("REFUSED", style=themed("bad.b"))
        text.append(": the runs were not judged alike", style=themed("bad"))
        return text
    noise = doc.get("noise") or {}
    text.append(f"{doc['pairs']} episode pairs", style="bold")
    text.append(
        f" · paired bootstrap ×{noise.get('resamples', '?')}, seed {noise.get('seed', '?')}, "
        f"{noise.get('confidence', 0.95):.0%} interval · * beyond noise",
        style="dim",
    )
    return text


def render_metrics(doc: dict[str, Any]) -> Table:
    table = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    table.add_column("metric", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("A", justify="right", no_wrap=True)
    table.add_column("B", justify="right", no_wrap=True)
    table.add_column("delta", justify="right", no_wrap=True)
    table.add_column("", width=2, no_wrap=True)
    table.add_column("interval", justify="right", no_wrap=True, ratio=2, overflow="ellipsis")
    table.add_column("sign p", justify="right", no_wrap=True)
    for m in doc.get("metrics", []):
        direction = m.get("direction")
        style = themed({"better": "good", "worse": "bad"}.get(direction, "dim"))
        arrow = {"better": "▲", "worse": "▼", "same": "="}.get(direction, "?")
        unit = m.get("unit", "")
        label = f"{m.get('label', m['name'])} ({unit})" if unit in ("s", "ticks", "chars") else m.get("label", "")
        delta = m.get("delta")
        ci = m.get("ci")
        p = (m.get("sign_test") or {}).get("p_value")
        table.add_row(
            label,
            _num(m.get("a")),
            _num(m.get("b")),
            Text("—" if delta is None else f"{delta:+.4g}", style=style),
            Text(
                arrow + ("*" if m.get("beyond_noise") else ""),
                style=f"bold {style}" if m.get("beyond_noise") else style,
            ),
            f"{ci[0]:+.3g}..{ci[1]:+.3g}" if ci else "—",
            "—" if p is None else f"{p:.3g}",
        )
    return table


FLIP_TITLES = (
    ("solved", "unsolved → solved"),
    ("unsolved", "solved → unsolved"),
    ("survived", "died → survived"),
    ("died", "survived → died"),
)


def render_body(doc: dict[str, Any] | None, state: str) -> RenderableType:
    if doc is None or state == "running":
        return Text("")
    if doc.get("status") != "compared":
        return Group(*(Text.assemble(("■ ", themed("bad.b")), (str(r), themed("bad"))) for r in doc.get("refusal", [])))
    parts: list[RenderableType] = [render_metrics(doc), Text("flipped episodes", style="bold")]
    flips = doc.get("flips") or {}
    listed = [
        Text(f"  {title}: {f.get('task')}", style=themed("good" if kind in ("solved", "survived") else "bad"))
        for kind, title in FLIP_TITLES
        for f in flips.get(kind, [])
    ]
    parts += listed or [Text("  none", style="dim")]
    parts.append(Text("residual blockers of B", style="bold"))
    blockers = doc.get("residual_blockers") or []
    parts += [Text.assemble(("■ ", themed("bad.b")), (str(b), themed("bad"))) for b in blockers] or [
        Text("  none", style="dim")
    ]
    return Group(*parts)
