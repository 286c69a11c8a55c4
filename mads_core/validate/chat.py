"""Tokenize a conversation for fine-tuning and scoring, with a mask of the assistant's tokens.

One rule shared by training (loss on assistant tokens only, as TRL's ``assistant_only_loss``)
and evaluation (gold-answer loss): the conversation is rendered with the tokenizer's chat
template (``apply_chat_template``), each turn's text is located in the rendered string turn
by turn, and a token belongs to the assistant when its characters overlap an assistant
turn's text or the end-of-turn marker right after it (so the model learns to stop).
Why not TRL's own mask: it needs ``{% generation %}`` markers in the chat template, which
most instruct models (the bundled SmolLM2 included) do not ship.

Roles beyond system/user/assistant (from ``mads_core.data.formats``) are rendered as the
nearest chat role: ``tool_call`` as assistant (it is trained), ``tools`` as system, ``tool`` as user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROLE_FOR_TEMPLATE = {"tool_call": "assistant", "tools": "system", "tool": "user"}


@dataclass(frozen=True)
class EncodedChat:
    """Token ids (T,) and a 0/1 mask (T,) of the tokens that carry loss; ``truncated`` when cut."""

    input_ids: list[int]
    assistant_masks: list[int]
    truncated: bool


def _messages(turns: Sequence[Sequence[str]]) -> list[dict[str, str]]:
    return [{"role": ROLE_FOR_TEMPLATE.get(t[0], t[0]), "content": t[1]} for t in turns]


def _spans(text: str, messages: list[dict[str, str]], end_marker: str) -> list[tuple[int, int]]:
    spans, cursor = [], 0
    for message in messages:
        content = message["content"]
        if not content:
            continue
        start = text.find(content, cursor)
        if start < 0:
            content = content.strip()
            start = text.find(content, cursor) if content else -1
        if start < 0:
            raise ValueError(f"the chat template changed a {message['role']} turn's text; cannot locate it")
        end = start + len(content)
        if message["role"] == "assistant":
            stop = end
            if end_marker and text.startswith(end_marker, end):
                stop = end + len(end_marker)
            spans.append((start, stop))
        cursor = end
    return spans


def encode_chat(tokenizer: Any, turns: Sequence[Sequence[str]], max_length: int) -> EncodedChat:
    """Rendered + tokenized conversation, cut to ``max_length`` tokens from the end of the prompt side.

    When too long, tokens are dropped from the start (after the first ``max_length // 4``,
    which keep the system/instruction opening) so the answer keeps its tokens.
    """
    messages = _messages(turns)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        add_special = False
    else:
        text = "\n\n".join(m["content"] for m in messages) + (tokenizer.eos_token or "")
        add_special = True
    spans = _spans(text, messages, tokenizer.eos_token or "")
    enc = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    mask = [int(e > s and any(s < b and e > a for a, b in spans)) for s, e in offsets]
    truncated = len(ids) > max_length
    if truncated:
        head = max_length // 4
        tail = max_length - head
        ids, mask = ids[:head] + ids[-tail:], mask[:head] + mask[-tail:]
    return EncodedChat(ids, mask, truncated)


def encode_prompt(tokenizer: Any, prompt: Sequence[Sequence[str]], max_length: int) -> list[int]:
    """Token ids of a prompt ending with the assistant's generation header (for greedy generation)."""
    messages = _messages(prompt)
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
    else:
        ids = tokenizer("\n\n".join(m["content"] for m in messages) + "\n\n")["input_ids"]
    ids = list(ids)
    if len(ids) > max_length:
        head = max_length // 4
        ids = ids[:head] + ids[-(max_length - head):]
    return ids
