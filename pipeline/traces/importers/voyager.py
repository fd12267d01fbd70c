"""Voyager checkpoints: the ``ckpt/`` folder a Voyager run writes, and single files of its ``events/`` folder.

``events/<task>_<YYYYmmdd>_<HHMMSS>`` (no extension) is written once per code execution: a JSON list of
``[event_type, event]`` pairs from the game bot (``onChat``, ``onError``, ``onSave``, ``observe``, ...); an empty
list is written when the model's reply held no code that could be parsed. ``curriculum/completed_tasks.json`` and
``curriculum/failed_tasks.json`` list the tasks that ended each way.

One execution is one tick (action ``execute_code`` for the task; the code itself is not in the checkpoint). The
observation is the bot's chat and the errors. Consecutive executions of the same task are one episode (Voyager
retries a task up to its retry limit). Failures:

* an ``onError`` event is a failing execution, classed by the JavaScript error name at its start (``TypeError``,
  ``ReferenceError``, ...), ``Timeout`` for the path finder giving up ("Took to long to decide path to goal"), else
  ``ExecutionError``. The bot server sends most errors as ``Your code:<line>\n<code>\n <message>`` or
  ``In your program code: <code>\n<message>\nat line <line>:...``, without the error's name: the message and the
  line are the error, and V8's wording names the class (``x is not defined`` is a ``ReferenceError``, ``Cannot
  read properties of null`` a ``TypeError``);
* a chat line in which a control primitive reports that it could not act ("I cannot make X because I need: ...",
  "No X nearby, please explore first") is ``ActionFailed`` (the code ran on; the critic sees it as feedback);
* an empty event list is a ``SchemaViolation`` (the reply had no parsable code); an event of a type other than
  ``onChat`` / ``onError`` / ``onSave`` / ``observe`` is reported (file, ``/<index>``) and skipped;
* the episode is ``success`` when the task is in ``completed_tasks.json`` (its last attempt), ``failure`` when it is
  in ``failed_tasks.json`` or was attempted again later, and ``aborted`` when neither list names it (the run
  stopped or crashed during the task).
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from pipeline.traces.importers._common import EpisodeBuilder, Origin, Step, one_line
from pipeline.traces.reader import BadLine, file_sha256

FORMAT = "voyager"

_NAME = re.compile(r"^(?P<task>.*)_(?P<date>\d{8})_(?P<time>\d{6})$")
_JS_ERROR = re.compile(r"^\s*(?:Uncaught\s+)?([A-Z]\w*(?:Error|Exception))\b")
_TIMEOUT = re.compile(r"took to long|took too long|timed? ?out", re.I)
# the two shapes of the text Voyager's bot server sends for an error thrown by the model's code
_AT_CODE_LINE = re.compile(r"^Your code:(?P<line>\d+)\n[^\n]*\n\s*(?P<message>[^\n]+)")
_IN_PROGRAM = re.compile(r"^In your program code: [^\n]*\n(?P<message>[^\n]+)\nat line (?P<line>\d+):")
# V8's wording of the errors it throws, where the text no longer carries the error's name
_V8_MESSAGES = (
    (re.compile(r" is not defined$"), "ReferenceError"),
    (
        re.compile(r"^Cannot read propert(?:y|ies) of (?:null|undefined)|is not a function$|is not iterable$"),
        "TypeError",
    ),
)
# what the bot's control primitives say in chat when an action could not be done (the code itself ran on)
_SOFT_FAILURE = re.compile(r"^(?:I cannot |I can't |No \S+ (?:nearby|in inventory)|Cannot |Failed to )")
MAX_EVENT_FILE_BYTES = 64 * 2**20


def sniff(doc: Any) -> bool:
    """A single events file: a list of ``[str, object]`` pairs."""
    return (
        isinstance(doc, list)
        and bool(doc)
        and all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], dict) for e in doc)
        and any(e[0] in ("observe", "onChat", "onError", "onSave") for e in doc)
    )


def is_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` is a Voyager checkpoint (it has ``events/`` and ``curriculum/``)."""
    return (folder / "events").is_dir() and (folder / "curriculum").is_dir()


def _task_and_time(name: str) -> tuple[str, float | None]:
    found = _NAME.match(name)
    if not found:
        return name, None
    try:
        when = datetime.strptime(found.group("date") + found.group("time"), "%Y%m%d%H%M%S").timestamp()
    except ValueError:
        when = None
    return found.group("task"), when


def _same_task(recorded: str, listed: str) -> bool:
    """Voyager writes the task into the file name with ``\\/:"*?<>|`` and spaces replaced by ``_``."""
    return recorded == re.sub(r'[\\/:"*?<>| ]', "_", listed)


def _classify_error(text: str) -> tuple[str, str]:
    """``(error_class, message)`` of an ``onError`` text: the message the code threw and the line of the code."""
    found = _JS_ERROR.match(text)
    if found:
        return found.group(1), one_line(text)
    shaped = _AT_CODE_LINE.match(text) or _IN_PROGRAM.match(text)
    if shaped is None:
        return "ExecutionError", one_line(text)
    message = shaped.group("message").strip()
    named = _JS_ERROR.match(message)
    error_class = named.group(1) if named else "ExecutionError"
    for pattern, v8_class in _V8_MESSAGES:
        if named is None and pattern.search(message):
            error_class = v8_class
            break
    return error_class, f"{message} (line {shaped.group('line')} of the code)"


def execution_step(events: Any, task: str, where: str, file: str, bad: list[BadLine]) -> Step:
    """The tick of one execution from its list of events."""
    step = Step(action={"tool": "execute_code", "args": {"task": task}}, pointer=where)
    if not isinstance(events, list):
        bad.append(BadLine(file=file, line=1, reason=f"{where}: expected a list of [event_type, event] pairs"))
        step.error_class, step.error = "SchemaViolation", "events file is not a list"
        return step
    if not events:
        step.error_class = "SchemaViolation"
        step.error = "no events recorded: the reply held no code that could be parsed"
        step.schema_error = step.error
        return step
    chat: list[str] = []
    errors: list[str] = []
    for index, pair in enumerate(events):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], dict)):
            bad.append(BadLine(file=file, line=1, reason=f"{where}/{index}: expected an [event_type, event] pair"))
            continue
        kind, event = pair
        if kind == "onChat" and isinstance(event.get("onChat"), str):
            chat.append(event["onChat"])
        elif kind == "onError":
            errors.append(str(event.get("onError") or "error"))
        elif kind == "observe":
            status = event.get("status")
            if isinstance(status, dict) and isinstance(status.get("elapsedTime"), int | float):
                step.extra["elapsed_ticks"] = status["elapsedTime"]
        elif kind != "onSave" and kind != "onChat":
            bad.append(BadLine(file=file, line=1, reason=f"{where}/{index}: unknown event type {kind!r}; skipped"))
    step.observation = "\n".join(chat + errors)
    if errors:
        step.error_class, step.error = _classify_error(errors[0])
        if _TIMEOUT.search(errors[0]):
            step.error_class, step.outcome = "Timeout", "timeout"
    else:
        refusal = next((c for c in chat if _SOFT_FAILURE.match(c)), None)
        if refusal is not None:
            step.error_class, step.error = "ActionFailed", one_line(refusal)
    return step


def convert(path: Path, doc: Any, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """A single events file: one episode of one tick (whether the task succeeded is not in the file)."""
    bad: list[BadLine] = []
    task, when = _task_and_time(path.name)
    builder = EpisodeBuilder(origin, path.name, task_id=task)
    builder.start(task=task, ts=when)
    step = execution_step(doc, task, "", origin.file, bad)
    step.ts = when
    builder.tick(step)
    builder.end("aborted", reason="a single execution; the task's outcome is in the checkpoint's curriculum")
    return builder.records, bad


def _task_list(path: Path, bad: list[BadLine]) -> list[str]:
    if not path.is_file():
        return []
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        bad.append(BadLine(file=str(path), line=exc.lineno, reason=f"invalid JSON at column {exc.colno}: {exc.msg}"))
        return []
    if not isinstance(doc, list):
        bad.append(BadLine(file=str(path), line=1, reason="expected a JSON list of task names"))
        return []
    return [t for t in doc if isinstance(t, str)]


def convert_checkpoint(folder: Path) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """A whole checkpoint: episodes of consecutive executions of one task, outcomes from the curriculum lists."""
    bad: list[BadLine] = []
    completed = _task_list(folder / "curriculum" / "completed_tasks.json", bad)
    failed = _task_list(folder / "curriculum" / "failed_tasks.json", bad)
    files: list[tuple[float, str, Path]] = []
    with os.scandir(folder / "events") as entries:
        for entry in entries:
            if entry.is_file() and not entry.name.startswith("."):
                _, when = _task_and_time(entry.name)
                files.append((when if when is not None else entry.stat().st_mtime, entry.name, Path(entry.path)))
    files.sort()
    groups: list[list[tuple[float, str, Path]]] = []
    for item in files:
        task, _ = _task_and_time(item[1])
        if groups and _task_and_time(groups[-1][-1][1])[0] == task:
            groups[-1].append(item)
        else:
            groups.append([item])
    last_group_of: dict[str, int] = {}
    for number, group in enumerate(groups):
        last_group_of[_task_and_time(group[0][1])[0]] = number
    records: list[dict[str, Any]] = []
    for number, group in enumerate(groups):
        task, _ = _task_and_time(group[0][1])
        listed = next((t for t in completed + failed if _same_task(task, t)), task.replace("_", " "))
        first_path = group[0][2]
        origin = Origin(FORMAT, str(first_path), file_sha256(first_path), first_path.stat().st_mtime)
        builder = EpisodeBuilder(origin, f"{number:04d} {listed}", task_id=listed)
        builder.start(task=listed, ts=group[0][0], checkpoint=str(folder))
        for when, _name, path in group:
            step_origin = Origin(FORMAT, str(path), file_sha256(path), path.stat().st_mtime)
            builder.origin = step_origin
            if path.stat().st_size > MAX_EVENT_FILE_BYTES:
                bad.append(BadLine(file=str(path), line=1, reason="events file too large; skipped"))
                continue
            try:
                doc = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                bad.append(
                    BadLine(file=str(path), line=exc.lineno, reason=f"invalid JSON at column {exc.colno}: {exc.msg}")
                )
                continue
            step = execution_step(doc, listed, "", str(path), bad)
            step.ts = when
            builder.tick(step)
        builder.origin = origin
        is_last = last_group_of.get(task) == number
        if is_last and any(_same_task(task, t) for t in completed):
            builder.end("success", solved=True, reason="in completed_tasks.json")
        elif any(_same_task(task, t) for t in failed) or not is_last:
            builder.end("failure", reason="in failed_tasks.json" if is_last else "attempted again later")
        else:
            builder.end("aborted", reason="in neither completed_tasks.json nor failed_tasks.json")
        records.extend(builder.records)
    for record in records:  # one run: the checkpoint, whichever events file a record came from
        record["run_id"] = f"{FORMAT}:{folder.name}"
    from pipeline.traces.importers.agents import mark_traps

    mark_traps(records)
    return records, bad
