"""The app's stylesheet: each CSS source parsed once per theme in a process, and once per theme and Textual across
starts (the rule sets kept in the start-up cache, ``startup_cache.css_rules``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache, partial
from pathlib import Path
from typing import Any

from textual import css as textual_css
from textual.css.stylesheet import Stylesheet

from phasef_tui import startup_cache
from phasef_tui.startup_cache import CssKey


def css_key(parser: str, variables: Mapping[str, str], *source: object) -> CssKey:
    """What a CSS source's rules are made of, as a cache key: the parser's code (``css_parser_stamp``), the theme's
    variables (their values are written into the rules) and the arguments of ``Stylesheet._parse_rules`` (the text,
    where it was read from, default or not, tie breaker, scope)."""
    try:
        from _blake2 import blake2b  # (hashlib would load OpenSSL's library first)
    except ImportError:  # pragma: no cover - (an interpreter built without it)
        from hashlib import blake2b
    text = repr((parser, sorted(variables.items()), source))
    return "css:" + blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def css_parser_stamp(package: Path) -> str | None:
    """The CSS parser's code as installed: size and modification time of each module of ``package`` (Textual's
    ``css`` folder), so that rules kept from another Textual are never used (its version would cost
    ``importlib.metadata``, ~20 ms). None when they cannot be read (then no rules are kept)."""
    try:
        with os.scandir(package) as entries:
            stats = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.name.endswith(".py"))
    except OSError:
        return None
    return repr((str(package), stats)) if stats else None


@cache
def _css_parser_stamp() -> str | None:
    return css_parser_stamp(Path(textual_css.__file__).parent)


class ParsedOnceStylesheet(Stylesheet):
    """Textual's stylesheet, each CSS source parsed once while the CSS variables (the theme) stay the same.

    Textual re-parses every source from scratch each time it refreshes the CSS: twice while the first screen is set
    up (a mode's screen added, then switched to), with the same variables both times. Here new variables are only
    taken when they differ (taking them clears the parsed rules, as in Textual), and a re-parse parses what is not
    parsed yet with the current variables: a refresh with the same theme parses only the sources added since,
    another theme parses everything again. A CSS error leaves the rules in use as they were (``parse`` raises before
    it replaces them), as Textual's re-parse does."""

    def set_variables(self, variables: dict[str, str]) -> None:
        if variables != self._variables:
            super().set_variables(variables)

    def reparse(self) -> None:
        self.parse()


class KeptStylesheet(ParsedOnceStylesheet):
    """A ``ParsedOnceStylesheet`` whose sources' rules come from the start-up cache when a start before this one
    parsed the same source with the same variables and the same Textual (``startup_cache.css_rules``).

    Used only where a start-up cache is active (``stylesheet_for``): an SSH session forked from the session server
    has none, and runs Textual's own ``_parse_rules`` (a function more run in each session is pages more copied)."""

    def __init__(self, cache: startup_cache.StartupCache, stamp: str, variables: dict[str, str]) -> None:
        super().__init__(variables=variables)
        self._kept = cache
        self._stamp = stamp

    def _parse_rules(
        self, css: str, read_from: Any, is_default_rules: bool = False, tie_breaker: int = 0, scope: str = ""
    ) -> list[Any]:
        in_memory = (css, read_from, is_default_rules, tie_breaker, scope)
        rules = self._parse_cache.get(in_memory)
        if rules is None:
            parse = partial(Stylesheet._parse_rules, self, *in_memory)
            rules = self._kept.css_rules(css_key(self._stamp, self._variables, *in_memory), parse)
            self._parse_cache[in_memory] = rules
        return rules


def stylesheet_for(cache: startup_cache.StartupCache, variables: dict[str, str]) -> ParsedOnceStylesheet:
    """The stylesheet of an app whose process has a start-up cache: ``KeptStylesheet``, or ``ParsedOnceStylesheet``
    when Textual's parser cannot be read (without a cache the app takes ``ParsedOnceStylesheet`` itself)."""
    stamp = _css_parser_stamp()
    return ParsedOnceStylesheet(variables=variables) if stamp is None else KeptStylesheet(cache, stamp, variables)
