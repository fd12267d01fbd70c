"""CLI habits: --version, shell completion, -v/-q, --json with JSON errors, one config flag, exit codes in --help.

Each runs the real ``phasef`` entry point in a child process, as a shell would."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from phasef_tui.cli import build_parser, subparsers_of
from tests.spine_helpers import phasef, write_plan
from tests.test_spine_config import GOOD

PLAN = GOOD  # two stages, A.one then B.two
BAD_PLAN = PLAN.replace('command = "true"\n\n[stages.B]', 'command = "true"\ncolour = "red"\n\n[stages.B]')


def test_version() -> None:
    from importlib.metadata import version

    r = phasef("--version", cwd=Path.cwd())
    assert r.returncode == 0 and r.stdout.strip() == f"phasef {version('phasef')}"


def test_help_lists_exit_codes_and_global_flags() -> None:
    r = phasef("--help", cwd=Path.cwd())
    assert r.returncode == 0
    text = r.stdout
    assert "exit codes:" in text
    for code, meaning in (
        ("0", "success"),
        ("1", "failed"),
        ("2", "usage"),
        ("3", "NO-GO"),
        ("4", "GO-OVERRIDE"),
        ("130", "interrupted"),
    ):
        assert any(line.split()[:1] == [code] and meaning in line for line in text.splitlines()), (code, text)
    assert "--json" in text and "-q, --quiet" in text and "-v, --verbose" in text and "--version" in text


def test_config_is_named_the_same_way_by_check_and_show(tmp_path: Path) -> None:
    path = write_plan(tmp_path / "p", PLAN)
    for action in ("check", "show"):
        r = phasef("config", action, "-c", str(path), cwd=tmp_path)
        assert r.returncode == 0, (action, r.stderr)
        r = phasef("config", action, "--config", str(path), cwd=tmp_path)
        assert r.returncode == 0, (action, r.stderr)
        r = phasef("config", action, cwd=tmp_path, env={"PHASEF_CONFIG": str(path)})
        assert r.returncode == 0, (action, r.stderr)
    assert f"{path}: ok (2 stages, 2 steps)" in phasef("config", "check", "-c", str(path), cwd=tmp_path).stdout
    assert "--config FILE" in phasef("config", "check", "--help", cwd=tmp_path).stdout
    assert "--config FILE" in phasef("config", "show", "--help", cwd=tmp_path).stdout


def test_quiet_and_verbose(tmp_path: Path) -> None:
    path = write_plan(tmp_path / "p", PLAN)
    quiet = phasef("-q", "config", "check", "-c", str(path), cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stdout == ""
    after = phasef("config", "check", "-c", str(path), "-q", cwd=tmp_path)
    assert after.returncode == 0 and after.stdout == "", "a global flag after the command works too"
    verbose = phasef("config", "check", "-c", str(path), "-v", cwd=tmp_path)
    assert verbose.stdout.splitlines() == [f"{path}: ok (2 stages, 2 steps)", "  A: one", "  B: two"]
    bad = write_plan(tmp_path / "bad", BAD_PLAN)
    r = phasef("-q", "config", "check", "-c", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "colour: unknown key" in r.stderr, "-q never hides errors"


def test_json_output_and_json_errors(tmp_path: Path) -> None:
    path = write_plan(tmp_path / "p", PLAN)
    for argv in (("--json", "config", "check", "-c", str(path)), ("config", "check", "-c", str(path), "--json")):
        r = phasef(*argv, cwd=tmp_path)
        assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "config": str(path), "stages": 2, "steps": 2}
    shown = json.loads(phasef("config", "show", "-c", str(path), "--json", cwd=tmp_path).stdout)
    assert shown["dependencies"] == {"A.one": [], "B.two": ["A.one"]} and shown["plan"]["stages"]["A"]["title"] == "A"

    bad = write_plan(tmp_path / "bad", BAD_PLAN)
    r = phasef("config", "check", "-c", str(bad), "--json", cwd=tmp_path)
    err = json.loads(r.stdout)
    assert r.returncode == 2 and err["ok"] is False and err["exit_code"] == 2
    assert "stages.A.steps.one.colour: unknown key" in err["error"]

    r = phasef("--json", "status", "--sessions", str(tmp_path / "none"), cwd=tmp_path)
    err = json.loads(r.stdout)
    assert r.returncode == 2 and err["exit_code"] == 2 and err["error"]

    r = phasef("--json", "config", "check", "--no-such-flag", cwd=tmp_path)
    err = json.loads(r.stdout)
    assert r.returncode == 2 and "unrecognized arguments: --no-such-flag" in err["error"], "usage errors too"

    r = phasef("--json", "trace", "view", str(tmp_path / "t.jsonl"), cwd=tmp_path)
    err = json.loads(r.stdout)
    assert r.returncode == 2 and "prints no data" in err["error"]


def test_report_build_prints_its_outcome_as_json(tmp_path: Path) -> None:
    from tests.test_compare_report import baseline_specs, write_run

    write_run(tmp_path / "t.jsonl", baseline_specs(4), seed=1, run_id="r1")
    out = tmp_path / "r.json"
    r = phasef("report", "build", "--trace", str(tmp_path / "t.jsonl"), "-o", str(out), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    written = json.loads(out.read_text())
    assert doc["report"] == str(out) and doc["verdict"] == written["verdict"]
    assert doc["ticks_observed"] == written["ticksObserved"] and doc["gateConfigHash"] == written["gateConfigHash"]


def test_every_data_command_takes_json() -> None:
    """The commands that print data (a result, a report, a summary) each accept --json."""
    parser = build_parser()
    tree = subparsers_of(parser)
    printing = {
        ("status",),
        ("approve",),
        ("cancel",),
        ("config", "check"),
        ("config", "show"),
        ("trace", "stats"),
        ("trace", "import"),
        ("handoff", "verify"),
        ("report", "build"),
        ("validate",),
        ("model", "init-tiny"),
        ("model", "import-gguf"),
    }
    for words in printing:
        node = tree[words[0]]
        for word in words[1:]:
            node = subparsers_of(node)[word]
        action = node._option_string_actions["--json"]
        assert action.help and action.help != "==SUPPRESS==", words


def _bash_complete(script: Path, line: str) -> list[str]:
    words = line.split(" ")
    quoted = " ".join(shlex.quote(w) for w in words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({quoted})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_phasef\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion(tmp_path: Path) -> None:
    r = phasef("completion", "bash", cwd=tmp_path)
    assert r.returncode == 0
    script = tmp_path / "phasef.bash"
    script.write_text(r.stdout)
    assert {"config", "status", "trace", "completion"} <= set(_bash_complete(script, "phasef "))
    assert _bash_complete(script, "phasef con") == ["config"]
    assert set(_bash_complete(script, "phasef config ")) >= {"check", "show"}
    assert set(_bash_complete(script, "phasef -q config check --")) >= {"--config", "--json", "--quiet"}
    assert _bash_complete(script, "phasef trace st") == ["stats"]
    assert _bash_complete(script, "phasef completion f") == ["fish"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (.ci/run installs it)")
def test_zsh_completion(tmp_path: Path) -> None:
    r = phasef("completion", "zsh", cwd=tmp_path)
    script = tmp_path / "_phasef"
    script.write_text(r.stdout)
    check = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    loaded = subprocess.run(
        ["zsh", "-f", "-c", f"autoload -U compinit && compinit -u && source {script} && echo ${{_comps[phasef]}}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert loaded.returncode == 0 and loaded.stdout.strip() == "_phasef", loaded.stderr

    def complete(*words: str) -> list[str]:
        """What _phasef offers for ``words`` (the last one being typed), zsh's own helpers stood in by printers."""
        program = (
            "compdef() { : }\n"
            '_describe() { local name=$4; print -rl -- "${(@P)name}" }\n'
            '_files() { print -r -- "<files>" }\n'
            f"source {script}\n"
            f"words=({' '.join(shlex.quote(w) for w in words)}); CURRENT={len(words)}\n"
            "_phasef\n"
        )
        out = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return [line.split(":", 1)[0] for line in out.stdout.splitlines()]

    assert {"config", "status", "trace", "completion"} <= set(complete("phasef", ""))
    assert {"check", "show"} <= set(complete("phasef", "config", ""))
    assert {"--config", "--json", "--quiet"} <= set(complete("phasef", "-q", "config", "check", "--"))
    assert complete("phasef", "completion", "")[:3] == ["bash", "zsh", "fish"]
    assert "<files>" in complete("phasef", "trace", "stats", "")


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed (.ci/run installs it)")
def test_fish_completion(tmp_path: Path) -> None:
    r = phasef("completion", "fish", cwd=tmp_path)
    script = tmp_path / "phasef.fish"
    script.write_text(r.stdout)

    def complete(line: str) -> list[str]:
        out = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return [row.split("\t")[0] for row in out.stdout.splitlines()]

    assert "config" in complete("phasef ") and "status" in complete("phasef ")
    assert set(complete("phasef config ")) >= {"check", "show"}
    assert "--config" in complete("phasef config check --")


def test_a_command_s_own_parser_is_the_whole_parser_s_for_that_command() -> None:
    """``phasef COMMAND`` builds only that command's parser when its module is named after it; the result must be
    what the whole parser has for that command (commands registered by another module's file fall back to it)."""
    whole = subparsers_of(build_parser())
    assert len(whole) > 15
    partial_built = 0
    for name, child in whole.items():
        parser = build_parser(name)
        own = subparsers_of(parser)
        assert own[name].format_help() == child.format_help(), name
        partial_built += len(own) == 1
    assert partial_built >= 15, "most commands should not build the others' parsers"
    for other in (None, "no-such-command", "_common", "../x"):
        assert subparsers_of(build_parser(other)).keys() == whole.keys()
