"""Teaching mode: a small real instance and the MADS greedy replayed one pick at a time.

The "How MADS chooses" page shows the method working on real data rather than
describing it. Everything it draws comes from here (pure functions, no Streamlit):

* **The instance** (:func:`choose_rows`, :func:`choose_neurons`, :func:`load_instance`):
  12 samples of the bundled default demo, fingerprinted with the same code and
  default settings as the rest of the app (``fingerprint_dataset(subset,
  ModelSpec(), FingerprintConfig())``, cached on disk like every fingerprint),
  and a readable slice of 60 of the model's 46,080 neurons.
* **The MADS walk** (:func:`mads_walk`): the ranking is
  :func:`mads_core.select.greedy.select_mads` on the sliced fingerprints (the real
  algorithm); the gain of every remaining candidate at every step is recomputed
  by :func:`candidate_gains` (a brute-force evaluation), and the walk checks that
  each pick is the highest gain with ties to the lowest row, as ``select`` promises.
* **The text baseline** (:func:`kcenter_walk`): k-center on MiniLM sentence
  embeddings (:func:`mads_core.select.baselines.kcenter_greedy`), with the distances it
  compares at every step recomputed by :func:`kcenter_scores`.

Instance rules (deterministic, documented on the page):

Rows — among demo samples whose prompt has at least ``MIN_PROMPT_WORDS`` words,
each category's sample whose own text (prompt + response characters) is closest
to ``TARGET_CHARS`` (ties: lowest row). Categories are then taken in order of that
closeness (ties: lowest row), at most ``MAX_PER_SOURCE`` from one source (ifbench,
chatterbot-corpus, evals), until ``SAMPLE_COUNT``; the instance keeps demo order.
Why: short texts of similar length (length alone changes how many neurons fire),
from many categories and all three sources.

Neurons — neurons fired (plane 0) by at least 2 and at most n - 2 of the samples
(one that fires on all or all but one separates little); one neuron per distinct
firing pattern (identical columns add nothing; the lowest-numbered is kept); in
each layer ranked by how evenly they split the samples, ``|2 * count - n|``
ascending, ties by neuron number; then taken round-robin over the layers (every
layer's best, then every layer's second best, ...) until ``NEURON_COUNT``, so the
slice spans the whole depth of the model. Shown in neuron order.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mads_core.config import FingerprintConfig, ModelSpec, SelectConfig, canonical_json, sha256_text
from mads_core.data.loader import Dataset
from mads_core.select.baselines import kcenter_greedy
from mads_core.select.bitops import pack_bits, unpack_bits
from mads_core.select.greedy import Selection, select_mads

SAMPLE_COUNT = 12
TARGET_CHARS = 100
MAX_PER_SOURCE = 5
MIN_PROMPT_WORDS = 4
NEURON_COUNT = 60
DEMO_PRESET = "default"
# Bump when the instance rules change (part of the page's memo key).
TEACH_VERSION = 1

__all__ = [
    "Instance",
    "KCenterStep",
    "KCenterWalk",
    "Step",
    "Walk",
    "build_instance",
    "cached_instance",
    "candidate_gains",
    "choose_neurons",
    "clamp_step",
    "greedy_bound",
    "choose_rows",
    "kcenter_scores",
    "kcenter_walk",
    "load_instance",
    "mads_walk",
    "own_chars",
    "percent",
    "plain_gains",
    "source_family",
    "union_steps",
    "walk_config",
]


# --------------------------------------------------------------------------- instance


def source_family(source: str) -> str:
    """The data source a demo record came from (``"evals"`` for ``"evals:registry/..."``)."""
    return source.split(":", 1)[0]


def own_chars(dataset: Dataset, i: int) -> int:
    """Characters of the sample's own text (prompt + response): what the fingerprint reads."""
    return len(dataset.prompt(i)) + len(dataset.response(i))


def choose_rows(
    dataset: Dataset,
    n_samples: int = SAMPLE_COUNT,
    target_chars: int = TARGET_CHARS,
    max_per_source: int = MAX_PER_SOURCE,
    min_prompt_words: int = MIN_PROMPT_WORDS,
) -> np.ndarray:
    """Rows of a small, varied instance (see the module docstring), ascending.

    Raises ValueError when the dataset cannot supply ``n_samples`` categories under
    the per-source cap.
    """
    best: dict[Any, tuple[int, int]] = {}
    for i in range(len(dataset)):
        if len(dataset.prompt(i).split()) < min_prompt_words:
            continue
        key = (abs(own_chars(dataset, i) - target_chars), i)
        cat = dataset.categories[i]
        if cat not in best or key < best[cat]:
            best[cat] = key
    taken: list[int] = []
    per_source: Counter[str] = Counter()
    for _, i in sorted(best.values()):
        family = source_family(dataset.sources[i])
        if per_source[family] >= max_per_source:
            continue
        taken.append(i)
        per_source[family] += 1
        if len(taken) == n_samples:
            return np.array(sorted(taken), dtype=np.int64)
    raise ValueError(f"only {len(taken)} categories qualify for the teaching instance (need {n_samples})")


def choose_neurons(fired: np.ndarray, layer_offsets: Sequence[int], n_neurons: int = NEURON_COUNT) -> np.ndarray:
    """Neuron ids of a readable slice of ``fired`` (N, D) bool (see the module docstring), ascending."""
    fired = np.asarray(fired, dtype=bool)
    n = fired.shape[0]
    counts = fired.sum(axis=0)
    usable = np.flatnonzero((counts >= 2) & (counts <= n - 2))
    first_of_pattern: dict[bytes, int] = {}
    for d in usable:
        first_of_pattern.setdefault(np.packbits(fired[:, d]).tobytes(), int(d))
    distinct = np.array(sorted(first_of_pattern.values()), dtype=np.int64)
    offsets = np.asarray(layer_offsets, dtype=np.int64)
    layer = np.searchsorted(offsets, distinct, side="right") - 1
    evenness = np.abs(2 * counts[distinct] - n)
    by_layer: dict[int, list[int]] = defaultdict(list)
    for j in np.lexsort((distinct, evenness)):
        by_layer[int(layer[j])].append(int(distinct[j]))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n_neurons and any(len(v) > depth for v in by_layer.values()):
        for lay in sorted(by_layer):
            if len(by_layer[lay]) > depth and len(chosen) < n_neurons:
                chosen.append(by_layer[lay][depth])
        depth += 1
    return np.array(sorted(chosen), dtype=np.int64)


@dataclass(frozen=True)
class Instance:
    """The small real instance: samples, a slice of neurons, their fingerprints and embeddings.

    ``planes`` (P, N, D) bool: plane 0 = fires (activation > tau), plane j = above the
    j-th finer level (``plane_thresholds``), restricted to the sliced ``neurons``.
    """

    demo_rows: np.ndarray          # (N,) rows of the demo dataset, ascending
    ids: tuple[str, ...]
    categories: tuple[str, ...]
    sources: tuple[str, ...]       # source family per sample (ifbench / chatterbot-corpus / evals)
    prompts: tuple[str, ...]
    responses: tuple[str, ...]
    texts: tuple[str, ...]         # display text (what the embeddings read)
    token_counts: np.ndarray       # (N,) own tokens the model read
    fired_total: np.ndarray        # (N,) neurons fired among all of the model's neurons
    neurons: np.ndarray            # (D,) neuron ids in the full fingerprint
    neuron_layers: np.ndarray      # (D,) model layer of each sliced neuron
    neuron_units: np.ndarray       # (D,) position of the neuron within its layer
    planes: np.ndarray             # (P, N, D) bool
    plane_thresholds: tuple[float, ...]
    model_neurons: int             # neurons in the whole fingerprint (46,080 for the bundled model)
    embeddings: np.ndarray         # (N, 384) float32 MiniLM vectors of ``texts``
    fingerprint_key: str

    @property
    def n(self) -> int:
        return int(self.planes.shape[1])

    @property
    def d(self) -> int:
        return int(self.planes.shape[2])

    @property
    def fired(self) -> np.ndarray:
        """(N, D) bool: plane 0 of the slice."""
        return self.planes[0]

    @property
    def support(self) -> np.ndarray:
        """(D,) samples of the instance firing each sliced neuron."""
        return self.fired.sum(axis=0)

    @property
    def levels(self) -> np.ndarray:
        """(N, D) int: highest plane a cell reaches (0 = does not fire, 1 = > tau, 2 = > first level...)."""
        return self.planes.sum(axis=0).astype(np.int64)

    @property
    def key(self) -> str:
        """Stable identity of the instance (fingerprints + slice) for memo keys."""
        return sha256_text(canonical_json([self.fingerprint_key, self.neurons.tolist()]))[:16]

    def packed(self) -> np.ndarray:
        """(P, N, W) packed uint64 planes of the slice, as ``select_mads`` reads them."""
        return pack_bits(self.planes)

    def neuron_label(self, j: int) -> str:
        """``L7·u412``: layer 7, unit 412 of that layer."""
        return f"L{int(self.neuron_layers[j])}·u{int(self.neuron_units[j])}"

    def short_text(self, i: int, chars: int = 34) -> str:
        """One line of the prompt for axis labels."""
        text = " ".join(self.prompts[i].split())
        return text if len(text) <= chars else text[: chars - 1] + "…"


def build_instance(demo: Dataset, rows: np.ndarray, fp: Any, embeddings: np.ndarray,
                   n_neurons: int = NEURON_COUNT) -> Instance:
    """Assemble the instance from the demo, its chosen rows, their fingerprints and embeddings.

    ``fp`` is the :class:`mads_core.model.fingerprint.Fingerprints` of ``demo.subset(rows)``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    all_planes = unpack_bits(np.asarray(fp.planes), fp.n_neurons)
    neurons = choose_neurons(all_planes[0], fp.layer_offsets, n_neurons)
    offsets = np.asarray(fp.layer_offsets, dtype=np.int64)
    pos = np.searchsorted(offsets, neurons, side="right") - 1
    sub = demo.subset(rows)
    return Instance(
        demo_rows=rows,
        ids=tuple(sub.ids),
        categories=tuple(str(c) for c in sub.categories),
        sources=tuple(source_family(s) for s in sub.sources),
        prompts=tuple(sub.prompt(i) for i in range(len(sub))),
        responses=tuple(sub.response(i) for i in range(len(sub))),
        texts=tuple(sub.display_text(i) for i in range(len(sub))),
        token_counts=np.asarray(fp.token_counts, dtype=np.int64),
        fired_total=all_planes[0].sum(axis=1).astype(np.int64),
        neurons=neurons,
        neuron_layers=np.asarray(fp.layers, dtype=np.int64)[pos],
        neuron_units=neurons - offsets[pos],
        planes=np.ascontiguousarray(all_planes[:, :, neurons]),
        plane_thresholds=tuple(float(t) for t in fp.plane_thresholds),
        model_neurons=int(fp.n_neurons),
        embeddings=np.asarray(embeddings, dtype=np.float32),
        fingerprint_key=str(fp.key),
    )


def load_instance(
    cache: str | Path | None = None,
    loaded: Any = None,
    progress: Callable[[int, int], None] | None = None,
    demo: Dataset | None = None,
) -> Instance:
    """The teaching instance from the bundled demo, bundled model and default settings.

    Fingerprints and embeddings come from the on-disk caches when present (no model is
    loaded then); otherwise they are computed (a few seconds for 12 short samples) and
    cached. ``loaded`` reuses an already loaded model.
    """
    from mads_core.data.demo import load_demo
    from mads_core.model.embed import dataset_embeddings
    from mads_core.model.fingerprint import fingerprint_dataset

    demo = demo if demo is not None else load_demo(DEMO_PRESET)
    rows = choose_rows(demo)
    sub = demo.subset(rows)
    fp = fingerprint_dataset(sub, ModelSpec(), FingerprintConfig(), cache=cache, loaded=loaded, progress=progress)
    emb = np.asarray(dataset_embeddings(sub, cache_root=cache))
    return build_instance(demo, rows, fp, emb)


def cached_instance(demo: Dataset, cache: str | Path | None = None) -> Instance | None:
    """The instance when its fingerprints and embeddings are both cached on disk, else None (no model load)."""
    from mads_core.model import embed
    from mads_core.model.fingerprint import cached_fingerprints
    from mads_core.model.store import artifact_dir, load_arrays

    rows = choose_rows(demo)
    sub = demo.subset(rows)
    fp = cached_fingerprints(sub, ModelSpec(), FingerprintConfig(), cache)
    if fp is None:
        return None
    hit = load_arrays(artifact_dir(embed.CACHE_KIND, embed.embedding_key(sub), cache))
    emb = hit[0].get("embeddings") if hit is not None else None
    if emb is None or emb.shape[0] != len(rows):
        return None
    return build_instance(demo, rows, fp, np.asarray(emb))


# --------------------------------------------------------------------------- MADS walk


def walk_config(continuation: str = "rounds", m: int = 2) -> SelectConfig:
    """The selection settings of the walk: the chosen continuation (and m), uniform weights, no filters.

    The slice already keeps only neurons fired by 2..n-2 samples, so support and share
    filters would change nothing; uniform weights keep gains whole neuron counts.
    """
    return SelectConfig(continuation=continuation, m=int(m))


def _ground(instance: Instance, config: SelectConfig) -> np.ndarray:
    """(P', N, D) bool elements counted by the objective: all planes for "states", else plane 0."""
    return instance.planes if config.continuation == "states" else instance.planes[:1]


def candidate_gains(ground: np.ndarray, hits: np.ndarray, taken: np.ndarray, m: int) -> np.ndarray:
    """Gain of every sample: elements it fires that fewer than ``m`` picks have counted so far.

    ground (P, N, D) bool; hits (P, D) int picks that counted each element this round;
    taken (N,) bool already picked (their gain is reported as -1).
    """
    live = hits < m
    gains = np.einsum("pnd,pd->n", ground.astype(np.int64), live.astype(np.int64))
    return np.where(taken, -1, gains)


def plain_gains(fired: np.ndarray, picked: Sequence[int]) -> np.ndarray:
    """Gains under plain coverage (each neuron once, no reset) after ``picked``; -1 for picked rows."""
    fired = np.asarray(fired, dtype=bool)
    taken = np.zeros(fired.shape[0], dtype=bool)
    taken[list(picked)] = True
    covered = fired[taken].any(axis=0)
    return np.where(taken, -1, (fired & ~covered).sum(axis=1))


@dataclass(frozen=True)
class Step:
    """Pick number ``t`` (1-based) of the MADS walk and everything shown about it.

    gains (N,) int: every candidate's gain just before this pick (-1 = picked earlier).
    tied: rows sharing the highest gain (the pick is the lowest of them).
    reset: coverage was reset just before this pick (a new round starts).
    filler: no candidate gains anything (plain greedy's zero-gain tail, index order).
    new_cols (D,) bool: sliced neurons this pick counted (any level).
    col_cover (D,) float in [0, 1]: how far each neuron's elements are covered this round.
    objective: covered elements this round (out of ``Walk.capacity``); union: neurons
    fired by any pick so far (plain coverage, across rounds).
    """

    t: int
    pick: int
    gain: int
    gains: np.ndarray
    tied: tuple[int, ...]
    round: int
    reset: bool
    filler: bool
    new_cols: np.ndarray
    col_cover: np.ndarray
    objective: int
    union: int


@dataclass(frozen=True)
class Walk:
    """The MADS ranking of the instance with every step's candidate gains.

    ``first_gains`` are the gains before pick 1 (step 0). ``saturation`` is the number of
    picks after which plain coverage is complete (every sliced neuron fired by a pick),
    or None if it never is.
    """

    config: SelectConfig
    selection: Selection
    steps: tuple[Step, ...]
    first_gains: np.ndarray
    capacity: int
    saturation: int | None

    @property
    def ranking(self) -> np.ndarray:
        """Row indices in pick order."""
        return self.selection.ranking


def _column_cover(ground: np.ndarray, hits: np.ndarray, m: int) -> np.ndarray:
    """(D,) share of each neuron's counting (element x m) slots filled this round: what the grid shades."""
    exists = ground.any(axis=1)  # (P, D): elements some sample fires
    done = np.minimum(hits, m) * exists
    total = m * exists.sum(axis=0)
    return np.divide(done.sum(axis=0), total, out=np.zeros(total.shape, dtype=np.float64), where=total > 0)


def mads_walk(instance: Instance, config: SelectConfig | None = None) -> Walk:
    """Run ``select_mads`` on the instance and replay it, recomputing every candidate's gain.

    Raises RuntimeError if a pick is not the highest gain (lowest row on ties) or its
    gain differs from the Selection's: the replay and the algorithm must agree.
    """
    config = config or walk_config()
    packed = instance.packed()
    sel = select_mads(packed[0], instance.d, instance.n, config, planes=packed)
    ground = _ground(instance, config)
    m = config.m if config.continuation == "mcover" else 1
    reset_allowed = config.continuation != "none"
    taken = np.zeros(instance.n, dtype=bool)
    hits = np.zeros((ground.shape[0], instance.d), dtype=np.int64)
    first = candidate_gains(ground, hits, taken, m)
    base = first.copy()
    capacity = int(m * ground.any(axis=1).sum())
    fired = instance.fired
    union = np.zeros(instance.d, dtype=bool)
    steps: list[Step] = []
    rnd = 0
    for t, pick in enumerate(sel.ranking.tolist(), start=1):
        gains = candidate_gains(ground, hits, taken, m)
        reset = False
        if gains.max() <= 0 and reset_allowed and bool(np.any(base[~taken] > 0)):
            hits[:] = 0
            rnd += 1
            reset = True
            gains = candidate_gains(ground, hits, taken, m)
        best = int(gains.max())
        tied = tuple(int(i) for i in np.flatnonzero(gains == best))
        filler = best <= 0
        if pick != tied[0] or best != int(round(sel.gains[t - 1])) or rnd != int(sel.rounds[t - 1]):
            raise RuntimeError(f"step {t}: select_mads picked row {pick} (gain {sel.gains[t - 1]:g}, round "
                               f"{int(sel.rounds[t - 1])}) but the recomputed gains say row {tied[0]} "
                               f"(gain {best}, round {rnd})")
        counted = ground[:, pick, :] & (hits < m) if not filler else np.zeros_like(hits, dtype=bool)
        hits += counted
        taken[pick] = True
        union |= fired[pick]
        steps.append(Step(t=t, pick=pick, gain=best, gains=gains, tied=tied, round=rnd, reset=reset,
                          filler=filler, new_cols=counted.any(axis=0), col_cover=_column_cover(ground, hits, m),
                          objective=int(np.minimum(hits, m).sum()), union=int(union.sum())))
    covered = np.asarray(sel.neurons_covered)
    full = np.flatnonzero(covered >= int(fired.any(axis=0).sum()))
    return Walk(config=config, selection=sel, steps=tuple(steps), first_gains=first, capacity=capacity,
                saturation=int(full[0]) + 1 if full.size else None)


# --------------------------------------------------------------------------- text k-center


def union_steps(fired: np.ndarray, ranking: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Plain coverage as picks accumulate: (new (K, D) bool newly covered by pick r, covered (K, D) after it)."""
    fired = np.asarray(fired, dtype=bool)
    covered = np.logical_or.accumulate(fired[np.asarray(ranking, dtype=np.int64)], axis=0)
    before = np.vstack([np.zeros((1, fired.shape[1]), dtype=bool), covered[:-1]])
    return covered & ~before, covered


def kcenter_scores(embeddings: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
    """What k-center compares before its next pick, for every sample (NaN for chosen ones).

    No pick yet: cosine distance to the mean of the unit vectors (the first pick is the
    smallest: the most typical text). Afterwards: cosine distance to the nearest pick
    (the next pick is the largest: the text least like anything picked).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    chosen = [int(c) for c in chosen]
    if not chosen:
        mean = unit.mean(axis=0)
        size = float(np.linalg.norm(mean))
        scores = 1.0 - (unit @ mean) / (size if size > 0 else 1.0)
    else:
        scores = np.clip(1.0 - unit @ unit[chosen].T, 0.0, 2.0).min(axis=1)
    scores = scores.astype(np.float64)
    scores[chosen] = np.nan
    return scores


@dataclass(frozen=True)
class KCenterStep:
    """Pick ``t`` of k-center: the scores it compared, its pick, and the neurons that pick newly covers."""

    t: int
    pick: int
    scores: np.ndarray
    rule: str            # "closest to the mean" (first pick) or "farthest from the picks"
    new_cols: np.ndarray
    col_cover: np.ndarray
    union: int


@dataclass(frozen=True)
class KCenterWalk:
    """The k-center ranking of the instance (``kcenter_greedy`` on MiniLM embeddings) with every step."""

    selection: Selection
    steps: tuple[KCenterStep, ...]

    @property
    def ranking(self) -> np.ndarray:
        """Row indices in pick order."""
        return self.selection.ranking


def kcenter_walk(instance: Instance) -> KCenterWalk:
    """K-center (cosine, start nearest the mean) on the instance's MiniLM embeddings, replayed step by step."""
    sel = kcenter_greedy(instance.embeddings, instance.n, "cosine", "mean", method="kcenter-embed")
    new, covered = union_steps(instance.fired, sel.ranking)
    steps = []
    for t, pick in enumerate(sel.ranking.tolist(), start=1):
        scores = kcenter_scores(instance.embeddings, sel.ranking[: t - 1])
        steps.append(KCenterStep(t=t, pick=int(pick), scores=scores,
                                 rule="closest to the mean" if t == 1 else "farthest from the picks",
                                 new_cols=new[t - 1], col_cover=covered[t - 1].astype(np.float64),
                                 union=int(covered[t - 1].sum())))
    return KCenterWalk(selection=sel, steps=tuple(steps))


def clamp_step(step: Any, n: int) -> int:
    """A stored step as an int in [0, n] (anything unreadable becomes 0)."""
    try:
        value = int(step)
    except (TypeError, ValueError):
        return 0
    return min(max(value, 0), n)


def percent(part: float, whole: float) -> str:
    """``"57 %"``-style share for captions (0 % when ``whole`` is 0)."""
    return f"{100.0 * part / whole:.0f}%" if whole else "0%"


def greedy_bound() -> float:
    """1 - 1/e, the share of the best possible coverage greedy is guaranteed to reach."""
    return 1.0 - 1.0 / math.e
