"""MADS Explorer — Streamlit entry point: page navigation and the shared sidebar.

Run with ``streamlit run app.py`` (or ``make run``). The sidebar decides the
dataset, the model and the fingerprint settings; their values live in the app's
own state (``pages/_state.py``: one registry, widgets drawn from it, the URL kept
in step) and the resulting ``AppSettings`` in ``st.session_state["settings"]``;
each page in ``pages/`` reads them, calls ``mads_core`` and draws.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mads_core import session
from mads_core.config import FingerprintConfig, ModelSpec
from mads_core.data.demo import DEMO_PRESETS
from pages import _state as state

ROOT = Path(__file__).resolve().parent
UPLOAD_TYPES = ["json", "jsonl", "ndjson", "csv", "tsv", "parquet", "pq"]
PAGE_TITLES = {
    "1_Data_and_model": ("Data & model", ":material/database:"),
    "2_Compare": ("Compare", ":material/compare_arrows:"),
    "3_Inspect": ("Inspect", ":material/search:"),
    "4_Export": ("Export", ":material/download:"),
    "5_How_MADS_chooses": ("How MADS chooses", ":material/school:"),
    "6_Validate": ("Validate", ":material/model_training:"),
}
DEFAULTS = FingerprintConfig()


def _reset_settings() -> None:
    """Put every sidebar setting back to its default (the last uploaded file is kept)."""
    state.reset(state.SIDEBAR_PREFIXES)


def _remember_upload() -> None:
    upload = st.session_state.get("sb_upload")
    if upload is not None:
        path = session.save_upload(upload.name, upload.getvalue())
        state.put(state.DATA_UPLOAD, {"name": upload.name, "path": str(path)})


def _data_choice() -> session.DataChoice:
    source = state.bound(st.radio, "Dataset", state.DATA_SOURCE, options=state.DATA_SOURCES)
    if source == state.DATA_SOURCES[0]:
        state.bound(st.selectbox, "Demo preset", state.DATA_PRESET, options=list(DEMO_PRESETS),
                    format_func=lambda name: f"{name} ({DEMO_PRESETS[name].size:,} samples)")
        preset = state.get(state.DATA_PRESET)
        st.caption(DEMO_PRESETS[preset].description)
        return session.DataChoice(kind="demo", name=preset)
    if source == state.DATA_SOURCES[1]:
        st.file_uploader("Records file", type=UPLOAD_TYPES, key="sb_upload", on_change=_remember_upload,
                         help="Alpaca or chat JSON/JSONL, or a CSV/TSV/Parquet table.")
        kept = state.get(state.DATA_UPLOAD)
        if not kept:
            raise ValueError("upload a file (JSON, JSONL, CSV, TSV or Parquet), or pick the bundled demo")
        if st.session_state.get("sb_upload") is None:
            st.caption(f"Using **{kept['name']}** (uploaded earlier); drop another file to replace it.")
        choice = session.DataChoice(kind="path", path=kept["path"], label=kept["name"])
    else:
        state.bound(st.text_input, "Path to a records file", state.DATA_PATH, placeholder="/data/my_alpaca.jsonl")
        path_text = state.get(state.DATA_PATH).strip()
        if not path_text:
            raise ValueError("enter the path of a records file, or pick the bundled demo")
        choice = session.DataChoice(kind="path", path=path_text)
    with st.expander("Table columns (CSV / TSV / Parquet)"):
        state.bound(st.text_input, "Text column", state.TEXT_COL, placeholder="auto")
        state.bound(st.text_input, "Response column", state.RESP_COL, placeholder="auto")
        state.bound(st.text_input, "Category column", state.CAT_COL, placeholder="auto")
    return session.DataChoice(
        kind="path", path=choice.path, label=choice.label,
        text_column=state.get(state.TEXT_COL).strip() or None,
        response_column=state.get(state.RESP_COL).strip() or None,
        category_column=state.get(state.CAT_COL).strip() or None,
    )


def _model_spec() -> ModelSpec:
    source = state.bound(st.radio, "Model", state.MODEL_SOURCE, options=state.MODEL_SOURCES)
    if source == state.MODEL_SOURCES[0]:
        return ModelSpec()
    if source == state.MODEL_SOURCES[1]:
        state.bound(st.text_input, "Model folder", state.MODEL_PATH, placeholder="/models/Llama-3.2-1B-Instruct")
        name = state.get(state.MODEL_PATH).strip()
        if not name:
            raise ValueError("enter a local model folder (with config.json), or pick the bundled model")
        if not Path(name).expanduser().is_dir():
            raise ValueError(f"model folder not found: {name}")
        return ModelSpec(name=name)
    state.bound(st.text_input, "Hub id", state.HUB_ID, placeholder="HuggingFaceTB/SmolLM2-360M-Instruct",
                help="Read from the local Hugging Face cache; downloaded only where the hub is reachable.")
    name = state.get(state.HUB_ID).strip()
    if not name:
        raise ValueError("enter a hub id such as HuggingFaceTB/SmolLM2-360M-Instruct, or pick the bundled model")
    return ModelSpec(name=name)


def _fingerprint_config() -> FingerprintConfig:
    with st.expander("Fingerprint settings", expanded=False):
        state.bound(st.text_input, "Layers", state.FP_LAYERS, help="'all', '0,5,10' or ranges like '0-9,20'.")
        rule = state.bound(st.selectbox, "Firing rule", state.FP_RULE, options=["threshold", "topk"],
                           help="threshold: fires when the activation exceeds τ; topk: among the top-k of its "
                           "layer on a token.")
        state.bound(st.number_input, "Threshold τ", state.FP_THRESHOLD, step=0.25, format="%.2f",
                    disabled=rule != "threshold",
                    help=f"SiLU outputs are rarely exactly 0, so τ defines 'fires'. Default "
                    f"{DEFAULTS.threshold:g}: a few % of neurons per sample (README, 'Choosing τ').")
        state.bound(st.text_input, "Levels (finer states)", state.FP_LEVELS, disabled=rule != "threshold",
                    help="Extra thresholds above τ stored as bit planes, comma-separated, or 'none'.")
        state.bound(st.number_input, "Top-k per token", state.FP_TOP_K, min_value=1, step=1,
                    disabled=rule != "topk")
        state.bound(st.selectbox, "Pooling over the sample's tokens", state.FP_POOLING, options=["max", "mean"])
        state.bound(st.selectbox, "Template", state.FP_TEMPLATE, options=["chat", "plain"],
                    help="chat: the tokenizer's chat template (template tokens are masked); plain: prompt + "
                    "response as raw text.")
        state.bound(st.number_input, "Max tokens", state.FP_MAX_TOKENS, min_value=8, step=32)
        state.bound(st.checkbox, "Count template/system tokens (ablation)", state.FP_COUNT_TEMPLATE)
    return session.fingerprint_config(state.fingerprint_values())


def _pages() -> list:
    """Every ``pages/<n>_<Name>.py`` in number order (the first is the default page)."""
    files = sorted((ROOT / "pages").glob("[0-9]*_*.py"), key=lambda p: int(p.name.split("_", 1)[0]))
    pages = []
    for i, path in enumerate(files):
        title, icon = PAGE_TITLES.get(path.stem, (path.stem.split("_", 1)[1].replace("_", " "), None))
        pages.append(st.Page(f"pages/{path.name}", title=title, icon=icon, default=i == 0))
    return pages


def sidebar() -> None:
    """Draw the shared sidebar and store the resulting settings (or the reason they are invalid).

    Every value lives in the app's own state (``pages/_state.py``): a setting that is
    invalid for a moment (no file uploaded yet, a layer spec being typed) is reported
    here and stops the pages, and nothing else is reset.
    """
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
    st.switch_page(deep_link, query_params=st.query_params.to_dict())
st.session_state["_app_ran"] = True
state.init()
sidebar()
state.write_url()
try:
    navigation.run()
except Exception as exc:  # a bug or an unforeseen input: one clear line, never a traceback
    from pages._common import error_text

    st.error(error_text(exc), icon=":material/error:")
