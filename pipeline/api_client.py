"""The one client for OpenAI-compatible chat completions (a local ``mlx_lm.server`` or a user's hosted API).

Built on httpx rather than an SDK: httpx is already a dependency, and the harness needs full control over what an
SDK hides — its own retry policy (exponential backoff with jitter on 429, 5xx, connection errors and timeouts,
honouring ``Retry-After``), per-request timeouts, and a latency figure that is the duration of the request that
answered, with the number of attempts it took reported beside it.

The API key is read from the environment variable named in the config at the moment of each call and sent as a
Bearer token; it never appears in a log line, an exception message or a result (any text that could echo it is
redacted before it leaves this module).
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from types import TracebackType
from typing import Any, Literal

import httpx
from pydantic import BaseModel

ErrorClass = Literal["ConnectionError", "Timeout", "HTTPError", "BadResponse"]
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
RETRY_AFTER_MAX = 120.0
_BODY_SNIPPET = 200


class ChatResult(BaseModel):
    text: str
    latency_s: float
    """duration of the request that answered (earlier failed attempts and backoff excluded)"""
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int
    model: str | None


class ChatError(Exception):
    """A chat completion failed for good (after the retries it was allowed)."""

    def __init__(self, error_class: ErrorClass, message: str, attempts: int, status: int | None = None) -> None:
        super().__init__(message)
        self.error_class: ErrorClass = error_class
        self.attempts = attempts
        self.status = status

    def __str__(self) -> str:
        return f"{self.error_class}: {self.args[0]} (after {self.attempts} attempt(s))"


class _Retryable(Exception):
    def __init__(self, error_class: ErrorClass, message: str, status: int | None, retry_after: float | None):
        super().__init__(message)
        self.error_class: ErrorClass = error_class
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        timeout: float = 60,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=False)
        self._rng = random.Random()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the call ---------------------------------------------------------------------------------------------
    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChatResult:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if seed is not None:
            payload["seed"] = seed
        if extra:
            payload.update(extra)
        key = self._key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = f"{self.base_url}/chat/completions"
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = await self._http.post(url, json=payload, headers=headers)
            except httpx.TimeoutException as exc:
                failure = _Retryable(
                    "Timeout", f"no answer from {url} within {self.timeout:g}s ({type(exc).__name__})", None, None
                )
            except httpx.TransportError as exc:
                failure = _Retryable("ConnectionError", f"{url}: {type(exc).__name__}: {exc}", None, None)
            else:
                latency = time.perf_counter() - started
                if response.status_code == 200:
                    return self._result(response, latency, attempt, key)
                snippet = self._redact(response.text[:_BODY_SNIPPET], key)
                message = f"{url} answered HTTP {response.status_code}: {snippet}"
                if response.status_code not in RETRY_STATUS:
                    raise ChatError("HTTPError", message, attempt, response.status_code)
                failure = _Retryable(
                    "HTTPError", message, response.status_code, parse_retry_after(response.headers.get("retry-after"))
                )
            if attempt > self.retries:
                raise ChatError(failure.error_class, self._redact(str(failure), key), attempt, failure.status)
            await asyncio.sleep(self._delay(attempt, failure.retry_after))

    # -- helpers ------------------------------------------------------------------------------------------------
    def _key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ChatError(
                "HTTPError",
                f"environment variable {self.api_key_env} (the API key) is unset or empty; no request was sent",
                0,
            )
        return key

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter, or what the server asked for (bounded)."""
        if retry_after is not None:
            return min(retry_after, max(self.backoff_max, RETRY_AFTER_MAX))
        base = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
        return float(base * (0.5 + 0.5 * self._rng.random()))

    @staticmethod
    def _redact(text: str, key: str | None) -> str:
        return text.replace(key, "***") if key else text

    def _result(self, response: httpx.Response, latency: float, attempts: int, key: str | None) -> ChatResult:
        try:
            data = response.json()
            choice = data["choices"][0]
            content = choice["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            snippet = self._redact(response.text[:_BODY_SNIPPET], key)
            raise ChatError(
                "BadResponse", f"not a chat completion ({type(exc).__name__}): {snippet}", attempts
            ) from None
        if content is not None and not isinstance(content, str):
            raise ChatError("BadResponse", f"message content is {type(content).__name__}, not text", attempts)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return ChatResult(
            text=self._redact(content or "", key),
            latency_s=latency,
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            attempts=attempts,
            model=data.get("model") if isinstance(data.get("model"), str) else None,
        )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
