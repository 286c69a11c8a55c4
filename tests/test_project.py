"""2-D projections: the blockwise SVD is a real SVD, maps keep structure, results are cached and deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from mads_core.analysis.project import (
    MIN_UMAP_SAMPLES,
    array_hash,
    project_embeddings,
    project_fingerprints,
    svd_bits,
)
from mads_core.select.bitops import pack_bits

D = 300


def two_groups(n_per: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of two kinds of samples firing disjoint neuron blocks (+ noise); packed bits and labels."""
    rng = np.random.default_rng(seed)
    fired = np.zeros((2 * n_per, D), dtype=bool)
    fired[:n_per, :100] = rng.random((n_per, 100)) < 0.5
    fired[n_per:, 150:250] = rng.random((n_per, 100)) < 0.5
    fired |= rng.random(fired.shape) < 0.02
    return pack_bits(fired), np.repeat([0, 1], n_per)


def test_svd_bits_matches_a_dense_svd_of_the_unpacked_bits():
    rng = np.random.default_rng(1)
    basis = rng.random((4, D)) < 0.3                         # rank-4 structure
    fired = basis[rng.integers(0, 4, size=120)] | (rng.random((120, D)) < 0.01)
    scores = svd_bits(pack_bits(fired), D, 4, block_rows=16)
    expected = np.linalg.svd(fired.astype(float), compute_uv=False)[:4]
    np.testing.assert_allclose(np.linalg.norm(scores, axis=0), expected, rtol=1e-3)
    # the scores span the same space as the exact top-4 left singular vectors (times S)
    u, s, _ = np.linalg.svd(fired.astype(float), full_matrices=False)
    exact = u[:, :4] * s[:4]
    proj = exact @ np.linalg.lstsq(exact, scores, rcond=None)[0]
    np.testing.assert_allclose(proj, scores, atol=1e-2 * np.abs(scores).max())


def test_svd_fitted_on_a_row_sample_spans_the_same_space_for_every_row():
    rng = np.random.default_rng(4)
    basis = rng.random((3, D)) < 0.3
    fired = basis[rng.integers(0, 3, size=400)] | (rng.random((400, D)) < 0.01)
    full = svd_bits(pack_bits(fired), D, 3)
    sampled = svd_bits(pack_bits(fired), D, 3, fit_rows=60)
    assert sampled.shape == (400, 3)
    fitted = full @ np.linalg.lstsq(full, sampled, rcond=None)[0]
    assert np.abs(fitted - sampled).max() < 0.02 * np.abs(sampled).max()


def test_svd_bits_does_not_depend_on_the_block_size():
    bits, _ = two_groups()
    a = svd_bits(bits, D, 5, block_rows=7)
    b = svd_bits(bits, D, 5, block_rows=1000)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_project_fingerprints_keeps_two_kinds_of_samples_apart(tmp_path):
    bits, labels = two_groups()
    proj = project_fingerprints(bits, D, cache=tmp_path)
    assert proj.coords.shape == (len(labels), 2) and proj.coords.dtype == np.float32
    assert proj.method.startswith("SVD(") and "UMAP(n_neighbors=15, euclidean)" in proj.method
    c0, c1 = proj.coords[labels == 0], proj.coords[labels == 1]
    between = np.linalg.norm(c0.mean(axis=0) - c1.mean(axis=0))
    within = max(np.linalg.norm(c0 - c0.mean(axis=0), axis=1).mean(), np.linalg.norm(c1 - c1.mean(axis=0),
                                                                                     axis=1).mean())
    assert between > 2 * within


def test_project_fingerprints_is_cached_on_disk_and_deterministic(tmp_path):
    bits, _ = two_groups(n_per=20, seed=3)
    assert project_fingerprints(bits, D, cache=tmp_path, compute=False) is None  # nothing cached yet
    first = project_fingerprints(bits, D, cache=tmp_path)
    assert not first.cache_hit
    again = project_fingerprints(bits, D, cache=tmp_path, compute=False)
    assert again is not None and again.cache_hit and again.method == first.method
    np.testing.assert_array_equal(again.coords, first.coords)
    fresh = project_fingerprints(bits, D, cache=tmp_path, use_cache=False)
    np.testing.assert_array_equal(fresh.coords, first.coords)  # fixed random_state
    other = project_fingerprints(bits, D, cache=tmp_path, n_neighbors=5, compute=False)
    assert other is None  # settings are part of the key
    keyed = project_fingerprints(bits, D, cache=tmp_path, input_key="fp-key-1")
    assert keyed.key != first.key


def test_small_sets_fall_back_to_svd_and_say_so(tmp_path):
    bits, _ = two_groups(n_per=5)
    assert len(bits) < MIN_UMAP_SAMPLES
    proj = project_fingerprints(bits, D, cache=tmp_path)
    assert proj.coords.shape == (10, 2)
    assert "too few for UMAP" in proj.method
    one = project_fingerprints(bits[:1], D, cache=tmp_path)
    assert one.coords.shape == (1, 2) and np.isfinite(one.coords).all()


def test_raw_jaccard_umap_without_svd_and_its_size_limit(tmp_path):
    bits, labels = two_groups(n_per=20, seed=5)
    proj = project_fingerprints(bits, D, svd_dims=0, cache=tmp_path)
    assert "Jaccard" in proj.method and "no SVD" in proj.method
    with pytest.raises(ValueError, match="SVD pre-reduction"):
        project_fingerprints(np.zeros((50_000, 40), dtype=np.uint64), 2560, svd_dims=0, use_cache=False)
    with pytest.raises(ValueError, match="uint64 words"):
        project_fingerprints(bits, D + 64, use_cache=False)


def test_project_embeddings_cosine_umap_and_cache(tmp_path):
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((2, 16))
    emb = np.concatenate([centers[0] + 0.05 * rng.standard_normal((30, 16)),
                          centers[1] + 0.05 * rng.standard_normal((30, 16))]).astype(np.float32)
    proj = project_embeddings(emb, cache=tmp_path)
    assert "cosine" in proj.method and proj.coords.shape == (60, 2)
    a, b = proj.coords[:30].mean(axis=0), proj.coords[30:].mean(axis=0)
    assert np.linalg.norm(a - b) > 2 * np.linalg.norm(proj.coords[:30] - a, axis=1).mean()
    assert project_embeddings(emb, cache=tmp_path).cache_hit
    small = project_embeddings(emb[:4], cache=tmp_path)
    assert "too few for UMAP" in small.method
    with pytest.raises(ValueError, match="non-empty"):
        project_embeddings(np.zeros((0, 4)))


def test_array_hash_tracks_content_shape_and_dtype():
    a = np.arange(12, dtype=np.uint64).reshape(3, 4)
    assert array_hash(a) == array_hash(a.copy())
    assert array_hash(a) != array_hash(a.reshape(4, 3))
    b = a.copy()
    b[2, 3] += 1
    assert array_hash(a) != array_hash(b)
    assert array_hash(a, block_rows=1) == array_hash(a)


# ------------------------------------------------------------------ packed products, large-N recipe, cache


def test_products_with_packed_bits_equal_dense_products():
    from mads_core.analysis.project import _a_times, _at_times, _BitBlocks

    rng = np.random.default_rng(7)
    fired = rng.random((130, D)) < 0.1
    m_right, m_left = rng.standard_normal((D, 3)), rng.standard_normal((130, 3))
    for block_rows in (1, 64, 100, 1000):
        blocks = _BitBlocks(pack_bits(fired), D, block_rows)
        np.testing.assert_allclose(_a_times(blocks, m_right, 130), fired @ m_right, atol=1e-12)
        np.testing.assert_allclose(_at_times(blocks, m_left, D), fired.T @ m_left, atol=1e-12)


def test_large_recipe_is_deterministic_keyed_apart_and_reports_progress(tmp_path):
    bits, labels = two_groups(n_per=60, seed=9)
    seen: list[tuple[str, float]] = []
    first = project_fingerprints(bits, D, cache=tmp_path, large_rows=100, progress=lambda s, f: seen.append((s, f)))
    assert "pca start" in first.method
    again = project_fingerprints(bits, D, use_cache=False, large_rows=100)
    np.testing.assert_array_equal(first.coords, again.coords)
    small = project_fingerprints(bits, D, cache=tmp_path)  # below LARGE_ROWS: UMAP's own defaults
    assert small.key != first.key and "pca start" not in small.method
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(s.startswith("SVD of") for s, _ in seen) and any("epoch" in s for s, _ in seen)
    c0, c1 = first.coords[labels == 0], first.coords[labels == 1]
    assert np.linalg.norm(c0.mean(axis=0) - c1.mean(axis=0)) > 2 * np.linalg.norm(c0 - c0.mean(axis=0), axis=1).mean()


def test_a_corrupt_cached_map_is_rebuilt(tmp_path):
    from mads_core.model.store import artifact_dir

    bits, _ = two_groups(n_per=20, seed=11)
    first = project_fingerprints(bits, D, cache=tmp_path)
    stored = artifact_dir("projections", first.key, tmp_path) / "coords.npy"
    raw = bytearray(stored.read_bytes())
    raw[-4:] = b"\xff\xff\xff\xff"  # same size, other bytes: only the checksum can tell
    stored.write_bytes(bytes(raw))
    assert project_fingerprints(bits, D, cache=tmp_path, compute=False) is None  # dropped, not returned
    rebuilt = project_fingerprints(bits, D, cache=tmp_path)
    assert not rebuilt.cache_hit
    np.testing.assert_array_equal(rebuilt.coords, first.coords)
    assert project_fingerprints(bits, D, cache=tmp_path, compute=False).cache_hit


# ------------------------------------------------------------------ background jobs


def test_a_background_job_runs_once_per_key_and_reports_progress():
    import threading

    from mads_core.analysis import background

    key = f"test-once-{id(object())}"
    release, calls = threading.Event(), []

    def work(progress):
        calls.append(threading.current_thread().name)
        progress("half way", 0.5)
        assert release.wait(10)
        return "the map"

    jobs: list[background.Job] = []
    threads = [threading.Thread(target=lambda: jobs.append(background.submit(key, work))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(j) for j in jobs}) == 1
    job = jobs[0]
    for _ in range(1000):  # the worker thread reaches its progress call
        if job.fraction == 0.5:
            break
        threading.Event().wait(0.01)
    assert job.active and job.state == background.RUNNING and (job.stage, job.fraction) == ("half way", 0.5)
    assert background.submit(key, work) is job  # still running: not started again
    release.set()
    assert job.wait(10)
    assert (job.state, job.result, job.fraction, len(calls)) == (background.DONE, "the map", 1.0, 1)
    assert calls[0] != threading.current_thread().name
    assert background.submit(key, work) is job and len(calls) == 1  # done: the result is kept, not recomputed
    background.forget(key)
    assert background.get(key) is None


def test_forgetting_a_running_job_does_not_start_it_twice_and_nan_progress_is_ignored():
    """forget() on a running job let the next submit() run the same computation beside it;
    a NaN fraction reached st.progress (which refuses it)."""
    import threading
    import time

    from mads_core.analysis import background

    key = f"test-running-{id(object())}"
    release, calls = threading.Event(), []

    def work(progress):
        calls.append(1)
        progress("a stage", 0.25)
        progress("0/0 of a stage", float("nan"))
        release.wait(10)
        return "map"

    job = background.submit(key, work)
    try:
        deadline = time.monotonic() + 10
        while job.stage != "0/0 of a stage" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert job.fraction == 0.25
        assert background.forget(key) is False and background.get(key) is job
        assert background.submit(key, work) is job
    finally:
        release.set()
    assert job.wait(10) and len(calls) == 1
    assert background.forget(key) is True and background.get(key) is None


def test_a_failed_background_job_stays_failed_until_forgotten():
    from mads_core.analysis import background

    key = f"test-fail-{id(object())}"
    calls = []

    def boom(progress):
        calls.append(1)
        raise RuntimeError("no memory left")

    job = background.submit(key, boom)
    assert job.wait(10)
    assert job.state == background.FAILED and "no memory left" in str(job.error) and not job.active
    assert background.submit(key, boom) is job and len(calls) == 1  # not retried behind the user's back
    background.forget(key)
    retry = background.submit(key, lambda progress: 42)
    assert retry is not job and retry.wait(10) and retry.result == 42
    background.forget(key)


def test_a_map_computed_in_the_background_equals_the_direct_one_and_reports_its_stages(tmp_path):
    from mads_core.analysis import background

    bits, _ = two_groups(n_per=40, seed=13)
    key = f"test-map-{tmp_path.name}"
    seen: list[tuple[str, float]] = []

    def work(progress):
        def both(stage, fraction):
            seen.append((stage, fraction))
            progress(stage, fraction)
        return project_fingerprints(bits, D, cache=tmp_path, large_rows=50, progress=both)

    job = background.submit(key, work, label="fingerprint map")
    assert background.submit(key, work) is job
    assert job.wait(300) and job.state == background.DONE, job.error
    direct = project_fingerprints(bits, D, use_cache=False, large_rows=50)
    np.testing.assert_array_equal(job.result.coords, direct.coords)
    assert job.result.ready and project_fingerprints(bits, D, cache=tmp_path, large_rows=50, compute=False).cache_hit
    assert seen[-1] == ("done", 1.0) and any("epoch" in s for s, _ in seen)
    background.forget(key)
