"""Streaming k-means: planted clusters, agreement with scikit-learn, streaming, empty clusters, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.format import open_memmap
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from fsdkit.memory import KMeansResult, assign, kmeans

pytestmark = pytest.mark.usefixtures("single_thread")


def _blobs(n: int, dim: int, k: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian clusters: centres ~ N(0, spread²·I), unit-variance noise. Returns rows, labels, centres."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim)) * spread
    labels = rng.integers(k, size=n)
    rows = centers[labels] + rng.normal(size=(n, dim))
    return rows.astype(np.float32), labels, centers.astype(np.float32)


@pytest.fixture(scope="module")
def separated():
    """5 well separated clusters in 20-D (centre distances ≈ 60, cluster radius ≈ 4.5)."""
    return _blobs(600, 20, 5, spread=10.0, seed=1)


@pytest.fixture(scope="module")
def overlapping():
    """2,000 × 64, 20 overlapping clusters (about 20 % of rows lie closer to another cluster's centre),
    with scikit-learn's best-of-10 inertia as the reference."""
    rows, labels, centers = _blobs(2000, 64, 20, spread=0.35, seed=0)
    dist = ((rows[:, None, :] - centers[None]) ** 2).sum(-1)
    assert 0.1 < (dist.argmin(1) != labels).mean() < 0.3
    reference = KMeans(n_clusters=20, n_init=10, random_state=0).fit(rows).inertia_
    return rows, reference


def _exact_cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")


def _assert_non_increasing(history: list[float]) -> None:
    for before, after in zip(history, history[1:]):
        assert after <= before * (1 + 1e-6), history


def test_planted_clusters_recovered_exactly(separated):
    rows, truth, _ = separated
    result = kmeans(rows, 5, seed=0)
    labels, dists = assign(rows, result.centroids)
    assert isinstance(result, KMeansResult)
    assert result.centroids.shape == (5, 20) and result.centroids.dtype == torch.float32
    assert adjusted_rand_score(truth, labels.numpy()) == 1.0
    assert result.converged and result.n_iter < 100
    assert sorted(result.counts.tolist()) == sorted(np.bincount(truth).tolist())
    assert result.inertia == pytest.approx(float(dists.double().sum()), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inertia_within_one_percent_of_sklearn(overlapping, seed):
    rows, reference = overlapping
    result = kmeans(rows, 20, seed=seed)
    history = result.inertia_history
    assert result.converged
    assert len(history) == result.n_iter + 1
    assert result.inertia <= reference * 1.01, (result.inertia, reference)
    # The reference implementation stops after about one Lloyd step from the seeds; converging matters.
    assert result.inertia < history[1] * 0.99
    assert history[0] > history[1]
    _assert_non_increasing(history)
    _, dists = assign(rows, result.centroids, chunk_size=300)
    assert result.inertia == pytest.approx(float(dists.double().sum()), rel=1e-5)


def test_tolerance_is_relative_to_mean_feature_variance(overlapping):
    rows, _ = overlapping
    seen: list[torch.Tensor] = []
    result = kmeans(rows, 20, seed=0, tol=1e-3, callback=lambda it, inertia, c: seen.append(c.clone()))
    shifts = [float((b.double() - a.double()).square().sum()) for a, b in zip(seen, seen[1:])]
    threshold = 1e-3 * float(rows.astype(np.float64).var(axis=0).mean())
    assert result.converged and len(seen) == result.n_iter + 1
    assert shifts[-1] <= threshold
    assert all(s > threshold for s in shifts[:-1])
    assert torch.equal(seen[-1], result.centroids)


def test_streaming_memmap_in_small_chunks_matches_one_chunk(tmp_path, separated):
    rows, _, _ = separated
    path = tmp_path / "rows.npy"
    stored = open_memmap(path, mode="w+", dtype=np.float32, shape=rows.shape)
    stored[:] = rows
    stored.flush()
    on_disk = np.load(path, mmap_mode="r")
    options = dict(seed=3, init_sample_size=200)
    whole = kmeans(rows, 5, chunk_size=len(rows), **options)
    streamed = kmeans(on_disk, 5, chunk_size=37, **options)
    from_tensor = kmeans(torch.from_numpy(rows), 5, chunk_size=64, **options)
    for other in (streamed, from_tensor):
        assert other.n_iter == whole.n_iter and other.converged == whole.converged
        assert torch.equal(other.counts, whole.counts)
        torch.testing.assert_close(other.centroids, whole.centroids, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(other.inertia_history, whole.inertia_history, rtol=1e-5)


def test_deterministic_for_a_seed(overlapping):
    rows, _ = overlapping
    first, again, other = kmeans(rows, 20, seed=7), kmeans(rows, 20, seed=7), kmeans(rows, 20, seed=8)
    assert torch.equal(first.centroids, again.centroids)
    assert first.inertia_history == again.inertia_history
    assert not torch.equal(first.centroids, other.centroids)


def test_seeds_are_data_rows_and_max_iter_zero_returns_them(separated):
    rows, _, _ = separated
    result = kmeans(rows, 5, seed=0, max_iter=0)
    assert result.n_iter == 0 and not result.converged and len(result.inertia_history) == 1
    gaps = _exact_cdist(result.centroids, torch.from_numpy(rows)).min(dim=1).values
    assert torch.all(gaps == 0)


def test_empty_cluster_reseeded_with_farthest_row(separated):
    rows, truth, centers = separated
    init = torch.from_numpy(np.vstack([centers[:4], np.full((1, 20), 1e3, dtype=np.float32)]))
    one_step = kmeans(rows, 5, init=init, max_iter=1)
    first_pass = _exact_cdist(torch.from_numpy(rows), init[:4]).min(dim=1).values
    farthest = int(first_pass.argmax())
    assert one_step.inertia_history[0] > one_step.inertia_history[1]
    torch.testing.assert_close(one_step.centroids[4], torch.from_numpy(rows[farthest]))
    assert truth[farthest] == 4  # the uncovered cluster

    result = kmeans(rows, 5, init=init)
    labels, _ = assign(rows, result.centroids)
    assert adjusted_rand_score(truth, labels.numpy()) == 1.0
    assert torch.all(result.counts > 0)
    _assert_non_increasing(result.inertia_history)


def test_two_empty_clusters_take_the_two_farthest_rows(separated):
    rows, _, centers = separated
    far = np.full((2, 20), 1e3, dtype=np.float32) * np.array([[1.0], [-1.0]], dtype=np.float32)
    init = torch.from_numpy(np.vstack([centers[:3], far]))
    one_step = kmeans(rows, 5, init=init, max_iter=1)
    first_pass = _exact_cdist(torch.from_numpy(rows), init[:3]).min(dim=1).values
    farthest = first_pass.argsort(descending=True)[:2]
    torch.testing.assert_close(one_step.centroids[3:], torch.from_numpy(rows)[farthest])
    result = kmeans(rows, 5, init=init)
    assert torch.all(result.counts > 0)
    _assert_non_increasing(result.inertia_history)


def test_single_cluster_is_the_mean(separated):
    rows, _, _ = separated
    result = kmeans(rows, 1, chunk_size=100)
    torch.testing.assert_close(result.centroids[0], torch.from_numpy(rows.astype(np.float64).mean(0)).float())
    assert result.converged and result.counts.tolist() == [len(rows)]


def test_progress_bar_runs(separated, capsys):
    rows, _, _ = separated
    kmeans(rows, 5, progress=True, max_iter=2)
    assert "k-means" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_row_named_with_its_chunk(bad):
    rows = np.ones((100, 4), dtype=np.float32)
    rows[53, 2] = bad
    with pytest.raises(ValueError, match=r"row 53 \(in chunk 5, rows 50:60\)"):
        kmeans(rows, 3, chunk_size=10)


def test_overflowing_squares_are_named():
    rows = np.ones((30, 4), dtype=np.float32)
    rows[7, 1] = 1e30  # finite, but its square is not in float32
    with pytest.raises(ValueError, match=r"row 7 \(in chunk 0, rows 0:30\) contains values whose squares overflow"):
        kmeans(rows, 3)


def test_gram_seeding_picks_the_seeds_of_the_passes(overlapping, monkeypatch):
    """A small sample's k-means++ reads its candidates' distances from the sample's Gram: the same seeds (and so
    the same run) as the K − 1 passes over the sample."""
    import importlib

    kmeans_module = importlib.import_module("fsdkit.memory.kmeans")
    rows, _ = overlapping
    monkeypatch.setattr(kmeans_module, "GRAM_SEEDING_FACTOR", 1000)  # 2,000 rows ≤ 1000 · K
    with_gram = kmeans(rows, 20, seed=4, max_iter=0)
    monkeypatch.setattr(kmeans_module, "GRAM_SEEDING_FACTOR", 0)
    with_passes = kmeans(rows, 20, seed=4, max_iter=0)
    assert torch.equal(with_gram.centroids, with_passes.centroids)


@pytest.mark.parametrize("n", [1, 7, 64, 203])
def test_symmetric_gram_equals_the_general_product(n):
    """The block-triangular Gram of k-means++ seeding: every entry of ``x xᵀ``, the lower blocks mirrored."""
    from fsdkit.memory.kmeans import _symmetric_gram

    x = torch.randn(n, 33, generator=torch.Generator().manual_seed(n))
    gram = _symmetric_gram(x)
    torch.testing.assert_close(gram, x @ x.T, rtol=1e-5, atol=1e-4)


def test_argument_errors():
    rows = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"n_clusters = 11 .* N = 10"):
        kmeans(rows, 11)
    with pytest.raises(ValueError, match="at least 1"):
        kmeans(rows, 0)
    with pytest.raises(ValueError, match="2-D"):
        kmeans(rows[:, 0], 2)
    with pytest.raises(ValueError, match="init has shape"):
        kmeans(rows, 2, init=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="init contains NaN"):
        kmeans(rows, 2, init=torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="init_sample_size = 1"):
        kmeans(rows, 2, init_sample_size=1)
    with pytest.raises(ValueError, match="tol"):
        kmeans(rows, 2, tol=-1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        kmeans(rows, 2, chunk_size=0)
