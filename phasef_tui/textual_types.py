"""``textual.types`` without the widget modules it re-exports, until one of their names is used.

``textual.types`` gathers, for type annotations, names defined all over Textual, among them names of five widget
modules (``DirectoryTree``, ``Input``, ``OptionList``, ``Placeholder``, ``Select``). ``textual.command``, which
``textual.app`` imports, takes one type alias from it, so every Textual app imported the directory tree, the tree,
the select and the placeholder widgets at start (~10 ms of the trace viewer's time to its first frame) and never
showed them. ``defer_widget_types`` registers a ``textual.types`` that holds the other names and imports a widget
module's names when one is first read; any name it does not know comes from the real module, loaded then. Nothing
changes when Textual's own module was imported already, or when a name is not where it was (another Textual).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from importlib import import_module
from typing import Any

NAME = "textual.types"
EAGER = {
    "textual._animator": ("Animatable", "EasingFunction"),
    "textual._context": ("NoActiveAppError",),
    "textual._path": ("CSSPathError", "CSSPathType"),
    "textual._types": (
        "AnimationLevel",
        "CallbackType",
        "IgnoreReturnCallbackType",
        "MessageTarget",
        "UnusedParameter",
        "WatchCallbackType",
    ),
    "textual._widget_navigation": ("Direction",),
    "textual.actions": ("ActionParseResult",),
    "textual.css.styles": ("RenderStyles",),
}
"""The names of modules every app imports anyway."""
DEFERRED = {
    "DirEntry": "textual.widgets._directory_tree",
    "InputValidationOn": "textual.widgets._input",
    "DuplicateID": "textual.widgets._option_list",
    "OptionDoesNotExist": "textual.widgets._option_list",
    "OptionListContent": "textual.widgets._option_list",
    "PlaceholderVariant": "textual.widgets._placeholder",
    "NoSelection": "textual.widgets._select",
    "SelectType": "textual.widgets._select",
}
"""The widget modules' names: imported when first read."""


class DeferredTypes(types.ModuleType):
    """``textual.types``: the eager names set, the others looked up on first use."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        source = DEFERRED.get(name)
        value = getattr(import_module(source), name) if source else getattr(_real_module(), name)
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *DEFERRED})


def _real_module() -> types.ModuleType:
    """Textual's own ``textual.types``, executed on its own (not registered: the deferred one stays)."""
    spec = importlib.util.find_spec(NAME)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(NAME)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def defer_widget_types() -> bool:
    """Register the deferred ``textual.types`` (before ``textual.app`` is imported); False when it was not (Textual's
    own module already imported, or a name not where this expects it)."""
    if NAME in sys.modules:
        return False
    spec = importlib.util.find_spec(NAME)
    if spec is None:
        return False
    module = DeferredTypes(NAME)
    module.__spec__ = spec
    module.__file__ = spec.origin
    module.__package__ = "textual"
    try:
        for source, names in EAGER.items():
            imported = import_module(source)
            for name in names:
                setattr(module, name, getattr(imported, name))
    except (ImportError, AttributeError):
        return False  # another Textual: its own module is imported as usual
    module.__dict__["__all__"] = sorted([*(n for names in EAGER.values() for n in names), *DEFERRED])
    sys.modules[NAME] = module
    import textual

    textual.types = module  # (as the import system sets a submodule on its package)
    return True
