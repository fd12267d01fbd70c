"""The workload's target: a real open-source source tree found on this machine, and the facts read from it.

The default target is a few small pure-Python packages that every install of this project carries (``h11``,
``idna`` and ``mdurl`` come with httpx and markdown-it): their sources are copied into a sandbox per episode, tasks
are generated from facts read with ``ast`` (which file defines a function, how many lines a file has, what a
constant equals, how many parameters a function takes) and answers are checked against those facts. ``idna``
brings real multi-hundred-kilobyte data tables, which make a natural context bomb.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.fsio import atomic_write_text

DEFAULT_PACKAGES: tuple[str, ...] = ("h11", "idna", "mdurl")


class TargetError(Exception):
    """A target package could not be found or read."""


@dataclass(frozen=True)
class SourceFile:
    path: str
    """relative POSIX path inside the sandbox, such as ``h11/_util.py``"""
    text: str

    @property
    def line_count(self) -> int:
        return len(self.text.splitlines())

    @property
    def module(self) -> str:
        parts = self.path[: -len(".py")].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        return ".".join(parts)


@dataclass(frozen=True)
class FunctionFact:
    name: str
    file: str
    line: int
    module_level: bool
    params: int
    """parameter count as ``inspect.signature`` reports it (``*args``/``**kwargs`` count as one each)"""


@dataclass(frozen=True)
class ConstantFact:
    name: str
    file: str
    line: int
    value: int | float | str | bytes
    source: str
    """the source line, as a search for ``NAME =`` shows it"""


@dataclass
class TargetTree:
    packages: tuple[str, ...]
    versions: dict[str, str]
    files: list[SourceFile]
    functions: list[FunctionFact] = field(default_factory=list)
    constants: list[ConstantFact] = field(default_factory=list)

    def file(self, path: str) -> SourceFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)

    def unique_functions(self) -> list[FunctionFact]:
        """Functions whose name is defined exactly once in the tree (so 'which file defines X' has one answer)."""
        counts = Counter(f.name for f in self.functions)
        return [f for f in self.functions if counts[f.name] == 1 and not f.name.startswith("__")]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise TargetError(f"target package {name!r} is not installed (or is not a package)")
    return Path(next(iter(spec.submodule_search_locations)))


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _param_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def _facts(source: SourceFile) -> tuple[list[FunctionFact], list[ConstantFact]]:
    try:
        tree = ast.parse(source.text)
    except SyntaxError as exc:
        raise TargetError(f"{source.path}:{exc.lineno}: cannot parse: {exc.msg}") from exc
    functions: list[FunctionFact] = []
    constants: list[ConstantFact] = []
    lines = source.text.splitlines()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.append(FunctionFact(node.name, source.path, node.lineno, True, _param_count(node)))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    functions.append(FunctionFact(item.name, source.path, item.lineno, False, _param_count(item)))
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and node.lineno == node.end_lineno
        ):
            value = node.value.value
            if isinstance(value, bool) or not isinstance(value, int | float | str | bytes):
                continue
            if isinstance(value, str | bytes) and not value:
                continue
            constants.append(
                ConstantFact(node.targets[0].id, source.path, node.lineno, value, lines[node.lineno - 1].strip())
            )
    return functions, constants


def load_target(packages: Sequence[str] = DEFAULT_PACKAGES) -> TargetTree:
    """Read the sources of ``packages`` from the running interpreter's installation (sorted, deterministic)."""
    files: list[SourceFile] = []
    versions: dict[str, str] = {}
    for name in packages:
        root = _package_dir(name)
        versions[name] = _version(name)
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            rel = f"{name}/{path.relative_to(root).as_posix()}"
            try:
                files.append(SourceFile(rel, path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise TargetError(f"{path}: cannot read: {exc}") from exc
    tree = TargetTree(tuple(packages), versions, files)
    for source in files:
        functions, constants = _facts(source)
        tree.functions.extend(functions)
        tree.constants.extend(constants)
    return tree


def materialize(tree: TargetTree, dest: Path) -> None:
    """Write the tree's files under ``dest`` (the sandbox)."""
    for source in tree.files:
        path = dest / source.path
        atomic_write_text(path, source.text, fsync=False)  # a scratch sandbox: atomic, no need to reach the disk
