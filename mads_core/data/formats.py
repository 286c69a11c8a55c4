"""Record formats: one reader per format family, each turning one record into turns.

A sample is an ordered tuple of :class:`Turn` (role, text, own). Roles:

========== ======================================================== =====
role        what it is                                               own
========== ======================================================== =====
system      system / developer prompt                                no
tools       the tool declarations offered to the model (JSON text)   no
user        a user message (history included)                        yes
assistant   an assistant message (history included)                  yes
tool_call   the assistant's call of a tool: canonical JSON text      yes
            ``{"name": ..., "arguments": ...}``
tool        a tool's result (OpenAI ``tool``, ShareGPT ``observation``) no
========== ======================================================== =====

``own`` = the turn's tokens are pooled into the fingerprint (DESIGN.md, "A sample's
turns"): what the sample *says* (its questions, answers and tool-call arguments) is its
own; what it is *given* (system prompt, tool schemas, tool results) is context.

Every reader raises :class:`RecordError` (field + reason) on a record it cannot read;
the loader turns it into a ``DataError`` naming file and line/record. Families and the
fields that identify them are listed in ``FORMAT_FIELDS`` (also the README table).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


class Turn(NamedTuple):
    """One turn of a sample: role (see module table), text, and whether it is the sample's own."""

    role: str
    text: str
    own: bool


Turns = tuple[Turn, ...]

OWN_ROLES = frozenset({"user", "assistant", "tool_call"})
CONTEXT_ROLES = frozenset({"system", "tools", "tool"})
ROLES = tuple(sorted(OWN_ROLES | CONTEXT_ROLES))

# Accepted spellings of a message's role (lower-cased) -> canonical role.
ROLE_MAP = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system role
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",  # ShareGPT90K exports
    "bing": "assistant",
    "bard": "assistant",
    "function_call": "tool_call",  # LLaMA-Factory ShareGPT
    "tool_call": "tool_call",
    "observation": "tool",  # LLaMA-Factory ShareGPT
    "tool": "tool",
    "function": "tool",  # OpenAI legacy function result
    "ipython": "tool",  # Llama 3 tool results
}

MESSAGE_FIELDS = ("messages", "conversations", "conversation")
STRING_LIST_FIELDS = ("conversations", "data", "turns", "messages")
PREFERENCE_FIELDS = ("chosen", "rejected")
# Table records: known (prompt field, response field) pairs first, then any prompt field
# below with the first response field present (or none: a prompt-only sample).
PAIR_FIELDS = (
    ("INSTRUCTION", "RESPONSE"),  # axolotl / oasst "unified chip"
    ("query", "response"),  # MetaMathQA
    ("instruction", "response"),
    ("prompt", "completion"),  # OpenAI legacy fine-tuning
    ("question", "answer"),
)
TEXT_CANDIDATES = ("text", "prompt", "question", "query", "instruction", "INSTRUCTION", "content")
RESPONSE_CANDIDATES = ("response", "answer", "completion", "output", "RESPONSE")
_SURROGATE = re.compile("[\ud800-\udfff]")


class RecordError(Exception):
    """A problem with one field of one record (becomes a DataError once file/record are known)."""

    def __init__(self, field_name: str | None, reason: str):
        super().__init__(reason)
        self.field_name, self.reason = field_name, reason


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def is_missing(value: Any) -> bool:
    """None, NaN (pandas/Arrow nulls) or absent."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def check_text(value: Any, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RecordError(name, f"must be a string, got {type_name(value)}")
    if not allow_empty and not value.strip():
        raise RecordError(name, "is empty")
    if _SURROGATE.search(value):
        raise RecordError(name, "contains invalid Unicode (lone surrogate or non-UTF-8 bytes)")
    return value


def required(record: dict[str, Any], name: str) -> str:
    if name not in record:
        raise RecordError(name, "missing required field")
    return check_text(record[name], name)


def optional(record: dict[str, Any], name: str | None) -> str:
    if name is None or is_missing(record.get(name)):
        return ""
    return check_text(record[name], name, allow_empty=True)


def make_turn(role: str, text: str) -> Turn:
    """A turn whose ``own`` follows the role (module table)."""
    return Turn(role, text, role in OWN_ROLES)


def as_turns(turns: Sequence[Sequence[Any]]) -> Turns:
    """Normalise (role, text) pairs or (role, text, own) triples to Turns (own from role if absent)."""
    out = []
    for t in turns:
        if isinstance(t, Turn):
            out.append(t)
        elif len(t) == 2:
            out.append(make_turn(str(t[0]), str(t[1])))
        else:
            out.append(Turn(str(t[0]), str(t[1]), bool(t[2])))
    return tuple(out)


def _join(prompt: str, extra: str) -> str:
    return prompt + ("\n\n" + extra if extra.strip() else "")


def _canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


# --------------------------------------------------------------------------- Alpaca family


def _system_turn(record: dict[str, Any], name: str = "system") -> list[Turn]:
    """A top-level system prompt (empty or null: none)."""
    text = optional(record, name) if name in record else ""
    return [make_turn("system", text)] if text.strip() else []


def _history_turns(record: dict[str, Any]) -> list[Turn]:
    """LLaMA-Factory ``history``: a list of [question, answer] pairs, oldest first."""
    history = record.get("history")
    if is_missing(history) or history == []:
        return []
    if not isinstance(history, list):
        raise RecordError("history", f"must be a list of [question, answer] pairs, got {type_name(history)}")
    turns = []
    for j, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RecordError(f"history[{j}]", f"must be a [question, answer] pair, got {pair!r:.60}")
        turns.append(make_turn("user", check_text(pair[0], f"history[{j}][0]")))
        turns.append(make_turn("assistant", check_text(pair[1], f"history[{j}][1]")))
    return turns


def alpaca_turns(record: dict[str, Any]) -> Turns:
    """Alpaca: S(system) + U/A per ``history`` pair + U(instruction [+ "\\n\\n" + input]) + A(output)."""
    prompt = _join(required(record, "instruction"), optional(record, "input"))
    return (*_system_turn(record), *_history_turns(record), make_turn("user", prompt),
            make_turn("assistant", required(record, "output")))


def dolly_turns(record: dict[str, Any]) -> Turns:
    """Dolly: U(instruction [+ "\\n\\n" + context]) + A(response)."""
    prompt = _join(required(record, "instruction"), optional(record, "context"))
    return (make_turn("user", prompt), make_turn("assistant", required(record, "response")))


def self_instruct_turns(record: dict[str, Any], k: int) -> Turns:
    """Self-Instruct seed task, instance ``k`` (0-based): U(instruction [+ input]) + A(output)."""
    instances = record.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RecordError("instances", f"must be a non-empty list of {{input, output}}, got {type_name(instances)}")
    inst = instances[k]
    if not isinstance(inst, dict):
        raise RecordError(f"instances[{k}]", f"must be an object with input and output, got {type_name(inst)}")
    prompt = _join(required(record, "instruction"), optional(inst, "input"))
    try:
        output = required(inst, "output")
    except RecordError as err:
        raise RecordError(f"instances[{k}].{err.field_name}", err.reason) from None
    return (make_turn("user", prompt), make_turn("assistant", output))


def _pair_side(record: dict[str, Any], name: str, role: str) -> list[Turn]:
    """A prompt/response field: a string -> one ``role`` turn; a list of messages (TRL's
    conversational prompt-completion form, ``{"prompt": [{role, content}], "completion": [...]}``)
    -> its message turns."""
    if name in record and isinstance(record[name], list):
        return message_turns(record[name], name)
    return [make_turn(role, required(record, name))]


def pair_turns(record: dict[str, Any], prompt_field: str, response_field: str | None) -> Turns:
    """A prompt field and an optional response field: U(prompt) [+ A(response)].

    Either field may also be a list of messages (TRL conversational prompt-completion),
    read as :func:`message_turns` reads them.
    """
    turns = _pair_side(record, prompt_field, "user")
    if response_field is not None:
        turns += _pair_side(record, response_field, "assistant")
    return _require_own(turns, prompt_field)


# --------------------------------------------------------------------------- chat family


def _content_text(value: Any, name: str) -> str:
    """Message content: a string, or OpenAI/LLaMA-Factory content parts (text parts joined by newlines)."""
    if isinstance(value, list):
        texts = []
        for j, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            text = part.get("text", part.get("value")) if kind == "text" else None
            if not isinstance(text, str):
                what = f"a {kind!r} part" if kind else f"a {type_name(part)}"
                raise RecordError(f"{name}[{j}]", f"{what}: only text content parts can be read "
                                  "(drop non-text parts, or pass on_error='skip' / --on-error skip)")
            texts.append(text)
        value = "\n".join(texts)
    return check_text(value, name, allow_empty=True)


def _tool_call_text(call: Any, name: str) -> str:
    """Canonical text of an OpenAI tool call: ``{"name": ..., "arguments": ...}`` (arguments parsed if JSON)."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise RecordError(name, "a tool call must be {type: 'function', function: {name, arguments}}")
    args = fn.get("arguments")
    if isinstance(args, str):
        with contextlib.suppress(json.JSONDecodeError):  # else kept as the string it is
            args = json.loads(args)
    return _canonical_json({"name": fn["name"], "arguments": args})


def _function_call_text(value: str) -> str:
    """ShareGPT ``function_call`` value: canonical JSON when it parses as {name, arguments}, else as written."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value
    if isinstance(parsed, dict) and "name" in parsed:
        args = parsed.get("arguments")
        if isinstance(args, str):  # JSON text of the arguments, as in OpenAI tool_calls: same text
            with contextlib.suppress(json.JSONDecodeError):
                args = json.loads(args)
        return _canonical_json({"name": parsed["name"], "arguments": args})
    return value


def tools_text(value: Any, name: str = "tools") -> str:
    """Tool declarations (a JSON list, or JSON text of one) as canonical JSON text; "" when none."""
    if is_missing(value):
        return ""
    if isinstance(value, str):
        if not value.strip():
            return ""
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RecordError(name, "tool declarations must be JSON (a list of functions)") from None
    if not isinstance(value, list):
        raise RecordError(name, f"must be a list of tool declarations, got {type_name(value)}")
    return _canonical_json(value) if value else ""


def message_turns(messages: Any, name: str) -> list[Turn]:
    """Turns of an OpenAI (role/content, tool_calls) or ShareGPT (from/value) message list.

    Empty or null system turns are dropped (the same rule for both); an empty or null
    user/assistant turn is an error, as is an unknown role.
    """
    if not isinstance(messages, list):
        raise RecordError(name, f"must be a list of messages, got {type_name(messages)}")
    turns: list[Turn] = []
    for j, message in enumerate(messages):
        where = f"{name}[{j}]"
        if not isinstance(message, dict):
            raise RecordError(where, f"must be an object with role and content, got {type_name(message)}")
        role_key = "role" if "role" in message else "from"
        if role_key not in message:
            raise RecordError(f"{where}.role", "missing role (or ShareGPT 'from')")
        raw_role = message[role_key]
        role = ROLE_MAP.get(raw_role.strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise RecordError(
                f"{where}.{role_key}",
                f"unknown role {raw_role!r} (expected one of {', '.join(sorted(ROLE_MAP))})",
            )
        content_key = "content" if "content" in message else "value"
        calls = message.get("tool_calls")
        if calls:
            if not isinstance(calls, list):
                raise RecordError(f"{where}.tool_calls", f"must be a list, got {type_name(calls)}")
            text = "" if is_missing(message.get(content_key)) else _content_text(message[content_key],
                                                                                 f"{where}.{content_key}")
            if text.strip():
                turns.append(make_turn("assistant", text))
            turns.extend(make_turn("tool_call", _tool_call_text(c, f"{where}.tool_calls[{k}]"))
                         for k, c in enumerate(calls))
            continue
        if content_key not in message:
            raise RecordError(f"{where}.content", "missing content (or ShareGPT 'value')")
        value = message[content_key]
        text = "" if is_missing(value) else _content_text(value, f"{where}.{content_key}")
        if not text.strip():
            if role == "system":
                continue
            raise RecordError(f"{where}.{content_key}", "is empty" if value is not None else "is null")
        if role == "tool_call":
            text = _function_call_text(text)
        turns.append(make_turn(role, text))
    return turns


def _require_own(turns: Sequence[Turn], name: str) -> Turns:
    if not any(t.own for t in turns):
        raise RecordError(name, "no user or assistant message")
    return tuple(turns)


def chat_turns(record: dict[str, Any], messages_field: str | None = None) -> Turns:
    """OpenAI / ShareGPT conversation: S(top-level ``system``) + tools + the messages.

    ``tools`` (a list, or JSON text of one, as LLaMA-Factory writes it) becomes a context
    turn right after the system prompt.
    """
    present = [f for f in (messages_field, *MESSAGE_FIELDS) if f is not None and f in record]
    if not present:
        raise RecordError(messages_field or MESSAGE_FIELDS[0], "missing required field")
    name = present[0]
    turns = message_turns(record[name], name)
    if not any(t.role == "system" for t in turns):
        turns = [*_system_turn(record), *turns]
    tools = tools_text(record.get("tools"))
    if tools:  # right after the leading system turn(s)
        at = next((j for j, t in enumerate(turns) if t.role != "system"), len(turns))
        turns.insert(at, make_turn("tools", tools))
    return _require_own(turns, name)


def evals_turns(record: dict[str, Any]) -> Turns:
    """OpenAI evals sample: the ``input`` messages, then ``ideal`` (its first item if a list) as the answer."""
    turns = chat_turns(record, "input")
    if "ideal" not in record:
        raise RecordError("ideal", "missing required field")
    ideal = record["ideal"]
    if isinstance(ideal, list):
        if not ideal:
            raise RecordError("ideal", "is an empty list")
        ideal = ideal[0]
    return (*turns, make_turn("assistant", check_text(ideal, "ideal")))


def string_list_turns(record: dict[str, Any], name: str, *, prompts_only: bool = False) -> Turns:
    """A list of strings: alternating U/A (LIMA, UltraChat ``data``), or all U (MT-bench ``turns``)."""
    items = record.get(name)
    if not isinstance(items, list) or not items:
        raise RecordError(name, f"must be a non-empty list of strings, got {type_name(items)}")
    turns = []
    for j, text in enumerate(items):
        role = "user" if prompts_only or j % 2 == 0 else "assistant"
        turns.append(make_turn(role, check_text(text, f"{name}[{j}]")))
    return tuple(turns)


def _preference_side(value: Any, name: str) -> list[Turn]:
    """``chosen``: a string, one message, or a list of messages (prompt turns may be repeated in it)."""
    if isinstance(value, str):
        return [make_turn("assistant", check_text(value, name))]
    if isinstance(value, dict):
        return message_turns([value], name)
    return message_turns(value, name)


_TRANSCRIPT = re.compile(r"\n\n(Human|Assistant):[ ]?")


def transcript_turns(text: str, name: str) -> list[Turn] | None:
    """Anthropic HH-RLHF transcript ``"\n\nHuman: q\n\nAssistant: a ..."`` -> U/A turns; None if
    ``text`` is not one (it must start with ``Human:``). A trailing empty ``Assistant:`` (the
    prompt's open answer slot) is dropped; any other empty turn is an error."""
    if not text.lstrip("\n").startswith("Human:"):
        return None
    parts = _TRANSCRIPT.split("\n\n" + text.lstrip("\n"))
    if parts[0].strip():
        return None
    turns = []
    for k in range(1, len(parts) - 1, 2):
        speaker, said = parts[k], parts[k + 1]
        if speaker == "Assistant" and k == len(parts) - 2 and not said.strip():
            break
        turns.append(make_turn("user" if speaker == "Human" else "assistant", check_text(said, f"{name}[{k // 2}]")))
    return turns


def _preference_prompt(record: dict[str, Any]) -> list[Turn]:
    """The prompt of a preference record: messages/conversations, ``prompt`` (text, HH-RLHF
    transcript or messages), or LLaMA-Factory's Alpaca ranking fields (system, history,
    instruction + input); [] when none (TRL's implicit prompt: it is inside ``chosen``)."""
    present = [f for f in MESSAGE_FIELDS if f in record]
    if present:
        return list(chat_turns(record, present[0]))
    if "prompt" in record:
        value = record["prompt"]
        if not isinstance(value, str):
            return message_turns(value, "prompt")
        return transcript_turns(value, "prompt") or [make_turn("user", check_text(value, "prompt"))]
    if "instruction" in record:
        prompt = _join(required(record, "instruction"), optional(record, "input"))
        return [*_system_turn(record), *_history_turns(record), make_turn("user", prompt)]
    return []


def preference_turns(record: dict[str, Any]) -> Turns:
    """DPO-style pair: the prompt (see :func:`_preference_prompt`) + ``chosen`` as the response.

    ``rejected`` is not read (it stays in the record, and in exports). When ``chosen`` is a
    full conversation repeating the prompt (TRL implicit prompt, HH-RLHF transcript), the
    repeated prefix is read once.
    """
    prompt = _preference_prompt(record)
    value = record.get("chosen")
    chosen = (transcript_turns(value, "chosen") if isinstance(value, str) and not prompt else None) or (
        _preference_side(value, "chosen"))
    if prompt and chosen[: len(prompt)] == prompt:
        chosen = chosen[len(prompt):]
    return _require_own([*prompt, *chosen], "chosen")


# --------------------------------------------------------------------------- refusals


def refuse_message_rows(record: dict[str, Any]) -> Turns:
    raise RecordError("parent_id", (
        "this is a message-tree row (oasst: message_id / parent_id / role 'prompter'|'assistant'), "
        "not a conversation: each row holds one message. Build conversations first (e.g. each "
        "root-to-leaf path of the tree, or the top-ranked path) and save them as 'messages' lists"))


def refuse_segments(record: dict[str, Any]) -> Turns:
    raise RecordError("segments", (
        "this is axolotl's template-free 'input_output' format (pre-rendered text segments with "
        "'label'), which is not read: MADS renders turns with the model's own chat template. "
        "Convert it to 'messages' (role/content), or to prompt/completion fields"))


# --------------------------------------------------------------------------- detection


class FormatSpec(NamedTuple):
    """One format family: how it is recognised and read."""

    name: str
    example: str  # one line of example fields (README table)
    matches: Callable[[dict[str, Any]], bool]
    note: str = ""  # said in the load report when this format is read


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _has_messages(record: dict[str, Any]) -> bool:
    return any(isinstance(record.get(f), list) and not _is_str_list(record.get(f)) for f in MESSAGE_FIELDS)


def _is_evals(record: dict[str, Any]) -> bool:
    value = record.get("input")
    return "ideal" in record and isinstance(value, list) and all(isinstance(m, dict) for m in value)


# In auto-detection order: the first whose test holds for the first record is used.
FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec("oasst_rows", '{"message_id", "parent_id", "role": "prompter", "text"}',
               lambda r: "message_id" in r and "parent_id" in r),
    FormatSpec("segments", '{"segments": [{"label": bool, "text"}]}', lambda r: "segments" in r),
    FormatSpec("preference", '{"conversations"|"messages"|"prompt"|"instruction", "chosen", "rejected"}',
               lambda r: "chosen" in r and "rejected" in r,
               "preference pairs: the prompt + 'chosen' are read as the sample; 'rejected' is kept in the "
               "record (and in exports) but not read by the model"),
    FormatSpec("evals", '{"input": [messages], "ideal": answer}', _is_evals),
    FormatSpec("chat", '{"messages"|"conversations": [{role, content} | {from, value}], "system", "tools"}',
               _has_messages),
    FormatSpec("string_list", '{"conversations"|"data": ["question", "answer", ...]}',
               lambda r: _is_str_list(r.get("conversations")) or _is_str_list(r.get("data"))),
    FormatSpec("mtbench", '{"question_id", "category", "turns": ["q1", "q2"]}',
               lambda r: _is_str_list(r.get("turns")),
               "MT-bench questions: prompt-only samples (user turns, no answers)"),
    FormatSpec("self_instruct", '{"instruction", "instances": [{"input", "output"}]}',
               lambda r: "instruction" in r and isinstance(r.get("instances"), list),
               "Self-Instruct: one sample per instance, id '<id>#<k>', record narrowed to that instance"),
    FormatSpec("dolly", '{"instruction", "context", "response", "category"}',
               lambda r: "instruction" in r and "response" in r and "context" in r),
    FormatSpec("alpaca", '{"instruction", "input", "output", "system", "history"}',
               lambda r: "instruction" in r and "output" in r),
    FormatSpec("table", '{"instruction"|"INSTRUCTION"|"query"|"prompt"|"question"|"text", '
               '"response"|"RESPONSE"|"completion"|"answer"} (any text column + optional response column)',
               lambda r: any(c in r for c in TEXT_CANDIDATES)),
)
FORMAT_NAMES = tuple(f.name for f in FORMATS)
_BY_NAME = {f.name: f for f in FORMATS}


def format_spec(name: str) -> FormatSpec:
    return _BY_NAME[name]


def detect_format(record: dict[str, Any]) -> str | None:
    """Name of the first format family whose fields ``record`` has, or None."""
    return next((f.name for f in FORMATS if f.matches(record)), None)


def guess_pair(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """(prompt field, response field) of a table record, from ``PAIR_FIELDS``."""
    for prompt, response in PAIR_FIELDS:
        if prompt in record and response in record:
            return prompt, response
    prompt = next((c for c in TEXT_CANDIDATES if c in record), None)
    response = next((c for c in RESPONSE_CANDIDATES if c in record and c != prompt), None)
    return prompt, response if prompt is not None else None


def record_turns(record: dict[str, Any], fmt: str, *, messages_field: str | None = None,
                 text_column: str | None = None, response_column: str | None = None) -> Turns:
    """Turns of one record of format ``fmt`` (not for ``self_instruct``: see :func:`self_instruct_turns`)."""
    if fmt == "chat":
        return chat_turns(record, messages_field)
    if fmt == "alpaca":
        return alpaca_turns(record)
    if fmt == "dolly":
        return dolly_turns(record)
    if fmt == "evals":
        return evals_turns(record)
    if fmt == "preference":
        return preference_turns(record)
    if fmt == "string_list":
        name = next((f for f in ("conversations", "data") if f in record), "conversations")
        return string_list_turns(record, name)
    if fmt == "mtbench":
        return string_list_turns(record, "turns", prompts_only=True)
    if fmt == "oasst_rows":
        return refuse_message_rows(record)
    if fmt == "segments":
        return refuse_segments(record)
    if fmt == "table":
        return pair_turns(record, text_column or "text", response_column)
    raise ValueError(f"unknown format {fmt!r}")
