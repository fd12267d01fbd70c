"""A runner's report (its claims) compared figure by figure with phasef's own report of the same trace.

Every differing figure is a ``Problem`` naming the field, its line in the runner's file and both values; floats
agree within the rounding phasef applies to them (``FLOAT_DIGITS``) or a stated tolerance.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from pipeline.bench.runner_files import Problem, json_key_line
from pipeline.report.eval_report import (
    EvalMetrics,
    EvalReport,
    file_sha256,
    report_json,
)

DEFAULT_FLOAT_TOLERANCE = 1e-6
# Decimals phasef rounds each float figure to; a runner's figure agrees when it is within one unit of the last
# decimal phasef keeps (so a runner that rounds differently, or not at all, still agrees).
FLOAT_DIGITS: dict[str, int] = {
    "schemaViolationRate": 6,
    "latency": 6,
    "mttr": 6,
    "contextProfile.meanChars": 2,
    "contextProfile.p95Chars": 2,
    "contextProfile.growthPerTick": 4,
    "contextProfile.growthPerTickAll": 4,
    "contextProfile.perTickMean": 1,
}
# Mappings whose keys are data (a key missing on one side is a difference), as opposed to sub-objects whose missing
# keys are simply not claimed.
FREE_MAPS = frozenset(
    {
        "episodesByOutcome",
        "errorClasses",
        "actors",
        "recoveries.byMechanism",
        "trapInteractions.byKind",
        "trapInteractions.armedEpisodes",
        "gate",
    }
)
METRIC_KEYS = tuple((info.alias or name) for name, info in EvalMetrics.model_fields.items())


# -- the comparison ---------------------------------------------------------------------------------------------


def _tolerance(path: str, default: float) -> float:
    for prefix, digits in FLOAT_DIGITS.items():
        if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
            return 10.0**-digits
    return default


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(path: str, claimed: Any, actual: Any, tol: float, out: list[tuple[str, str]]) -> None:
    """Append ``(path, message)`` for every figure of ``claimed`` that differs from ``actual``."""
    if isinstance(claimed, dict) and isinstance(actual, dict):
        free = path in FREE_MAPS
        keys = sorted(set(claimed) | set(actual)) if free else [k for k in actual if k in claimed]
        for key in keys:
            if key not in claimed:
                out.append((f"{path}.{key}", f"report has no entry, phasef computes {actual[key]} from the trace"))
            elif key not in actual:
                out.append((f"{path}.{key}", f"report says {claimed[key]}, phasef finds no entry in the trace"))
            else:
                _compare(f"{path}.{key}", claimed[key], actual[key], tol, out)
        return
    if isinstance(claimed, list) and isinstance(actual, list):
        if len(claimed) != len(actual):
            out.append((path, f"report lists {len(claimed)} entries, phasef finds {len(actual)} in the trace"))
        for index, (c, a) in enumerate(zip(claimed, actual, strict=False)):
            _compare(f"{path}[{index}]", c, a, tol, out)
        return
    if _is_number(claimed) and _is_number(actual):
        if isinstance(claimed, int) and isinstance(actual, int):
            if claimed != actual:
                out.append((path, f"report says {claimed}, phasef computes {actual} from the trace"))
            return
        limit = _tolerance(path, tol)
        if not math.isclose(float(claimed), float(actual), rel_tol=0.0, abs_tol=limit):
            out.append((path, f"report says {claimed}, phasef computes {actual} from the trace (tolerance ±{limit:g})"))
        return
    if claimed != actual:
        c = "null" if claimed is None else json.dumps(claimed)
        a = "null" if actual is None else json.dumps(actual)
        out.append((path, f"report says {c}, phasef computes {a} from the trace"))


def compare_reports(
    claims: dict[str, Any],
    text: str,
    mine: EvalReport,
    report_path: Path,
    trace_path: Path,
    *,
    tolerance: float = DEFAULT_FLOAT_TOLERANCE,
    check_hash: bool = True,
    compare_trace_ref: bool = True,
) -> list[Problem]:
    """Every claim of a runner's report (raw JSON) that phasef's report of the same trace contradicts."""
    ours = report_json(mine)
    if not compare_trace_ref:
        # an imported trace: phasef's death lines are lines of its canonical import, not of the runner's file
        claims = dict(claims)
        for data in (claims, ours):
            if isinstance(data.get("deathRecords"), list):
                data["deathRecords"] = [
                    {k: v for k, v in d.items() if k != "line"} if isinstance(d, dict) else d
                    for d in data["deathRecords"]
                ]
    diffs: list[tuple[str, str]] = []
    for key in METRIC_KEYS:
        if key in claims:
            _compare(key, claims[key], ours[key], tolerance, diffs)
    gate_diffs: list[tuple[str, str]] = []
    if "gate" in claims:
        _compare("gate", claims["gate"], ours["gate"], tolerance, gate_diffs)
    diffs.extend(
        (p, m.replace("phasef computes", "phasef's gate (config.toml) has").replace(" from the trace", ""))
        for p, m in gate_diffs
    )
    if "gateConfigHash" in claims and claims["gateConfigHash"] != mine.gate_config_hash:
        diffs.append(
            (
                "gateConfigHash",
                f"report says {claims['gateConfigHash']}, phasef's gate (config.toml) hashes to "
                f"{mine.gate_config_hash}: the report was not judged by the same gate",
            )
        )
    trace_ref = claims.get("trace") if isinstance(claims.get("trace"), dict) else {}
    assert isinstance(trace_ref, dict)
    if check_hash and "sha256" in trace_ref and trace_ref["sha256"] != file_sha256(trace_path):
        diffs.append(
            ("trace.sha256", f"report says {trace_ref['sha256']}, {trace_path} hashes to {file_sha256(trace_path)}")
        )
    if compare_trace_ref and "records" in trace_ref:
        _compare("trace.records", trace_ref["records"], mine.trace.records, tolerance, diffs)
    checks = {c.name: c for c in mine.protocol_checks}
    claimed_checks = claims.get("protocolChecks") if isinstance(claims.get("protocolChecks"), list) else []
    assert isinstance(claimed_checks, list)
    failed_own: list[str] = []
    for index, check in enumerate(claimed_checks):
        if not isinstance(check, dict):
            continue
        name, passed = check.get("name"), check.get("passed")
        if passed is False:
            failed_own.append(str(name))
        ours_check = checks.get(str(name))
        if ours_check is not None and isinstance(passed, bool) and passed != ours_check.passed:
            diffs.append(
                (
                    f"protocolChecks[{index}].passed",
                    f"report says check {name!r} {'passed' if passed else 'failed'}, phasef's check "
                    f"{'passed' if ours_check.passed else 'failed'}: {ours_check.detail}",
                )
            )
    verdict = claims.get("verdict")
    if verdict == "PASS" and failed_own:
        diffs.append(
            ("verdict", f"report says PASS although its own protocol check(s) failed: {', '.join(failed_own)}")
        )
    if isinstance(verdict, str) and verdict != mine.verdict:
        why = f": {'; '.join(mine.reasons)}" if mine.reasons else ""
        diffs.append(
            (
                "verdict",
                f"report says {verdict}, phasef's verdict under the same gate "
                f"(gateConfigHash {mine.gate_config_hash[:12]}) is {mine.verdict}{why}",
            )
        )
    problems = []
    for path, message in diffs:
        loc = tuple(part for part in re.split(r"[.\[\]]+", path) if part and not part.isdigit())
        problems.append(Problem(str(report_path), json_key_line(text, loc), path, message))
    return problems
