"""The peer methods researchers compare MADS against, in one registry.

Each entry says what the method reads (``needs``), what its per-pick number means, and
which ``PeerConfig`` fields are its settings. ``mads_core.pipeline.run_method`` gathers
the inputs (embeddings, IFD, target fingerprints) and calls :func:`run_peer`.

| method | reads | source |
|---|---|---|
| ``longest`` | the records | Zhao et al., "Long Is More for Alignment", ICML 2024 |
| ``ifd`` | IFD from the fingerprinting model | Li et al., NAACL 2024 |
| ``superfilter`` | IFD + sentence embeddings | Li et al., Superfiltering, ACL 2024 |
| ``facility-embed`` | sentence embeddings | facility location (QDIT; Superfiltering.D) |
| ``deita`` | a score + sentence embeddings | Liu et al., DEITA, ICLR 2024 |
| ``mads-lenctl`` | fingerprints + own-token counts | MADS, length-normalised gains |
| ``target-mads`` | fingerprints + target fingerprints | MADS, target-weighted neurons |
| ``nait`` | fingerprints + target fingerprints | NAIT-style alignment |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mads_core.config import PeerConfig, SelectConfig
from mads_core.select.greedy import Selection


@dataclass(frozen=True)
class Peer:
    """A registered peer method: what it reads, what it means, which settings it takes."""

    name: str
    needs: frozenset[str]  # of: "dataset", "bits", "embeddings", "ifd", "target"
    description: str
    settings: tuple[str, ...]  # PeerConfig fields it uses


PEERS: dict[str, Peer] = {
    "longest": Peer("longest", frozenset({"dataset"}),
                    "Longest responses first (Zhao et al., ICML 2024: 'Long Is More for Alignment').", ()),
    "ifd": Peer("ifd", frozenset({"ifd"}),
                "Highest instruction-following difficulty within [0, 1) first (Li et al., NAACL 2024), "
                "IFD from the fingerprinting model.", ()),
    "superfilter": Peer("superfilter", frozenset({"ifd", "embeddings"}),
                        "Superfiltering.D: IFD top share, then facility location on MiniLM embeddings "
                        "(Li et al., ACL 2024).", ("ifd_top", "n_neighbors")),
    "facility-embed": Peer("facility-embed", frozenset({"embeddings"}),
                           "Greedy facility location on MiniLM embeddings, sparse kNN cosine similarity "
                           "(apricot-select).", ("n_neighbors",)),
    "deita": Peer("deita", frozenset({"embeddings", "score"}),
                  "DEITA-style: by score, keep a sample only if its cosine similarity to every kept one is "
                  "<= threshold (Liu et al., ICLR 2024).", ("deita_score", "deita_threshold")),
    "mads-lenctl": Peer("mads-lenctl", frozenset({"bits"}),
                        "Length-controlled MADS: greedy on newly covered neurons / own_tokens**alpha.",
                        ("lenctl_alpha",)),
    "target-mads": Peer("target-mads", frozenset({"bits", "target"}),
                        "Target-aware MADS: neurons weighted by how many target samples fire them.", ()),
    "nait": Peer("nait", frozenset({"bits", "target"}),
                 "NAIT-style: alignment of each fingerprint with the target set's principal directions.",
                 ("nait_directions",)),
}


def peer_needs(method: str, config: PeerConfig | None = None) -> frozenset[str]:
    """Inputs ``method`` reads; for ``deita`` the score source decides whether IFD is needed."""
    needs = set(PEERS[method].needs)
    if "score" in needs:
        needs.discard("score")
        score = (config or PeerConfig()).deita_score
        needs.add("ifd" if score == "ifd" else "dataset")
    return frozenset(needs)


def peer_settings(method: str, config: PeerConfig | None) -> dict[str, Any]:
    """The PeerConfig fields ``method`` uses (for manifests and memo keys)."""
    config = config or PeerConfig()
    return {name: getattr(config, name) for name in PEERS[method].settings}


def deita_scores(dataset: Any, config: PeerConfig, ifd: np.ndarray | None) -> np.ndarray:
    """The per-sample score DEITA sorts by: IFD, response length, or a numeric record field."""
    from mads_core.select.deita import score_column
    from mads_core.select.length import response_lengths

    score = config.deita_score
    if score == "ifd":
        if ifd is None:
            raise ValueError("deita with score 'ifd' needs IFD scores")
        return np.asarray(ifd, dtype=np.float64)
    if score == "length":
        return response_lengths(dataset).astype(np.float64)
    return score_column(dataset, score.split(":", 1)[1])


def run_peer(
    method: str,
    budget: int | float,
    *,
    dataset: Any = None,
    fingerprints: Any = None,
    embeddings: np.ndarray | None = None,
    ifd: np.ndarray | None = None,
    target_bits: np.ndarray | None = None,
    config: PeerConfig | None = None,
    select_config: SelectConfig | None = None,
) -> Selection:
    """One peer method's ranking up to ``budget`` (inputs already gathered by the pipeline)."""
    config = config or PeerConfig()
    if method == "longest":
        from mads_core.select.length import select_longest

        return select_longest(dataset, budget)
    if method == "ifd":
        from mads_core.select.ifd import select_ifd

        return select_ifd(ifd, budget)
    if method == "superfilter":
        from mads_core.select.ifd import select_superfilter

        return select_superfilter(ifd, embeddings, budget, config.ifd_top, config.n_neighbors)
    if method == "facility-embed":
        from mads_core.select.facility import select_facility

        return select_facility(embeddings, budget, config.n_neighbors)
    if method == "deita":
        from mads_core.select.deita import select_deita

        return select_deita(deita_scores(dataset, config, ifd), embeddings, budget, config.deita_threshold,
                            config.deita_score)
    if method == "mads-lenctl":
        from mads_core.select.length import select_mads_lenctl

        return select_mads_lenctl(fingerprints.bits, fingerprints.n_neurons, fingerprints.token_counts, budget,
                                  config.lenctl_alpha)
    if method in ("target-mads", "nait"):
        if target_bits is None:
            raise ValueError(f"{method} needs a target set: give a file of examples (--target FILE)")
        from mads_core.select.target import select_nait, select_target_mads

        if method == "nait":
            return select_nait(fingerprints.bits, fingerprints.n_neurons, target_bits, budget,
                               config.nait_directions)
        cfg = select_config or SelectConfig()
        return select_target_mads(fingerprints.bits, fingerprints.n_neurons, target_bits, budget, cfg,
                                  layer_offsets=fingerprints.layer_offsets)
    raise ValueError(f"unknown peer method {method!r}; choose one of: {', '.join(PEERS)}")
