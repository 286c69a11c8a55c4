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
import pandas as pd
import streamlit as st

from mads_core import session
from mads_core.analysis.project import Projection
from mads_core.config import SelectConfig
from mads_core.data.loader import Dataset
from mads_core.model.fingerprint import Fingerprints
from mads_core.model.store import cache_root
from mads_core.select.greedy import Selection
from mads_core.views.plots import method_label
from pages import _state as state

T = TypeVar("T")

# Session-state keys shared across pages. Settings the user chooses live in ``pages/_state.py``
# (one registry, widgets drawn from it); these are derived values and transient page state.
SETTINGS = "settings"
SETTINGS_ERROR = "settings_error"
BUDGET = "budget_k"  # the current budget as a count (derived from state.BUDGET_SHARE; read-only for pages)
SELECT_CONFIG = "select_config"  # the MADS SelectConfig in effect (derived; the teaching page follows it)
INSPECT_ROW = state.INSPECT_ROW
LINKED = "linked_rows"
STOPPED = "fingerprint_stopped"
GOTO_INSPECT = "_goto_inspect"
RUNNING = "_fingerprinting"
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
    st.switch_page("app.py", query_params=st.query_params.to_dict())  # a shared link keeps its view



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


def asset_root() -> Path | None:
    """The bundled demo asset, unpacked (once) as a read-only second cache root; None without one."""
    from mads_core.data import demo_asset

    try:
        return memo("demo-asset", str(demo_asset.ASSET_FILE), demo_asset.root)
    except Exception:  # an unreadable asset only means computing as usual
        return None


def from_asset(path: str | Path | None) -> bool:
    """Whether a result was read from the bundled demo asset (pages label it)."""
    from mads_core.data.demo_asset import is_asset_path

    return is_asset_path(path)


def _user_has(kind: str, key: str, leaf: str = "") -> bool:
    from mads_core.model.store import artifact_dir

    folder = artifact_dir(kind, key)
    return ((folder / leaf) if leaf else folder).joinpath("meta.json").is_file()


def cached_fingerprints(ds: Dataset, s: session.AppSettings) -> Fingerprints | None:
    """Fingerprints from memory or the disk cache — the user's own, else the bundled demo asset's when
    it holds exactly these (same data, model and settings); None when they must be computed."""
    from mads_core.model.fingerprint import cached_fingerprints as from_disk
    from mads_core.model.fingerprint import fingerprint_key
    from mads_core.model.models import model_identity

    def load() -> Fingerprints | None:
        found = from_disk(ds, s.model, s.fingerprint)
        if found is None and s.data.kind == "demo" and (root := asset_root()) is not None:
            found = from_disk(ds, s.model, s.fingerprint, cache=root)
        return found

    with guard("Could not check the fingerprint cache"):
        own = _user_has("fingerprints", fingerprint_key(ds.content_hash(), model_identity(s.model), s.fingerprint),
                        "result")
        return memo("fingerprints", f"{_fp_key(ds, s)}|own={own}", load)


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


def compute_fingerprints(ds: Dataset, s: session.AppSettings, force_own: bool = False) -> Fingerprints:
    """Run the model over the dataset with a live status (batches, samples/s, ETA) and a Stop button.

    ``force_own``: compute into the user's cache even where the bundled demo asset has them.
    """
    from mads_core.model.fingerprint import fingerprint_dataset

    st.session_state[STOPPED] = False
    st.session_state[RUNNING] = _fp_key(ds, s)  # still set next run = this run was cut short (Stop, rerun)
    n, batch = len(ds), s.fingerprint.batch_size
    holder = st.empty()
    with holder.status(f"Computing fingerprints of {n:,} samples…", expanded=True) as status:
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
            if seen and done - seen[-1][1] > 0 and (done - seen[-1][1]) / max(now - seen[-1][0], 1e-9) > 500:
                seen.clear()  # chunks read back from the cache (a resume), not computed: restart the rate
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
    holder.empty()  # a finished box does not stay on the page; the toast says it is done
    st.toast(f"Fingerprints computed in {_duration(time.perf_counter() - start)}", icon=":material/check_circle:")
    st.session_state.pop(RUNNING, None)
    return fp if force_own else (cached_fingerprints(ds, s) or fp)


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
    if st.session_state.pop(RUNNING, None) == _fp_key(ds, s):
        # The last run was cut short (Streamlit's own Stop, or a rerun): wait for the user, as after our Stop.
        st.session_state[STOPPED] = True
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
        key = embed.embedding_key(ds)
        for root in (None, asset_root()):
            hit = load_arrays(artifact_dir(embed.CACHE_KIND, key, root))
            if hit is not None and hit[0].get("embeddings") is not None and hit[0]["embeddings"].shape[0] == len(ds):
                return hit[0]["embeddings"]
        return None

    with guard("Could not check the embedding cache"):
        own = _user_has(embed.CACHE_KIND, embed.embedding_key(ds))
        return memo("embeddings", f"{ds.content_hash()}|own={own}", load)


def embeddings(ds: Dataset) -> np.ndarray:
    """MiniLM embeddings of every sample (computed once with a progress bar, then cached on disk)."""
    from mads_core.model.embed import dataset_embeddings

    emb = cached_embeddings(ds)
    if emb is not None:
        return emb
    holder = st.empty()
    with holder.status(f"Embedding {len(ds):,} texts with MiniLM (text baselines and text map)…",
                       expanded=True) as status:
        bar = st.progress(0.0)

        def progress(done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"{done:,}/{total:,} texts")

        with guard("Embedding failed"), _failing(status, "Embedding failed"):
            dataset_embeddings(ds, progress=progress)
    holder.empty()
    st.toast("Embeddings computed", icon=":material/check_circle:")
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


# Maps of at least this many samples are computed in a background thread (one per map and
# settings, shared by every page and session of this server): the page renders everything else
# at once, shows the map's progress and polls it every MAP_POLL_S seconds; when the map is done
# the page reruns and draws it. Smaller maps are computed in the page run (a few seconds).
BACKGROUND_MAP_ROWS = 5_000
MAP_POLL_S = 2.0


def projection_settings() -> ProjectionSettings:
    return ProjectionSettings(int(state.get(state.MAP_NEIGHBORS)), float(state.get(state.MAP_MIN_DIST)),
                              int(state.get(state.MAP_SVD)))


def _project(kind: str, memo_key: str, run: Callable[..., Projection], ps: ProjectionSettings, n: int,
             **kw: Any) -> Projection:
    key = f"{kind}|{memo_key}|{ps}"

    def cached() -> Projection | None:  # the user's cache, else the bundled demo asset's
        hit = run(use_cache=True, compute=False, **kw)
        if hit is None and (root := asset_root()) is not None:
            hit = run(use_cache=True, compute=False, cache=root, **kw)
        return hit

    found = memo("projection", key, cached)
    if found is not None:
        return found
    if n >= BACKGROUND_MAP_ROWS:
        return _project_in_background(kind, key, run, n, **kw)
    holder = st.empty()
    with holder.status(f"Projecting {n:,} {kind} to 2-D (once; cached on disk)…", expanded=True) as status:
        bar = st.progress(0.0, text="starting…")

        def progress(label: str, frac: float) -> None:
            bar.progress(min(max(frac, 0.0), 1.0), text=label)

        with guard(f"Projection of the {kind} failed"), _failing(status, f"Projection of the {kind} failed"):
            result = run(use_cache=True, progress=progress, **kw)
    holder.empty()
    st.toast(f"{kind.capitalize()} projected: {result.method}", icon=":material/check_circle:")
    return memo("projection", key, lambda: result) or result


def _map_job_key(key: str) -> str:
    return f"projection|{cache_root()}|{key}"


def _project_in_background(kind: str, key: str, run: Callable[..., Projection], n: int, **kw: Any) -> Projection:
    """The finished map, or a placeholder (``ready=False``, NaN coordinates) while a background job computes it."""
    from mads_core.analysis import background

    job_key = _map_job_key(key)
    job = background.submit(job_key, lambda progress: run(use_cache=True, progress=progress, **kw),
                            label=f"{kind} map of {n:,} samples")
    if job.state == background.DONE:
        return memo("projection", key, lambda: job.result) or job.result
    pending = np.full((n, 2), np.nan, dtype=np.float32)
    if job.state == background.FAILED:
        c1, c2 = st.columns([5, 1])
        c1.error(f"The {kind} map failed: {error_text(job.error)}", icon=":material/error:")
        c2.button("Retry", key=f"retry-{job_key}", on_click=background.forget, args=(job_key,))
        return Projection(pending, f"map failed: {error_text(job.error)}", key="", ready=False)
    _map_progress(job_key, kind)
    return Projection(pending, f"computing in the background ({job.fraction:.0%}): {job.stage}", key="",
                      ready=False)


@st.fragment(run_every=MAP_POLL_S)
def _map_progress(job_key: str, kind: str) -> None:
    """Progress of a background map, polled every ``MAP_POLL_S`` s; reruns the page once the map is done."""
    from mads_core.analysis import background

    job = background.get(job_key)
    if job is None or not job.active:
        st.rerun()  # done or failed: the whole page runs again and draws the map (or the error)
    waited = f"running for {_duration(job.elapsed())}" if job.state == background.RUNNING else "queued"
    st.progress(job.fraction, text=f"{kind.capitalize()} map of this dataset: {job.stage} — {waited}. "
                "Computed once in the background and cached on disk; everything else on the page is ready, "
                "and the map appears when it is done.")


def fingerprint_projection(fp: Fingerprints) -> Projection:
    """2-D map of the fingerprints (cached; ``ready=False`` while a large one is computed in the background)."""
    from mads_core.analysis.project import project_fingerprints

    ps = projection_settings()
    return _project("fingerprints", fp.key, project_fingerprints, ps, fp.n_samples, bits=fp.bits,
                    n_neurons=fp.n_neurons, svd_dims=ps.svd_dims, n_neighbors=ps.n_neighbors,
                    min_dist=ps.min_dist, input_key=fp.key)


def embedding_projection(ds: Dataset, emb: np.ndarray) -> Projection:
    """2-D map of the text embeddings (cached; ``ready=False`` while a large one is computed in the background)."""
    from mads_core.analysis.project import project_embeddings
    from mads_core.model.embed import embedding_key

    ps = projection_settings()
    key = embedding_key(ds)
    return _project("embeddings", key, project_embeddings, ps, len(ds), emb=emb, n_neighbors=ps.n_neighbors,
                    min_dist=ps.min_dist, input_key=key)


# ---------------------------------------------------------------- methods / rankings


def method_state() -> tuple[list[str], SelectConfig, dict[str, dict[str, Any]]]:
    """(chosen methods, MADS config, per-method settings) as in effect (the app's state)."""
    methods = [m for m in state.get(state.METHODS) if m in session.METHODS] or ["mads"]
    try:
        config = state.select_config()
    except ValueError:
        config = SelectConfig()
    return methods, config, state.method_settings()


def ranking(method: str, ds: Dataset, fp: Fingerprints, k: int, emb: np.ndarray | None = None) -> Selection:
    """A method's ranking: once up to the largest budget (k-means: clustered at exactly ``k``, once per
    budget, as ``compare`` does), kept in memory.

    Raises on failure (the caller decides how to report it).
    """
    _, config, all_settings = method_state()
    msettings = all_settings.get(method, {})
    upto = k if method in session.PER_BUDGET_METHODS else session.max_budget(len(ds))
    key = f"{ds.content_hash()}|{fp.key}|{session.method_key(method, config, msettings)}|{upto}"

    def run() -> Selection:
        if from_asset(fp.path) and (root := asset_root()) is not None:  # the demo asset ships default rankings
            from mads_core.data.demo_asset import RANKINGS, ranking_key
            from mads_core.model.store import artifact_dir
            from mads_core.select.cache import load_selection

            mkey = session.method_key(method, config, msettings)
            shipped = load_selection(artifact_dir(RANKINGS, ranking_key(ds.content_hash(), fp.key, mkey, upto), root))
            if shipped is not None:
                return shipped
        return session.run_method_cached(method, ds, fp, upto, select_config=config, embeddings=emb,
                                         method_settings=msettings)

    kept = memo("ranking", key, lambda: None, recent=method in session.PER_BUDGET_METHODS)
    if kept is not None:  # in memory: no spinner (each one starts a thread: ~10 ms a method on every rerun)
        return kept
    if method in session.PER_BUDGET_METHODS:
        text = (f"Clustering {len(ds):,} samples with {method_label(method)} at k = {upto:,} — its picks depend "
                "on k, so each new budget is clustered once (then kept on disk)…")
    else:
        text = f"Ranking {len(ds):,} samples with {method_label(method)} (once, then kept on disk)…"
    with st.spinner(text):
        return memo("ranking", key, run, recent=method in session.PER_BUDGET_METHODS)


def _digest(sel: Selection) -> str:
    """Content key of a ranking (what the per-ranking curves below are memoised under)."""
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(sel.ranking, dtype=np.int64).tobytes(), digest_size=12).hexdigest()


def text_space(ds: Dataset, emb: np.ndarray) -> Any:
    """``metrics.text_space`` of the dataset's embeddings, built once per embeddings and kept in memory."""
    from mads_core.analysis import metrics
    from mads_core.model.embed import embedding_key

    return memo("text-space", f"{embedding_key(ds)}|{emb.shape}", lambda: metrics.text_space(emb))


def diversity(ds: Dataset, emb: np.ndarray, sels: Mapping[str, Selection]) -> dict[str, Any]:
    """Each ranking's text-spread curves (``metrics.diversity_curves``, every prefix): computed once per
    ranking, kept on disk (``pipeline.diversity_curves_cached``) and in memory, so a budget move only
    reads them (``metrics_table(diversity=...)``).

    From ``BACKGROUND_MAP_ROWS`` samples a missing ranking's curves (about a minute of CPU each at
    52,000 samples) are computed by a background job, like the maps: the method is left out of the
    returned dict until its job is done, and :func:`diversity_progress` shows the jobs and reruns
    the page when they finish.
    """
    from mads_core import pipeline
    from mads_core.analysis import background
    from mads_core.analysis.project import array_hash
    from mads_core.model.embed import embedding_key

    emb_key = memo("embedding-hash", f"{embedding_key(ds)}|{emb.shape}", lambda: array_hash(np.asarray(emb)))
    out: dict[str, Any] = {}
    for m, sel in sels.items():
        job_key = f"diversity|{emb_key}|{_digest(sel)}"

        def compute(progress: Any = None, sel: Selection = sel) -> Any:
            if progress is not None:
                progress("nearest-pick distance of every prefix", 0.0)
            return pipeline.diversity_curves_cached(emb, sel.ranking, embeddings_key=emb_key,
                                                    space=text_space(ds, emb))

        def load(sel: Selection = sel, m: str = m, job_key: str = job_key, compute: Any = compute) -> Any:
            found = pipeline.diversity_curves_cached(emb, sel.ranking, embeddings_key=emb_key, compute=False)
            if found is not None:
                return found
            if len(ds) >= BACKGROUND_MAP_ROWS:
                job = background.submit(job_key, compute, label=f"text spread of {method_label(m)}")
                return job.result if job.state == background.DONE else None
            with st.spinner(f"Text spread of every {method_label(m)} prefix (once per ranking; kept on disk)…"):
                return compute()

        found = memo("diversity", f"{emb_key}|{_digest(sel)}", load, recent=m in session.PER_BUDGET_METHODS)
        if found is not None:
            out[m] = found
        else:
            st.session_state.setdefault(_PENDING_SPREAD, {})[m] = job_key
    return out


_PENDING_SPREAD = "_pending_spread_jobs"


def diversity_progress(sels: Mapping[str, Selection], ready: Mapping[str, Any]) -> None:
    """Note + polled progress for the methods whose text-spread curves are still computed in the background."""
    pending = {m: key for m, key in st.session_state.get(_PENDING_SPREAD, {}).items() if m in sels and m not in ready}
    st.session_state[_PENDING_SPREAD] = pending
    if pending:
        _spread_progress(tuple(pending.values()), ", ".join(method_label(m) for m in pending))


@st.fragment(run_every=MAP_POLL_S)
def _spread_progress(job_keys: tuple[str, ...], names: str) -> None:
    """Polls the text-spread jobs every ``MAP_POLL_S`` s; reruns the page once none is active."""
    from mads_core.analysis import background

    jobs = [background.get(k) for k in job_keys]
    failed = [j for j in jobs if j is not None and j.state == background.FAILED]
    if failed:
        c1, c2 = st.columns([5, 1])
        c1.error(f"Text spread failed: {failed[0].error}", icon=":material/error:")
        c2.button("Retry", key="retry-text-spread", on_click=lambda: [background.forget(j.key) for j in failed])
        return
    if all(j is None or not j.active for j in jobs):
        st.rerun()
    running = sum(1 for j in jobs if j is not None and j.state == background.RUNNING)
    st.info(f"Text spread and radius of {names}: computed once per ranking in the background and kept on disk "
            f"({len(jobs)} to go, {running} running); the columns fill in when done. Every other metric is final.",
            icon=":material/hourglass_top:")


def coverage_counts(fp: Fingerprints, sels: Mapping[str, Selection]) -> tuple[dict[str, np.ndarray], int]:
    """(method -> neurons covered by every prefix of its ranking, coverable neurons), computed once per
    ranking and kept in memory (MADS records its own counts; the rest take one running OR)."""
    from mads_core.analysis import metrics

    coverable = memo("coverable", fp.key, lambda: metrics.coverable_count(fp.bits))
    out: dict[str, np.ndarray] = {}
    for m, sel in sels.items():
        def count(sel: Selection = sel) -> np.ndarray:
            known = sel.neurons_covered
            if known is not None and len(known) == len(sel.ranking) and sel.n == fp.n_samples:
                return np.asarray(known, dtype=np.int64)
            return metrics.coverage_counts(fp.bits, sel.ranking)

        out[m] = memo("coverage-counts", f"{fp.key}|{_digest(sel)}", count, recent=m in session.PER_BUDGET_METHODS)
    return out, int(coverable)


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
    """Budget as a percentage slider and a count box, kept in step; returns k (shared by every page).

    The budget is kept as a *share* of the dataset (``state.BUDGET_SHARE``), so 10% stays 10%
    when the dataset changes; the count box sets the share that gives exactly its count here.
    """
    kmax = session.max_budget(n)
    share = float(state.get(state.BUDGET_SHARE))
    top = session.max_share(n)
    if not 0 < share <= top + 1e-12:
        fixed = min(max(share, 1.0 / n), top) if share == share else session.DEFAULT_BUDGET_FRACTION
        st.warning(f"Budget {100 * share:g}% is out of range for this dataset (1 to {kmax:,} of N = {n:,}): "
                   f"using {100 * fixed:.1f}%.", icon=":material/warning:")
        share = fixed
        state.put(state.BUDGET_SHARE, share)
    k = session.budget_from_share(share, n)
    st.session_state[BUDGET] = k
    max_pct = round(100.0 * kmax / n, 1)

    def to_pct(value: float) -> float:
        # the share itself, not k's rounded share: else a 0.1% key step that rounds to the same k snaps back
        # and the arrow keys cannot pass it (the caption shows k's exact share)
        return float(min(max(round(100.0 * value, 1), 0.1), max(max_pct, 0.2)))

    c1, c2 = st.columns([3, 1])
    state.bound(c1.slider, "Budget (% of the dataset)", state.BUDGET_SHARE, to_widget=to_pct,
                from_widget=lambda pct: float(pct) / 100.0, slot=f"{key_prefix}_pct", min_value=0.1,
                max_value=max(max_pct, 0.2), step=0.1,
                format="%.1f%%", help="Kept as a share of the dataset across pages and datasets. Every method "
                "ranks the dataset once; moving the budget only takes a longer or shorter prefix.")
    state.bound(c2.number_input, "Budget (samples)", state.BUDGET_SHARE,
                to_widget=lambda value: session.budget_from_share(value, n),
                from_widget=lambda count: int(count) / n, slot=f"{key_prefix}_count", min_value=1,
                max_value=kmax, step=1)
    k = session.budget_from_share(state.get(state.BUDGET_SHARE), n)
    st.session_state[BUDGET] = k
    note = f" (budgets above {100 * session.LARGE_MAX_FRACTION:.0f}% are not offered for N > " \
           f"{session.LARGE_N:,})" if kmax < n else ""
    st.caption(f"k = **{k:,}** of N = {n:,} samples ({100.0 * k / n:.1f}%){note}")
    state.write_url()  # budget-dependent views are fragments: app.py does not run on their reruns
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


def _is_click(event: Any) -> bool:
    """A point click (no box or lasso drawn) rather than an area selection."""
    try:
        selection = event["selection"]
        return not selection.get("box") and not selection.get("lasso")
    except (KeyError, TypeError, AttributeError):
        return False


def on_map_select(key: str, open_inspect: bool = False) -> Callable[[], None]:
    """Callback for a map's selection: a click opens that sample (on Inspect when ``open_inspect``),
    a lasso or box becomes the linked selection ringed in both maps."""

    def callback() -> None:
        event = st.session_state.get(key)
        rows = _points_rows(event)
        if not rows:
            return
        if _is_click(event):
            state.put(INSPECT_ROW, rows[0])
            if open_inspect:
                st.session_state[GOTO_INSPECT] = True
        else:
            st.session_state[LINKED] = rows

    return callback


def follow_click_to_inspect() -> None:
    """Open Inspect when a map click asked for it (callbacks cannot switch pages themselves)."""
    if st.session_state.pop(GOTO_INSPECT, False):
        st.switch_page("pages/3_Inspect.py")


# Per-point hover text costs ~100 bytes a point in each map on every budget move (3,000 samples: 0.77 MiB
# a move, most of it hover text); above this many samples the maps carry the row id only (hover
# template over ``customdata``), and a click opens the sample on Inspect.
HOVER_LIMIT = 5_000


def hover_labels(ds: Dataset) -> list[str] | None:
    """Hover text of every point (category + start of the prompt); None above ``HOVER_LIMIT`` points,
    where the maps show the row id only (keeps each rerun's payload small)."""
    if len(ds) > HOVER_LIMIT:
        return None
    return memo("hover", ds.content_hash(), lambda: [session.sample_label(ds, i) for i in range(len(ds))])


def lengths(fp: Fingerprints) -> np.ndarray:
    """Own tokens per sample (what the model read of each sample)."""
    return np.asarray(fp.token_counts, dtype=np.int64)


# ---------------------------------------------------------------- researcher tools: colours, downloads, summary

CHART_IMAGE_FORMAT = "svg"


def chart(fig: Any, *, data: Any = None, name: str = "chart", **kwargs: Any) -> Any:
    """A plotly chart with its data as a CSV download just below; the chart toolbar's camera saves it as
    an image (``CHART_IMAGE_FORMAT``: SVG, vector, for papers; a PNG comes from the browser's own
    screenshot or from the SVG).

    ``data``: a frame (or a callable returning one, built only on click). ``kwargs`` go to
    ``st.plotly_chart`` (key, on_select, selection_mode...).
    """
    config = {"toImageButtonOptions": {"format": CHART_IMAGE_FORMAT, "filename": name, "scale": 2},
              "displaylogo": False}
    event = st.plotly_chart(fig, width="stretch", config=config, **kwargs)
    if data is not None:

        def csv() -> bytes:  # built only when clicked (deferred), not on every rerun
            value = data() if callable(data) else data
            frame = value if isinstance(value, pd.DataFrame) else pd.DataFrame(value)
            return frame.to_csv(index=False).encode("utf-8")

        st.download_button("Data (CSV)", csv, file_name=f"{name}.csv", mime="text/csv", icon=":material/table:",
                           on_click="ignore", key=f"csv_{name}", type="tertiary")
    return event


def color_columns(ds: Dataset) -> list[str]:
    """Metadata columns a map can be coloured by: category, source, and each scalar field of the records
    that is numeric or a label (at most 40 distinct values, and at most one per two samples)."""

    def find() -> list[str]:
        out = [c for c, values in (("category", ds.categories), ("source", ds.sources))
               if len({v for v in values if v is not None}) > 1]
        fields: dict[str, set] = {}
        for rec in ds.records[:2000]:
            for key, value in rec.items():
                if isinstance(value, (str, int, float, bool)) and not (isinstance(value, str) and len(value) > 80):
                    fields.setdefault(key, set()).add(value)
        for key, values in fields.items():
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            few = len(values) <= min(40, max(2, len(ds) // 2))  # a label, not free text
            if key not in ("id", "category", "source") and len(values) > 1 and (numeric or few):
                out.append(key)
        return out

    return memo("color-columns", ds.content_hash() + ds.name, find) or []


def color_values(ds: Dataset, column: str) -> list[Any]:
    """The value of ``column`` for every sample (None where a record lacks it)."""
    if column == "category":
        return list(ds.categories)
    if column == "source":
        return list(ds.sources)
    return [rec.get(column) if isinstance(rec, Mapping) else None for rec in ds.records]


def map_frame(ds: Dataset, coords: np.ndarray, picked: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """A map's data: row, id, x, y, category and one picked-by column per method."""
    frame = pd.DataFrame({"row": np.arange(len(ds)), "id": ds.ids, "x": coords[:, 0], "y": coords[:, 1],
                          "category": [c or "" for c in ds.categories]})
    for m, idx in picked.items():
        frame[f"picked_{m}"] = np.isin(frame["row"].to_numpy(), idx)
    return frame


def category_frame(categories: Any, picked: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per category: samples in the dataset and picks of each method."""
    cats = pd.Series([c for c in categories if c is not None], dtype=object)
    frame = cats.value_counts().rename_axis("category").reset_index(name="dataset")
    for m, idx in picked.items():
        counts = pd.Series([categories[int(i)] for i in idx if categories[int(i)] is not None],
                           dtype=object).value_counts()
        frame[m] = frame["category"].map(counts).fillna(0).astype(int)
    return frame


def selection_bytes(ds: Dataset, rows: np.ndarray) -> bytes:
    """The original records of ``rows`` as JSONL (row order), for downloading a lasso selection."""
    return "".join(json.dumps(ds.records[int(i)], ensure_ascii=False, default=session.json_default) + "\n"
                   for i in sorted(int(r) for r in rows)).encode("utf-8")


def compare_csv(ds: Dataset, fp: Fingerprints, emb: np.ndarray, methods: list[str],
                budgets: tuple[float, ...]) -> bytes:
    """The multi-budget table exactly as ``python -m mads_core compare --out`` writes it (same function)."""
    from mads_core.pipeline import compare_table, selections_by_budget
    from mads_core.select.greedy import resolve_budget

    n = len(ds)
    ks = [resolve_budget(b, n) for b in budgets]
    _, config, all_settings = method_state()

    def run(m: str, k: int) -> Selection:
        if m in session.PER_BUDGET_METHODS or k <= session.max_budget(n):
            found = ranking(m, ds, fp, k, emb if m in session.NEEDS_EMBEDDINGS else None)
            if m in session.PER_BUDGET_METHODS or len(found) >= k:
                return found
        return session.run_method(m, ds, fp, k, select_config=config, embeddings=emb,
                                  method_settings=all_settings.get(m, {}))

    by_budget = selections_by_budget(methods, ks, run)
    table = compare_table(by_budget, list(budgets), n, bits=fp.bits, n_neurons=fp.n_neurons, emb=emb,
                          categories=ds.categories, lengths=fp.token_counts)
    return table.to_csv(index=False, float_format="%.6g", lineterminator="\n").encode("utf-8")


def settings_summary(s: session.AppSettings, ds: Dataset, methods: list[str], config: SelectConfig,
                     method_settings: Mapping[str, Mapping[str, Any]]) -> str:
    """One markdown list of every setting in effect on Compare (data, model, fingerprints, methods, maps)."""
    fpc = s.fingerprint
    ps = projection_settings()
    fires = f"τ = {fpc.threshold:g}" if fpc.rule == "threshold" else f"top-{fpc.top_k} per token"
    seeds = ", ".join(f"{method_label(m)} seed {int(v.get('seed', 0))}" for m, v in method_settings.items()
                      if m in methods)
    lines = [
        f"- **Data:** {s.data.display_name} — {len(ds):,} samples",
        f"- **Model:** {s.model.name} · layers {session.format_layers(fpc.layers)} · {fires} · levels "
        f"{', '.join(f'{x:g}' for x in fpc.levels) or 'none'} · {fpc.pooling} pooling · {fpc.template} template · "
        f"max {fpc.max_tokens} tokens",
        f"- **MADS:** continuation {config.continuation}"
        + (f" (m = {config.m})" if config.continuation == "mcover" else "")
        + f" · {config.weighting} weights · minimum support {config.min_support} · neurons firing on more than "
        f"{config.max_neuron_share:g} of samples ignored",
        f"- **Methods:** {', '.join(method_label(m) for m in methods)}" + (f" ({seeds})" if seeds else ""),
        f"- **Budget:** {100 * float(state.get(state.BUDGET_SHARE)):.1f}% of the dataset",
        f"- **Maps:** UMAP n_neighbors {ps.n_neighbors}, min_dist {ps.min_dist:g}, SVD {ps.svd_dims} dims "
        "(fingerprints)",
        "- **Share this view:** the page's address holds these settings (copy it from the browser's address bar).",
    ]
    return "\n".join(lines)
