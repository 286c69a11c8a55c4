"""Data & model: the chosen records (fields, bad-record report), the model settings, and fingerprints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mads_core.config import FingerprintConfig
from mads_core.data.demo import DEMO_PRESETS, estimate_tokens
from mads_core.data.loader import detect_fields
from mads_core.model.models import BUNDLED_NAME
from mads_core.views import plots
from pages import _common as ui

ui.page_setup(__file__)

st.title("Data & model")
st.caption("MADS picks the samples whose **activation fingerprints** (the MLP neurons a model fires on them) "
           "cover the most neurons. Choose data, model and settings in the sidebar; compute the fingerprints "
           "here or just open **Compare** — it computes what is missing.")

s = ui.settings()
ds = ui.dataset(s)
report = ds.report

# ---------------------------------------------------------------- dataset
st.header("Dataset", divider="gray")
labels = sorted({c for c in ds.categories if c is not None})
c1, c2, c3, c4 = st.columns(4)
c1.metric("Samples", f"{len(ds):,}")
c2.metric("Categories", f"{len(labels):,}" if labels else "none")
c3.metric("Skipped (malformed)", f"{report.n_skipped:,}")
c4.metric("Exact duplicates dropped", f"{report.n_duplicates:,}")

if s.data.kind == "demo":
    st.info(f"**Bundled demo `{s.data.name}`** — {DEMO_PRESETS[s.data.name].description}. Chat records; "
            "ids and categories come with the data.", icon=":material/inventory_2:")
else:
    with ui.guard("Could not read the file's fields"):
        detection = detect_fields(s.data.path, text_column=s.data.text_column,
                                  response_column=s.data.response_column, category_column=s.data.category_column)
    st.info(f"**{s.data.display_name}** — {detection.describe()}  \nFields of the first record: "
            + ", ".join(f"`{f}`" for f in detection.fields), icon=":material/data_object:")
if not report.is_clean():  # skipped, duplicates, same model text, notes (e.g. preference pairs)
    st.warning(f"Loader report — {report.summary(first=3)}".replace("\n", "  \n"), icon=":material/report:")
    with st.expander(f"All {report.n_skipped + report.n_duplicates:,} reasons"):
        st.dataframe(pd.DataFrame({"kind": ["skipped"] * report.n_skipped + ["duplicate"] * report.n_duplicates,
                                   "reason": [*report.skipped, *report.duplicates]}),
                     hide_index=True, width="stretch")

preview = ds.subset(range(min(200, len(ds)))).to_frame()
for col in ("prompt", "response"):
    preview[col] = preview[col].map(lambda t: " ".join(str(t).split())[:240])
st.dataframe(preview, hide_index=True, width="stretch", height=280,
             column_config={"prompt": st.column_config.TextColumn(width="large"),
                            "response": st.column_config.TextColumn(width="large")})
st.caption(f"First {len(preview):,} of {len(ds):,} records as the model will read them (user turns → prompt, "
           "last assistant turn → response).")

# ---------------------------------------------------------------- model + settings
st.header("Model and fingerprint settings", divider="gray")
cfg, default = s.fingerprint, FingerprintConfig()
model_name = BUNDLED_NAME if s.model.name == "bundled" else s.model.name
rows = [
    ("model", model_name, s.model.name == "bundled"),
    ("layers", "all" if cfg.layers is None else ", ".join(map(str, cfg.layers)), cfg.layers is None),
    ("firing rule", cfg.rule, cfg.rule == default.rule),
    ("threshold τ", f"{cfg.threshold:g}" if cfg.rule == "threshold" else "—", cfg.threshold == default.threshold),
    ("levels (finer states)", ", ".join(f"{x:g}" for x in cfg.levels) or "none", cfg.levels == default.levels),
    ("top-k per token", str(cfg.top_k) if cfg.rule == "topk" else "—", cfg.top_k == default.top_k),
    ("pooling", cfg.pooling, cfg.pooling == default.pooling),
    ("template", cfg.template, cfg.template == default.template),
    ("template tokens counted", "yes" if cfg.count_template_tokens else "no (masked)", not cfg.count_template_tokens),
    ("max tokens", str(cfg.max_tokens), cfg.max_tokens == default.max_tokens),
]
st.dataframe(pd.DataFrame(rows, columns=["setting", "value", "default"]), hide_index=True, width="content")
st.caption("Change these in the sidebar. Every setting that changes the bits is part of the cache key; only the "
           "sample's own tokens are pooled (template, system prompt and padding are masked).")

# ---------------------------------------------------------------- fingerprints
st.header("Fingerprints", divider="gray")
fp = ui.cached_fingerprints(ds, s)
if fp is not None and ui.from_asset(fp.path):
    st.success(f"**From the bundled demo asset** — fingerprints of these {len(ds):,} samples were precomputed with "
               "this model and these settings by `scripts/build_demo_asset.py` and shipped with the app (checked "
               "against a fresh computation by `tests/test_demo_asset.py`); the model was not run. They are used "
               "only while your own cache lacks them.", icon=":material/inventory_2:")
    if st.button("Recompute them with the model on this machine", icon=":material/refresh:"):
        fp = ui.compute_fingerprints(ds, s, force_own=True)
        st.rerun()
elif fp is not None:
    st.success(f"**Cache hit** — fingerprints of these {len(ds):,} samples with these settings were loaded from "
               f"the cache; the model was not run (no model time).  \n`{fp.path}`", icon=":material/bolt:")
else:
    tokens = estimate_tokens(ds, max_tokens=cfg.max_tokens)
    if st.session_state.get(ui.STOPPED):
        st.warning(f"Fingerprinting was stopped; {ui.chunks_kept(ds, s)} finished chunk(s) are kept and will be "
                   "reused.", icon=":material/pause_circle:")
    st.info(f"Not computed yet for these settings: ~{tokens:,} tokens to run through the model. How long depends "
            "on the machine and how busy it is — on 2 CPU cores the bundled model reads a few hundred tokens/s "
            "when idle and far fewer under load, after 10–100 s of model loading. The live rate and ETA "
            "(measured on this run) show once it starts.", icon=":material/memory:")
    if st.button("Compute fingerprints", type="primary", icon=":material/play_arrow:"):
        fp = ui.compute_fingerprints(ds, s)
        st.success("Fingerprints computed and cached.", icon=":material/check_circle:")

if fp is not None:
    summary = ui.memo("fp-summary", fp.key, fp.summary)
    fired = ui.memo("fp-fired", fp.key, fp.fired_per_sample)
    rates = ui.memo("fp-rates", fp.key, fp.layer_firing_rates)
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Samples N", f"{fp.n_samples:,}")
    c2.metric("Neurons D", f"{fp.n_neurons:,}", help=f"{len(fp.layers)} layers hooked")
    c3.metric("Firing per sample (mean)", f"{100 * summary['fired_per_sample_mean']:.2f}%")
    c4.metric("Neurons that ever fire", f"{100 * summary['neurons_ever_firing']:.1f}%",
              help="Only these can be covered by any selection.")
    c5.metric("Truncated samples", f"{summary['n_truncated']:,}", help=f"cut at {cfg.max_tokens} tokens")
    label = f"τ = {cfg.threshold:g}" if cfg.rule == "threshold" else f"top-{cfg.top_k} per token"
    left, right = st.columns(2)
    left.plotly_chart(plots.firing_histogram(np.asarray(fired), fp.n_neurons, label), width="stretch")
    right.plotly_chart(plots.layer_firing_rates(np.asarray(rates), fp.layers), width="stretch")
    st.caption("A useful τ fires a few percent of neurons per sample (fingerprints that tell samples apart) while "
               "many neurons fire somewhere (coverage means something). Lower τ → denser, more alike "
               "fingerprints; higher τ → sparser, more outlier-driven.")
    st.page_link("pages/2_Compare.py", label="Compare MADS with the baselines →", icon=":material/compare_arrows:")
