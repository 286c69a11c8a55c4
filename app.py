"""MADS Explorer — Streamlit entry point: page navigation and the shared sidebar.

Run with ``streamlit run app.py`` (or ``make run``). The sidebar decides the
dataset, the model and the fingerprint settings and stores them in
``st.session_state["settings"]`` (an ``AppSettings``); each page in ``pages/``
reads them, calls ``mads_core`` and draws.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mads_core import session
from mads_core.config import FingerprintConfig, ModelSpec
from mads_core.data.demo import DEMO_PRESETS

ROOT = Path(__file__).resolve().parent
DATA_SOURCES = ("Bundled demo", "Upload a file", "Local path")
MODEL_SOURCES = ("Bundled SmolLM2-135M-Instruct", "Local model folder", "Hugging Face hub id")
UPLOAD_TYPES = ["json", "jsonl", "ndjson", "csv", "tsv", "parquet", "pq"]
PAGE_TITLES = {
    "1_Data_and_model": ("Data & model", ":material/database:"),
    "2_Compare": ("Compare", ":material/compare_arrows:"),
    "3_Inspect": ("Inspect", ":material/search:"),
    "4_Export": ("Export", ":material/download:"),
    "5_How_MADS_chooses": ("How MADS chooses", ":material/school:"),
}
DEFAULTS = FingerprintConfig()
WIDGET_DEFAULTS: dict[str, object] = {
    "sb_source": DATA_SOURCES[0],
    "sb_preset": "default",
    "sb_path": "",
    "sb_text_col": "",
    "sb_resp_col": "",
    "sb_cat_col": "",
    "sb_model_source": MODEL_SOURCES[0],
    "sb_model_path": "",
    "sb_hub_id": "",
    "sb_layers": "all",
    "sb_rule": DEFAULTS.rule,
    "sb_threshold": float(DEFAULTS.threshold),
    "sb_levels": ",".join(str(x) for x in DEFAULTS.levels),
    "sb_top_k": int(DEFAULTS.top_k),
    "sb_pooling": DEFAULTS.pooling,
    "sb_template": DEFAULTS.template,
    "sb_max_tokens": int(DEFAULTS.max_tokens),
    "sb_count_template": False,
}


def _reset_settings() -> None:
    """Put every sidebar setting back to its default (the uploaded file is kept)."""
    for key, value in WIDGET_DEFAULTS.items():
        st.session_state[key] = value


def _data_choice() -> session.DataChoice:
    st.radio("Dataset", DATA_SOURCES, key="sb_source", horizontal=False)
    source = st.session_state["sb_source"]
    if source == DATA_SOURCES[0]:
        st.selectbox("Demo preset", list(DEMO_PRESETS), key="sb_preset",
                     format_func=lambda name: f"{name} ({DEMO_PRESETS[name].size:,} samples)")
        st.caption(DEMO_PRESETS[st.session_state["sb_preset"]].description)
        return session.DataChoice(kind="demo", name=st.session_state["sb_preset"])
    if source == DATA_SOURCES[1]:
        upload = st.file_uploader("Records file", type=UPLOAD_TYPES, key="sb_upload",
                                  help="Alpaca or chat JSON/JSONL, or a CSV/TSV/Parquet table.")
        if upload is None:
            raise ValueError("upload a file (JSON, JSONL, CSV, TSV or Parquet), or pick the bundled demo")
        saved = st.session_state.setdefault("_uploads", {})  # file id -> saved path: hash each upload once
        if upload.file_id not in saved:
            saved[upload.file_id] = str(session.save_upload(upload.name, upload.getvalue()))
        path = saved[upload.file_id]
        choice = session.DataChoice(kind="path", path=str(path), label=upload.name)
    else:
        st.text_input("Path to a records file", key="sb_path", placeholder="/data/my_alpaca.jsonl")
        path_text = st.session_state["sb_path"].strip()
        if not path_text:
            raise ValueError("enter the path of a records file, or pick the bundled demo")
        choice = session.DataChoice(kind="path", path=path_text)
    with st.expander("Table columns (CSV / TSV / Parquet)"):
        st.text_input("Text column", key="sb_text_col", placeholder="auto")
        st.text_input("Response column", key="sb_resp_col", placeholder="auto")
        st.text_input("Category column", key="sb_cat_col", placeholder="auto")
    return session.DataChoice(
        kind="path", path=choice.path, label=choice.label,
        text_column=st.session_state["sb_text_col"].strip() or None,
        response_column=st.session_state["sb_resp_col"].strip() or None,
        category_column=st.session_state["sb_cat_col"].strip() or None,
    )


def _model_spec() -> ModelSpec:
    st.radio("Model", MODEL_SOURCES, key="sb_model_source")
    source = st.session_state["sb_model_source"]
    if source == MODEL_SOURCES[0]:
        return ModelSpec()
    if source == MODEL_SOURCES[1]:
        st.text_input("Model folder", key="sb_model_path", placeholder="/models/Llama-3.2-1B-Instruct")
        name = st.session_state["sb_model_path"].strip()
        if not name:
            raise ValueError("enter a local model folder (with config.json), or pick the bundled model")
        if not Path(name).expanduser().is_dir():
            raise ValueError(f"model folder not found: {name}")
        return ModelSpec(name=name)
    st.text_input("Hub id", key="sb_hub_id", placeholder="HuggingFaceTB/SmolLM2-360M-Instruct",
                  help="Read from the local Hugging Face cache; downloaded only where the hub is reachable.")
    name = st.session_state["sb_hub_id"].strip()
    if not name:
        raise ValueError("enter a hub id such as HuggingFaceTB/SmolLM2-360M-Instruct, or pick the bundled model")
    return ModelSpec(name=name)


def _fingerprint_config() -> FingerprintConfig:
    with st.expander("Fingerprint settings", expanded=False):
        st.text_input("Layers", key="sb_layers", help="'all', '0,5,10' or ranges like '0-9,20'.")
        st.selectbox("Firing rule", ["threshold", "topk"], key="sb_rule",
                     help="threshold: fires when the activation exceeds τ; topk: among the top-k of its layer on a "
                     "token.")
        rule = st.session_state["sb_rule"]
        st.number_input("Threshold τ", key="sb_threshold", step=0.25, format="%.2f", disabled=rule != "threshold",
                        help=f"SiLU outputs are rarely exactly 0, so τ defines 'fires'. Default "
                        f"{DEFAULTS.threshold:g}: a few % of neurons per sample (README, 'Choosing τ').")
        st.text_input("Levels (finer states)", key="sb_levels", disabled=rule != "threshold",
                      help="Extra thresholds above τ stored as bit planes, comma-separated, or 'none'.")
        st.number_input("Top-k per token", key="sb_top_k", min_value=1, step=1, disabled=rule != "topk")
        st.selectbox("Pooling over the sample's tokens", ["max", "mean"], key="sb_pooling")
        st.selectbox("Template", ["chat", "plain"], key="sb_template",
                     help="chat: the tokenizer's chat template (template tokens are masked); plain: prompt + "
                     "response as raw text.")
        st.number_input("Max tokens", key="sb_max_tokens", min_value=8, step=32)
        st.checkbox("Count template/system tokens (ablation)", key="sb_count_template")
    values = {
        "layers": st.session_state["sb_layers"], "rule": rule, "threshold": st.session_state["sb_threshold"],
        "levels": st.session_state["sb_levels"], "top_k": st.session_state["sb_top_k"],
        "pooling": st.session_state["sb_pooling"], "template": st.session_state["sb_template"],
        "max_tokens": st.session_state["sb_max_tokens"],
        "count_template_tokens": st.session_state["sb_count_template"],
    }
    return session.fingerprint_config(values)


def _pages() -> list:
    """Every ``pages/<n>_<Name>.py`` in number order (the first is the default page)."""
    files = sorted((ROOT / "pages").glob("[0-9]*_*.py"), key=lambda p: int(p.name.split("_", 1)[0]))
    pages = []
    for i, path in enumerate(files):
        title, icon = PAGE_TITLES.get(path.stem, (path.stem.split("_", 1)[1].replace("_", " "), None))
        pages.append(st.Page(f"pages/{path.name}", title=title, icon=icon, default=i == 0))
    return pages


def sidebar() -> None:
    """Draw the shared sidebar and store the resulting settings (or the reason they are invalid)."""
    for key, value in WIDGET_DEFAULTS.items():
        st.session_state.setdefault(key, value)
    with st.sidebar:
        problems: list[str] = []
        parts: dict[str, object] = {}
        for name, build in (("data", _data_choice), ("model", _model_spec), ("fingerprint", _fingerprint_config)):
            try:
                parts[name] = build()
            except Exception as exc:  # shown in the sidebar; the pages wait for valid settings
                problems.append(str(exc) or type(exc).__name__)
        st.button("Reset settings to defaults", on_click=_reset_settings, icon=":material/restart_alt:")
        if problems:
            st.error("\n\n".join(problems), icon=":material/tune:")
            st.session_state["settings_error"] = problems[0]
            return
        st.session_state["settings_error"] = None
        st.session_state["settings"] = session.AppSettings(**parts)


st.set_page_config(page_title="MADS Explorer", page_icon=":material/hub:", layout="wide")
st.logo(str(ROOT / "assets" / "logo.svg"), size="large")
navigation = st.navigation(_pages())
deep_link = st.session_state.pop("_deep_link", None)  # set by a page opened before this script ran
if deep_link:
    st.switch_page(deep_link)
st.session_state["_app_ran"] = True
sidebar()
try:
    navigation.run()
except Exception as exc:  # a bug or an unforeseen input: one clear line, never a traceback
    from pages._common import error_text

    st.error(error_text(exc), icon=":material/error:")
