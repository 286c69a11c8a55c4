"""The real bundled all-MiniLM-L6-v2: meaning, determinism, pooling, and the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from mads_core.data.loader import Dataset
from mads_core.model import embed
from mads_core.model.embed import dataset_embeddings, embed_texts, embedding_key, model_identity

SENTENCES = [
    "How do I bake a loaf of bread at home?",
    "What is a good recipe for homemade bread?",
    "The central bank raised interest rates by half a point.",
    "A man is playing the guitar on stage.",
    "Someone performs a song on a guitar in front of an audience.",
]


def chat_dataset(pairs: list[tuple[str, str]]) -> Dataset:
    n = len(pairs)
    return Dataset(
        name="emb", format="chat", ids=tuple(f"e{i}" for i in range(n)),
        turns=tuple((("user", q), ("assistant", a)) for q, a in pairs), categories=(None,) * n,
        sources=("hand",) * n, records=tuple({"id": f"e{i}"} for i in range(n)),
    )


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return embed_texts(SENTENCES, batch_size=2)


def test_shape_dtype_and_unit_length(vectors):
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(5), abs=1e-5)
    assert embed_texts([]).shape == (0, 384)


def test_paraphrases_are_closer_than_unrelated_sentences(vectors):
    sim = vectors @ vectors.T
    assert sim[0, 1] > 0.6 and sim[3, 4] > 0.5  # bread/bread, guitar/guitar
    for a, b in ((0, 1), (3, 4)):
        unrelated = [sim[a, j] for j in range(5) if j not in (a, b)]
        assert sim[a, b] > max(unrelated) + 0.3


def test_deterministic_and_batch_independent_within_tolerance(vectors):
    again = embed_texts(SENTENCES, batch_size=2)
    assert again.tobytes() == vectors.tobytes()
    single = embed_texts(SENTENCES[:2], batch_size=1)
    assert np.abs(single - vectors[:2]).max() < 1e-5


def test_matches_manual_mean_pooling():
    import torch

    model, tokenizer = embed.load_embedder()
    text = "Mean pooling over real tokens only."
    enc = tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state[0]
    ref = hidden.mean(dim=0).numpy()
    ref /= np.linalg.norm(ref)
    # padded next to a much longer text: padding must not leak into the mean
    got = embed_texts([text, "a much longer companion sentence " * 10], batch_size=2)[0]
    assert np.abs(got - ref).max() < 1e-5


def test_long_text_is_truncated_not_rejected():
    seen = []
    out = embed_texts(["word " * 2000, "short"], progress=lambda d, t: seen.append((d, t)))
    assert np.isfinite(out).all() and seen[-1] == (2, 2)


def test_dataset_embeddings_are_cached(tmp_path, monkeypatch):
    ds = chat_dataset([("What is AI?", "The science of making machines think."),
                       ("Name a fruit.", "Apple.")])
    first = dataset_embeddings(ds, cache_root=tmp_path)
    expected = embed_texts([ds.display_text(i) for i in range(len(ds))])
    assert np.array_equal(np.asarray(first), expected)
    assert (tmp_path / "embeddings" / embedding_key(ds)).is_dir()

    def boom(*args, **kwargs):
        raise AssertionError("cache hit must not recompute")

    monkeypatch.setattr(embed, "embed_texts", boom)
    calls = []
    second = dataset_embeddings(ds, cache_root=tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert np.array_equal(np.asarray(second), expected) and calls == [(2, 2)]
    other = chat_dataset([("What is AI?", "Something else entirely."), ("Name a fruit.", "Apple.")])
    assert embedding_key(other) != embedding_key(ds)
    with pytest.raises(AssertionError, match="recompute"):
        dataset_embeddings(other, cache_root=tmp_path)


def test_model_identity_names_the_weights():
    ident = model_identity()
    assert ident["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(ident["weights_sha256"]) == 64 and ident["max_tokens"] == 256 and ident["dim"] == 384
