"""Streamlit glue shared by the pages: settings, cached resources, progress, shared controls.

Not a page (``st.navigation`` in ``app.py`` lists the pages explicitly). Heavy
results live in ``mads_core``'s on-disk caches; the ``st.cache_resource`` memo
here only keeps loaded results in memory, and never draws, so nothing has to
be replayed. Work that can take long (fingerprints, embeddings, projections)
runs outside the memo with ``st.status`` + ``st.progress``; a stop or rerun
interrupts it at the next progress update and the finished chunks stay cached.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from mads_core import session
from mads_core.analysis.project import Projection
from mads_core.config import SelectConfig
from mads_core.data.loader import Dataset
from mads_core.model.fingerprint import Fingerprints
from mads_core.model.store import cache_root
from mads_core.select.greedy import Selection
from mads_core.views.plots import method_label

T = TypeVar("T")

# Session-state keys shared across pages (plain keys survive page switches; widget keys do not).
SETTINGS = "settings"
SETTINGS_ERROR = "settings_error"
BUDGET = "budget_k"
METHODS = "methods"
METHOD_SETTINGS = "method_settings"
SELECT_CONFIG = "select_config"
INSPECT_ROW = "inspect_row"
LINKED = "linked_rows"
STOPPED = "fingerprint_stopped"
PROJ_SETTINGS = "projection_settings"
APP_RAN = "_app_ran"
DEEP_LINK = "_deep_link"
ROOT = Path(__file__).resolve().parents[1]


class _Miss(Exception):
    """Nothing cached yet under this key (exceptions are never memoised)."""


@st.cache_resource(show_spinner=False, max_entries=128)
def _memo(kind: str, key: str, _loader: Callable[[], Any]) -> Any:
    """Keep ``_loader()``'s result in memory under (kind, key); a None result is not kept."""
    value = _loader()
    if value is None:
        raise _Miss(kind)
    return value


@st.cache_resource(show_spinner=False, max_entries=24)
def _memo_recent(kind: str, key: str, _loader: Callable[[], Any]) -> Any:
    """Like ``_memo`` for small per-budget results, so they never push rankings out of memory."""
    value = _loader()
    if value is None:
        raise _Miss(kind)
    return value


def memo(kind: str, key: str, loader: Callable[[], T | None], recent: bool = False) -> T | None:
    """The memoised value, or None when ``loader`` returns None (not memoised).

    ``recent``: a small per-budget result kept in a short list of its own.
    """
    try:
        return (_memo_recent if recent else _memo)(kind, f"{cache_root()}|{key}", loader)
    except _Miss:
        return None


# ---------------------------------------------------------------- errors


def error_text(exc: BaseException) -> str:
    """One clear line naming the problem (never a traceback)."""
    name = type(exc).__name__
    known = {"DataError": "Data problem", "ModelError": "Model problem", "FingerprintError": "Fingerprint problem",
             "EmbedError": "Embedding model problem", "UsageError": "Setting problem", "ValueError": "Problem",
             "FileNotFoundError": "File not found", "OSError": "File problem", "MemoryError": "Out of memory"}
    title = known.get(name, f"Unexpected error ({name})")
    text = str(exc).strip() or name
    return f"**{title}:** {text}"


@contextlib.contextmanager
def guard(what: str = "") -> Iterator[None]:
    """Show any error inside as ``st.error`` and stop this page's run; the app stays usable."""
    try:
        yield
    except Exception as exc:  # Streamlit's stop/rerun are BaseExceptions and pass through
        prefix = f"{what}: " if what else ""
        st.error(prefix + error_text(exc), icon=":material/error:")
        st.stop()


# ---------------------------------------------------------------- settings / data


def page_setup(page_file: str) -> None:
    """Make sure ``app.py`` (navigation + sidebar) runs around this page.

    On a fresh server Streamlit resolves the very first URL against the ``pages/``
    folder and may run a deep-linked page on its own; then the page hands over to
    ``app.py``, which opens it again once the sidebar and navigation exist.
    """
    if st.session_state.get(APP_RAN):
        return
    st.session_state[DEEP_LINK] = Path(page_file).resolve().relative_to(ROOT).as_posix()
    st.switch_page("app.py")



def settings() -> session.AppSettings:
    """Current sidebar settings; stops the page with the sidebar's error when they are invalid."""
    problem = st.session_state.get(SETTINGS_ERROR)
    if problem:
        st.error(f"**Settings problem:** {problem} — fix it in the sidebar.", icon=":material/tune:")
        st.stop()
    return st.session_state.get(SETTINGS) or session.AppSettings()


def dataset(s: session.AppSettings) -> Dataset:
    """The chosen dataset (loaded once per choice)."""
    key = json.dumps(s.data.__dict__, sort_keys=True)
    if s.data.kind == "path":
        path = Path(s.data.path).expanduser()
        key += f"|{path.stat().st_mtime_ns if path.is_file() else 0}"
    with guard("Could not load the dataset"), st.spinner(f"Loading {s.data.display_name}…"):
        return memo("dataset", key, lambda: session.load_choice(s.data))


# ---------------------------------------------------------------- fingerprints


def _model(spec: Any) -> Any:
    from mads_core.model.models import load_model

    key = json.dumps(spec.__dict__, sort_keys=True)
    with st.spinner(f"Loading model {spec.name}…"):
        return memo("model", key, lambda: load_model(spec))


def _fp_key(ds: Dataset, s: session.AppSettings) -> str:
    return f"{ds.content_hash()}|{s.model.__dict__}|{s.fingerprint.cache_hash()}"


def cached_fingerprints(ds: Dataset, s: session.AppSettings) -> Fingerprints | None:
    """Fingerprints from memory or the disk cache; None when they must be computed (no model load)."""
    from mads_core.model.fingerprint import cached_fingerprints as from_disk

    with guard("Could not check the fingerprint cache"):
        return memo("fingerprints", _fp_key(ds, s), lambda: from_disk(ds, s.model, s.fingerprint))


def chunks_kept(ds: Dataset, s: session.AppSettings) -> int:
    """Finished chunks of an interrupted fingerprint run waiting in the cache."""
    from mads_core.model.fingerprint import fingerprint_key
    from mads_core.model.models import model_identity
    from mads_core.model.store import artifact_dir

    try:
        key = fingerprint_key(ds.content_hash(), model_identity(s.model), s.fingerprint)
    except Exception:
        return 0
    folder = artifact_dir("fingerprints", key) / "chunks"
    return sum(1 for p in folder.glob("c*-*") if p.is_dir()) if folder.is_dir() else 0


def _stop() -> None:
    st.session_state[STOPPED] = True


def compute_fingerprints(ds: Dataset, s: session.AppSettings) -> Fingerprints:
    """Run the model over the dataset with a live status (batches, samples/s, ETA) and a Stop button."""
    from mads_core.model.fingerprint import fingerprint_dataset

    st.session_state[STOPPED] = False
    n, batch = len(ds), s.fingerprint.batch_size
    with st.status(f"Computing fingerprints of {n:,} samples…", expanded=True) as status:
        st.caption("Finished chunks (256 samples each) are saved as they complete: a stop or a settings change "
                   "keeps them, and the next run resumes from there.")
        st.button("Stop", key="fp_stop_button", on_click=_stop, icon=":material/stop_circle:")
        with guard("Could not load the model"), _failing(status, "Could not load the model"):
            loaded = _model(s.model)
        bar = st.progress(0.0, text="starting…")
        start = time.perf_counter()
        seen: list[tuple[float, int]] = []

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            seen.append((now, done))
            t0, d0 = seen[0]
            rate = (done - d0) / (now - t0) if now > t0 and done > d0 else 0.0
            eta = (total - done) / rate if rate > 0 else float("nan")
            eta_text = f"ETA {_duration(eta)}" if rate > 0 else "ETA …"
            bar.progress(min(done / max(total, 1), 1.0),
                         text=f"batch {-(-done // batch):,} of {-(-total // batch):,} · {done:,}/{total:,} samples"
                         f" · {rate:,.1f} samples/s · {eta_text}")

        with guard("Fingerprinting failed"), _failing(status, "Fingerprinting failed"):
            fp = fingerprint_dataset(ds, s.model, s.fingerprint, progress=progress, loaded=loaded)
        status.update(label=f"Fingerprints computed in {_duration(time.perf_counter() - start)}", state="complete",
                      expanded=False)
    return cached_fingerprints(ds, s) or fp


@contextlib.contextmanager
def _failing(status: Any, label: str) -> Iterator[None]:
    """Mark a ``st.status`` box as failed when the work inside raises (the error itself is shown by ``guard``)."""
    try:
        yield
    except Exception:
        status.update(label=label, state="error", expanded=True)
        raise


def _duration(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "…"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def ensure_fingerprints(ds: Dataset, s: session.AppSettings, auto: bool = True) -> Fingerprints | None:
    """Cached fingerprints, else computed here (when ``auto``, unless the user pressed Stop)."""
    fp = cached_fingerprints(ds, s)
    if fp is not None:
        return fp
    if st.session_state.get(STOPPED):
        kept = chunks_kept(ds, s)
        st.warning(f"Fingerprinting was stopped; {kept} finished chunk(s) are kept in the cache.",
                   icon=":material/pause_circle:")
        if not st.button("Resume fingerprinting", type="primary", icon=":material/play_arrow:"):
            return None
    elif not auto:
        return None
    return compute_fingerprints(ds, s)


def require_fingerprints(ds: Dataset, s: session.AppSettings) -> Fingerprints:
    """Fingerprints for a page that cannot draw without them: computed if missing, else the page stops."""
    fp = ensure_fingerprints(ds, s, auto=True)
    if fp is None:
        st.stop()
    return fp


# ---------------------------------------------------------------- embeddings


def cached_embeddings(ds: Dataset) -> np.ndarray | None:
    """Sentence embeddings from memory or disk; None when they must be computed."""
    from mads_core.model import embed
    from mads_core.model.store import artifact_dir, load_arrays

    def load() -> np.ndarray | None:
        hit = load_arrays(artifact_dir(embed.CACHE_KIND, embed.embedding_key(ds)))
        if hit is None or hit[0].get("embeddings") is None or hit[0]["embeddings"].shape[0] != len(ds):
            return None
        return hit[0]["embeddings"]

    with guard("Could not check the embedding cache"):
        return memo("embeddings", ds.content_hash(), load)


def embeddings(ds: Dataset) -> np.ndarray:
    """MiniLM embeddings of every sample (computed once with a progress bar, then cached on disk)."""
    from mads_core.model.embed import dataset_embeddings

    emb = cached_embeddings(ds)
    if emb is not None:
        return emb
    with st.status(f"Embedding {len(ds):,} texts with MiniLM (text baselines and text map)…",
                   expanded=True) as status:
        bar = st.progress(0.0)

        def progress(done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"{done:,}/{total:,} texts")

        with guard("Embedding failed"), _failing(status, "Embedding failed"):
            dataset_embeddings(ds, progress=progress)
        status.update(label="Embeddings computed", state="complete", expanded=False)
    found = cached_embeddings(ds)
    if found is None:
        st.error("Embeddings were computed but could not be read back from the cache.")
        st.stop()
    return found


# ---------------------------------------------------------------- projections


@dataclass(frozen=True)
class ProjectionSettings:
    """How the 2-D maps are made (shared by Compare and Inspect)."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    svd_dims: int = 50


def projection_settings() -> ProjectionSettings:
    return st.session_state.get(PROJ_SETTINGS) or ProjectionSettings()


def _project(kind: str, memo_key: str, run: Callable[..., Projection], ps: ProjectionSettings, n: int,
             **kw: Any) -> Projection:
    key = f"{kind}|{memo_key}|{ps}"
    found = memo("projection", key, lambda: run(use_cache=True, compute=False, **kw))
    if found is not None:
        return found
    with st.status(f"Projecting {n:,} {kind} to 2-D (once; cached on disk)…", expanded=True) as status:
        bar = st.progress(0.0, text="starting…")
        if n >= 2_000:
            st.caption("UMAP shows no progress of its own; a fresh process also compiles it once (~30 s).")

        def progress(label: str, frac: float) -> None:
            bar.progress(min(max(frac, 0.0), 1.0), text=label)

        with guard(f"Projection of the {kind} failed"), _failing(status, f"Projection of the {kind} failed"):
            result = run(use_cache=True, progress=progress, **kw)
        status.update(label=f"{kind.capitalize()} projected: {result.method}", state="complete", expanded=False)
    return memo("projection", key, lambda: result) or result


def fingerprint_projection(fp: Fingerprints) -> Projection:
    from mads_core.analysis.project import project_fingerprints

    ps = projection_settings()
    return _project("fingerprints", fp.key, project_fingerprints, ps, fp.n_samples, bits=fp.bits,
                    n_neurons=fp.n_neurons, svd_dims=ps.svd_dims, n_neighbors=ps.n_neighbors,
                    min_dist=ps.min_dist, input_key=fp.key)


def embedding_projection(ds: Dataset, emb: np.ndarray) -> Projection:
    from mads_core.analysis.project import project_embeddings
    from mads_core.model.embed import embedding_key

    ps = projection_settings()
    key = embedding_key(ds)
    return _project("embeddings", key, project_embeddings, ps, len(ds), emb=emb, n_neighbors=ps.n_neighbors,
                    min_dist=ps.min_dist, input_key=key)


# ---------------------------------------------------------------- methods / rankings


def method_state() -> tuple[list[str], SelectConfig, dict[str, dict[str, Any]]]:
    """(chosen methods, MADS config, per-method settings) from session state (defaults if unset)."""
    methods = list(st.session_state.get(METHODS) or session.DEFAULT_METHODS)
    config = st.session_state.get(SELECT_CONFIG) or SelectConfig()
    settings_ = st.session_state.get(METHOD_SETTINGS) or {}
    return methods, config, settings_


def ranking(method: str, ds: Dataset, fp: Fingerprints, k: int, emb: np.ndarray | None = None) -> Selection:
    """A method's ranking: once up to the largest budget (k-means: at exactly ``k``), kept in memory.

    Raises on failure (the caller decides how to report it).
    """
    _, config, all_settings = method_state()
    msettings = all_settings.get(method, {})
    upto = k if method in session.PER_BUDGET_METHODS else session.max_budget(len(ds))
    key = f"{ds.content_hash()}|{fp.key}|{session.method_key(method, config, msettings)}|{upto}"

    def run() -> Selection:
        return session.run_method(method, ds, fp, upto, select_config=config, embeddings=emb,
                                  method_settings=msettings)

    with st.spinner(f"Ranking {len(ds):,} samples with {method_label(method)} (once)…"):
        return memo("ranking", key, run, recent=method in session.PER_BUDGET_METHODS)


def export_selection(method: str, ds: Dataset, fp: Fingerprints, k: int, emb: np.ndarray | None) -> Selection:
    """The Selection exactly as ``python -m mads_core select --budget k`` computes it."""
    _, config, all_settings = method_state()
    msettings = all_settings.get(method, {})
    key = f"{ds.content_hash()}|{fp.key}|{session.method_key(method, config, msettings)}|exact|{k}"
    with guard(f"{method_label(method)} failed"), st.spinner(f"Selecting {k:,} samples with "
                                                           f"{method_label(method)}…"):
        return memo("export-selection", key, lambda: session.run_method(
            method, ds, fp, int(k), select_config=config, embeddings=emb, method_settings=msettings), recent=True)


def selections(methods: list[str], ds: Dataset, fp: Fingerprints, k: int,
               emb: np.ndarray | None) -> dict[str, Selection]:
    """Every chosen method's ranking; a method that fails is reported and left out, the rest still draw."""
    out: dict[str, Selection] = {}
    for m in methods:
        try:
            out[m] = ranking(m, ds, fp, k, emb if m in session.NEEDS_EMBEDDINGS else None)
        except Exception as exc:
            st.error(f"{method_label(m)} left out — " + error_text(exc), icon=":material/error:")
    if not out:
        st.stop()
    return out


# ---------------------------------------------------------------- shared controls


def budget_control(n: int, key_prefix: str) -> int:
    """Budget as a percentage slider and a count box, kept in step; returns k (shared by every page)."""
    kmax = session.max_budget(n)
    asked = st.session_state.get(BUDGET) or session.default_budget(n)
    k = session.clamp_budget(asked, n)
    if k != asked:
        st.warning(f"Budget {asked:,} is out of range for this dataset (1 to {kmax:,} of N = {n:,}): using {k:,}.",
                   icon=":material/warning:")
    st.session_state[BUDGET] = k
    pct_key, count_key = f"{key_prefix}_budget_pct", f"{key_prefix}_budget_count"
    max_pct = round(100.0 * kmax / n, 1)
    st.session_state[pct_key] = float(min(max(round(100.0 * k / n, 1), 0.1), max_pct))
    st.session_state[count_key] = k

    def from_pct() -> None:
        st.session_state[BUDGET] = session.clamp_budget(round(st.session_state[pct_key] * n / 100.0), n)

    def from_count() -> None:
        st.session_state[BUDGET] = session.clamp_budget(int(st.session_state[count_key]), n)

    c1, c2 = st.columns([3, 1])
    c1.slider("Budget (% of the dataset)", min_value=0.1, max_value=max(max_pct, 0.2), step=0.1,
              key=pct_key, on_change=from_pct, format="%.1f%%",
              help="Every method ranks the dataset once; moving the budget only takes a longer or shorter prefix.")
    c2.number_input("Budget (samples)", min_value=1, max_value=kmax, step=1, key=count_key, on_change=from_count)
    k = st.session_state[BUDGET]
    note = f" (budgets above {100 * session.LARGE_MAX_FRACTION:.0f}% are not offered for N > " \
           f"{session.LARGE_N:,})" if kmax < n else ""
    st.caption(f"k = **{k:,}** of N = {n:,} samples ({100.0 * k / n:.1f}%){note}")
    return k


def linked_rows() -> np.ndarray:
    return np.asarray(st.session_state.get(LINKED) or [], dtype=np.int64)


def _points_rows(event: Any) -> list[int]:
    points = []
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        with contextlib.suppress(AttributeError):
            points = event.selection.points
    rows = []
    for p in points or []:
        value = p.get("customdata") if isinstance(p, Mapping) else None
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            rows.append(int(value))
    return sorted(set(rows))


def on_map_select(key: str) -> Callable[[], None]:
    """Callback for a map's selection: one point opens it, several become the linked selection."""

    def callback() -> None:
        rows = _points_rows(st.session_state.get(key))
        if not rows:
            return
        st.session_state[LINKED] = rows
        if len(rows) == 1:
            st.session_state[INSPECT_ROW] = rows[0]

    return callback


HOVER_LIMIT = 20_000


def hover_labels(ds: Dataset) -> list[str] | None:
    """Hover text of every point (category + start of the prompt); None above ``HOVER_LIMIT`` points,
    where the maps show the row id only (keeps each rerun's payload small)."""
    if len(ds) > HOVER_LIMIT:
        return None
    return memo("hover", ds.content_hash(), lambda: [session.sample_label(ds, i) for i in range(len(ds))])


def lengths(fp: Fingerprints) -> np.ndarray:
    """Own tokens per sample (what the model read of each sample)."""
    return np.asarray(fp.token_counts, dtype=np.int64)
