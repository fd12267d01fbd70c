"""The training job's parts that need no model: params, recipe files, checkpoints, the batch feeder, progress."""

from __future__ import annotations

import io
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.jobs.context import EVENT_PREFIX, StepContext, StepFailed
from pipeline.train.batches import BatchFeeder
from pipeline.train.chat_data import read_split
from pipeline.train.checkpoints import (
    checkpoint_name,
    list_checkpoints,
    newest_checkpoint,
    optimizer_name,
    partial_path,
    remove_partials,
    write_atomically,
)
from pipeline.train.params import HandoffParams, TrainParams
from pipeline.train.progress import PlainTextWriter, ProgressReporter, plain_stdout
from pipeline.train.runner import with_lora_config
from pipeline.train.stop import StepBoundary, StopControl
from tests.step_helpers import step_context

ROOT = Path(__file__).resolve().parents[1]


def ctx(tmp_path: Path, params: dict[str, Any]) -> StepContext:
    return step_context(tmp_path, "D", "train", params, kind="mlx_train", artifacts=tmp_path / "artifacts")


# -- params and recipe files ---------------------------------------------------------------------------------------
def test_params_are_strict_and_name_the_field() -> None:
    with pytest.raises(ValueError, match="learning_rte"):
        TrainParams.model_validate({"model": "m", "data": "d", "learning_rte": 1})
    with pytest.raises(ValueError, match="save_every"):
        TrainParams.model_validate({"model": "m", "data": "d", "save_every": 10, "grad_accumulation_steps": 4})
    with pytest.raises(ValueError, match="num_layers"):
        TrainParams.model_validate({"model": "m", "data": "d", "num_layers": 0})
    with pytest.raises(ValueError, match=r"production_overrides.*batch_size"):
        HandoffParams.model_validate({"data": "d", "base_model": "m", "production_overrides": {"batch_size": 0}})
    with pytest.raises(ValueError, match=r"field 'train'.*rnak"):
        HandoffParams.model_validate({"data": "d", "base_model": "m", "train": {"rnak": 4}})


def test_a_stage_c_lora_config_fills_what_params_leave_unset(tmp_path: Path) -> None:
    config = {"train": True, "data": "/elsewhere", "iters": 70, "learning_rate": 3e-4, "batch_size": 8,
              "lora_parameters": {"rank": 4, "scale": 10.0, "dropout": 0.0}}  # fmt: skip
    (tmp_path / "lora_config.yaml").write_text(json.dumps(config))
    params = TrainParams.model_validate({"model": "m", "data": "d", "iters": 5, "lora_config": "lora_config.yaml"})
    merged = with_lora_config(params, ctx(tmp_path, {}))
    assert merged.iters == 5 and merged.learning_rate == 3e-4 and merged.batch_size == 8
    assert merged.lora_parameters.rank == 4 and merged.data == "d"

    (tmp_path / "bad.yaml").write_text("iters: [unclosed")
    with pytest.raises(StepFailed, match=r"params.lora_config: .*bad.yaml: neither JSON nor YAML"):
        with_lora_config(params.model_copy(update={"lora_config": "bad.yaml"}), ctx(tmp_path, {}))
    (tmp_path / "wrong.yaml").write_text("iters: 0\n")
    with pytest.raises(StepFailed, match=r"wrong.yaml: field 'iters'"):
        with_lora_config(
            TrainParams.model_validate({"model": "m", "data": "d", "lora_config": "wrong.yaml"}), ctx(tmp_path, {})
        )


def test_bad_rows_are_named_and_the_rest_is_kept(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "robot", "content": "q"}]},
        {"text": "a text row among chat rows"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}], "provenance": {}},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n[1, 2]\n")
    split = read_split(path, "sft")
    assert split.format == "chat" and len(split.rows) == 2
    reasons = {b.line: b.reason for b in split.bad}
    assert "messages.0.role" in reasons[2] and "text row in a file of chat rows" in reasons[3]
    assert "expected a JSON object" in reasons[5]
    dpo = read_split(path, "dpo")
    assert dpo.rows == [] and all("'prompt'/'chosen'/'rejected'" in b.reason for b in dpo.bad[:4])


# -- checkpoints ------------------------------------------------------------------------------------------------
def test_newest_checkpoint_ignores_partials_and_other_files(tmp_path: Path) -> None:
    for step in (100, 20, 300):
        (tmp_path / checkpoint_name(step)).write_bytes(b"w")
    (tmp_path / optimizer_name(300)).write_bytes(b"o")
    (tmp_path / "adapters.safetensors").write_bytes(b"w")
    (tmp_path / "0000400_adapters.safetensors.tmp").write_bytes(b"torn")
    partial = partial_path(tmp_path / checkpoint_name(500))
    partial.write_bytes(b"torn")
    assert [c.step for c in list_checkpoints(tmp_path)] == [20, 100, 300]
    newest = newest_checkpoint(tmp_path)
    assert newest is not None and newest.step == 300 and newest.optimizer == tmp_path / optimizer_name(300)
    assert list_checkpoints(tmp_path)[0].optimizer is None
    assert remove_partials(tmp_path) == [partial] and not partial.exists()
    assert newest_checkpoint(tmp_path / "missing") is None


def test_a_failed_write_leaves_no_file_under_the_real_name(tmp_path: Path) -> None:
    def crash(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomically(tmp_path / checkpoint_name(7), crash)
    assert list_checkpoints(tmp_path) == []
    write_atomically(tmp_path / checkpoint_name(7), lambda tmp: tmp.write_bytes(b"ok") and None)
    assert (tmp_path / checkpoint_name(7)).read_bytes() == b"ok"


# -- the batch feeder ---------------------------------------------------------------------------------------------
def fake_iterate_batches(dataset: Any, batch_size: int, max_seq_length: int, loop: bool = False, **_: Any) -> Any:
    """Shaped like mlx_lm's: a fresh numpy permutation per pass over the batches."""
    n = len(dataset) // batch_size
    while True:
        yield from (int(i) for i in np.random.permutation(n))
        if not loop:
            break


def boundary(
    start_step: int,
    save: Callable[[int], None],
    *,
    stop: StopControl | None = None,
    save_every: int = 1,
    update_every: int = 1,
) -> StepBoundary:
    return StepBoundary(start_step, save_every, update_every, save, stop or StopControl())


def drive(feeder: BatchFeeder, steps: int, validate_every: int = 0) -> list[int]:
    """Play the trainer: zip(range, stream), validating (another loop=False stream) every few steps."""
    seen = []
    stream = feeder(list(range(40)), 4, 64, loop=True)
    for it, batch in zip(range(1, steps + 1), stream, strict=False):
        if validate_every and it % validate_every == 1:
            list(zip(range(2), feeder(list(range(12)), 4, 64), strict=False))
        seen.append(batch)
    return seen


def test_a_resumed_stream_replays_the_uninterrupted_order() -> None:
    np.random.seed(3)
    whole = drive(BatchFeeder(fake_iterate_batches, skip=0, steps=boundary(0, lambda s: None)), 25, validate_every=4)
    np.random.seed(3)
    tail = drive(BatchFeeder(fake_iterate_batches, skip=12, steps=boundary(12, lambda s: None)), 13, validate_every=3)
    assert tail == whole[12:]


def test_checkpoints_and_stops_happen_between_steps() -> None:
    done: list[int] = []
    clock = [0.0]
    stop = StopControl(budget_s=10, clock=lambda: clock[0])

    def on_done(step: int) -> None:
        done.append(step)
        if step == 106:
            clock[0] = 11.0  # the budget runs out here, but a stop waits for the next update boundary

    feeder = BatchFeeder(fake_iterate_batches, skip=0, steps=boundary(100, on_done, stop=stop, update_every=4))
    seen = drive(feeder, 50)
    assert done == [101, 102, 103, 104, 105, 106, 107, 108]
    assert len(seen) == 8 and feeder.steps.steps_done == 8 and feeder.steps.stopped == "timeout"  # 4 | 108

    signalled = StopControl()
    signalled.request(signal.SIGTERM)
    assert signalled.reason() == "signal" and signalled.signal_name == "SIGTERM"
    feeder = BatchFeeder(fake_iterate_batches, skip=0, steps=boundary(0, done.append, stop=signalled))
    assert drive(feeder, 5) == [] and feeder.steps.stopped == "signal"


def test_checkpoints_fall_every_save_every_steps_counted_from_the_start_of_the_run() -> None:
    saved: list[int] = []
    feeder = BatchFeeder(fake_iterate_batches, skip=7, steps=boundary(7, saved.append, save_every=5))
    assert len(drive(feeder, 14)) == 14
    assert saved == [10, 15, 20]  # step 21 is seen finished only when the trainer asks for one more batch
    assert feeder.steps.steps_done == 13 and feeder.steps.stopped is None and feeder.steps.done(40) == 40


def test_stop_control_catches_sigterm_only_while_installed() -> None:
    stop = StopControl()
    before = signal.getsignal(signal.SIGTERM)
    with stop.installed():
        signal.raise_signal(signal.SIGTERM)
        assert stop.reason() == "signal"
    assert signal.getsignal(signal.SIGTERM) is before


# -- progress -----------------------------------------------------------------------------------------------------
def test_progress_events_number_steps_from_the_start_of_the_run() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    now = [0.0]
    reporter = ProgressReporter(lambda e, **p: events.append((e, p)), total_steps=200, step_offset=100,
                                clock=lambda: now[0])  # fmt: skip
    reporter.on_val_loss_report({"iteration": 0, "val_loss": 2.5, "val_time": 0.1})
    now[0] = 4.0
    reporter.on_train_loss_report({"iteration": 10, "train_loss": 2.0, "learning_rate": 1e-4,
                                   "iterations_per_second": 5.0, "tokens_per_second": 900.0,
                                   "trained_tokens": 1800, "peak_memory": 0.5})  # fmt: skip
    reporter.on_train_loss_report({"iteration": 20, "train_loss": 1.5, "tokens_per_second": 1000.0})
    reporter.on_val_loss_report({"iteration": 29, "val_loss": 1.2})
    reporter.flush(130)
    steps = [(p["step"], p["train_loss"], p["val_loss"], p["val_step"]) for _, p in events]
    assert steps == [(110, 2.0, 2.5, 100), (120, 1.5, None, None), (130, None, 1.2, 129)]
    first = events[0][1]
    assert first["eta_s"] == 18.0 and first["elapsed_s"] == 4.0 and first["peak_memory_gb"] == 0.5
    assert {e for e, _ in events} == {"train"}
    assert reporter.steady_tokens_per_s() == 1000.0 and reporter.last_val_loss() == 1.2


def test_plain_text_writer_drops_terminal_codes() -> None:
    class Sink:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> int:
            self.text += s
            return len(s)

        def flush(self) -> None:
            pass

    sink = Sink()
    writer = PlainTextWriter(sink)  # type: ignore[arg-type]
    writer.write("\x1b[1;32m  10    1.234 ▼\x1b[0m\rnext")
    assert sink.text == "  10    1.234 ▼\nnext" and not writer.isatty()


def test_an_event_after_an_open_progress_bar_line_starts_a_new_line() -> None:
    sink = io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = sink
    try:
        with plain_stdout():
            sys.stderr.write("\rTraining:  33%|###")
            print(EVENT_PREFIX + '{"event":"train"}')
            sys.stderr.write("\rTraining:  67%|######")
            sys.stderr.write("\n")
    finally:
        sys.stdout, sys.stderr = saved
    lines = sink.getvalue().splitlines()
    assert lines == ["Training:  33%|###", EVENT_PREFIX + '{"event":"train"}', "Training:  67%|######"]
