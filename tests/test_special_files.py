"""Outside input that is not a regular file (a FIFO with no writer, /dev/zero, a socket) is refused at once with a
message naming the path and exit 2, by the real CLI; nothing hangs or reads a device forever."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.fsio import NotARegularFile, open_regular, read_bytes_bounded
from pipeline.traces.importers import detect_format, import_trace
from pipeline.traces.reader import iter_records
from tests.spine_helpers import phasef

TIMEOUT = 30  # each command must answer long before this; a hang fails the test instead of blocking the run


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "trace.jsonl"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        yield path


def _phasef(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return phasef(*args, cwd=cwd, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(
    "argv",
    [
        ("trace", "stats", "{path}"),
        ("trace", "stats", "--json", "{path}"),
        ("trace", "stats", "--from", "swe-agent", "{path}"),
        ("trace", "import", "{path}", "-o", "out.jsonl"),
        ("trace", "import", "--from", "inspect-ai", "{path}", "-o", "out.jsonl"),
        ("trace", "view", "{path}"),
        ("config", "check", "{path}"),
    ],
)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "socket"])
def test_cli_refuses_special_files_with_exit_2(
    argv: tuple[str, ...], kind: str, fifo: Path, unix_socket: Path, tmp_path: Path
) -> None:
    path, what = {
        "fifo": (fifo, "is a FIFO"),
        "dev-zero": (Path("/dev/zero"), "is a character device"),
        "socket": (unix_socket, "is a socket"),
    }[kind]
    r = _phasef(*(a.format(path=path) for a in argv), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"{path}" in r.stderr and what in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_import_does_not_replace_a_device_given_as_output(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"kind": "episode_start", "episode": "e", "ts": 1.0}\n')
    fifo_out = tmp_path / "out.fifo"
    os.mkfifo(fifo_out)
    r = _phasef("trace", "import", str(src), "-o", str(fifo_out), cwd=tmp_path)
    assert r.returncode == 1 and f"cannot write {fifo_out}" in r.stderr and "is a FIFO" in r.stderr, r.stderr
    assert Path(fifo_out).is_fifo()


def test_library_readers_refuse_without_blocking(fifo: Path) -> None:
    for call in (
        lambda: detect_format(fifo),
        lambda: import_trace(fifo, "phasef"),
        lambda: list(iter_records(fifo)),
        lambda: open_regular(fifo),
        lambda: read_bytes_bounded(Path("/dev/zero"), 1 << 20),
    ):
        with pytest.raises(NotARegularFile):
            call()
    with pytest.raises(ConfigError, match="is a FIFO, not a regular file"):
        load_config(fifo)


def test_a_regular_file_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n')
    with open_regular(path) as fh:
        assert fh.read() == b'{"a": 1}\n'
    assert list(iter_records(path)) == [(1, {"a": 1})]
