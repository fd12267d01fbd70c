"""Every third-party module the code imports is declared in pyproject.toml (not only pulled in by another package)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OWN = {"pipeline", "widgets", "phasef_tui", "tests"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for name, extra in project.get("optional-dependencies", {}).items():
        if name != "dev":
            specs += extra
    return {_normal(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0]) for spec in specs}


def imported_modules() -> dict[str, str]:
    """Top-level module -> the first file that imports it, over the shipped packages."""
    found: dict[str, str] = {}
    for folder in ("pipeline", "widgets", "phasef_tui"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared() -> None:
    owners = packages_distributions()
    wanted = declared()
    missing = []
    for module, where in imported_modules().items():
        if module in OWN or module in sys.stdlib_module_names or module == "__future__":
            continue
        dists = {_normal(d) for d in owners.get(module, [])}
        if not dists:
            if module == "mlx_lm_lora":  # the optional [dpo] extra, imported only when installed
                assert "mlx-lm-lora" in wanted
                continue
            missing.append(f"{module} ({where}): not installed")
        elif not dists & wanted:
            missing.append(f"{module} ({where}): from {sorted(dists)}, not declared")
    assert not missing, "\n".join(missing)
