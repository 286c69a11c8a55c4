"""Export: download the chosen subset (input format, rank order) and its manifest, plus the CLI command."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import streamlit as st

from mads_core import session
from mads_core.data import export
from mads_core.views import plots
from pages import _common as ui

ui.page_setup(__file__)

FORMATS = {"alpaca": [".json", ".jsonl", ".csv", ".parquet"], "chat": [".jsonl", ".json", ".parquet"],
           "table": [".csv", ".jsonl", ".json", ".parquet"]}
MIME = {".json": "application/json", ".jsonl": "application/jsonl", ".csv": "text/csv",
        ".parquet": "application/vnd.apache.parquet"}

st.title("Export the subset")
s = ui.settings()
ds = ui.dataset(s)
n = len(ds)
fp = ui.require_fingerprints(ds, s)

methods, select_config, method_settings = ui.method_state()
k = ui.budget_control(n, "export")
st.session_state.setdefault("w_export_method", methods[0] if methods else "mads")
c1, c2 = st.columns(2)
method = c1.selectbox("Method", session.METHODS, key="w_export_method", format_func=plots.method_label,
                      help="Settings of each method are taken from Compare.")
suffixes = FORMATS.get(ds.format, [".jsonl", ".json", ".parquet"])
suffix = c2.selectbox("File format", suffixes, key="w_export_suffix",
                      help=f"The input's format ({ds.format}) keeps every original field of each record.")
default_name = session.export_name(ds.name, method, k, suffix)
if st.session_state.get("export_default_name") != default_name:
    st.session_state["export_default_name"] = default_name
    st.session_state["w_export_name"] = default_name
st.text_input("File name", key="w_export_name", help="The manifest is saved as <file name>.manifest.json.")
name = Path(st.session_state["w_export_name"].strip() or default_name).name
if Path(name).suffix.lower() not in export.CONTAINERS:
    st.error(f"**Problem:** `{name}` has no supported suffix; use one of {', '.join(sorted(export.CONTAINERS))}.")
    st.stop()

emb = ui.embeddings(ds) if method in session.NEEDS_EMBEDDINGS else None
sel = ui.export_selection(method, ds, fp, k, emb)
model = session.model_record(method, fp)


def _write() -> tuple[bytes, bytes, dict]:
    folder = Path(tempfile.mkdtemp(prefix="mads-export-"))
    # the manifest's load report carries the token-window counts, as the CLI's does
    reported = session.with_window_report(ds, s.model, s.fingerprint)
    result = export.export_selection(reported, sel, int(k), folder / name, model=model)
    data, manifest = result.data_path.read_bytes(), result.manifest_path.read_bytes()
    for p in (result.data_path, result.manifest_path):
        p.unlink(missing_ok=True)
    folder.rmdir()
    return data, manifest, result.manifest


key = f"{ds.content_hash()}|{fp.key}|{sel.settings_hash}|{method}|{k}|{name}|{s.model}|{s.fingerprint.cache_hash()}"
with ui.guard("Export failed"):
    data, manifest_bytes, manifest = ui.memo("export", key, _write, recent=True)

st.header("Download", divider="gray")
d1, d2 = st.columns(2)
d1.download_button(f"Download {name} ({len(data):,} bytes)", data, file_name=name,
                   mime=MIME.get(Path(name).suffix.lower(), "application/octet-stream"), type="primary",
                   icon=":material/download:", on_click="ignore")
d2.download_button("Download manifest", manifest_bytes, file_name=name + export.MANIFEST_SUFFIX,
                   mime="application/json", icon=":material/description:", on_click="ignore")
st.caption(f"{k:,} records of {n:,}, in rank order (pick 1 first), with all their original fields. "
           f"Settings hash `{manifest['settings_hash']}`.")
st.markdown(f"sha256 of the file: `{hashlib.sha256(data).hexdigest()}`  \n"
            f"sha256 of the manifest: `{hashlib.sha256(manifest_bytes).hexdigest()}`")

st.header("Reproduce on the command line", divider="gray")
command = session.cli_command(s.data, s.model, s.fingerprint, method, k, name, select_config=select_config,
                              method_settings=method_settings.get(method, {}), n_skipped=ds.report.n_skipped)
st.code(command, language="bash")
st.caption("Same data, model, settings and package versions → the same file and manifest, byte for byte "
           "(the CLI and the app call the same `mads_core` functions; fingerprints come from the same cache).")

st.header("Manifest", divider="gray")
with st.expander("Manifest (first picks)"):
    preview = {**manifest, "picks": manifest["picks"][:5]}
    st.code(json.dumps(preview, indent=2, ensure_ascii=False), language="json")
