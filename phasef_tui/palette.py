"""The command palette of the phasef TUI: the actions of the app's keys and of the screen it was opened on."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from phasef_tui.keys import APP_KEYS, SCREEN_KEYS, SCREEN_NAMES, display_key, effective_key

if TYPE_CHECKING:
    from phasef_tui.app import PhasefApp


class PhasefCommands(Provider):
    """The command palette: the same actions as the keys of the app and of the screen it was opened on."""

    def _commands(self) -> Iterable[tuple[str, str, Callable[[], Any]]]:
        app: PhasefApp = self.app  # type: ignore[assignment]  # (the palette is only ever the PhasefApp's)
        screen = self.screen
        keymap = app.keymap
        replaying = getattr(app.source, "replaying", False)
        actions = [a for a in APP_KEYS if a.id != "app.palette" and (replaying or not a.id.startswith("app.replay."))]
        scope = getattr(screen, "SCREEN_NAME", "").lower()
        actions.extend(SCREEN_KEYS.get(scope, ()))
        for action in actions:
            if action.id.startswith("app.") and action.id.removeprefix("app.") in SCREEN_NAMES:
                if action.id.removeprefix("app.") not in app.available_screens:
                    continue
                title = f"Go to {action.description}"
            else:
                title = action.description
            help_text = f"{display_key(effective_key(action, keymap))}  ·  {action.id}"
            yield title, help_text, partial(screen.run_action, action.action)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
