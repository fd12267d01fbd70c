"""Length of a chat row in the target model's tokens, counted the way the trainer will count it.

``mlx_lm.lora`` renders a chat row with the tokenizer's chat template and tokenizes the result without adding
special tokens; rows longer than ``max_seq_length`` are silently truncated, which cuts off exactly the action the
row exists to teach. So the guard renders the same template (from ``tokenizer_config.json`` or
``chat_template.jinja``) with a sandboxed Jinja environment set up like the one ``transformers`` uses, and counts
with ``tokenizers`` alone: no mlx, no model weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"


class TokenizerUnavailable(Exception):
    """The target tokenizer (or its chat template) could not be loaded; the message says which file and why."""


def _raise_exception(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _special_token(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if isinstance(value, dict):
        content = value.get("content")
        return content if isinstance(content, str) else None
    return value if isinstance(value, str) else None


def _chat_template(model_dir: Path, config: dict[str, Any]) -> str | None:
    jinja_file = model_dir / CHAT_TEMPLATE_FILE
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


class ChatTokenCounter:
    """Counts the tokens of chat messages as rendered by the model's own chat template."""

    def __init__(self, model_path: Path) -> None:
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        model_dir = model_path.parent if model_path.is_file() else model_path
        tokenizer_file = model_path if model_path.is_file() else model_path / TOKENIZER_FILE
        if not tokenizer_file.is_file():
            raise TokenizerUnavailable(f"{tokenizer_file}: no such file (the target model's tokenizer.json)")
        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise TokenizerUnavailable(f"{tokenizer_file}: cannot load: {exc}") from exc
        config: dict[str, Any] = {}
        config_file = model_dir / TOKENIZER_CONFIG_FILE
        if config_file.is_file():
            try:
                loaded = json.loads(config_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise TokenizerUnavailable(f"{config_file}: cannot read: {exc}") from exc
            if isinstance(loaded, dict):
                config = loaded
        template = _chat_template(model_dir, config)
        if template is None:
            raise TokenizerUnavailable(
                f"{model_dir}: no chat_template in {TOKENIZER_CONFIG_FILE} or {CHAT_TEMPLATE_FILE}; "
                "mlx_lm's chat format needs one"
            )
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self._template = env.from_string(template)
        self._specials = {
            key: token
            for key in ("bos_token", "eos_token", "pad_token", "unk_token")
            if (token := _special_token(config, key)) is not None
        }
        self.source = str(tokenizer_file)

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        return self._template.render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, tools=None, **self._specials
        )

    def count(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> int:
        """Tokens of the rendered chat, without extra special tokens (as ``apply_chat_template`` counts)."""
        text = self.render(messages, add_generation_prompt=add_generation_prompt)
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
