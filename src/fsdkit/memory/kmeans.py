"""Streaming k-means (k-means++ seeding + Lloyd iterations) in float32 torch on the CPU.

Objective: the inertia ``Σ_i min_k ‖x_i − c_k‖²`` over all N rows. The rows are read chunk by chunk from a
row source (a numpy memmap on disk, a numpy array or a torch tensor), so they never need to be in memory
at once; only the centroids, per-cluster accumulators and one chunk are.

Passes over the data:

1. *Scan* (one pass): checks every value is finite, computes the per-feature variance (for the
   tolerance) and every row's squared norm ``‖x‖²`` (kept: N floats), and gathers the k-means++ sample.
2. *Seeding* (in memory, on the sample): greedy k-means++ as in scikit-learn. The first centre is a uniform
   random sample row; each next centre is the best of ``2 + ⌊ln K⌋`` candidates drawn with probability
   ∝ D(x)² (squared distance to the nearest centre chosen so far), "best" meaning the candidate that
   leaves the smallest potential Σ D(x)². For a small sample (n ≤ 40·K) the candidates' distances are read
   from the sample's Gram, computed once.
3. *Lloyd iterations*: each is one pass that assigns every row to its nearest centroid (squared distance
   ``‖x‖² − 2 x·c + ‖c‖²``, clamped at 0, with ``‖c‖²`` computed once per pass and ``‖x‖²`` from the scan) and accumulates per-cluster
   sums, counts and the inertia; the centroids then move to the means of their rows. Clusters left empty
   are re-seeded with the rows farthest from their assigned centroids (the K farthest are tracked during
   the pass); such a row leaves its old cluster's mean. Iteration stops when the squared centroid shift
   ``Σ_k ‖c_k_new − c_k‖² ≤ tol · mean_j Var(x_j)`` (scikit-learn's criterion) or after ``max_iter`` updates,
   or at once when a pass puts every row on a centroid (inertia ≤ ``EXACT_FIT`` × the total variance: the rows
   hold at most K distinct values; when some clusters are then empty, a warning says how many).
   A last assignment pass evaluates the returned centroids, so ``inertia_history[-1]`` and ``counts``
   describe exactly the centroids returned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

logger = logging.getLogger("fsdkit")
#: an assignment pass whose inertia is at most this fraction of the rows' total variance has put every row on
#: a centroid (up to float32 rounding): the rows hold at most K distinct values and Lloyd cannot move further
EXACT_FIT = 1e-6
#: memory the default k-means++ seeding sample may take (rows × d × 4 bytes), so that memory use does not grow
#: with the number of rows: only the row store on disk does
SAMPLE_BYTES = 256 * 2**20


class RowSource(Protocol):
    """A 2-D array of N rows that can be sliced ``rows[i:j]`` (numpy array or memmap, torch tensor)."""

    shape: Any

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice) -> Any: ...


@dataclass
class KMeansResult:
    """Outcome of :func:`kmeans`.

    centroids: K × d float32. inertia_history: inertia of each assignment pass; entry t belongs to the
    centroids after t Lloyd updates (entry 0 = the seeds, the last entry = the returned centroids).
    n_iter: number of Lloyd updates made. converged: whether the last update moved the centroids by no
    more than the tolerance (False when ``max_iter`` updates ended the run first, or when ``max_iter = 0``).
    counts: K rows per cluster under the returned centroids.
    """

    centroids: Tensor
    inertia_history: list[float]
    n_iter: int
    converged: bool
    counts: Tensor

    @property
    def inertia(self) -> float:
        """Inertia ``Σ_i min_k ‖x_i − c_k‖²`` of the returned centroids."""
        return self.inertia_history[-1]


@dataclass
class _PassStats:
    sums: Tensor  # K × d float64
    counts: Tensor  # K int64
    inertia: float
    far_rows: Tensor  # m × d: the rows farthest from their assigned centroid, farthest first
    far_labels: Tensor  # m: their clusters


def _spans(n: int, chunk_size: int, start: int = 0) -> Iterator[tuple[int, int]]:
    for lo in range(start, n, chunk_size):
        yield lo, min(lo + chunk_size, n)


class Collective(Protocol):
    """How the processes of a distributed k-means combine a pass (e.g. :class:`TorchDistributed`)."""

    rank: int
    world_size: int

    def sum(self, tensor: Tensor) -> Tensor:
        """The element-wise sum of ``tensor`` over all processes (every process gets it)."""

    def cat(self, tensor: Tensor) -> Tensor:
        """``tensor`` of every process concatenated along dim 0 in rank order (same shape on every process)."""


class TorchDistributed:
    """:class:`Collective` over the default ``torch.distributed`` process group (gloo or NCCL; CPU tensors are
    moved to the group's device and back)."""

    def __init__(self, device: torch.device | str = "cpu"):
        import torch.distributed as dist

        self._dist = dist
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.device = torch.device(device)

    def sum(self, tensor: Tensor) -> Tensor:
        out = tensor.to(self.device).clone()
        self._dist.all_reduce(out)
        return out.to(tensor.device)

    def cat(self, tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor, device=self.device) for _ in range(self.world_size)]
        self._dist.all_gather(parts, tensor.to(self.device).contiguous())
        return torch.cat(parts).to(tensor.device)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous rows ``[lo, hi)`` of ``n`` that process ``rank`` of ``world_size`` owns."""
    return n * rank // world_size, n * (rank + 1) // world_size


def _read(rows: RowSource, start: int, stop: int, dim: int) -> Tensor:
    block = rows[start:stop]
    if isinstance(block, Tensor):
        chunk = block.detach().to(device="cpu", dtype=torch.float32)
    elif block.dtype == np.float32 and block.flags.writeable and block.flags.c_contiguous:
        chunk = torch.from_numpy(block)  # no copy (a memmap opened for writing, as the memory build's row store)
    else:  # copy: read-only slices (np.load(mmap_mode="r")) are not supported by torch.from_numpy
        chunk = torch.from_numpy(np.array(block, dtype=np.float32))
    if tuple(chunk.shape) != (stop - start, dim):
        raise ValueError(f"rows[{start}:{stop}] has shape {tuple(chunk.shape)}, expected {(stop - start, dim)}")
    return chunk


def _sq_norms(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dim=1).square()


def _sq_distances(x: Tensor, x_sq: Tensor, c: Tensor, c_sq: Tensor) -> Tensor:
    """Squared distances ``(n, k)`` by ``‖x‖² − 2 x·c + ‖c‖²``, clamped at 0 (rounding can go negative)."""
    return torch.addmm(c_sq.unsqueeze(0), x, c.T, alpha=-2.0).add_(x_sq.unsqueeze(1)).clamp_min_(0.0)


def _scan(
    rows: RowSource, n: int, dim: int, chunk_size: int, sample_index: np.ndarray | None
) -> tuple[float, Tensor, Tensor | None]:
    """Check finiteness; return the mean per-feature variance, every row's squared norm (N; constant, so the
    Lloyd passes do not recompute it) and the rows at ``sample_index`` (sorted).

    One reduction per row (its squared norm) and one per column (the sum) per chunk: a non-finite value makes
    its row's norm non-finite, and ``mean_j Var(x_j) = (Σ_i ‖x_i‖² / N − ‖x̄‖²) / d`` (population variance,
    accumulated in float64).
    """
    col_sum = torch.zeros(dim, dtype=torch.float64)
    sq_norms = torch.empty(n)
    whole = sample_index is not None and len(sample_index) == n and isinstance(rows, Tensor)
    sample = None if sample_index is None or whole else torch.empty(len(sample_index), dim)
    for chunk_no, (start, stop) in enumerate(_spans(n, chunk_size)):
        x = _read(rows, start, stop, dim)
        norms = _sq_norms(x)
        if not bool(torch.isfinite(norms).all()):
            offset = int((~torch.isfinite(norms)).nonzero()[0, 0])
            problem = (
                "NaN or infinite values"
                if not bool(torch.isfinite(x[offset]).all())
                else ("values whose squares overflow float32")
            )
            raise ValueError(f"row {start + offset} (in chunk {chunk_no}, rows {start}:{stop}) contains {problem}")
        sq_norms[start:stop] = norms
        col_sum += x.sum(0).double()
        if sample is not None:
            index = cast(np.ndarray, sample_index)  # given whenever a sample is taken
            lo, hi = np.searchsorted(index, [start, stop])
            sample[lo:hi] = x[torch.from_numpy(index[lo:hi] - start)]
    if whole:  # the rows are already an in-memory tensor: seed from them without a copy
        sample = _read(rows, 0, n, dim)
    mean_variance = (float(sq_norms.sum(dtype=torch.float64)) / n - float((col_sum / n).square().sum())) / dim
    return max(mean_variance, 0.0), sq_norms, sample


#: k-means++ seeding reads the distances of its candidates from the sample's n × n Gram when n is at most this
#: many times K: one matrix product (n² d multiply-adds, compute-bound) then replaces the K − 1 passes over the
#: sample (each a memory-bound product of a few candidate rows with all n; measured here: n = 1024 rows of d =
#: 49,152, K = 100: 0.4 s against 1.6 s); the Gram also has to fit in SAMPLE_BYTES
GRAM_SEEDING_FACTOR = 40


def _symmetric_gram(x: Tensor, blocks: int = 8) -> Tensor:
    """``x xᵀ`` (n × n) from the products on and above its block diagonal, the blocks below copied from their
    mirror: ``(blocks + 1) / (2 · blocks)`` of a general product's multiply-adds (0.56 at 8 blocks; measured for
    1024 × 49,152 rows, 1 thread: 1.06 s against 1.73), each block row one product wide enough to run at full speed."""
    n = x.shape[0]
    step = -(-n // blocks)
    gram = torch.empty(n, n, dtype=x.dtype)
    for lo in range(0, n, step):
        hi = lo + step
        gram[lo:hi, lo:] = x[lo:hi] @ x[lo:].T
        gram[hi:, lo:hi] = gram[lo:hi, hi:].T
    return gram


def _kmeans_plusplus(x: Tensor, n_clusters: int, rng: np.random.Generator) -> Tensor:
    """Greedy k-means++ seeds (K × d) from the in-memory rows ``x`` (scikit-learn's procedure)."""
    n = x.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    x_sq = _sq_norms(x)
    if n <= GRAM_SEEDING_FACTOR * n_clusters and 4 * n * n <= SAMPLE_BYTES:
        gram = _symmetric_gram(x)

        def distances(index: Tensor) -> Tensor:  # squared distances of rows ``index`` to every row
            return (x_sq[index].unsqueeze(1) - 2 * gram[index]).add_(x_sq.unsqueeze(0)).clamp_min_(0.0)
    else:

        def distances(index: Tensor) -> Tensor:
            return _sq_distances(x[index], x_sq[index], x, x_sq)

    centers = torch.empty(n_clusters, x.shape[1])
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = distances(torch.tensor([first]))[0]
    potential = float(closest.sum(dtype=torch.float64))
    for c in range(1, n_clusters):
        targets = torch.from_numpy(rng.uniform(size=n_trials) * potential)
        candidates = torch.searchsorted(torch.cumsum(closest, 0, dtype=torch.float64), targets).clamp_(max=n - 1)
        trial = distances(candidates)
        torch.minimum(trial, closest.unsqueeze(0), out=trial)
        potentials = trial.sum(dim=1, dtype=torch.float64)
        best = int(potentials.argmin())
        potential = float(potentials[best])
        closest = trial[best]
        centers[c] = x[candidates[best]]
    return centers


def _assign_pass(
    rows: RowSource,
    n: int,
    centroids: Tensor,
    chunk_size: int,
    collective: Collective | None = None,
    sq_norms: Tensor | None = None,
) -> _PassStats:
    """One streaming pass: nearest-centroid assignment and per-cluster accumulators (``sq_norms``: the rows'
    squared norms, when known).

    With a ``collective``, this process passes over its shard only (:func:`shard_bounds`) and the sums, counts,
    inertia and farthest rows are combined over all processes, so every process gets the whole pass's stats.
    """
    k, dim = centroids.shape
    lo, hi = (0, n) if collective is None else shard_bounds(n, collective.rank, collective.world_size)
    c_sq = _sq_norms(centroids)
    sums = torch.zeros(k, dim, dtype=torch.float64)
    counts = torch.zeros(k, dtype=torch.int64)
    inertia = 0.0
    far_dist = torch.empty(0)
    far_rows = torch.empty(0, dim)
    far_labels = torch.empty(0, dtype=torch.int64)
    for start, stop in _spans(hi, chunk_size, lo):
        x = _read(rows, start, stop, dim)
        x_sq = _sq_norms(x) if sq_norms is None else sq_norms[start:stop]
        dist, labels = _sq_distances(x, x_sq, centroids, c_sq).min(dim=1)
        inertia += float(dist.sum(dtype=torch.float64))
        counts += torch.bincount(labels, minlength=k)
        sums += torch.zeros(k, dim).index_add_(0, labels, x)
        top = dist.topk(min(k, len(dist))).indices
        far_dist = torch.cat([far_dist, dist[top]])
        far_rows = torch.cat([far_rows, x[top]])
        far_labels = torch.cat([far_labels, labels[top]])
        keep = far_dist.topk(min(k, len(far_dist))).indices
        far_dist, far_rows, far_labels = far_dist[keep], far_rows[keep], far_labels[keep]
    if collective is not None:
        sums, counts = collective.sum(sums), collective.sum(counts)
        inertia = float(collective.sum(torch.tensor([inertia], dtype=torch.float64))[0])
        pad = k - len(far_dist)  # same shapes on every process for the gather; padding sorts last
        far_dist = torch.cat([far_dist, torch.full((pad,), -1.0)])
        far_rows = torch.cat([far_rows, torch.zeros(pad, dim)])
        far_labels = torch.cat([far_labels, torch.zeros(pad, dtype=torch.int64)])
        far_dist, far_rows, far_labels = collective.cat(far_dist), collective.cat(far_rows), collective.cat(far_labels)
        keep = far_dist.topk(min(k, n)).indices
        far_dist, far_rows, far_labels = far_dist[keep], far_rows[keep], far_labels[keep]
    return _PassStats(sums, counts, inertia, far_rows, far_labels)


def _update(centroids: Tensor, stats: _PassStats) -> Tensor:
    """New centroids = cluster means; empty clusters take the farthest rows (which leave their clusters).

    A cluster whose only row was moved away keeps its previous centroid.
    """
    sums = stats.sums.clone()
    counts = stats.counts.clone()
    empty = (counts == 0).nonzero().flatten()
    if len(empty):
        moved = stats.far_rows[: len(empty)].double()
        old = stats.far_labels[: len(empty)]
        sums.index_add_(0, old, -moved)
        counts.index_add_(0, old, -torch.ones_like(old))
        sums[empty] = moved
        counts[empty] = 1
    filled = counts > 0
    if bool(filled.all()):
        return (sums / counts.unsqueeze(1)).float()
    new = centroids.clone()
    new[filled] = (sums[filled] / counts[filled].unsqueeze(1)).float()
    return new


def _default_sample_size(n: int, n_clusters: int, dim: int) -> int:
    budget = max(10 * n_clusters, SAMPLE_BYTES // (4 * max(dim, 1)))
    return min(n, max(20 * n_clusters, 10_000), budget)


def kmeans(
    rows: RowSource,
    n_clusters: int,
    *,
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
    chunk_size: int = 4096,
    init_sample_size: int | None = None,
    init: Tensor | None = None,
    callback: Callable[[int, float, Tensor], None] | None = None,
    progress: bool = False,
    collective: Collective | None = None,
) -> KMeansResult:
    """Cluster the N × d ``rows`` into ``n_clusters`` by minimising the inertia ``Σ_i min_k ‖x_i − c_k‖²``.

    See the module docstring for the algorithm. Arguments:

    - ``rows``: 2-D row source supporting ``len()``, ``.shape`` and ``rows[i:j]`` (numpy array or memmap, torch
      tensor); every pass streams over it in chunks of ``chunk_size`` rows (one chunk in memory takes
      ``chunk_size · d · 4`` bytes, plus a copy).
    - ``tol``: relative tolerance: stop when the squared centroid shift ``Σ_k ‖Δc_k‖²`` is at most
      ``tol × mean per-feature variance of the rows``. ``max_iter``: maximum number of Lloyd updates.
    - ``seed``: seeds the k-means++ sample and candidates; the result is deterministic for a seed.
    - ``init_sample_size``: rows drawn uniformly without replacement for k-means++ seeding, held in memory
      (``init_sample_size · d · 4`` bytes); default ``min(N, max(20·K, 10 000))``, at most as many rows as fit
      in ``SAMPLE_BYTES`` (256 MiB) unless that is fewer than ``10·K`` — so memory does not grow with N.
    - ``init``: explicit K × d initial centroids instead of k-means++ (then no sample is drawn).
    - ``callback(iteration, inertia, centroids)``: called after every assignment pass with the number of
      updates so far, the inertia of ``centroids`` and the centroids themselves.
    - ``progress``: show a tqdm bar over the passes.
    - ``collective``: run as one process of a distributed k-means (e.g. :class:`TorchDistributed` under
      ``accelerate launch``). Every process must be able to read all ``rows`` (a shared file); the scan and the
      k-means++ seeding run identically in every process (same seed, same sample), each Lloyd pass assigns only
      this process's shard of rows and the per-cluster sums, counts, inertia and farthest rows are combined over
      the processes — the centroids and inertia are those of one process, up to float64 summation order.

    Raises ``ValueError`` when ``rows`` is not 2-D, ``n_clusters < 1`` or ``n_clusters > N``, a row holds NaN
    or infinity (naming the row and chunk), or ``init`` has the wrong shape.
    """
    shape = tuple(rows.shape)
    if len(shape) != 2:
        raise ValueError(f"rows must be a 2-D (N, d) array, got shape {shape}")
    n, dim = int(shape[0]), int(shape[1])
    if len(rows) != n:
        raise ValueError(f"len(rows) = {len(rows)} disagrees with rows.shape {shape}")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    if n_clusters > n:
        raise ValueError(f"n_clusters = {n_clusters} is larger than the number of rows N = {n}")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    rng = np.random.default_rng(seed)
    sample_index = None
    if init is None:
        sample_size = _default_sample_size(n, n_clusters, dim) if init_sample_size is None else int(init_sample_size)
        if not n_clusters <= sample_size <= n:
            raise ValueError(f"init_sample_size = {sample_size} must lie between n_clusters = {n_clusters} and N = {n}")
        sample_index = np.arange(n) if sample_size == n else np.sort(rng.choice(n, size=sample_size, replace=False))
    else:
        init = init.detach().to(device="cpu", dtype=torch.float32)
        if tuple(init.shape) != (n_clusters, dim):
            raise ValueError(f"init has shape {tuple(init.shape)}, expected (n_clusters, d) = {(n_clusters, dim)}")
        if not bool(torch.isfinite(init).all()):
            raise ValueError("init contains NaN or infinite values")

    mean_variance, sq_norms, sample = _scan(rows, n, dim, chunk_size, sample_index)
    centroids = init.clone() if init is not None else _kmeans_plusplus(cast(Tensor, sample), n_clusters, rng)
    del sample
    threshold = tol * mean_variance

    history: list[float] = []
    n_iter = 0
    converged = False
    with tqdm(total=max_iter + 1, desc="k-means", unit="pass", disable=not progress) as bar:
        while True:
            stats = _assign_pass(rows, n, centroids, chunk_size, collective, sq_norms)
            history.append(stats.inertia)
            bar.update()
            bar.set_postfix(inertia=f"{stats.inertia:.6g}")
            if callback is not None:
                callback(n_iter, stats.inertia, centroids)
            if not converged and stats.inertia <= EXACT_FIT * mean_variance * dim * n:
                converged = True
                empty = int((stats.counts == 0).sum())
                if empty:
                    logger.warning(
                        "k-means: the %d rows hold only %d distinct values, fewer than n_clusters = %d: every row "
                        "sits on a centroid, %d clusters are empty; stopping after %d iteration(s)",
                        n,
                        n_clusters - empty,
                        n_clusters,
                        empty,
                        n_iter,
                    )
            if converged or n_iter == max_iter:
                break
            new = _update(centroids, stats)
            shift = float((new - centroids).square().sum(dtype=torch.float64))
            centroids = new
            n_iter += 1
            converged = shift <= threshold
    return KMeansResult(centroids, history, n_iter, converged, stats.counts)


def assign(rows: RowSource, centroids: Tensor, *, chunk_size: int = 4096) -> tuple[Tensor, Tensor]:
    """Nearest centroid of every row, streamed: ``(labels (N,) int64, squared distances (N,) float32)``."""
    shape = tuple(rows.shape)
    if len(shape) != 2 or centroids.dim() != 2 or shape[1] != centroids.shape[1]:
        raise ValueError(f"rows {shape} and centroids {tuple(centroids.shape)} must be 2-D with the same width")
    centroids = centroids.detach().to(device="cpu", dtype=torch.float32)
    c_sq = _sq_norms(centroids)
    labels = torch.empty(shape[0], dtype=torch.int64)
    dists = torch.empty(shape[0])
    for start, stop in _spans(shape[0], chunk_size):
        x = _read(rows, start, stop, shape[1])
        dists[start:stop], labels[start:stop] = _sq_distances(x, _sq_norms(x), centroids, c_sq).min(dim=1)
    return labels, dists
