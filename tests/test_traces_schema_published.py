"""The published JSON Schema of a trace line is generated from the pydantic models and kept up to date."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.traces.publish_schema import DEFAULT_OUT, main, render
from pipeline.traces.schema import SCHEMA_VERSION


def test_published_schema_is_up_to_date() -> None:
    assert DEFAULT_OUT.name == "dirty_trace.v1.schema.json" and DEFAULT_OUT.parent.name == "schemas"
    assert DEFAULT_OUT.read_text(encoding="utf-8") == render()
    assert main(["--check"]) == 0
    schema = json.loads(DEFAULT_OUT.read_text(encoding="utf-8"))
    assert schema["$id"] == SCHEMA_VERSION
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in schema["anyOf"]} == {"EpisodeStart", "Tick", "EpisodeEnd"}
    assert "chain_role" in schema["$defs"]["Tick"]["properties"]


def test_check_fails_on_a_stale_file_and_writing_fixes_it(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    out.write_text("{}\n")
    assert main(["--check", "--out", str(out)]) == 1
    assert main(["--out", str(out)]) == 0
    assert main(["--check", "--out", str(out)]) == 0
