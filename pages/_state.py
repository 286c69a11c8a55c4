"""The app's own page state: one registry of settings, kept in ``st.session_state`` under the app's keys.

Why: a Streamlit widget forgets its value whenever it is not drawn in a run (another
page, a sidebar error that stops the page), and a widget created again from a stale
key can come back at its minimum. So no widget owns a setting here. Every setting is
registered once below (name, default, optional URL parameter); :func:`bound` draws a
widget *from* the app's key each run and writes the user's change back in its
``on_change`` callback. A widget that is not drawn loses nothing, and what the page
shows is always what is in effect.

Adding a setting: one :func:`register` line here (with ``url=`` if it belongs in a
shared link), one :func:`bound` call where it is drawn, and read it with :func:`get`.

The URL: settings registered with ``url=`` and different from their default are
written to ``st.query_params`` on every run and read back on a session's first run,
so a view can be shared or reloaded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from mads_core import session
from mads_core.config import FingerprintConfig, SelectConfig

_READY = "_state_ready"
_WIDGET_PREFIX = "w:"


@dataclass(frozen=True)
class Setting:
    """One piece of page state: its key in ``st.session_state``, default, and URL parameter (or None)."""

    name: str
    default: Any
    url: str | None = None


REGISTRY: dict[str, Setting] = {}


def register(name: str, default: Any, url: str | None = None) -> str:
    """Declare a setting (once, at import); returns its key."""
    REGISTRY[name] = Setting(name, default, url)
    return name


DATA_SOURCES = ("Bundled demo", "Upload a file", "Local path")
MODEL_SOURCES = ("Bundled SmolLM2-135M-Instruct", "Local model folder", "Hugging Face hub id")
_FP = FingerprintConfig()
_SEL = SelectConfig()

# ---------------------------------------------------------------- sidebar: data, model, fingerprints
DATA_SOURCE = register("data.source", DATA_SOURCES[0], "data")
DATA_PRESET = register("data.preset", "default", "preset")
DATA_PATH = register("data.path", "", "path")
DATA_UPLOAD = register("data.upload", None)  # {"name", "path"} of the last uploaded file (kept across switches)
TEXT_COL = register("data.text_column", "", "text_col")
RESP_COL = register("data.response_column", "", "resp_col")
CAT_COL = register("data.category_column", "", "cat_col")
MODEL_SOURCE = register("model.source", MODEL_SOURCES[0], "model_source")
MODEL_PATH = register("model.path", "", "model_path")
HUB_ID = register("model.hub_id", "", "hub_id")
FP_LAYERS = register("fp.layers", "all", "layers")
FP_RULE = register("fp.rule", _FP.rule, "rule")
FP_THRESHOLD = register("fp.threshold", float(_FP.threshold), "tau")
FP_LEVELS = register("fp.levels", ",".join(str(x) for x in _FP.levels), "levels")
FP_TOP_K = register("fp.top_k", int(_FP.top_k), "top_k")
FP_POOLING = register("fp.pooling", _FP.pooling, "pooling")
FP_TEMPLATE = register("fp.template", _FP.template, "template")
FP_MAX_TOKENS = register("fp.max_tokens", int(_FP.max_tokens), "max_tokens")
FP_COUNT_TEMPLATE = register("fp.count_template_tokens", False, "count_template")
SIDEBAR_PREFIXES = ("data.", "model.", "fp.")

# ---------------------------------------------------------------- budget and methods
BUDGET_SHARE = register("budget.share", session.DEFAULT_BUDGET_FRACTION, "budget")
METHODS = register("compare.methods", list(session.DEFAULT_METHODS), "methods")
MADS_CONTINUATION = register("mads.continuation", _SEL.continuation, "continuation")
MADS_M = register("mads.m", int(_SEL.m), "m")
MADS_WEIGHTING = register("mads.weighting", _SEL.weighting, "weighting")
MADS_MIN_SUPPORT = register("mads.min_support", int(_SEL.min_support), "min_support")
MADS_MAX_SHARE = register("mads.max_neuron_share", float(_SEL.max_neuron_share), "max_share")
SEEDS = {m: register(f"seed.{m}", 0, f"seed_{m}") for m in sorted(session.SEEDED_METHODS)}

# ---------------------------------------------------------------- maps and views
MAP_NEIGHBORS = register("map.n_neighbors", 15, "nn")
MAP_MIN_DIST = register("map.min_dist", 0.1, "min_dist")
MAP_SVD = register("map.svd_dims", 50, "svd")
HIGHLIGHT = register("map.highlight", ["mads", "random"], "highlight")
COLOR_BY = register("map.color_by", "", "color_by")
INSPECT_METHOD = register("inspect.method", "mads", "inspect_method")
INSPECT_ROW = register("inspect.row", None, "row")
CMP_A = register("inspect.method_a", "", "a")
CMP_B = register("inspect.method_b", "", "b")
SEARCH_TEXT = register("inspect.search", "", "q")


# ---------------------------------------------------------------- access


def init() -> None:
    """Give every registered setting its default (once), then, on a session's first run, the URL's values."""
    ss = st.session_state
    for s in REGISTRY.values():
        if s.name not in ss:
            ss[s.name] = copy.deepcopy(s.default)
    if not ss.get(_READY):
        ss[_READY] = True
        read_url()


def get(name: str) -> Any:
    """A setting's current value (its default when the session has none yet)."""
    if name in st.session_state:
        return st.session_state[name]
    return copy.deepcopy(REGISTRY[name].default)


def put(name: str, value: Any) -> None:
    st.session_state[name] = value


def reset(prefixes: Iterable[str]) -> None:
    """Every setting whose key starts with one of ``prefixes`` back to its default."""
    for s in REGISTRY.values():
        if s.name.startswith(tuple(prefixes)) and s.name != DATA_UPLOAD:
            st.session_state[s.name] = copy.deepcopy(s.default)


def bound(widget: Callable[..., Any], label: str, name: str, *, to_widget: Callable[[Any], Any] | None = None,
          from_widget: Callable[[Any], Any] | None = None, on_change: Callable[[], None] | None = None,
          slot: str = "", **kwargs: Any) -> Any:
    """Draw ``widget`` showing the setting ``name``; the user's change is written back to it.

    ``to_widget`` / ``from_widget`` convert between the stored value and what the widget
    shows (e.g. a share shown as a percentage). A stored value the widget cannot show
    (an option that no longer exists) is replaced by the widget's first option. ``slot``
    tells apart two widgets that show the same setting (a slider and a count box).
    """
    wkey = widget_key(name, slot)
    value = get(name)
    options = kwargs.get("options")
    if options is not None:
        options = list(options)
        if isinstance(value, list):
            value = [v for v in value if v in options]
        elif value not in options and options:
            value = options[0]
            put(name, value)
    st.session_state[wkey] = to_widget(value) if to_widget else value

    def sync() -> None:
        shown = st.session_state[wkey]
        put(name, from_widget(shown) if from_widget else shown)
        if on_change is not None:
            on_change()

    return widget(label, key=wkey, on_change=sync, **kwargs)


def widget_key(name: str, slot: str = "") -> str:
    """The widget key :func:`bound` uses for setting ``name`` (tests and browser selectors)."""
    return _WIDGET_PREFIX + name + (f":{slot}" if slot else "")


# ---------------------------------------------------------------- derived settings


def select_config() -> SelectConfig:
    """MADS settings as in effect (raises ValueError on an invalid combination)."""
    return SelectConfig(continuation=get(MADS_CONTINUATION), m=int(get(MADS_M)), weighting=get(MADS_WEIGHTING),
                        min_support=int(get(MADS_MIN_SUPPORT)), max_neuron_share=float(get(MADS_MAX_SHARE)))


def method_settings() -> dict[str, dict[str, Any]]:
    """Per-method settings of the baselines (their seeds)."""
    return {m: {"seed": int(get(key))} for m, key in SEEDS.items()}


def fingerprint_values() -> dict[str, Any]:
    """The sidebar's fingerprint settings as ``session.fingerprint_config`` reads them."""
    return {"layers": get(FP_LAYERS), "rule": get(FP_RULE), "threshold": get(FP_THRESHOLD),
            "levels": get(FP_LEVELS), "top_k": get(FP_TOP_K), "pooling": get(FP_POOLING),
            "template": get(FP_TEMPLATE), "max_tokens": get(FP_MAX_TOKENS),
            "count_template_tokens": get(FP_COUNT_TEMPLATE)}


# ---------------------------------------------------------------- URL


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _decode(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        return text in ("1", "true", "yes")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, list):
        return [t for t in text.split(",") if t]
    if default is None:  # an optional row number
        return int(text)
    return text


def read_url() -> list[str]:
    """Settings from ``st.query_params`` (unreadable values are skipped and named in the result)."""
    bad = []
    params = st.query_params
    for s in REGISTRY.values():
        if s.url and s.url in params:
            try:
                st.session_state[s.name] = _decode(params[s.url], s.default)
            except ValueError:
                bad.append(s.url)
    return bad


def write_url() -> None:
    """Put every URL setting that differs from its default into ``st.query_params`` (only when it changed)."""
    wanted = {}
    for s in REGISTRY.values():
        if s.url is None:
            continue
        value = get(s.name)
        if value != s.default and value not in (None, ""):
            wanted[s.url] = _encode(value)
    if dict(st.query_params.to_dict()) != wanted:
        st.query_params.from_dict(wanted)
