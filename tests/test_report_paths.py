"""Reports name files relative to the session folder, so the folder can be moved or shared and still be read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.jobs.context import StepContext
from pipeline.report.compare import compare_step
from pipeline.report.matrix import matrix_step
from pipeline.report.paths import relative_text, session_relative
from tests.step_helpers import step_context
from tests.test_compare_report import baseline_specs, finetuned_specs, write_eval

ROOT = Path(__file__).resolve().parents[1]


def ctx(session: Path, step: str, params: dict[str, object]) -> StepContext:
    return step_context(session, "E", step, params)


def test_session_relative() -> None:
    session = Path("/srv/sessions/s1")
    assert session_relative("/srv/sessions/s1/artifacts/A/eval/eval_report.json", session) == (
        "artifacts/A/eval/eval_report.json"
    )
    assert session_relative("artifacts/x.json", session) == "artifacts/x.json"
    assert session_relative("/srv/sessions/s1/../s2/x.json", session) == "/srv/sessions/s1/../s2/x.json"
    assert session_relative("/elsewhere/fixture.json", session) == "/elsewhere/fixture.json", "outside: kept"
    assert session_relative("/a/b", None) == "/a/b"
    assert relative_text("/srv/sessions/s1/a/b.json: no such report", session) == "a/b.json: no such report"


def test_comparison_and_matrix_name_files_relative_to_the_session(tmp_path: Path) -> None:
    session = tmp_path / "sessions" / "s1"
    art = session / "artifacts"
    write_eval(art / "A" / "eval", baseline_specs(8), seed=1)
    write_eval(art / "E" / "eval", finetuned_specs(8), seed=2)
    broken = art / "E" / "broken"
    broken.mkdir(parents=True)
    (broken / "eval_report.json").write_text("{oops")
    params = {
        "baseline": {"report": "artifacts/A/eval/eval_report.json", "name": "base"},
        "finetuned": {"report": str(art / "E" / "eval" / "eval_report.json"), "name": "tuned"},  # absolute
        "noise": {"resamples": 200},
        "min_ticks": 10,
    }
    summary = compare_step(ctx(session, "compare", params))
    assert summary["comparison"] == "report/comparison.json"
    matrix = matrix_step(ctx(session, "matrix", {}))
    assert matrix["matrix"] == "report/model_matrix.json"

    absolute = str(tmp_path)
    for name in ("comparison.json", "comparison.md", "model_matrix.json", "model_matrix.md"):
        text = (session / "report" / name).read_text()
        assert absolute not in text, f"{name} names a file by an absolute path"
    doc = json.loads((session / "report" / "comparison.json").read_text())
    assert doc["baseline"]["report"] == "artifacts/A/eval/eval_report.json"
    assert doc["finetuned"]["trace"] == "artifacts/E/eval/dirty_trace.jsonl"
    assert "`artifacts/E/eval/eval_report.json`" in (session / "report" / "comparison.md").read_text()
    columns = json.loads((session / "report" / "model_matrix.json").read_text())["columns"]
    assert [c["report"] for c in columns] == [
        "artifacts/A/eval/eval_report.json",
        "artifacts/E/broken/eval_report.json",
        "artifacts/E/eval/eval_report.json",
    ]
    assert columns[1]["error"].startswith("artifacts/E/broken/eval_report.json:1: not JSON")

    moved = tmp_path / "shared" / "s1"  # the folder moved elsewhere: every path it names still resolves
    shutil.move(session, moved)
    for run in ("baseline", "finetuned"):
        assert (moved / doc[run]["report"]).is_file() and (moved / doc[run]["trace"]).is_file()
