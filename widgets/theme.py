"""Colours of the widgets, taken from the app's current Textual theme (never written into a widget).

Widgets render Rich renderables, whose styles are strings; they name a role (``"bad.b"``: bold, in the theme's
error colour) and ``themed(role)`` turns it into a concrete style of the current theme. The TCSS uses the theme's
variables (``$accent``, ``$error`` ...) directly. The app calls ``use_theme`` when it starts and whenever the
operator picks another theme (then redraws), so Rich text and TCSS change together.

Roles: ``good`` (success), ``bad`` (error), ``warn`` (warning), ``info`` (primary), ``attn`` (accent: a gate waits
for you, a trap), each with ``.b`` for bold; ``selected`` (the background of a selected row); ``dim``, ``bold`` and
``""`` pass through. With ``NO_COLOR`` set every role is colourless: bold, dim and reverse carry the meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("good", "bad", "warn", "info", "attn")
ATTRIBUTES = frozenset({"bold", "dim", "italic", "reverse", "underline", "strike"})


@dataclass(frozen=True)
class Palette:
    good: str
    bad: str
    warn: str
    info: str
    attn: str
    selected: str
    name: str = ""

    def resolve(self, role: str) -> str:
        """``"bad.b dim"`` -> ``"bold #D17E92 dim"``: roles become colours, attributes pass through."""
        out = []
        for word in role.split():
            base, _, weight = word.partition(".")
            if base == "selected":
                out.append(self.selected)
            elif base in ROLES:
                out += ["bold"] * (weight == "b") + [getattr(self, base)]
            elif word in ATTRIBUTES:
                out.append(word)
            else:
                raise KeyError(f"unknown style role {word!r} in {role!r}")
        return " ".join(p for p in out if p)


def palette_from_variables(variables: dict[str, str], name: str = "", no_color: bool = False) -> Palette:
    """A palette from a theme's CSS variables (``text-success`` etc.: colours made to be read on its background)."""
    if no_color:
        return Palette("", "", "", "", "", "reverse", name)

    def colour(key: str, fallback: str) -> str:
        from textual.color import Color

        raw = variables.get(key) or variables.get(fallback) or ""
        if raw.startswith("ansi_"):  # an ANSI theme: the terminal's own colour, by its Rich name
            return raw.removeprefix("ansi_")
        if raw == "transparent":
            return ""
        try:
            return Color.parse(raw).hex6 if raw and not raw.startswith("auto") else ""
        except Exception:  # a variable Rich cannot show: no colour rather than a crash
            return ""

    panel = colour("panel", "surface")
    return Palette(
        good=colour("text-success", "success"),
        bad=colour("text-error", "error"),
        warn=colour("text-warning", "warning"),
        info=colour("text-primary", "primary"),
        attn=colour("text-accent", "accent"),
        selected=f"bold on {panel}" if panel else "bold reverse",
        name=name,
    )


def palette_from_theme(theme_name: str = "textual-dark", no_color: bool = False) -> Palette:
    from textual.theme import BUILTIN_THEMES

    theme = BUILTIN_THEMES.get(theme_name) or BUILTIN_THEMES["textual-dark"]
    return palette_from_variables(theme.to_color_system().generate(), theme.name, no_color)


_current: Palette | None = None


def palette() -> Palette:
    global _current
    if _current is None:
        _current = palette_from_theme()
    return _current


def use_palette(p: Palette) -> None:
    """Make ``p`` the palette every widget draws with (the app calls this at start and on a theme change)."""
    global _current
    _current = p


def themed(role: str) -> str:
    """The concrete Rich style of a role in the current theme (``themed("bad.b")`` -> ``"bold #D17E92"``)."""
    return palette().resolve(role)
