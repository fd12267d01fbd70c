"""The audit packet: the exact evidence a verdict is about, each part hashed, the whole bound by one hash.

A part is a file: either the evidence itself where it lies (report, trace, comparison, notes) or a file the audit
derived from it and wrote into the packet folder (death traces, recovery chains, context profile). ``packet.json``
lists the parts with their paths and hashes; ``packet.md`` is what the auditors read. The packet hash is recomputed
from the files on disk, so a gate can refuse a decision when any byte of the evidence changed after the auditors
saw it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.fsio import atomic_write_text
from pipeline.hashing import file_sha256, mapping_sha256

PACKET_SCHEMA = "phasef.audit_packet/1"
PACKET_JSON = "packet.json"
PACKET_MD = "packet.md"


class PacketError(ValueError):
    """The packet cannot be read or one of its parts is gone; the message names the file and the part."""


@dataclass(frozen=True)
class PartSpec:
    """A file to put in the packet under a name the auditors cite (``evidence_refs``)."""

    name: str
    title: str
    path: Path
    inline: bool = True
    """Whether the auditors see the content (False for the raw trace: hashed and summarised, too large to show)."""
    summary: str = ""


@dataclass(frozen=True)
class PacketPart:
    name: str
    title: str
    path: Path
    sha256: str
    bytes: int
    inline: bool
    summary: str


@dataclass(frozen=True)
class Packet:
    stage: str
    directory: Path
    parts: list[PacketPart]
    sha256: str

    @property
    def json_path(self) -> Path:
        return self.directory / PACKET_JSON

    @property
    def md_path(self) -> Path:
        return self.directory / PACKET_MD

    @property
    def part_hashes(self) -> dict[str, str]:
        return {p.name: p.sha256 for p in self.parts}

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]


def combine(part_hashes: dict[str, str]) -> str:
    """The packet hash: sha256 over the name-sorted ``name<TAB>sha256`` lines of the parts."""
    return mapping_sha256(part_hashes)


def build_packet(
    stage: str, specs: list[PartSpec], directory: Path, max_part_chars: int, relative_root: Path | None = None
) -> Packet:
    """Hash every part, write ``packet.json`` and ``packet.md`` into ``directory``.

    Parts under ``relative_root`` (the session folder) are recorded relative to the packet folder, so that a
    session moved elsewhere keeps a packet that still re-hashes; other parts keep their absolute path.
    """
    directory.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate packet part names: {names}")
    parts = [
        PacketPart(s.name, s.title, s.path, file_sha256(s.path), s.path.stat().st_size, s.inline, s.summary)
        for s in specs
    ]
    packet = Packet(stage, directory, parts, combine({p.name: p.sha256 for p in parts}))
    _atomic_write(packet.json_path, json.dumps(_packet_json(packet, relative_root), indent=2) + "\n")
    _atomic_write(packet.md_path, render_markdown(packet, max_part_chars))
    return packet


def _stored_path(path: Path, directory: Path, relative_root: Path | None) -> str:
    path = path.absolute()
    root = (relative_root or directory).absolute()
    if path.is_relative_to(root):
        return os.path.relpath(path, directory.absolute())
    return str(path)


def _packet_json(packet: Packet, relative_root: Path | None) -> dict[str, Any]:
    return {
        "schema": PACKET_SCHEMA,
        "stage": packet.stage,
        "created": time.time(),
        "packet_sha256": packet.sha256,
        "hash_rule": "sha256 over sorted 'name<TAB>sha256' lines, one per part",
        "parts": [
            {
                "name": p.name,
                "title": p.title,
                "path": _stored_path(p.path, packet.directory, relative_root),
                "sha256": p.sha256,
                "bytes": p.bytes,
                "inline": p.inline,
            }
            for p in packet.parts
        ],
    }


def render_markdown(packet: Packet, max_part_chars: int) -> str:
    """The packet as the auditors read it: an index of parts with hashes, then each part's content (cut)."""
    lines = [
        f"# Audit packet ({packet.stage})",
        "",
        f"packet_sha256: `{packet.sha256}`",
        "",
        "| part | sha256 | bytes | what |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{p.name}` | `{p.sha256}` | {p.bytes} | {p.title} |" for p in packet.parts]
    for p in packet.parts:
        lines += ["", f"## part `{p.name}`: {p.title}", ""]
        if p.summary:
            lines += [p.summary, ""]
        if not p.inline:
            lines.append(f"(content not shown: {p.bytes} bytes, sha256 `{p.sha256}`; see the derived parts)")
            continue
        with open(p.path, "rb") as fh:
            head = fh.read(max_part_chars * 4 + 4).decode("utf-8", errors="replace")
            cut = len(head) > max_part_chars or fh.tell() < p.bytes
        shown = head[:max_part_chars]
        fence = "````" if "```" in shown else "```"
        lines += [fence + _language(p.path), shown.rstrip("\n"), fence]
        if cut:
            lines.append(
                f"(cut: showing the first {len(shown)} characters of {p.bytes} bytes; the hash covers the whole part)"
            )
    return "\n".join(lines) + "\n"


def _language(path: Path) -> str:
    return {".json": "json", ".jsonl": "json", ".md": "markdown", ".toml": "toml"}.get(path.suffix, "")


def packet_sha256(packet_path: Path) -> str:
    """Recompute the packet hash from the part files on disk (``packet_path`` is ``packet.json``).

    Raises ``PacketError`` when ``packet.json`` is unreadable or a part file is gone: a packet that cannot be
    re-hashed must not be decided on.
    """
    parts = _read_parts(packet_path)
    hashes: dict[str, str] = {}
    for name, path in parts.items():
        try:
            hashes[name] = file_sha256(path)
        except OSError as exc:
            raise PacketError(f"{packet_path}: part {name!r} ({path}) cannot be read: {exc.strerror}") from exc
    return combine(hashes)


def changed_parts(packet_path: Path) -> list[str]:
    """Names of the parts whose files no longer hash to what ``packet.json`` recorded (or are gone)."""
    data = _load(packet_path)
    changed = []
    for name, path in _read_parts(packet_path).items():
        recorded = next(p["sha256"] for p in data["parts"] if p["name"] == name)
        try:
            now = file_sha256(path)
        except OSError:
            now = "missing"
        if now != recorded:
            changed.append(name)
    return changed


def _load(packet_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(packet_path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PacketError(f"{packet_path}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise PacketError(f"{packet_path}: not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != PACKET_SCHEMA or not isinstance(data.get("parts"), list):
        raise PacketError(f"{packet_path}: not a {PACKET_SCHEMA} packet")
    return data


def _read_parts(packet_path: Path) -> dict[str, Path]:
    data = _load(packet_path)
    base = Path(packet_path).parent
    parts: dict[str, Path] = {}
    for i, entry in enumerate(data["parts"]):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("path"), str)
        ):
            raise PacketError(f"{packet_path}: parts[{i}] needs 'name' and 'path' strings")
        path = Path(entry["path"])
        parts[entry["name"]] = path if path.is_absolute() else base / path
    return parts


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_text(path, text)
