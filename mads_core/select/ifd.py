"""Instruction-following difficulty (IFD) from the fingerprinting model, cached per sample.

IFD (Li et al., "From Quantity to Quality", NAACL 2024; computed with a small model in
Superfiltering, Li et al., ACL 2024)::

    IFD(Q, A) = s(A | Q) / s(A)

where ``s(A | Q)`` is the mean cross-entropy (nats/token) of the response tokens when
the model reads the whole rendered sample (chat template, instruction first), and
``s(A)`` the mean cross-entropy of the same response tokens read alone (after one
start token: the tokenizer's BOS, else EOS). IFD < 1: the instruction helps predict
the response; the higher (towards 1), the less it helps — the "difficult" samples the
method prefers. IFD >= 1: the instruction does not help at all (Li et al. and
Superfiltering treat these as misaligned pairs and drop them). A sample with no
assistant turn, or whose response is cut off entirely by the token window, has no IFD
(NaN).

Rendering, template, system prompt and the token window are those of the fingerprint
settings (``FingerprintConfig``: ``template``, ``system_prompt``, ``max_tokens``), so
the conditioned pass is exactly the fingerprint forward pass: :func:`shared_pass` runs
it once with the fingerprint hooks attached and returns both (the saving is measured
in ``bench/select.py --ifd-share``). The LM head is applied only at the response
positions (not at every token: SmolLM2's 49,152-word vocabulary would otherwise cost
~800 MB of logits per batch).

Cache: ``<cache>/ifd/<key>`` (``mads_core.model.store``: atomic, checksummed), key =
dataset content hash + model identity + template, system prompt, token window, truncation
rule (when not the default) + ``IFD_FORMAT_VERSION``. Fingerprint-only settings
(layers, threshold, pooling, ...) do not change IFD and are not in the key.

Methods:

* ``ifd`` — the samples with the highest IFD within [0, 1) first; samples with
  IFD >= 1 or no IFD follow as index-order filler (``Selection.filler_from``).
  ``gains[r]`` = IFD of pick r.
* ``superfilter`` — Superfiltering.D: keep the top ``ifd_top`` share of samples by IFD
  (within [0, 1)), then facility location on their sentence embeddings down to the
  budget (``mads_core.select.facility``); picks beyond that pool are the remaining
  samples in IFD order (filler).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mads_core.config import FingerprintConfig, ModelSpec, canonical_json, sha256_text
from mads_core.data.loader import Dataset
from mads_core.model.encode import EncodedSample
from mads_core.model.store import artifact_dir, load_arrays, save_arrays
from mads_core.select.greedy import Selection, resolve_budget
from mads_core.select.ranking import make_selection, order_by_score, rank_scores_with_filler

IFD_FORMAT_VERSION = 1
CACHE_KIND = "ifd"
DEFAULT_IFD_TOP = 0.3
DEFAULT_BATCH_TOKENS = 4096
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IFDScores:
    """Per-sample IFD and its two losses. All arrays (N,).

    ifd: float64 ``loss_cond / loss_resp`` (NaN where undefined).
    loss_cond, loss_resp: float64 mean cross-entropy of the response tokens with / without
        the instruction, nats per token (NaN where undefined).
    n_tokens: int32 response tokens scored (after truncation to the token window).
    """

    ifd: np.ndarray
    loss_cond: np.ndarray
    loss_resp: np.ndarray
    n_tokens: np.ndarray
    key: str
    path: str | None = None
    cache_hit: bool = False


@dataclass(frozen=True)
class IFDSample:
    """One sample's token ids, own-token mask (fingerprints) and response-token mask (IFD)."""

    encoded: EncodedSample
    response: tuple[bool, ...]


def _own_runs(mask: Sequence[bool]) -> list[tuple[int, int]]:
    """(start, end) of every maximal run of True in ``mask``."""
    runs, start = [], None
    for t, m in enumerate(mask):
        if m and start is None:
            start = t
        elif not m and start is not None:
            runs.append((start, t))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


def encode_ifd_sample(tokenizer: Any, turns: Sequence[Any], config: FingerprintConfig, window: int) -> IFDSample:
    """Encode one sample exactly as the fingerprint pass does, plus which tokens are its response.

    The response is the sample's last own turn when that turn is an assistant (or tool
    call) turn. Each turn's text is tokenized on its own between template markup, so its
    tokens are the last run of own tokens of the encoding (computed with template tokens
    masked). No response, or a response cut out of the window entirely: an all-False mask.
    """
    from dataclasses import replace

    from mads_core.data.formats import as_turns
    from mads_core.model.encode import RESPONSE_ROLES, encode_sample, render_pieces

    encoded = encode_sample(tokenizer, turns, config, window)
    plain_cfg = replace(config, count_template_tokens=False) if config.count_template_tokens else config
    own = encoded.own_mask if plain_cfg is config else encode_sample(tokenizer, turns, plain_cfg, window).own_mask
    ts = as_turns(turns)
    own_turns = [t for t in ts if t.own and t.text]
    none = (False,) * len(encoded.input_ids)
    if not own_turns or own_turns[-1].role not in RESPONSE_ROLES:
        return IFDSample(encoded, none)
    runs = _own_runs(own)
    n_pieces = sum(1 for p in render_pieces(tokenizer, ts, plain_cfg) if p.own)
    if not runs or len(runs) < n_pieces:  # the response is not in the window
        return IFDSample(encoded, none)
    a, b = runs[-1]
    return IFDSample(encoded, tuple(a <= t < b for t in range(len(encoded.input_ids))))


def ifd_key(dataset_hash: str, identity: dict[str, Any], config: FingerprintConfig, window: int) -> str:
    payload = {"dataset": dataset_hash, "model": identity["hash"], "template": config.template,
               "system_prompt": config.system_prompt, "window": window, "version": IFD_FORMAT_VERSION}
    default = FingerprintConfig()
    for name in ("truncation", "response_share"):  # in the key only when not default (keys made before stay valid)
        if getattr(config, name, None) != getattr(default, name, None):
            payload[name] = getattr(config, name)
    return sha256_text(canonical_json(payload))[:24]


def _start_id(tokenizer: Any) -> int:
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def _batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Length-sorted batches whose padded size (width x rows) stays within ``batch_tokens``."""
    order = np.argsort(lengths, kind="stable")
    out, cur, width = [], [], 0
    for i in order:
        w = max(width, int(lengths[i]), 1)
        if cur and w * (len(cur) + 1) > batch_tokens:
            out.append(np.array(cur))
            cur, w = [], max(int(lengths[i]), 1)
        cur.append(int(i))
        width = w
    if cur:
        out.append(np.array(cur))
    return out


def response_losses(loaded: Any, rows: list[tuple[int, ...]], masks: list[tuple[bool, ...]],
                    recorder: Any = None, own: list[tuple[bool, ...]] | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean cross-entropy (nats/token) of the masked tokens of each row, right-padded in one batch.

    Token t counts when ``masks[row][t]`` and t >= 1 (predicted from tokens < t). NaN when
    no token counts. With ``recorder`` (an entered ``ActivationRecorder``, its early stop
    off) and ``own`` masks, the same pass also returns the packed fingerprint planes.
    """
    import torch
    import torch.nn.functional as F

    from mads_core.model.fingerprint import _pack_bits, pad_token_id

    width = max(1, max(len(r) for r in rows))
    b = len(rows)
    ids = torch.full((b, width), pad_token_id(loaded.tokenizer), dtype=torch.long)
    attn = torch.zeros((b, width), dtype=torch.long)
    tgt = torch.zeros((b, width), dtype=torch.bool)
    for j, (r, m) in enumerate(zip(rows, masks, strict=True)):
        ids[j, :len(r)] = torch.tensor(r, dtype=torch.long)
        attn[j, :len(r)] = 1
        tgt[j, 1:len(r)] = torch.tensor(m[1:len(r)], dtype=torch.bool)
    dev = loaded.device
    planes = None
    if recorder is not None:
        own_t = torch.zeros((b, width), dtype=torch.bool)
        for j, o in enumerate(own or []):
            own_t[j, :len(o)] = torch.tensor(o, dtype=torch.bool)
        recorder.own = own_t.to(dev)
        recorder.fired = torch.zeros((len(recorder.config.planes), b, recorder.n_neurons), dtype=torch.bool,
                                     device=dev)
    model = loaded.model
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    hidden = decoder(input_ids=ids.to(dev), attention_mask=attn.to(dev)).last_hidden_state
    if recorder is not None:
        planes = _pack_bits(recorder.fired.cpu().numpy(), (recorder.n_neurons + 63) // 64)
    pos = tgt[:, 1:].to(dev)  # position p predicts token p + 1
    h = hidden[:, :-1][pos]
    logits = model.get_output_embeddings()(h).float()
    nll = F.cross_entropy(logits, ids[:, 1:].to(dev)[pos], reduction="none")
    row_of = torch.arange(b, device=dev)[:, None].expand(b, width - 1)[pos]
    sums = torch.zeros(b, device=dev, dtype=torch.float32).index_add_(0, row_of, nll)
    counts = pos.sum(dim=1).float()
    mean = (sums / counts.clamp(min=1)).cpu().numpy().astype(np.float64)
    mean[counts.cpu().numpy() == 0] = np.nan
    return mean, planes


def compute_ifd(
    dataset: Dataset,
    loaded: Any,
    config: FingerprintConfig,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """IFD arrays (see :class:`IFDScores`) for every sample; two forward passes per sample."""
    import torch

    window = min(config.max_tokens, loaded.max_positions or config.max_tokens)
    samples = [encode_ifd_sample(loaded.tokenizer, t, config, window) for t in dataset.turns]
    n = len(samples)
    start = _start_id(loaded.tokenizer)
    cond_rows = [s.encoded.input_ids for s in samples]
    cond_masks = [s.response for s in samples]
    resp_rows = [(start, *[t for t, m in zip(s.encoded.input_ids, s.response, strict=True) if m])
                 for s in samples]
    resp_masks = [(False,) + (True,) * (len(r) - 1) for r in resp_rows]
    loss_cond = np.full(n, np.nan)
    loss_resp = np.full(n, np.nan)
    n_tokens = np.array([sum(m[1:]) for m in cond_masks], dtype=np.int32)
    total = 2 * n
    done = 0
    with torch.inference_mode():
        for rows, masks, out in ((cond_rows, cond_masks, loss_cond), (resp_rows, resp_masks, loss_resp)):
            lengths = np.array([len(r) for r in rows])
            for batch in _batches(lengths, batch_tokens):
                out[batch], _ = response_losses(loaded, [rows[i] for i in batch], [masks[i] for i in batch])
                done += len(batch)
                if progress is not None:
                    progress(done, total)
    # a response whose first token is its only token has no conditioned-but-not-first token difference
    valid = (n_tokens > 0) & np.isfinite(loss_cond) & np.isfinite(loss_resp) & (loss_resp > 0)
    ifd = np.full(n, np.nan)
    ifd[valid] = loss_cond[valid] / loss_resp[valid]
    return {"ifd": ifd, "loss_cond": loss_cond, "loss_resp": loss_resp, "n_tokens": n_tokens}


def ifd_scores(
    dataset: Dataset,
    spec: ModelSpec | None = None,
    config: FingerprintConfig | None = None,
    cache: str | Path | None = None,
    progress: Progress | None = None,
    loaded: Any = None,
) -> IFDScores:
    """IFD of every sample, from the cache when present (no model load on a hit)."""
    from mads_core.model.models import load_model, model_identity

    spec = spec or ModelSpec()
    config = config or FingerprintConfig()
    if len(dataset) == 0:
        raise ValueError("the dataset has no records")
    identity = loaded.identity if loaded is not None else model_identity(spec)
    window_hint = config.max_tokens
    key = ifd_key(dataset.content_hash(), identity, config, window_hint)
    folder = artifact_dir(CACHE_KIND, key, cache)
    found = load_arrays(folder)
    if found is not None and found[0]["ifd"].shape == (len(dataset),):
        a = found[0]
        return IFDScores(a["ifd"], a["loss_cond"], a["loss_resp"], a["n_tokens"], key, str(folder), True)
    loaded = loaded or load_model(spec)
    arrays = compute_ifd(dataset, loaded, config, progress=progress)
    meta = {"kind": CACHE_KIND, "key": key, "dataset": dataset.name, "dataset_hash": dataset.content_hash(),
            "model": identity, "template": config.template, "system_prompt": config.system_prompt,
            "max_tokens": config.max_tokens, "version": IFD_FORMAT_VERSION}
    save_arrays(folder, arrays, meta)
    return IFDScores(arrays["ifd"], arrays["loss_cond"], arrays["loss_resp"], arrays["n_tokens"], key,
                     str(folder), False)


def shared_pass(dataset: Dataset, loaded: Any, config: FingerprintConfig,
                batch_tokens: int = DEFAULT_BATCH_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprint planes (P, N, W) and the conditioned response loss (N,) from ONE forward pass.

    The fingerprint hooks (``ActivationRecorder``) stay attached while the full decoder
    runs (their early stop is switched off for this recorder), and the LM head is
    applied at the response positions. The bits equal ``fingerprint_dataset``'s (same
    encoding, same pooling; tested). Only the response-alone pass then remains for IFD.
    """
    import torch

    from mads_core.model.fingerprint import ActivationRecorder

    window = min(config.max_tokens, loaded.max_positions or config.max_tokens)
    samples = [encode_ifd_sample(loaded.tokenizer, t, config, window) for t in dataset.turns]
    recorder = ActivationRecorder(loaded.model, config.layers, config)
    recorder.stop_early = False
    n_words = (recorder.n_neurons + 63) // 64
    planes = np.zeros((len(config.planes), len(samples), n_words), dtype=np.uint64)
    loss = np.full(len(samples), np.nan)
    lengths = np.array([len(s.encoded.input_ids) for s in samples])
    with torch.inference_mode(), recorder:
        for batch in _batches(lengths, batch_tokens):
            out, p = response_losses(loaded, [samples[i].encoded.input_ids for i in batch],
                                     [samples[i].response for i in batch], recorder,
                                     [samples[i].encoded.own_mask for i in batch])
            loss[batch] = out
            planes[:, batch] = p
    return planes, loss


# ---------------------------------------------------------------- selection


def select_ifd(ifd: np.ndarray, budget: int | float) -> Selection:
    """Highest IFD within [0, 1) first; IFD >= 1 and undefined follow as index-order filler."""
    scores = np.asarray(ifd, dtype=np.float64)
    n = scores.shape[0]
    k = resolve_budget(budget, n)
    valid = np.isfinite(scores) & (scores >= 0) & (scores < 1)
    ranking, filler_from = rank_scores_with_filler(scores, valid, k)
    settings = {"budget": budget, "range": "[0, 1)", "model": "fingerprinting model",
                "gain": "IFD = loss(response | instruction) / loss(response alone); filler has IFD >= 1 or none"}
    return make_selection("ifd", n, ranking, scores[ranking], settings, filler_from=filler_from)


def select_superfilter(ifd: np.ndarray, emb: np.ndarray, budget: int | float, ifd_top: float = DEFAULT_IFD_TOP,
                       n_neighbors: int = 20) -> Selection:
    """Superfiltering.D: IFD top ``ifd_top`` share (within [0, 1)), then facility location to the budget."""
    from mads_core.select.facility import select_facility

    scores = np.asarray(ifd, dtype=np.float64)
    n = scores.shape[0]
    if not (0.0 < ifd_top <= 1.0):
        raise ValueError(f"ifd_top must be a share in (0, 1], got {ifd_top!r}")
    k = resolve_budget(budget, n)
    valid = np.isfinite(scores) & (scores >= 0) & (scores < 1)
    by_ifd = order_by_score(scores, np.flatnonzero(valid))
    pool = by_ifd[: resolve_budget(float(ifd_top), n)]
    first = min(k, pool.size)
    if first == 0:
        raise ValueError("superfilter: no sample has an IFD within [0, 1)")
    fac = select_facility(emb, first, n_neighbors=n_neighbors, rows=np.sort(pool))
    ranking, gains = list(fac.ranking), list(fac.gains)
    if k > first:
        rest = np.concatenate([by_ifd[first:], np.flatnonzero(~valid)])
        taken = np.zeros(n, dtype=bool)
        taken[fac.ranking] = True
        rest = rest[~taken[rest]][: k - first]
        ranking += rest.tolist()
        gains += [np.nan] * rest.size
    settings = {"budget": budget, "ifd_top": float(ifd_top), "n_neighbors": int(n_neighbors),
                "pool": int(pool.size), "embeddings": "all-MiniLM-L6-v2",
                "gain": "facility-location gain within the IFD pool (NaN for filler beyond the pool)"}
    return make_selection("superfilter", n, np.array(ranking, dtype=np.int64), np.array(gains), settings,
                          filler_from=first)
