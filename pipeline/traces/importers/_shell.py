"""Reading a failing shell command's output, shared by the agent-session importers (Claude Code, Codex)."""

from __future__ import annotations

import re

from pipeline.traces.importers._common import classify_output, one_line

_TEST_SUMMARY = re.compile(r"^(?:=+ )?(?:\d+ passed, )?\d+ failed\b.*$|^FAILED \S+.*$|^FAILED \(.*\)$", re.MULTILINE)


def _last_line(text: str) -> str:
    for line in reversed(text.split("\n")):
        if line.strip():
            return one_line(line)
    return ""


def command_failure(text: str, exit_code: int | None) -> tuple[str, str] | None:
    """``(error_class, message)`` for the output of a shell command: a test run that reports failures is
    ``CheckFailed``; anything else as ``classify_output`` reads it, with the output's last line as the message when
    its first line says nothing (a row of test dots, say)."""
    if exit_code == 0:
        return None
    found = _TEST_SUMMARY.search(text)
    if found and "Traceback (most recent call last)" not in text[: found.start()].split("= FAILURES =")[0]:
        return "CheckFailed", one_line(found.group(0).strip("= "))
    failure = classify_output(text, exit_code)
    if failure is None:
        return None
    error_class, message = failure
    if len(message) < 8 or message.startswith("exit code"):
        message = _last_line(text) or message
    return error_class, message
