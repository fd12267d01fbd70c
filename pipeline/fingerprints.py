"""Fingerprints and output hashes: whether a step must run again, and what it produced.

A step's fingerprint (DVC-style) hashes its kind, command or function, params, the values of its allowed environment
variables, its declared outputs and services, and the content hashes of its inputs. A finished step whose fingerprint
and output hashes are unchanged is skipped on the next run.

Declared outputs stay inside the session folder (or the project, through ``{project}/...``), symlinks resolved, and
each one must have been created or changed by the attempt that declares it: a file the step never wrote is not
its output.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import PhasefConfig
from pipeline.hashing import MISSING, canonical_json, hash_paths, text_sha256
from pipeline.jobs.spec import env_names
from pipeline.layout import SessionLayout
from pipeline.state import StepState


class Fingerprints:
    def __init__(self, cfg: PhasefConfig, layout: SessionLayout) -> None:
        self.cfg = cfg
        self.layout = layout

    def fingerprint(self, key: str) -> tuple[str, list[str]]:
        """The step's fingerprint and the problems found on the way (a missing input)."""
        sc = self.cfg.step(key)
        problems: list[str] = []
        input_hashes = hash_paths(self.layout.expand(sc.inputs), self.layout.session_dir)
        for name, h in input_hashes.items():
            if h == MISSING:
                problems.append(f"input missing: {name}")
        env_values = {n: text_sha256(os.environ.get(n, "")) for n in env_names(self.cfg, sc) if n != "PATH"}
        services = {s: canonical_json(self.cfg.services[s].model_dump()) for s in sc.services}
        material = {
            "kind": sc.kind,
            "command": sc.command,
            "function": sc.function,
            "params": sc.params,
            "env": env_values,
            "inputs": input_hashes,
            "outputs": sc.outputs,
            "services": services,
        }
        return text_sha256(canonical_json(material)), problems

    def outputs(self, key: str) -> dict[str, str]:
        """Hashes of the declared outputs (and of the artifact folder of a step function)."""
        sc = self.cfg.step(key)
        paths = self.layout.expand(sc.outputs)
        if sc.kind not in ("shell", "gate"):
            paths.append(self.layout.artifacts(key))
        return hash_paths(paths, self.layout.session_dir)

    def cache_hit(self, key: str, st: StepState | None, fp: str) -> str | None:
        """Why the step can be skipped, or None when it must run."""
        sc = self.cfg.step(key)
        if not sc.cache or st is None or st.state not in ("succeeded", "skipped") or st.fingerprint != fp:
            return None
        if not st.outputs:
            return "unchanged fingerprint (no declared outputs)"
        return "fingerprint and output hashes unchanged" if self.outputs(key) == st.outputs else None

    def output_problem(self, key: str, since_ns: int) -> str | None:
        """Why the attempt's declared outputs cannot be taken (outside their folder, or untouched since
        ``since_ns``), or None. Missing outputs are reported by the hashes."""
        sc = self.cfg.step(key)
        escaped = self.layout.escaped_outputs(sc.outputs)
        if escaped:
            return "declared output " + "; ".join(escaped)
        stale = [
            self.layout.relative(p) for p in self.layout.expand(sc.outputs) if p.exists() and not _touched(p, since_ns)
        ]
        if stale:
            return f"declared output not created or changed by this attempt: {', '.join(stale)}"
        return None


def _touched(path: Path, since_ns: int) -> bool:
    """Whether ``path`` (or anything below it) was created, written, renamed or re-linked at or after ``since_ns``.

    The inode change time is used: unlike the modification time, no tool can set it back (``cp -p``, ``tar``)."""
    try:
        if os.stat(path).st_ctime_ns >= since_ns:
            return True
    except OSError:
        return False
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                try:
                    if os.lstat(os.path.join(root, name)).st_ctime_ns >= since_ns:
                        return True
                except OSError:
                    continue
    return False
