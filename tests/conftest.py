"""Shared fixtures: one real bundled model per session, an isolated cache root."""

from __future__ import annotations

import os

import pytest

from mads_core.config import ModelSpec
from mads_core.data.loader import Dataset


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Fingerprint/embedding caches go to a per-session folder; converted models stay shared."""
    root = tmp_path_factory.mktemp("mads-cache")
    old = os.environ.get("MADS_CACHE_DIR")
    os.environ["MADS_CACHE_DIR"] = str(root)
    if "MADS_MODEL_CACHE" not in os.environ:
        from platformdirs import user_cache_dir

        os.environ["MADS_MODEL_CACHE"] = os.path.join(user_cache_dir("mads-explorer"), "models")
    yield root
    if old is None:
        os.environ.pop("MADS_CACHE_DIR", None)
    else:
        os.environ["MADS_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def bundled_model():
    """The real bundled SmolLM2-135M-Instruct (converted once, then cached)."""
    import torch

    from mads_core.model.models import load_model

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return load_model(ModelSpec())


# Six short, unrelated real-world style instructions with answers.
SIX_PAIRS = [
    ("What is AI?", "Artificial intelligence is the science of building machines that think."),
    (
        "Write a haiku about autumn leaves.",
        "Red leaves drift and fall / the wind carries them away / autumn says goodbye",
    ),
    ("Translate 'good morning' into French.", "Bonjour."),
    ("What is 17 times 23?", "17 times 23 is 391."),
    ("Explain photosynthesis to a child.", "Plants use sunlight to turn water and air into food."),
    ("Write a Python function that reverses a string.", "def reverse(s):\n    return s[::-1]"),
]


def make_dataset(pairs: list[tuple[str, str]], name: str = "hand") -> Dataset:
    """A chat-format Dataset built directly from (question, answer) pairs."""
    turns = tuple((("user", q), ("assistant", a)) for q, a in pairs)
    return Dataset(
        name=name,
        format="chat",
        ids=tuple(f"{name}-{i}" for i in range(len(pairs))),
        turns=turns,
        categories=(None,) * len(pairs),
        sources=(name,) * len(pairs),
        records=tuple(
            {"id": f"{name}-{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for i, (q, a) in enumerate(pairs)
        ),
    )


@pytest.fixture()
def six_pairs() -> list[tuple[str, str]]:
    return list(SIX_PAIRS)
