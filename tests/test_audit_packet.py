"""The audit packet: part hashes, the packet hash bound to the bytes on disk, and what the auditors read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.audit.packet import PacketError, PartSpec, build_packet, changed_parts, packet_sha256
from pipeline.hashing import file_sha256


def evidence(tmp_path: Path) -> list[PartSpec]:
    (tmp_path / "ev").mkdir(exist_ok=True)
    report = tmp_path / "ev" / "report.json"
    report.write_text(json.dumps({"pass": False, "ticksObserved": 80}))
    trace = tmp_path / "ev" / "trace.jsonl"
    trace.write_text('{"kind": "tick"}\n' * 50)
    notes = tmp_path / "notes.md"
    notes.write_text("Death traces must be raw.\n" + "x" * 3000)
    return [
        PartSpec("report", "eval report", report),
        PartSpec("trace", "dirty trace", trace, inline=False, summary="50 records"),
        PartSpec("notes", "architect's notes", notes),
    ]


def test_packet_files_and_hashes(tmp_path: Path) -> None:
    specs = evidence(tmp_path)
    packet = build_packet("baseline", specs, tmp_path / "session" / "packet", 1000, relative_root=tmp_path / "ev")
    data = json.loads(packet.json_path.read_text())
    assert data["packet_sha256"] == packet.sha256
    assert {p["name"]: p["sha256"] for p in data["parts"]} == {s.name: file_sha256(s.path) for s in specs}
    paths = {p["name"]: p["path"] for p in data["parts"]}
    assert paths["report"] == "../../ev/report.json"  # under the root: relative to the packet folder
    assert Path(paths["notes"]).is_absolute()
    assert packet_sha256(packet.json_path) == packet.sha256
    assert changed_parts(packet.json_path) == []


def test_one_byte_of_evidence_changes_the_packet_hash(tmp_path: Path) -> None:
    specs = evidence(tmp_path)
    packet = build_packet("baseline", specs, tmp_path / "packet", 1000)
    trace = specs[1].path
    raw = bytearray(trace.read_bytes())
    raw[7] ^= 0x01
    trace.write_bytes(bytes(raw))
    assert packet_sha256(packet.json_path) != packet.sha256
    assert changed_parts(packet.json_path) == ["trace"]
    rebuilt = build_packet("baseline", specs, tmp_path / "packet2", 1000)
    assert rebuilt.sha256 == packet_sha256(packet.json_path) != packet.sha256


def test_hash_binds_names_to_contents(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("alpha")
    b.write_text("beta")
    one = build_packet("final", [PartSpec("report", "", a), PartSpec("notes", "", b)], tmp_path / "p1", 100)
    two = build_packet("final", [PartSpec("report", "", b), PartSpec("notes", "", a)], tmp_path / "p2", 100)
    assert one.sha256 != two.sha256


def test_missing_part_or_packet_is_an_error_naming_it(tmp_path: Path) -> None:
    specs = evidence(tmp_path)
    packet = build_packet("baseline", specs, tmp_path / "packet", 1000)
    specs[0].path.unlink()
    with pytest.raises(PacketError, match="'report'"):
        packet_sha256(packet.json_path)
    assert changed_parts(packet.json_path) == ["report"]
    with pytest.raises(PacketError, match="cannot read"):
        packet_sha256(tmp_path / "nowhere" / "packet.json")
    packet.json_path.write_text('{"schema": "other"}')
    with pytest.raises(PacketError, match=r"not a phasef\.audit_packet/1 packet"):
        packet_sha256(packet.json_path)


def test_markdown_shows_hashes_and_cut_content(tmp_path: Path) -> None:
    specs = evidence(tmp_path)
    packet = build_packet("baseline", specs, tmp_path / "packet", 600)
    md = packet.md_path.read_text()
    assert f"packet_sha256: `{packet.sha256}`" in md
    for part in packet.parts:
        assert part.sha256 in md
    assert '"ticksObserved": 80' in md
    assert "Death traces must be raw." in md
    assert "(cut: showing the first 600 characters of" in md  # notes are longer than 600 characters
    assert "50 records" in md and '{"kind": "tick"}' not in md  # the raw trace is hashed, not shown


def test_duplicate_part_names_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(ValueError, match="duplicate"):
        build_packet("baseline", [PartSpec("a", "", f), PartSpec("a", "", f)], tmp_path / "p", 100)
