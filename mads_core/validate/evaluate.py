"""Score a (fine-tuned) model on held-out items: gold-answer loss and exact-match accuracy.

Two measures per item (:class:`~mads_core.validate.tasks.EvalItem`):

- **gold-answer loss**: mean per-token negative log-likelihood (nats/token) of the first gold
  answer (its tokens + the end-of-turn token) given the prompt, rendered with the chat
  template (``mads_core.validate.chat``). Smooth: it moves even when a 135M model never gets
  an answer right. Lower is better.
- **accuracy** (items whose answers are short, ``EvalItem.short``): greedy generation
  (``do_sample=False``) of up to ``max_new_tokens`` tokens; correct when the normalised output
  (lower case, quotes/punctuation at the ends of each word stripped, whitespace
  collapsed) starts with the
  same words as a normalised gold answer (the evals registry's ``Match`` rule,
  ``sampled.startswith(ideal)``, made word-exact so "480" does not match "4800").

Chance level of an accuracy is the majority-answer rate: the share of the task's items whose
gold answer is the most common one (what always giving that answer scores; 1/2 for a
balanced yes/no task, ~1/n for open answers).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mads_core.validate.chat import encode_chat, encode_prompt
from mads_core.validate.tasks import EvalItem

_EDGE = re.compile(r"^[\s\"'`.,;:!?()\[\]]+|[\s\"'`.,;:!?()\[\]]+$")


def normalize(text: str) -> str:
    """Lower case; each word stripped of quotes/punctuation at its ends; whitespace collapsed."""
    words = (_EDGE.sub("", w) for w in text.lower().split())
    return " ".join(w for w in words if w)


def is_match(output: str, answers: Sequence[str]) -> bool:
    """Normalised output starts with the words of one normalised answer."""
    words = normalize(output).split()
    for answer in answers:
        gold = normalize(answer).split()
        if gold and words[: len(gold)] == gold:
            return True
    return False


def chance_level(answers: Sequence[str]) -> float:
    """Majority-answer rate of a task: share of items whose (normalised) gold answer is the most common."""
    if not answers:
        return float("nan")
    counts = Counter(normalize(a) for a in answers)
    return counts.most_common(1)[0][1] / len(answers)


@dataclass(frozen=True)
class ItemScores:
    """Per-item results, aligned with the items: loss (n,) float64 nats/token, n_tokens (n,) int64,
    correct (n,) float64 (1/0, NaN where not scored), outputs (greedy text, "" where not generated)."""

    loss: np.ndarray
    n_tokens: np.ndarray
    correct: np.ndarray
    outputs: tuple[str, ...]


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def answer_losses(model: Any, tokenizer: Any, turns_list: Sequence[Sequence[Sequence[str]]], *,
                  batch_size: int = 16, max_length: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean per-token NLL (nats) of the assistant tokens of each conversation, and their counts.

    Batches are formed in length order (padding does not change results). A conversation
    with no assistant token left after truncation gets NaN.
    """
    import torch

    encoded = [encode_chat(tokenizer, turns, max_length) for turns in turns_list]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    loss = np.full(len(encoded), np.nan)
    count = np.zeros(len(encoded), dtype=np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = _device_of(model)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            rows = order[b: b + batch_size]
            width = max(len(encoded[i].input_ids) for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attn = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.bool)
            for r, i in enumerate(rows):
                e = encoded[i]
                n = len(e.input_ids)
                ids[r, :n] = torch.tensor(e.input_ids)
                attn[r, :n] = 1
                mask[r, :n] = torch.tensor(e.assistant_masks, dtype=torch.bool)
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            target = ids[:, 1:].to(device)
            nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            m = mask[:, 1:].to(device)
            sums = (nll * m).sum(dim=1).cpu().numpy()
            ns = m.sum(dim=1).cpu().numpy()
            for r, i in enumerate(rows):
                count[i] = int(ns[r])
                if ns[r]:
                    loss[i] = float(sums[r] / ns[r])
    model.train(was_training)
    return loss, count


def greedy_outputs(model: Any, tokenizer: Any, prompts: Sequence[Sequence[Sequence[str]]], *,
                   max_new_tokens: int = 12, batch_size: int = 16, max_length: int = 256) -> list[str]:
    """Greedy continuations (decoded, special tokens dropped) of chat prompts, left-padded batches."""
    import torch

    encoded = [encode_prompt(tokenizer, p, max_length) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = _device_of(model)
    outputs = [""] * len(encoded)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            rows = order[b: b + batch_size]
            width = max(len(encoded[i]) for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attn = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                n = len(encoded[i])
                ids[r, width - n:] = torch.tensor(encoded[i])
                attn[r, width - n:] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=attn.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, temperature=None, top_p=None,
                                 top_k=None)
            for r, i in enumerate(rows):
                outputs[i] = tokenizer.decode(out[r, width:], skip_special_tokens=True)
    model.train(was_training)
    return outputs


def score_items(model: Any, tokenizer: Any, items: Sequence[EvalItem], *, batch_size: int = 16,
                max_length: int = 256, generate: bool = True, max_new_tokens: int = 12) -> ItemScores:
    """Gold-answer loss of every item; greedy exact-match accuracy of the short-answer items."""
    loss, n_tokens = answer_losses(model, tokenizer, [i.turns() for i in items], batch_size=batch_size,
                                   max_length=max_length)
    correct = np.full(len(items), np.nan)
    outputs = [""] * len(items)
    short = [j for j, i in enumerate(items) if i.short]
    if generate and short:
        texts = greedy_outputs(model, tokenizer, [items[j].prompt for j in short], max_new_tokens=max_new_tokens,
                               batch_size=batch_size, max_length=max_length)
        for j, text in zip(short, texts, strict=True):
            outputs[j] = text
            correct[j] = float(is_match(text, items[j].answers))
    return ItemScores(loss, n_tokens, correct, tuple(outputs))


def summarize(items: Sequence[EvalItem], scores: ItemScores) -> dict[str, float]:
    """Headline numbers of one cell: per set ``<set>_loss`` (mean over items), ``<set>_acc`` and
    ``<set>_chance`` (item-weighted mean of per-task majority rates), plus per-task
    ``task:<name>_loss`` / ``task:<name>_acc``."""
    out: dict[str, float] = {}
    sets = sorted({i.set_name for i in items})
    for s in sets:
        rows = [j for j, i in enumerate(items) if i.set_name == s]
        out[f"{s}_loss"] = float(np.nanmean(scores.loss[rows])) if rows else float("nan")
        acc_rows = [j for j in rows if not np.isnan(scores.correct[j])]
        if acc_rows:
            out[f"{s}_acc"] = float(np.mean(scores.correct[acc_rows]))
            by_task: dict[str, list[int]] = {}
            for j in acc_rows:
                by_task.setdefault(items[j].task, []).append(j)
            chance = sum(chance_level([items[j].answers[0] for j in js]) * len(js) for js in by_task.values())
            out[f"{s}_chance"] = chance / len(acc_rows)
        if s == "tasks":
            for task in sorted({items[j].task for j in rows}):
                t_rows = [j for j in rows if items[j].task == task]
                out[f"task:{task}_loss"] = float(np.nanmean(scores.loss[t_rows]))
                t_acc = [j for j in t_rows if not np.isnan(scores.correct[j])]
                if t_acc:
                    out[f"task:{task}_acc"] = float(np.mean(scores.correct[t_acc]))
    return out
