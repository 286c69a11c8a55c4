"""Render and tokenize one sample: the tokens the model reads and which of them are the sample's own.

A sample is a tuple of turns ``(role, text, own)`` (``mads_core.data.formats.Turn``;
(role, text) pairs get ``own`` from the role). Steps:

1. **Render** (``render_pieces``). ``template="chat"``: the tokenizer's chat template,
   turn by turn — message ``i``'s markup is what rendering ``messages[:i+1]`` adds to
   ``messages[:i]``, and where its content starts inside that markup comes from rendering
   the same message with a sentinel content. A turn is never searched for in the whole
   text, so a short turn (``a``, ``user``) is never found inside the template's markup.
   ``template="plain"``: the non-system turns joined by blank lines.
   Tools: where the template takes ``tools`` (its source mentions ``tools`` and
   ``tool_calls``), the ``tools`` turn goes to ``apply_chat_template(tools=...)`` and a
   ``tool_call`` turn becomes an assistant message with ``tool_calls``; otherwise the
   declarations are a system message ``"Available tools: <JSON>"`` and a call is an
   assistant message whose content is the call's JSON ``{"name", "arguments"}``.
2. **Tokenize piece by piece**: template markup with special tokens recognised, each turn's
   text with ``split_special_tokens=True``, so a literal ``<|im_end|>`` in the data stays
   text. Own tokens = the tokens of own turns' text (never markup, system, tool results).
3. **Fit the token window** (``config.max_tokens``; ``config.truncation``):
   ``"context_first"`` (default) keeps all markup and cuts text in this order until the
   sample fits: (a) context turns (system, tool declarations, tool results), keeping each
   one's head; (b) the prompt and history (own turns before the response), longest first
   (water-filling: every turn keeps at most ``c`` tokens, the largest ``c`` that fits),
   keeping each cut turn's head (3/4) and tail (1/4), so its middle goes; (c) the
   response (the last assistant turn), keeping its head, but never below its share
   ``config.response_share`` of the window's text budget. ``"tail"``: the old rule, cut the
   rendered sequence at ``max_tokens``.

When the markup alone fills the window (a long multi-turn conversation), whole history
turns are dropped first, oldest first, cutting just before a user turn (the leading
system/tools turns, the last user turn and the response stay), the fewest that leave the
markup at most half the window; the rest then follows the order above.
A sample whose own tokens all fall outside the window (only when even that markup fills
the window) has ``n_own == 0``: it is reported by :func:`window_report` and must not be
fingerprinted as empty.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mads_core.config import FingerprintConfig
from mads_core.data.formats import Turn, Turns, as_turns

SENTINEL = "\u2063MADS-SENTINEL\u2063"
TOOLS_PREFIX = "Available tools: "
CONTEXT_ROLES = ("system", "tools", "tool")
RESPONSE_ROLES = ("assistant", "tool_call")
HEAD_SHARE = 0.75  # a cut prompt/history turn keeps this share of its tokens from its head, the rest from its tail


class FingerprintError(RuntimeError):
    """A sample or model cannot be fingerprinted (message says which and why)."""


@dataclass(frozen=True)
class EncodedSample:
    """Token ids of one rendered sample and which of them are its own content.

    truncated: some text was cut to fit the window. response_cut: the response itself was
    cut. cut_tokens: how many text tokens were cut (0 when ``truncated`` is False).
    """

    input_ids: tuple[int, ...]
    own_mask: tuple[bool, ...]
    truncated: bool
    response_cut: bool = False
    cut_tokens: int = 0

    @property
    def n_own(self) -> int:
        return sum(self.own_mask)


@dataclass(frozen=True)
class Piece:
    """A run of rendered text: template markup (``turn is None``) or the text of turn ``turn``."""

    text: str
    turn: int | None
    own: bool


# ---------------------------------------------------------------- rendering


def supports_tools(tokenizer: Any) -> bool:
    """Whether the chat template renders ``tools=`` and ``tool_calls`` itself."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(str(v) for v in template.values())
    return "tools" in template and "tool_calls" in template


def _tool_call_message(text: str) -> dict[str, Any]:
    try:
        call = json.loads(text)
    except json.JSONDecodeError:
        call = None
    if not (isinstance(call, dict) and "name" in call):
        return {"role": "assistant", "content": text}
    fn = {"name": call["name"], "arguments": call.get("arguments") or {}}
    return {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": fn}]}


def _messages(turns: Sequence[Turn], config: FingerprintConfig, tools_native: bool):
    """(messages, turn index of each message or None, tools list for the template or None)."""
    messages: list[dict[str, Any]] = []
    owners: list[int | None] = []
    tools = None
    for j, t in enumerate(turns):
        if t.role == "tools":
            if tools_native:
                tools = json.loads(t.text)
                continue
            messages.append({"role": "system", "content": TOOLS_PREFIX + t.text})
        elif t.role == "tool_call":
            messages.append(_tool_call_message(t.text) if tools_native else {"role": "assistant", "content": t.text})
        else:
            messages.append({"role": t.role, "content": t.text})
        owners.append(j)
    if config.system_prompt is not None and not any(t.role == "system" for t in turns):
        messages.insert(0, {"role": "system", "content": config.system_prompt})
        owners.insert(0, None)
    return messages, owners, tools


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: Any) -> str:
    if not messages:
        return ""
    kwargs = {"tools": tools} if tools is not None else {}
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except Exception as err:  # noqa: BLE001 - jinja raises anything; say which turn and what to do
        roles = [m["role"] for m in messages]
        raise FingerprintError(f"the chat template cannot render turns {roles}: {err} (use template='plain')") from None


def render_pieces(tokenizer: Any, turns: Sequence[Any], config: FingerprintConfig) -> list[Piece]:
    """The rendered sample as pieces of markup and turn text, in order (see module docstring)."""
    turns = as_turns(turns)
    if config.template == "plain":
        pieces: list[Piece] = []
        for j, t in enumerate(turns):
            if t.role in ("system", "tools") or not t.text:
                continue
            if pieces:
                pieces.append(Piece("\n\n", None, False))
            pieces.append(Piece(t.text, j, t.own))
        return pieces
    if not getattr(tokenizer, "chat_template", None):
        raise FingerprintError("the model's tokenizer has no chat template; use --template plain")
    messages, owners, tools = _messages(turns, config, supports_tools(tokenizer))
    pieces = []
    before = ""
    for i, message in enumerate(messages):
        upto = _render(tokenizer, messages[: i + 1], tools)
        if not upto.startswith(before):
            raise FingerprintError(
                "the chat template does not render the conversation turn by turn (adding a turn changes "
                "the text before it), so own tokens cannot be located exactly; use template='plain'")
        segment = upto[len(before):]
        plain = {"role": message["role"], "content": SENTINEL}  # same role, text only: header and trailer
        probe = _render(tokenizer, [*messages[:i], plain], tools)[len(before):]
        at = probe.find(SENTINEL)
        content = message.get("content") or ""
        owner = owners[i]
        tail = len(probe) - at - len(SENTINEL)
        if at < 0 or not segment.startswith(probe[:at]) or not segment.endswith(probe[len(probe) - tail:]):
            raise FingerprintError(f"cannot locate the {message['role']} turn's text in the chat template's "
                                   "output (use template='plain')")
        text = segment[at: len(segment) - tail] if tail else segment[at:]
        if "tool_calls" not in message and text != content:
            stripped = content.strip()
            lead = text.find(stripped) if stripped else -1
            if lead < 0 or text[lead:lead + len(stripped)] != stripped:
                raise FingerprintError(f"the chat template changed a {message['role']} turn's text; cannot "
                                       "locate it (use template='plain')")
        pieces.append(Piece(segment[:at], None, False))
        if text:
            pieces.append(Piece(text, owner, owner is not None and turns[owner].own))
        pieces.append(Piece(segment[len(segment) - tail:] if tail else "", None, False))
        before = upto
    return [p for p in pieces if p.text]


def render_sample(tokenizer: Any, turns: Sequence[Any], config: FingerprintConfig) -> tuple[str, list]:
    """Text the model reads and the character spans ``(start, end)`` of the sample's own text."""
    text, spans = "", []
    for piece in render_pieces(tokenizer, turns, config):
        if piece.own:
            spans.append((len(text), len(text) + len(piece.text)))
        text += piece.text
    return text, spans


# ---------------------------------------------------------------- tokenizing + window


def _ids(tokenizer: Any, text: str, *, split: bool) -> list[int]:
    kwargs = {"split_special_tokens": True} if split else {}
    return list(tokenizer(text, add_special_tokens=False, **kwargs)["input_ids"])


def _bos(tokenizer: Any, config: FingerprintConfig) -> list[int]:
    """The BOS token a plain rendering starts with, when the tokenizer adds one."""
    if config.template != "plain" or tokenizer.bos_token_id is None:
        return []
    probe = tokenizer("x", add_special_tokens=True)["input_ids"]
    return [tokenizer.bos_token_id] if probe and probe[0] == tokenizer.bos_token_id else []


def _water_fill(lengths: Sequence[int], budget: int) -> list[int]:
    """Kept tokens per turn: min(n, c) for the largest cap c with sum <= budget."""
    if sum(lengths) <= budget:
        return list(lengths)
    if budget <= 0:
        return [0] * len(lengths)
    lo, hi = 0, max(lengths)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return [min(n, lo) for n in lengths]


def _keep(ids: list[int], n: int, head_share: float) -> list[int]:
    if n >= len(ids):
        return ids
    if n <= 0:
        return []
    head = max(1, math.ceil(n * head_share)) if head_share < 1 else n
    return ids[:head] + (ids[len(ids) - (n - head):] if n > head else [])


def _plan(turns: Sequence[Turn], pieces: list[Piece], texts: dict[int, list[int]], avail: int,
          share: float) -> tuple[dict[int, int], int | None]:
    """Tokens kept per text piece (by piece index) under the context-first policy; the response piece."""
    own_turn = [p.turn is not None and turns[p.turn].own for p in pieces]
    response = None
    for k in range(len(pieces) - 1, -1, -1):
        p = pieces[k]
        if p.turn is not None and own_turn[k] and turns[p.turn].role in RESPONSE_ROLES:
            response = k
            break
    context = [k for k in texts if not own_turn[k]]
    prompt = [k for k in texts if own_turn[k] and k != response]
    n_resp = len(texts[response]) if response is not None else 0
    reserve = min(n_resp, max(1, math.floor(share * avail))) if response is not None else 0
    budget = max(0, avail - reserve)
    n_prompt = sum(len(texts[k]) for k in prompt)
    kept_ctx = _water_fill([len(texts[k]) for k in context], budget - n_prompt)
    kept_prompt = _water_fill([len(texts[k]) for k in prompt], budget - sum(kept_ctx))
    kept = dict(zip(context, kept_ctx, strict=True)) | dict(zip(prompt, kept_prompt, strict=True))
    if response is not None:
        kept[response] = min(n_resp, max(0, avail - sum(kept.values())))
    return kept, response


def _markup_tokens(tokenizer: Any, turns: Sequence[Turn], config: FingerprintConfig) -> int:
    """Tokens of the template's markup (everything but turn text) when ``turns`` are rendered."""
    pieces = render_pieces(tokenizer, turns, config)
    return len(_bos(tokenizer, config)) + sum(len(_ids(tokenizer, p.text, split=False))
                                              for p in pieces if p.turn is None)


def _without_oldest_turns(tokenizer: Any, turns: Turns, config: FingerprintConfig,
                          max_tokens: int) -> Turns | None:
    """``turns`` less their oldest history turns (whole turns, markup included), the fewest such
    that the markup takes at most half of ``max_tokens``; None when there is nothing to drop.

    Kept always: the leading system/tools turns, the last user turn before the response and
    everything after it. Cuts fall just before a user turn, so roles still alternate."""
    resp = next((j for j in range(len(turns) - 1, -1, -1)
                 if turns[j].own and turns[j].role in RESPONSE_ROLES), None)
    end = len(turns) if resp is None else resp
    ask = next((j for j in range(end - 1, -1, -1) if turns[j].role == "user"), None)
    if ask is None:
        return None
    head = 0
    while head < ask and turns[head].role in ("system", "tools"):
        head += 1
    starts = [j for j in range(head + 1, ask + 1) if turns[j].role == "user"]  # first kept history turn
    if not starts:
        return None

    def cut(start: int) -> Turns:
        return (*turns[:head], *turns[start:])

    lo, hi = 0, len(starts) - 1  # smallest cut whose markup fits; the largest if none does
    while lo < hi:
        mid = (lo + hi) // 2
        if _markup_tokens(tokenizer, cut(starts[mid]), config) <= max_tokens // 2:
            hi = mid
        else:
            lo = mid + 1
    return cut(starts[lo])


def encode_sample(tokenizer: Any, turns: Sequence[Any], config: FingerprintConfig, max_tokens: int) -> EncodedSample:
    """Tokenize one sample into at most ``max_tokens`` tokens (see module docstring for the policy)."""
    turns = as_turns(turns)
    pieces = render_pieces(tokenizer, turns, config)
    prefix = _bos(tokenizer, config)
    ids = [_ids(tokenizer, p.text, split=p.turn is not None) for p in pieces]
    texts = {k: ids[k] for k, p in enumerate(pieces) if p.turn is not None}
    total = len(prefix) + sum(len(x) for x in ids)
    count_all = config.count_template_tokens

    def assemble(kept: dict[int, int], response: int | None = None) -> tuple[list[int], list[bool]]:
        out, own = list(prefix), [count_all] * len(prefix)
        for k, p in enumerate(pieces):
            share = HEAD_SHARE if p.own and k != response else 1.0  # context and the response keep their head
            part = ids[k] if k not in kept else _keep(ids[k], kept[k], share)
            out += part
            own += [p.own or count_all] * len(part)
        return out, own

    if total <= max_tokens:
        out, own = assemble({})
        return EncodedSample(tuple(out), tuple(own), False)
    markup = total - sum(len(x) for x in texts.values())
    avail = max_tokens - markup
    truncation = getattr(config, "truncation", "context_first")
    if truncation == "context_first" and avail < 1:  # the markup alone fills the window: drop old turns
        shorter = _without_oldest_turns(tokenizer, turns, config, max_tokens)
        if shorter is not None:
            enc = encode_sample(tokenizer, shorter, config, max_tokens)
            return EncodedSample(enc.input_ids, enc.own_mask, True, enc.response_cut,
                                 total - len(enc.input_ids))
    if truncation == "context_first" and avail >= 1:
        kept, response = _plan(turns, pieces, texts, avail, getattr(config, "response_share", 0.5))
        out, own = assemble(kept, response)
        cut = sum(len(texts[k]) - n for k, n in kept.items())
        response_cut = response is not None and kept[response] < len(texts[response])
        return EncodedSample(tuple(out), tuple(own), True, response_cut, cut)
    out, own = assemble({})  # "tail", or the markup alone fills the window: cut the sequence's end
    resp_k = next((k for k in range(len(pieces) - 1, -1, -1) if pieces[k].own
                   and turns[pieces[k].turn].role in RESPONSE_ROLES), None)
    response_cut = resp_k is not None and (len(prefix) + sum(len(x) for x in ids[: resp_k + 1])) > max_tokens
    return EncodedSample(tuple(out[:max_tokens]), tuple(own[:max_tokens]), True, response_cut, total - max_tokens)


# ---------------------------------------------------------------- report


def window_report(dataset: Any, tokenizer: Any, config: FingerprintConfig, window: int | None = None):
    """``dataset.report`` with the token-window fields filled: truncated, response cut, no own token.

    Each entry reads ``"<id>: <what>"``. ``window`` defaults to ``config.max_tokens``.
    Returns a ``mads_core.data.loader.LoadReport``.
    """
    from dataclasses import replace

    window = window or config.max_tokens
    truncated, response_cut, no_own = [], [], []
    for sample_id, turns in zip(dataset.ids, dataset.turns, strict=True):
        enc = encode_sample(tokenizer, turns, config, window)
        if enc.n_own == 0:
            no_own.append(f"{sample_id}: no own token within {window} tokens (template markup fills the window)")
        elif enc.response_cut:
            response_cut.append(f"{sample_id}: response cut ({enc.cut_tokens} tokens cut in all)")
        elif enc.truncated:
            truncated.append(f"{sample_id}: {enc.cut_tokens} context/prompt tokens cut")
    return replace(dataset.report, truncated=tuple(truncated), response_cut=tuple(response_cut),
                   no_own=tuple(no_own))


def token_lengths(dataset: Any, tokenizer: Any, config: FingerprintConfig) -> list[int]:
    """Untruncated token length of every sample as rendered by ``config`` (for choosing ``max_tokens``)."""
    big = 1 << 30
    return [len(encode_sample(tokenizer, turns, config, big).input_ids) for turns in dataset.turns]
