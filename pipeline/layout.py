"""Where everything of a session lives on disk, and how config paths and commands are expanded.

A session folder holds ``journal.jsonl``, ``config.resolved.toml``, ``artifacts/<stage>/<step>/``, ``logs/`` (one log
per attempt, one per service) and ``run/`` (per-attempt status, context, result and command files). Config paths
are relative to the session folder unless they start with ``{project}`` (or ``{session}``); commands get the two
folders shell-quoted. This module calls nothing above it: every other engine module asks it for paths.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

RESOLVED_CONFIG = "config.resolved.toml"


def resolve_path(raw: str, session_dir: Path, project_dir: Path) -> Path:
    """``{project}/x`` -> project-relative, ``{session}/x`` or a plain relative path -> session-relative."""
    text = raw.replace("{project}", str(project_dir)).replace("{session}", str(session_dir))
    p = Path(text).expanduser()
    return p if p.is_absolute() else session_dir / p


def _template_root(raw: str) -> tuple[str, str]:
    """``("project" | "session", the rest of the path)`` for a config path."""
    text = raw.strip()
    for root in ("project", "session"):
        tag = "{" + root + "}"
        if text.startswith(tag):
            return root, text[len(tag) :]
    return "session", text


def output_problem(raw: str) -> str | None:
    """Why a declared output is not allowed, looking at its text only (``config check``), or None.

    An output is inside the session folder (a relative path, or ``{session}/...``) or inside the project folder
    through an explicit ``{project}/...``; an absolute path, ``~`` or a ``..`` that climbs out of its folder is not.
    """
    root, rest = _template_root(raw)
    if "{project}" in rest or "{session}" in rest:
        return f"{raw!r}: {{project}} or {{session}} may only start a path"
    if root == "session" and not raw.strip().startswith("{session}") and rest.startswith(("/", "~")):
        return f"{raw!r} is an absolute path; an output must be inside the session folder, or '{{project}}/...'"
    depth = 0
    for part in PurePosixPath(rest.lstrip("/")).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return f"{raw!r} climbs out of the {root} folder with '..'"
        elif part != ".":
            depth += 1
    return None


def split_key(key: str) -> tuple[str, str]:
    """``"stage.step"`` -> ``("stage", "step")``."""
    stage, step = key.split(".", 1)
    return stage, step


@dataclass(frozen=True)
class AttemptFiles:
    """The files of one attempt of one step."""

    log: Path
    status: Path
    ctx: Path
    result: Path
    command: Path


class SessionLayout:
    """Paths inside one session folder (both folders resolved once, here)."""

    def __init__(self, session_dir: Path, project_dir: Path) -> None:
        self.session_dir = session_dir.resolve()
        self.project_dir = project_dir.resolve()
        self.resolved_config = self.session_dir / RESOLVED_CONFIG
        self.run_dir = self.session_dir / "run"
        self.logs_dir = self.session_dir / "logs"

    def resolve(self, raw: str) -> Path:
        return resolve_path(raw, self.session_dir, self.project_dir)

    def expand(self, patterns: list[str]) -> list[Path]:
        """Resolve each pattern; a glob pattern becomes the sorted list of what it matches."""
        out: list[Path] = []
        for raw in patterns:
            p = self.resolve(raw)
            if any(ch in str(p) for ch in "*?["):
                root = Path(p.anchor)
                out.extend(sorted(root.glob(str(p.relative_to(root)))))
            else:
                out.append(p)
        return out

    def escaped_outputs(self, patterns: list[str]) -> list[str]:
        """Declared outputs that resolve (symlinks followed) outside their folder, each named with where it goes."""
        problems: list[str] = []
        for raw in patterns:
            problem = output_problem(raw)
            if problem:
                problems.append(problem)
                continue
            root_name, _rest = _template_root(raw)
            root = (self.project_dir if root_name == "project" else self.session_dir).resolve()
            for path in self.expand([raw]):
                real = path.resolve()
                if not real.is_relative_to(root):
                    problems.append(f"{raw!r} resolves to {real}, outside the {root_name} folder")
        return problems

    def artifacts(self, key: str) -> Path:
        stage, step = split_key(key)
        return self.session_dir / "artifacts" / stage / step

    def attempt_files(self, key: str, attempt: int) -> AttemptFiles:
        """The attempt's files; creates ``run/`` and ``logs/``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{key}.{attempt}"
        return AttemptFiles(
            log=self.logs_dir / f"{stem}.log",
            status=self.run_dir / f"{stem}.status",
            ctx=self.run_dir / f"{stem}.ctx.json",
            result=self.run_dir / f"{stem}.result.json",
            command=self.run_dir / f"{stem}.command.sh",
        )

    def service_log(self, name: str) -> Path:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        return self.logs_dir / f"service.{name}.log"

    def expand_command(self, command: str) -> str:
        """A shell command with ``{project}`` and ``{session}`` replaced by the quoted folders."""
        command = command.replace("{project}", shlex.quote(str(self.project_dir)))
        return command.replace("{session}", shlex.quote(str(self.session_dir)))

    def relative(self, path: Path) -> str:
        """``path`` relative to the session folder when inside it, else as it is."""
        try:
            return str(path.relative_to(self.session_dir))
        except ValueError:
            return str(path)
