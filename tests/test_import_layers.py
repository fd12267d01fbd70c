"""Import directions that keep modules usable alone: no runtime cycles, clients without the engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_canonical_importer_does_not_load_the_analysis(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"kind": "tick", "episode": "e", "ts": 1, "tick": 0, "outcome": "ok"}\n{"kind": 3}\n')
    code = (
        "from pathlib import Path\nfrom pipeline.traces.importers import phasef\n"
        f"records, bad = phasef.convert_jsonl(Path({str(trace)!r}))\n"
        "assert len(records) == 1 and len(bad) == 1 and bad[0].reason.startswith(\"field 'kind'\"), (records, bad)"
    )
    loaded = _modules_after(code)
    assert "pipeline.traces.importers.phasef" in loaded
    assert "pipeline.traces.analysis" not in loaded


def test_control_clients_do_not_import_the_engine() -> None:
    """Not at module level and not inside a function either: ``ControlError`` lives in ``pipeline.errors``."""
    clients = [ROOT / "phasef_tui" / "commands" / "approve.py", ROOT / "phasef_tui" / "supervisor_requests.py"]
    for path in clients:
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "pipeline.errors" in imported, path
        assert "pipeline.engine" not in imported, path
