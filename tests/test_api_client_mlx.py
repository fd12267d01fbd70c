"""The chat client against a real mlx_lm.server serving the tiny model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.api_client import ChatClient, ChatError
from pipeline.bench.prompt import PromptState, build_messages
from pipeline.jobs.context import ServiceInfo
from pipeline.models.tiny import init_tiny
from pipeline.serve import MlxServe


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ServiceInfo, MlxServe]]:
    init_tiny(tmp_path / "tiny", seed=0)
    service = MlxServe("tiny", {"model": "tiny"}, tmp_path, tmp_path, tmp_path / "serve.log")
    info = await service.start(timeout=60)
    try:
        yield info, service
    finally:
        await service.stop()


async def test_completion_from_the_tiny_model(served: tuple[ServiceInfo, MlxServe]) -> None:
    info, service = served
    assert info.url and info.model
    messages = build_messages("Which file defines the function f?", PromptState(0, 0, 0, 0), [])
    async with ChatClient(info.url, info.model, retries=1) as client:
        first = await client.complete(messages, max_tokens=12, seed=1)
        again = await client.complete(messages, max_tokens=12, seed=1)
        assert first.attempts == 1 and first.model == info.model
        assert first.prompt_tokens is not None and first.prompt_tokens > 20
        assert first.completion_tokens is not None and 1 <= first.completion_tokens <= 12
        assert 0 < first.latency_s < 30
        assert again.text == first.text  # greedy decoding is deterministic
        await service.stop()
        with pytest.raises(ChatError) as info_err:
            await client.complete(messages, max_tokens=4)
    assert info_err.value.error_class == "ConnectionError" and info_err.value.attempts == 2
