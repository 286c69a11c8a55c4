"""Render and tokenize one sample: the text the model reads and which tokens are the sample's own.

A sample is a sequence of turns. Rendering uses the tokenizer's chat template (or a
plain ``prompt\n\nresponse`` layout); own tokens are those overlapping the sample's
own content spans (never template, system or padding tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mads_core.config import FingerprintConfig


class FingerprintError(RuntimeError):
    """A sample or model cannot be fingerprinted (message says which and why)."""


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class EncodedSample:
    """Token ids of one rendered sample and which of them are its own content."""

    input_ids: tuple[int, ...]
    own_mask: tuple[bool, ...]
    truncated: bool


def _messages(turns: Sequence[tuple[str, str]], config: FingerprintConfig) -> list[dict[str, str]]:
    messages = [{"role": role, "content": content} for role, content in turns]
    has_system = any(role == "system" for role, _ in turns)
    if config.system_prompt is not None and not has_system:
        messages.insert(0, {"role": "system", "content": config.system_prompt})
    return messages


def render_sample(tokenizer: Any, turns: Sequence[tuple[str, str]], config: FingerprintConfig) -> tuple[str, list]:
    """Text the model reads and the character spans of the sample's own content.

    System turns are context, not content: their tokens are never pooled.
    """
    if config.template == "plain":
        parts = [content for role, content in turns if role != "system" and content]
        text, spans, pos = "", [], 0
        for i, part in enumerate(parts):
            if i:
                text += "\n\n"
                pos += 2
            spans.append((pos, pos + len(part)))
            text += part
            pos += len(part)
        return text, spans
    if not getattr(tokenizer, "chat_template", None):
        raise FingerprintError("the model's tokenizer has no chat template; use template='plain'")
    messages = _messages(turns, config)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, cursor = [], 0
    for message in messages:
        content = message["content"]
        if not content:
            continue
        start = text.find(content, cursor)
        if start < 0:
            stripped = content.strip()
            start = text.find(stripped, cursor) if stripped else -1
            content = stripped
        if start < 0:
            raise FingerprintError(
                f"the chat template changed a {message['role']} turn's text; cannot locate it (use template='plain')"
            )
        if message["role"] != "system":
            spans.append((start, start + len(content)))
        cursor = start + len(content)
    return text, spans


def encode_sample(tokenizer: Any, turns: Sequence[tuple[str, str]], config: FingerprintConfig, max_tokens: int):
    """Tokenize one sample; own tokens are those overlapping its content spans."""
    text, spans = render_sample(tokenizer, turns, config)
    add_special = config.template == "plain"
    enc = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    own = []
    for start, end in offsets:
        hit = end > start and any(start < b and end > a for a, b in spans)
        own.append(hit or config.count_template_tokens)
    truncated = len(ids) > max_tokens
    return EncodedSample(tuple(ids[:max_tokens]), tuple(own[:max_tokens]), truncated)
