"""Rendering, own-token spans, special tokens and the token window, with the bundled tokenizer (no forward)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mads_core.config import FingerprintConfig
from mads_core.data.loader import load_records
from mads_core.model.encode import encode_sample, render_pieces, render_sample, window_report

CASES = Path(__file__).parent / "cases" / "loader"
CFG = FingerprintConfig()


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from mads_core.model.models import bundled_model_dir

    return AutoTokenizer.from_pretrained(bundled_model_dir())


def own_text(tok, enc) -> str:
    return tok.decode([i for i, m in zip(enc.input_ids, enc.own_mask, strict=True) if m])


def own_runs(enc) -> list[list[int]]:
    """Own token ids as runs of consecutive own tokens (one run per own turn)."""
    runs, cur = [], []
    for i, m in zip(enc.input_ids, enc.own_mask, strict=True):
        if m:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    return runs + ([cur] if cur else [])


def test_short_turns_own_tokens_are_exactly_the_turn_texts(tok) -> None:
    ds = load_records(CASES / "short_turns_template_collision.jsonl")
    for turns in ds.turns:
        enc = encode_sample(tok, turns, CFG, 256)
        texts = [t.text for t in turns if t.own]
        # one run per own turn, each run = that turn's text tokenized alone (not the template's "user"/"assistant")
        assert own_runs(enc) == [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    # the spans of the "user" answer sit after its own role header, not inside the markup
    text, spans = render_sample(tok, ds.turns[3], CFG)
    assert [text[a:b] for a, b in spans] == ["Type the word that is the opposite of stop.", "start", "user",
                                             "That is the word 'user'."]
    for a, _ in spans:
        assert text[:a].endswith("\n")  # right after "<|im_start|>role\n"


def test_literal_special_tokens_in_data_stay_text(tok) -> None:
    turns = load_records(CASES / "i17_special_tokens_in_text.jsonl").turns[0]
    enc = encode_sample(tok, turns, CFG, 256)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    # three messages (empty system, user, assistant): three control tokens of each kind, none from the data
    assert enc.input_ids.count(im_end) == 3 and enc.input_ids.count(im_start) == 3
    assert not any(m for i, m in zip(enc.input_ids, enc.own_mask, strict=True) if i in (im_end, im_start))
    assert own_text(tok, enc) == ("What does the marker <|im_end|> mean in ChatML?"
                                  "It closes a turn; <|im_start|> opens one.")


def test_long_prompt_keeps_the_whole_response(tok) -> None:
    turns = load_records(CASES / "i09_long_prompt_response_cut.jsonl").turns[0]
    enc = encode_sample(tok, turns, CFG, 256)
    assert len(enc.input_ids) == 256 and enc.truncated and not enc.response_cut
    text = own_text(tok, enc)
    assert text.endswith("It was founded in the twelfth century.")  # the response is read
    assert text.startswith("Using the passage, say in which century the harbour was founded.")  # the prompt's head
    assert "Sentence 119 of the background passage" in text  # ... and its tail: the middle went
    old = encode_sample(tok, turns, FingerprintConfig(truncation="tail"), 256)
    assert old.response_cut and "twelfth" not in own_text(tok, old)  # what the earlier rule did


def test_long_system_prompt_is_cut_first(tok) -> None:
    turns = load_records(CASES / "i09b_long_system_prompt.jsonl").turns[0]
    enc = encode_sample(tok, turns, CFG, 256)
    assert enc.truncated and not enc.response_cut and len(enc.input_ids) == 256
    assert own_text(tok, enc) == "Where is my parcel?Please give me your order number and I will check."
    whole = encode_sample(tok, turns, CFG, 100_000)
    assert enc.cut_tokens == len(whole.input_ids) - 256  # all of it from the system turn
    assert enc.input_ids[:10] == whole.input_ids[:10]  # the system prompt's head is kept
    old = encode_sample(tok, turns, FingerprintConfig(truncation="tail"), 256)
    assert old.n_own == 0  # the earlier rule left no own token at all


def test_response_gets_its_share_when_prompt_and_response_are_long(tok) -> None:
    turns = (("user", "word " * 600), ("assistant", "answer " * 600))
    enc = encode_sample(tok, turns, CFG, 200)
    assert len(enc.input_ids) == 200 and enc.response_cut
    runs = own_runs(enc)
    assert len(runs) == 2
    avail = sum(len(r) for r in runs)
    assert len(runs[1]) >= avail // 2  # response_share 0.5 of the text budget
    answer = tok("answer " * 600, add_special_tokens=False)["input_ids"]
    assert runs[1] == answer[: len(runs[1])]  # the response keeps its head
    less = encode_sample(tok, turns, FingerprintConfig(response_share=0.25), 200)
    assert len(own_runs(less)[1]) < len(runs[1])


def test_sample_with_no_room_for_own_tokens_is_reported(tok) -> None:
    ds = load_records(CASES / "i09b_long_system_prompt.jsonl")
    cfg = FingerprintConfig(max_tokens=8)  # less than the template's own markup
    enc = encode_sample(tok, ds.turns[2], cfg, 8)
    assert enc.n_own == 0
    report = window_report(ds, tok, cfg)
    assert len(report.no_own) == 3 and report.no_own[0].startswith(ds.ids[0])
    full = window_report(ds, tok, CFG)
    assert (len(full.truncated), len(full.response_cut), len(full.no_own)) == (2, 0, 0)
    assert "Truncated 2 samples" in full.summary()


def test_tool_calls_render_as_text_without_template_support(tok) -> None:
    turns = load_records(CASES / "openai_tool_calls.jsonl").turns[0]
    pieces = render_pieces(tok, turns, CFG)
    own = [p.text for p in pieces if p.own]
    assert own == ["Weather in Tokyo?", '{"name": "get_weather", "arguments": {"city": "Tokyo"}}',
                   "It is 22 degrees and sunny in Tokyo."]
    text = "".join(p.text for p in pieces)
    assert "<|im_start|>system\nAvailable tools: [{" in text  # declarations: context
    assert '<|im_start|>tool\n{"temp": 22, "sky": "sunny"}<|im_end|>' in text  # tool result: context


def test_tools_passed_to_a_template_that_takes_them(tok) -> None:
    import copy

    tool_tok = copy.deepcopy(tok)
    tool_tok.chat_template = (
        "{% if tools %}<tools>{{ tools | tojson }}</tools>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m.tool_calls %}{% for c in m.tool_calls %}<call>{{ c.function | tojson }}</call>{% endfor %}"
        "{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}"
    )
    turns = load_records(CASES / "openai_tool_calls.jsonl").turns[0]
    text, spans = render_sample(tool_tok, turns, CFG)
    assert text.startswith('<tools>[{"type": "function"')
    own = [text[a:b] for a, b in spans]
    assert own[0] == "Weather in Tokyo?" and own[2] == "It is 22 degrees and sunny in Tokyo."
    assert own[1].startswith("<call>") and '"Tokyo"' in own[1]  # the call as the template writes it


def test_plain_template_joins_non_system_turns(tok) -> None:
    turns = (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"))
    text, spans = render_sample(tok, turns, FingerprintConfig(template="plain"))
    assert text == "Hi\n\nHello" and spans == [(0, 2), (4, 9)]


def test_long_conversation_drops_oldest_turns_not_the_answer(tok) -> None:
    # 30 history exchanges: their markup alone is over the window; the final exchange must stay.
    turns = []
    for i in range(30):
        turns += [("user", f"question number {i}"), ("assistant", f"answer number {i}")]
    turns += [("user", "LAST QUESTION"), ("assistant", "LAST ANSWER")]
    enc = encode_sample(tok, turns, CFG, 64)
    assert len(enc.input_ids) <= 64 and enc.truncated and not enc.response_cut
    runs = own_runs(enc)
    assert tok.decode(runs[-1]) == "LAST ANSWER" and tok.decode(runs[-2]) == "LAST QUESTION"
    kept = [tok.decode(r) for r in runs[:-2]]
    assert kept and kept[0].startswith("question number")  # history resumes at a user turn
    assert kept[-1] == "answer number 29"  # the newest history kept, the oldest dropped
    tail = encode_sample(tok, turns, FingerprintConfig(truncation="tail"), 64)
    assert tail.response_cut and "LAST" not in own_text(tok, tail)
