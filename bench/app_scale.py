"""The app at a researcher's scale: the Compare page at N = 52,000 (issue 14).

Builds synthetic inputs of the paper's size once (seeded) under ``bench/out/app_scale/``,
in a cache root of their own (``bench/out/app_scale/cache``):

* a JSONL dataset of N Alpaca records (Zipf-distributed words over an 80,000-word
  vocabulary, 400 topics with their own words, lognormal lengths: ~590 characters on
  average, ~66 distinct words per record), with a ``category`` per record;
* fingerprints under the key the app looks up for the bundled model and default settings:
  D = 46,080 neurons (30 layers x 1,536), skewed firing as in ``bench/select.py`` (a
  lognormal base probability per neuron, a per-block activity), ~3.5% of bits set;
  planes 1.. are random subsets of plane 0;
* 384-d unit "MiniLM" embeddings: 400 topic centres (Zipf topic sizes) with a 24-d local
  spread and isotropic noise, tuned to the real demo's statistics (mean pairwise cosine
  0.18, mean nearest-neighbour cosine 0.74, top-16/32/64 singular directions holding
  55/65/75% of the variance).

Then it times, in one process:

1. ``library`` (skipped with ``--no-library``): each default method's ranking to the app's
   largest budget (30% of N) with ``pipeline.run_method_cached`` (computed afresh, stored
   where the app reads rankings; k-center and MADS also at 15%); the text-spread curves of
   every ranking (``pipeline.diversity_curves_cached``: computed afresh, stored where the app
   reads them); k-means at the default budget. ``baselines_s`` = the default baselines'
   rankings to the app's largest budget.
2. ``maps`` (``--maps``): both 2-D projections (fingerprints: SVD + UMAP; embeddings: UMAP),
   cached on disk where the app reads them.
3. ``map figures`` (always): each Compare map at N points with every default method
   highlighted at the default budget — server build + serialisation time and JSON bytes
   (cached projections, else seeded random points of the same size); ``--draw`` also times
   ``Plotly.newPlot`` of each in headless Chromium.
4. ``app``: the Compare page through ``streamlit.testing.v1.AppTest`` with every default
   method: the first run (``first_compare_s``; rankings and text-spread curves come from the
   disk caches when present, maps from the projection cache), then budget-slider moves
   (``slider_rerun_s``, the median; its CPU seconds too), counting ranking computations
   during the moves, and the payload per move: the protobuf bytes of the budget fragment's
   elements (what a browser receives per move) and of its charts.

The last line is
``app_scale: n=<N> first_compare_s=<t> slider_rerun_s=<t> baselines_s=<t> peak_rss_mib=<m>``.

    python bench/app_scale.py                 # N = 52,000 (inputs built once: ~2 min)
    python bench/app_scale.py --n 5000 --maps # smaller, with maps
    python bench/app_scale.py --no-library --draw  # the page only (disk caches), maps drawn in Chromium
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds select.py, which would shadow the standard library's ``select`` module.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from mads_core.synthetic import build_app_inputs  # noqa: E402
from mads_core.timing import Timer  # noqa: E402

ROOT = HERE.parent
OUT = ROOT / "bench" / "out" / "app_scale"


# --------------------------------------------------------------------------- synthetic inputs


# --------------------------------------------------------------------------- stages


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def library_stage(path: Path, cache: Path) -> dict[str, float]:
    """Time every default method's ranking (largest app budget), k-means, and the text-spread curves."""
    from mads_core import pipeline, session
    from mads_core.analysis import metrics
    from mads_core.config import FingerprintConfig, ModelSpec
    from mads_core.model.fingerprint import cached_fingerprints
    from mads_core.select.baselines import kcenter_greedy, tfidf_matrix

    ds = pipeline.load_data(str(path))
    fp = cached_fingerprints(ds, ModelSpec(), FingerprintConfig(), cache=cache)
    emb = np.asarray(pipeline.dataset_embeddings_cached(ds, cache))
    n = len(ds)
    kmax, k15, kdef = session.max_budget(n), max(1, round(0.15 * n)), session.default_budget(n)
    kcenter_greedy(emb[:300], 20)  # numba compile / cache load outside the timings
    out: dict[str, float] = {}
    sels = {}
    def report(label: str, name: str, t: Timer) -> None:
        out[name], out[name + "_cpu"] = t.wall, t.cpu
        print(f"  {label}: {t.wall:.1f} s wall, {t.cpu:.1f} s CPU", flush=True)

    for method in session.DEFAULT_METHODS:
        with Timer() as t:  # computed afresh (refresh=True), then stored where the app reads rankings
            sels[method] = pipeline.run_method_cached(method, ds, fp, kmax, cache=cache, embeddings=emb,
                                                      refresh=True)
        report(f"{method:14s} ranking to {kmax:,} ({kmax / n:.0%})", f"{method}_to_{kmax}_s", t)
    out["baselines_s"] = sum(out[f"{m}_to_{kmax}_s"] for m in session.DEFAULT_METHODS if m != "mads")
    out["baselines_s_cpu"] = sum(out[f"{m}_to_{kmax}_s_cpu"] for m in session.DEFAULT_METHODS if m != "mads")
    with Timer() as t:
        texts = [ds.display_text(i) for i in range(n)]
        tfidf_matrix(texts)
    report("TF-IDF matrix alone", "tfidf_matrix_s", t)
    for method in ("mads", "kcenter-embed", "kcenter-tfidf"):
        with Timer() as t:
            pipeline.run_method(method, ds, fp, k15, cache=cache, embeddings=emb)
        report(f"{method:14s} ranking to {k15:,} (15%)", f"{method}_to_15pct_s", t)
    with Timer() as t:
        pipeline.run_method_cached("kmeans-embed", ds, fp, kdef, cache=cache, embeddings=emb, refresh=True)
    report(f"kmeans-embed   at the default budget {kdef:,}", "kmeans_default_budget_s", t)
    with Timer() as t:
        space = metrics.text_space(emb)
    report("text space (built once)", "text_space_s", t)
    from mads_core.analysis.project import array_hash

    emb_key = array_hash(emb)
    curves = {}
    for method, sel in sels.items():
        with Timer() as t:  # computed afresh, then stored where the app reads them (pipeline.diversity_curves_cached)
            curves[method] = pipeline.diversity_curves_cached(emb, sel.ranking, cache=cache, space=space,
                                                              embeddings_key=emb_key, refresh=True)
        report(f"text-spread curves of {method} ({len(sel.ranking):,} prefixes)", f"{method}_spread_curve_s", t)
    moves = []
    for k in (kdef, k15, kmax, max(1, n // 50)):
        with Timer() as t:
            metrics.metrics_table(sels, [k], bits=fp.bits, n_neurons=fp.n_neurons, categories=ds.categories,
                                  lengths=fp.token_counts, diversity=curves)
        moves.append(t.wall)
    out["metrics_table_per_budget_s"] = statistics.median(moves)
    print(f"  metrics table at one budget, every metric (curves precomputed): median {statistics.median(moves):.2f} s"
          f" over {len(moves)} budgets", flush=True)
    return out


def maps_stage(path: Path, cache: Path) -> dict[str, float]:
    """Both projections (cached where the app reads them) and the Plotly JSON size of each map."""
    from mads_core import pipeline
    from mads_core.analysis.project import project_embeddings, project_fingerprints
    from mads_core.config import FingerprintConfig, ModelSpec
    from mads_core.model.embed import embedding_key
    from mads_core.model.fingerprint import cached_fingerprints
    from mads_core.views import plots

    ds = pipeline.load_data(str(path))
    fp = cached_fingerprints(ds, ModelSpec(), FingerprintConfig(), cache=cache)
    emb = np.asarray(pipeline.dataset_embeddings_cached(ds, cache))
    out: dict[str, float] = {}
    with Timer() as t:
        fmap = project_fingerprints(fp.bits, fp.n_neurons, input_key=fp.key, cache=cache)
    out["fingerprint_map_s"], out["fingerprint_map_s_cpu"] = t.wall, t.cpu
    with Timer() as t:
        tmap = project_embeddings(emb, input_key=embedding_key(ds), cache=cache)
    out["text_map_s"], out["text_map_s_cpu"] = t.wall, t.cpu
    rng = np.random.default_rng(0)
    picks = {"mads": rng.permutation(len(ds))[: len(ds) // 10]}
    for name, proj in (("fingerprint", fmap), ("text", tmap)):
        fig = plots.projection_scatter(proj.coords, picks, title=name)
        out[f"{name}_map_json_mib"] = len(fig.to_json()) / 2**20
    print("  maps: " + ", ".join(f"{k}={v:.1f}" for k, v in out.items()), flush=True)
    return out


def map_figures_stage(path: Path, cache: Path, draw: bool) -> dict[str, float]:
    """Each Compare map at N points as the page builds it at the default budget (every default method
    highlighted): server build + serialisation time, JSON bytes, and (``draw``) Chromium's draw time.

    Coordinates: the cached projections when present, else seeded random points (payload and draw
    time do not depend on where the points lie).
    """
    import plotly.io as pio

    from mads_core import pipeline, session
    from mads_core.analysis.project import project_embeddings, project_fingerprints
    from mads_core.config import FingerprintConfig, ModelSpec
    from mads_core.model.embed import embedding_key
    from mads_core.model.fingerprint import cached_fingerprints
    from mads_core.views import plots

    ds = pipeline.load_data(str(path))
    fp = cached_fingerprints(ds, ModelSpec(), FingerprintConfig(), cache=cache)
    n, k = len(ds), session.default_budget(len(ds))
    found = {"fingerprint": project_fingerprints(fp.bits, fp.n_neurons, input_key=fp.key, cache=cache,
                                                 compute=False),
             "text": project_embeddings(np.asarray(pipeline.dataset_embeddings_cached(ds, cache)),
                                        input_key=embedding_key(ds), cache=cache, compute=False)}
    rng = np.random.default_rng(0)
    picks = {m: rng.permutation(n)[:k] for m in session.DEFAULT_METHODS}
    out: dict[str, float] = {}
    figures = {}
    for name, proj in found.items():
        coords = proj.coords if proj is not None else rng.standard_normal((n, 2)).astype(np.float32)
        with Timer() as t:
            fig = plots.projection_scatter(coords, picks, title=name, subtitle="")
            spec = pio.to_json(fig, validate=False)  # what st.plotly_chart sends
        figures[name] = spec
        out[f"{name}_map_build_s"], out[f"{name}_map_json_mib"] = t.wall, len(spec) / 2**20
        print(f"  {name} map at {n:,} points ({'cached projection' if proj is not None else 'random points'}), "
              f"{len(picks)} methods x {k:,} picks: built + serialised in {t.wall:.2f} s ({t.cpu:.2f} s CPU), "
              f"{len(spec) / 2**20:.2f} MiB JSON", flush=True)
    if draw:
        for name, spec in figures.items():
            seconds = chromium_draw_s(spec)
            if seconds is not None:
                out[f"{name}_map_draw_s"] = seconds
                print(f"  {name} map: Chromium draw {seconds:.2f} s (headless, software WebGL)", flush=True)
    return out


def chromium_draw_s(spec: str) -> float | None:
    """Seconds headless Chromium takes for ``Plotly.newPlot`` of the figure JSON ``spec`` (plotly.js from
    the installed plotly package; None when Chromium or Playwright is missing)."""
    import tempfile

    import plotly

    chromium = Path("/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not chromium.exists():
        return None
    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "fig.json").write_text(spec)
        html = Path(tmp) / "map.html"
        html.write_text(f'''<html><body><div id="map" style="width:700px;height:460px"></div>
<script src="{js.as_uri()}"></script><script>
window.draw = async () => {{ const spec = await (await fetch("fig.json")).json();
  const t0 = performance.now(); await Plotly.newPlot("map", spec.data, spec.layout);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return (performance.now() - t0) / 1000; }};
</script></body></html>''')
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(chromium),
                                         args=["--headless", "--no-sandbox", "--allow-file-access-from-files"])
            try:
                page = browser.new_page()
                page.goto(html.as_uri())
                page.wait_for_function("() => window.Plotly !== undefined")
                return float(page.evaluate("() => window.draw()"))
            finally:
                browser.close()


def app_stage(path: Path, moves: int) -> dict[str, float]:
    """Compare through AppTest: first run, then budget-slider moves (rankings computed during moves counted)."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    from mads_core import pipeline

    original = PagesManager.__init__

    def init(self, *args, **kwargs):  # run AppTest as the server does after st.navigation
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init
    calls = {"n": 0}
    real = pipeline.run_method

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    pipeline.run_method = counting
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

    sent = {"bytes": 0, "fragment_bytes": 0, "charts": 0}
    enqueue = ForwardMsgQueue.enqueue

    def measuring(self, msg):  # what the server would send the browser: protobuf bytes of every message
        size = msg.ByteSize()
        sent["bytes"] += size
        if msg.HasField("delta") and msg.delta.fragment_id:
            sent["fragment_bytes"] += size  # inside a st.fragment: all a browser move re-sends
        if msg.HasField("delta") and msg.delta.HasField("new_element") \
                and msg.delta.new_element.WhichOneof("type") == "plotly_chart":
            sent["charts"] += size
        return enqueue(self, msg)

    ForwardMsgQueue.enqueue = measuring
    sys.path.insert(0, str(ROOT))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=3600)
    at.session_state["data.source"] = "Local path"
    at.session_state["data.path"] = str(path)
    t0 = time.perf_counter()
    at.run()
    at.switch_page("pages/2_Compare.py").run()
    first = time.perf_counter() - t0
    problems = [e.value for e in (*at.exception, *at.error)]
    if problems:
        print("  the Compare page reported:", problems[:3], flush=True)
    slider_key = "w:budget.share:compare_pct"
    values = [12.0, 5.0, 20.0, 8.5, 15.0, 3.0, 25.0, 10.0, 30.0, 6.0]
    at.slider(key=slider_key).set_value(values[-1]).run()
    before, times, cpu, payload = calls["n"], [], [], []
    for i in range(moves):
        at.slider(key=slider_key).set_value(values[i % len(values)])
        for key in sent:
            sent[key] = 0
        t0, c0 = time.perf_counter(), time.process_time()
        at.run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        payload.append(dict(sent))
    pipeline.run_method = real
    ForwardMsgQueue.enqueue = enqueue
    frag = statistics.median(p["fragment_bytes"] for p in payload)
    charts = statistics.median(p["charts"] for p in payload)
    out = {"first_compare_s": first, "slider_rerun_s": statistics.median(times), "slider_max_s": max(times),
           "slider_rerun_s_cpu": statistics.median(cpu),
           "move_payload_mib": frag / 2**20, "move_chart_payload_mib": charts / 2**20,
           "rankings_during_moves": float(calls["n"] - before), "page_errors": float(len(problems))}
    print(f"  app: first Compare {first:.1f} s; slider moves median {out['slider_rerun_s']:.2f} s "
          f"({out['slider_rerun_s_cpu']:.2f} s CPU), max {max(times):.2f} s over {moves}; rankings computed "
          f"during the moves: {calls['n'] - before}", flush=True)
    print(f"  app: payload per move (the budget fragment, protobuf): {frag / 2**20:.2f} MiB, of which charts "
          f"{charts / 2**20:.2f} MiB (AppTest reruns the whole script; a browser move re-sends only the fragment)",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=52_000, help="samples (default 52,000)")
    parser.add_argument("--moves", type=int, default=5, help="timed slider moves (default 5)")
    parser.add_argument("--maps", action="store_true", help="also compute both 2-D maps and their Plotly size")
    parser.add_argument("--no-app", action="store_true", help="library stages only (no AppTest)")
    parser.add_argument("--no-library", action="store_true",
                        help="skip the library timings (rankings are then read from the ranking cache)")
    parser.add_argument("--draw", action="store_true", help="also time each map's draw in headless Chromium")
    args = parser.parse_args(argv)
    cache = OUT / "cache"
    os.environ["MADS_CACHE_DIR"] = str(cache)  # before anything reads it (the app, the stores)
    sys.path.insert(0, str(ROOT))
    print(f"app_scale: N = {args.n:,}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    path, build = build_app_inputs(args.n, OUT, cache)
    print("  inputs: " + ", ".join(f"{k}={v:.1f}" for k, v in build.items()), flush=True)
    results = {} if args.no_library else library_stage(path, cache)
    if args.maps:
        results |= maps_stage(path, cache)
    results |= map_figures_stage(path, cache, args.draw)
    if not args.no_app:
        results |= app_stage(path, args.moves)
    results["peak_rss_mib"] = peak_rss_mib()
    results["load_average_end"] = os.getloadavg()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"results_{args.n}.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    first = results.get("first_compare_s", float("nan"))
    rerun = results.get("slider_rerun_s", float("nan"))
    where = OUT.relative_to(ROOT) / f"results_{args.n}.json"
    print(f"  CPU seconds: baselines {results.get('baselines_s_cpu', float('nan')):.1f}; every figure in {where}")
    print(f"app_scale: n={args.n} first_compare_s={first:.1f} slider_rerun_s={rerun:.2f} "
          f"baselines_s={results.get('baselines_s', float('nan')):.1f} peak_rss_mib={results['peak_rss_mib']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
