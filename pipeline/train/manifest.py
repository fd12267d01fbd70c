"""The handoff package's manifest: the sha256 of every file, and the check that re-hashes them.

``manifest.json`` lists every file of the package except itself. ``verify_package`` reports each file whose bytes
changed, each listed file that is gone and each file that is not listed, so a package that reaches the training
machine is exactly the package that was built (or the check says where it differs). ``SHA256SUMS`` holds the
same hashes in coreutils format for machines without phasef (``sha256sum -c SHA256SUMS``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.fsio import atomic_write_text, read_json
from pipeline.hashing import file_sha256

MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
MANIFEST_SCHEMA = "phasef.handoff/1"


sha256_file = file_sha256


def package_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as a POSIX relative path, sorted; the manifest itself excluded."""
    names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(n for n in names if n != MANIFEST_NAME)


def write_sums(root: Path) -> None:
    """``SHA256SUMS`` over every file except itself and the manifest (written before the manifest)."""
    lines = [f"{sha256_file(root / n)}  {n}" for n in package_files(root) if n != SUMS_NAME]
    atomic_write_text(root / SUMS_NAME, "\n".join(lines) + "\n")


def write_manifest(root: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    files = {}
    total = 0
    for name in package_files(root):
        path = root / name
        size = path.stat().st_size
        total += size
        files[name] = {"sha256": sha256_file(path), "bytes": size}
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        **(extra or {}),
        "file_count": len(files),
        "total_bytes": total,
        "files": files,
    }
    atomic_write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


class ManifestUnreadable(Exception):
    """The manifest is missing, not JSON, or not shaped like a handoff manifest."""


@dataclass
class VerifyReport:
    root: Path
    checked: int = 0
    changed: list[tuple[str, str, str]] = field(default_factory=list)
    """(name, expected sha256, actual sha256)"""
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra or self.unreadable)

    def lines(self) -> list[str]:
        out = [f"changed: {n} (sha256 {exp[:12]}… in manifest, {act[:12]}… now)" for n, exp, act in self.changed]
        out += [f"missing: {n}" for n in self.missing]
        out += [f"extra: {n} (not in the manifest)" for n in self.extra]
        out += [f"unreadable: {n} ({why})" for n, why in self.unreadable]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "ok": self.ok,
            "checked": self.checked,
            "changed": [{"file": n, "expected": e, "actual": a} for n, e, a in self.changed],
            "missing": self.missing,
            "extra": self.extra,
            "unreadable": [{"file": n, "reason": r} for n, r in self.unreadable],
        }


def read_manifest(root: Path) -> dict[str, dict[str, Any]]:
    """The ``files`` table of ``root/manifest.json``; ``ManifestUnreadable`` says what is wrong with it."""
    path = root / MANIFEST_NAME
    data = read_json(path, ManifestUnreadable, missing="no manifest", limit=64 * 2**20)
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ManifestUnreadable(f"{path}: field 'schema': expected {MANIFEST_SCHEMA!r}, got {found!r}")
    files = data.get("files")
    if not isinstance(files, dict):
        raise ManifestUnreadable(f"{path}: field 'files': expected an object of file entries")
    for name, entry in files.items():
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not name:
            raise ManifestUnreadable(f"{path}: field 'files.{name}': a path outside the package")
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or len(digest) != 64:
            raise ManifestUnreadable(f"{path}: field 'files.{name}.sha256': expected 64 hex digits")
    return files


def verify_package(root: Path) -> VerifyReport:
    """Re-hash every file; raises ``ManifestUnreadable`` when there is no usable manifest to compare with."""
    files = read_manifest(root)
    report = VerifyReport(root)
    present = set(package_files(root))
    for name in sorted(files):
        path = root / name
        if name not in present:
            report.missing.append(name)
            continue
        try:
            actual = sha256_file(path)
        except OSError as exc:
            report.unreadable.append((name, str(exc)))
            continue
        report.checked += 1
        expected = str(files[name]["sha256"]).lower()
        if actual != expected:
            report.changed.append((name, expected, actual))
    report.extra = sorted(present - set(files))
    return report
