"""The services a session's steps share (for example an ``mlx_lm.server``): started on first need, restarted when
their process died, stopped as soon as no unfinished step needs them, each start and stop journaled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pipeline.config import PhasefConfig, StepConfig
from pipeline.jobs.context import ServiceInfo
from pipeline.jobs.local import create_time
from pipeline.layout import SessionLayout
from pipeline.recorder import Recorder
from pipeline.registry import SERVICE_KINDS, load_object
from pipeline.services import Service, ServiceError


class ServicePool:
    def __init__(self, cfg: PhasefConfig, layout: SessionLayout, recorder: Recorder) -> None:
        self.cfg = cfg
        self.layout = layout
        self.record = recorder.record
        self._services: dict[str, Service] = {}
        self._service_info: dict[str, ServiceInfo] = {}
        self._service_lock = asyncio.Lock()

    async def acquire(self, sc: StepConfig) -> dict[str, ServiceInfo]:
        out: dict[str, ServiceInfo] = {}
        async with self._service_lock:
            for name in sc.services:
                svc = self._services.get(name)
                if svc is not None and not svc.alive():
                    self.record("service_failed", payload={"name": name, "error": "process died; restarting"})
                    await svc.stop()
                    self._services.pop(name, None)
                    svc = None
                if svc is None:
                    conf = self.cfg.services[name]
                    cls = load_object(SERVICE_KINDS[conf.kind])
                    log_path = self.layout.service_log(name)
                    svc = cls(name, conf.params, self.layout.session_dir, self.layout.project_dir, log_path)
                    assert isinstance(svc, Service)
                    try:
                        info = await svc.start(conf.start_timeout)
                    except ServiceError as exc:
                        self.record("service_failed", payload={"name": name, "error": str(exc)})
                        await svc.stop()
                        raise
                    self._services[name] = svc
                    self._service_info[name] = info
                    self.record(
                        "service_started",
                        payload={
                            "name": name,
                            "url": info.url,
                            "model": info.model,
                            "pid": (pid := svc.pid()),
                            "create_time": create_time(pid) if pid else None,
                        },
                    )
                out[name] = self._service_info[name]
        return out

    async def release(self, still_needed: Callable[[str], bool]) -> None:
        """Stop each running service for which ``still_needed(name)`` is false."""
        async with self._service_lock:
            for name in list(self._services):
                if not still_needed(name):
                    await self._stop_service(name)

    async def _stop_service(self, name: str) -> None:
        svc = self._services.pop(name, None)
        self._service_info.pop(name, None)
        if svc is not None:
            await svc.stop()
            self.record("service_stopped", payload={"name": name})

    async def stop_all(self) -> None:
        for name in list(self._services):
            await self._stop_service(name)
