"""Held-out evaluation items: evals-registry tasks that are not in the pool, and the user's own set.

An :class:`EvalItem` is a prompt (turns up to the answer) and its gold answer(s). Three sources:

- :func:`heldout_task_items` — gold answers of OpenAI evals registry task folders that the
  selection pool does not contain (``HELDOUT_TASKS``: 8 English tasks, two per category, all
  scored by the registry with its ``Match``/exact-answer rule and with short answers, so
  exact-match accuracy under greedy generation is meaningful). Per task, the ``per_task``
  distinct samples with the smallest sha256 of their content id among the first
  ``TASK_SCAN`` valid ones (deterministic on every machine, not the file's first lines,
  which are sometimes sorted by answer).
- :func:`dataset_items` — any ``Dataset`` the loader reads (the pool's held-out split, or a
  user's evaluation file): prompt = the turns before the last assistant turn, answer = it.
- :func:`assert_disjoint` — raises when an evaluation task is also in the pool (by category or
  by ``evals:registry/data/<task>/`` source), so a held-out score is never a training score.

The registry is read from the installed ``evals`` package (``mads_core.data.demo``), never
from the network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mads_core.config import canonical_json, sha256_text
from mads_core.data.loader import Dataset

# task folder -> category. Chosen from the MIT folders of evals 3.0.1 whose registry eval is
# an exact-answer match (Match), whose prompts are under ~300 characters (CPU cost) and whose
# answers are one short word, number or letter. None is a default-demo task or a
# chatterbot/ifbench category.
HELDOUT_TASKS: dict[str, str] = {
    "which_is_heavier": "commonsense",
    "quartz": "commonsense",
    "positive-binary-operations": "arithmetic",
    "next-val-series": "arithmetic",
    "anagrams": "word play",
    "last_word_nth": "word play",
    "sarcasm": "classification",
    "aba_mrpc_true_false": "classification",
}
TASK_SCAN = 200  # valid samples read per task before the sha256 pick
SHORT_ANSWER_CHARS = 24  # items whose every gold answer is at most this long get an accuracy


@dataclass(frozen=True)
class EvalItem:
    """One held-out item: prompt turns (role, text), gold answers, and where it comes from.

    ``answers``: every accepted gold answer (evals ``ideal`` may be a list); the first is the
    one whose loss is scored. ``short``: accuracy is scored (all answers ≤ SHORT_ANSWER_CHARS).
    """

    set_name: str
    task: str
    category: str
    prompt: tuple[tuple[str, str], ...]
    answers: tuple[str, ...]
    item_id: str

    @property
    def short(self) -> bool:
        return all(len(a) <= SHORT_ANSWER_CHARS for a in self.answers)

    def turns(self) -> tuple[tuple[str, str], ...]:
        """Prompt + the first gold answer as the assistant turn."""
        return (*self.prompt, ("assistant", self.answers[0]))


def items_hash(items: Sequence[EvalItem]) -> str:
    """Content hash of an evaluation set (part of every score's cache key)."""
    payload = [[i.set_name, i.task, [list(t) for t in i.prompt], list(i.answers)] for i in items]
    return sha256_text(canonical_json(payload))[:16]


def _ideal_list(record: dict) -> tuple[str, ...]:
    ideal = record.get("ideal")
    values = ideal if isinstance(ideal, list) else [ideal]
    return tuple(v for v in values if isinstance(v, str) and v.strip())


def heldout_task_items(per_task: int = 6, tasks: Sequence[str] | None = None) -> list[EvalItem]:
    """``per_task`` items of each held-out evals task (default ``HELDOUT_TASKS``), task by task.

    Raises ValueError for a task folder that does not exist or is licence-excluded, or that
    has fewer than ``per_task`` valid chat samples.
    """
    from mads_core.data.demo import EVALS_EXCLUDED, _evals_root
    from mads_core.data.formats import RecordError, evals_turns

    root = _evals_root()
    chosen = list(tasks) if tasks is not None else list(HELDOUT_TASKS)
    items: list[EvalItem] = []
    if per_task < 1:
        raise ValueError(f"items per held-out task must be >= 1, got {per_task}")
    for task in chosen:
        if not task or task.strip() != task or "/" in task or "\\" in task or task in (".", ".."):
            raise ValueError(f"evals task {task!r}: not a task folder name (e.g. 'sarcasm')")
        if task in EVALS_EXCLUDED:
            raise ValueError(f"evals task {task!r} is excluded (not MIT-licensed)")
        folder = root / task
        if not folder.is_dir():
            raise ValueError(f"evals task {task!r}: no folder {folder}")
        found: dict[str, EvalItem] = {}
        for path in sorted(folder.rglob("*.jsonl"), key=lambda p: p.relative_to(folder).as_posix()):
            with path.open("rb") as fh:
                for line in fh:
                    try:
                        record = json.loads(line)
                        turns = evals_turns(record) if isinstance(record, dict) else None
                    except (ValueError, RecordError):
                        continue
                    answers = _ideal_list(record) if turns else ()
                    if not answers:
                        continue
                    prompt = tuple((t[0], t[1]) for t in turns[:-1])
                    item_id = sha256_text(canonical_json([[list(t) for t in prompt], list(answers)]))[:16]
                    found.setdefault(item_id, EvalItem("tasks", task, HELDOUT_TASKS.get(task, task), prompt,
                                                       answers, item_id))
                    if len(found) >= TASK_SCAN:
                        break
            if len(found) >= TASK_SCAN:
                break
        if len(found) < per_task:
            raise ValueError(f"evals task {task!r}: only {len(found)} valid chat samples, {per_task} needed")
        rank = sorted(found, key=lambda k: hashlib.sha256(k.encode()).hexdigest())[:per_task]
        items.extend(found[k] for k in rank)
    return items


def dataset_items(dataset: Dataset, set_name: str, rows: Sequence[int] | None = None) -> list[EvalItem]:
    """Items of a loaded dataset: prompt = turns before the last assistant turn, answer = that turn.

    Samples without an assistant turn are skipped (nothing to score). Category = the sample's
    category (or the set name).
    """
    out = []
    for i in rows if rows is not None else range(len(dataset)):
        turns = [(t[0], t[1]) for t in dataset.turns[i]]
        last = max((j for j, t in enumerate(turns) if t[0] == "assistant"), default=None)
        if last is None:
            continue
        category = dataset.categories[i] or set_name
        out.append(EvalItem(set_name, category, category, tuple(turns[:last]), (turns[last][1],), dataset.ids[i]))
    return out


def pool_tasks(dataset: Dataset) -> set[str]:
    """Evals task folders a dataset contains (from ``evals:registry/data/<task>/`` sources) and its categories."""
    names = {c for c in dataset.categories if c}
    for source in dataset.sources:
        if source.startswith("evals:registry/data/"):
            names.add(source.split("/")[2])
    return names


def assert_disjoint(items: Sequence[EvalItem], dataset: Dataset) -> None:
    """Raise ValueError if a held-out task item's task is in the pool (by category or source)."""
    overlap = sorted({i.task for i in items if i.set_name == "tasks"} & pool_tasks(dataset))
    if overlap:
        raise ValueError(
            f"held-out evaluation tasks also in the pool {dataset.name!r}: {overlap}; "
            "choose other --eval-tasks or remove them from the data"
        )


def assert_user_disjoint(user: Dataset, dataset: Dataset) -> None:
    """Raise ValueError if a sample of the user's evaluation set is also a pool sample (same turns).

    The pool's samples can be selected and trained on, so scoring them would reward memorising.
    """
    def key(turns: Sequence[Any]) -> tuple[tuple[str, str], ...]:
        return tuple((t[0], " ".join(str(t[1]).split())) for t in turns)

    pool = {key(t) for t in dataset.turns}
    shared = [user.ids[i] for i, t in enumerate(user.turns) if key(t) in pool]
    if shared:
        raise ValueError(
            f"--eval-data: {len(shared)} of its {len(user)} samples are also in the pool {dataset.name!r} "
            f"(e.g. {', '.join(shared[:3])}); a held-out set must not be trainable — remove them"
        )
