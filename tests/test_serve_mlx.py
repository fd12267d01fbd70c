"""The ``mlx_serve`` service: a real mlx_lm.server on loopback, started, probed and stopped as a process group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.jobs.context import ServiceInfo
from pipeline.models.tiny import init_tiny
from pipeline.serve import SERVED_MODEL_ID, MlxServe
from pipeline.services import ServiceError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny"
    init_tiny(out, seed=0)
    return out


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_start_answers_then_stop_kills_the_group(tiny: Path, tmp_path: Path) -> None:
    session = tmp_path / "session"
    (session / "models").mkdir(parents=True)
    (session / "models" / "tiny").symlink_to(tiny)
    log = session / "logs" / "tiny.log"
    service = MlxServe("tiny", {"model": "models/tiny"}, session, tmp_path, log)
    info = await service.start(timeout=60)
    try:
        assert isinstance(info, ServiceInfo)
        assert info.url is not None and info.url.startswith("http://127.0.0.1:") and info.url.endswith("/v1")
        assert info.model == SERVED_MODEL_ID
        assert service.alive() and service.pid() is not None
        response = httpx.get(f"{info.url}/models", timeout=5)
        assert response.status_code == 200
        assert str((session / "models" / "tiny").resolve()) in {m["id"] for m in response.json()["data"]}
        chat = httpx.post(
            f"{info.url}/chat/completions",
            json={"model": info.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            timeout=30,
        )
        assert chat.status_code == 200 and chat.json()["usage"]["completion_tokens"] >= 1
    finally:
        pid = service.pid()
        await service.stop()
    assert pid is not None and not service.alive()
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)
    text = log.read_text()
    assert "mlx_lm.server" in text and "--port" in text
    await service.stop()  # safe to call twice


_STARTER = """
import asyncio, sys
from pathlib import Path
from pipeline.serve import MlxServe

async def main() -> None:
    session, model = Path(sys.argv[1]), sys.argv[2]
    service = MlxServe("tiny", {"model": model}, session, session, session / "tiny.log")
    await service.start(timeout=120)
    print(service.pid(), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_server_dies_with_a_killed_supervisor(tiny: Path, tmp_path: Path) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", _STARTER, str(tmp_path), str(tiny)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert starter.stdout is not None
        line = starter.stdout.readline()
        assert line.strip().isdigit(), f"the starter printed {line!r}"
        pid = int(line)
        assert not _gone(pid)
        starter.kill()  # SIGKILL: no cleanup code of the supervisor runs
        starter.wait(10)
        deadline = time.monotonic() + 15
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid), "mlx_lm.server outlived the supervisor that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait(10)


async def test_project_template_and_missing_model(tiny: Path, tmp_path: Path) -> None:
    service = MlxServe("m", {"model": "{project}/nope"}, tmp_path / "s", tmp_path, tmp_path / "log")
    with pytest.raises(ServiceError, match=r"no model at .*nope"):
        await service.start(timeout=5)
    assert service.pid() is None
    with_adapter = MlxServe("m", {"model": str(tiny), "adapter": "adapters/none"}, tmp_path, tmp_path, tmp_path / "l")
    with pytest.raises(ServiceError, match=r"adapter_config\.json missing"):
        await with_adapter.start(timeout=5)


async def test_bad_params_name_the_field(tmp_path: Path) -> None:
    service = MlxServe("m", {"modle": "x"}, tmp_path, tmp_path, tmp_path / "log")
    with pytest.raises(ServiceError) as info:
        await service.start(timeout=5)
    assert "params.model: Field required" in str(info.value) and "params.modle: unknown key" in str(info.value)
    assert service.pid() is None and not service.alive()


async def test_a_server_that_exits_early_is_reported_with_its_log(tiny: Path, tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    service = MlxServe("bad", {"model": str(tiny), "extra_args": ["--no-such-flag"]}, tmp_path, tmp_path, log)
    started = time.monotonic()
    with pytest.raises(ServiceError) as info:
        await service.start(timeout=60)
    assert "exited with status" in str(info.value) and "--no-such-flag" in str(info.value)
    assert time.monotonic() - started < 30
    assert not service.alive()


async def test_start_timeout_stops_what_it_started(tiny: Path, tmp_path: Path) -> None:
    service = MlxServe("slow", {"model": str(tiny)}, tmp_path, tmp_path, tmp_path / "slow.log")
    with pytest.raises(ServiceError, match=r"did not answer within 0\.2s"):
        await service.start(timeout=0.2)
    assert not service.alive() and service.pid() is None
