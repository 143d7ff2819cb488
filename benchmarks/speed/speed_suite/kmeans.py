"""Part 3, k-means of the FSDG teacher memory: fsdkit's streaming k-means against scikit-learn's and the reference
code's procedure on the same teacher rows.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from speed_suite.common import MAX_LENGTH, models, mrpc_rows


def reference_kmeans(rows, k: int, epochs: int = 3, batch: int = 32, seed: int = 0):
    """The reference code's memory procedure (docs/math.md): random-row init, then per mini-batch step a running
    average of each centroid with the batch rows assigned to it, the counters reset every step."""
    g = torch.Generator().manual_seed(seed)
    data = torch.as_tensor(rows)
    centroids = data[torch.randperm(len(data), generator=g)[:k]].clone()
    for _ in range(epochs):
        for start in range(0, len(data), batch):
            x = data[start : start + batch]
            assign = torch.cdist(x, centroids).argmin(1)
            counts = torch.ones(k)  # reset every step: the centroid itself counts once
            sums = centroids.clone()
            sums.index_add_(0, assign, x)
            counts.index_add_(0, assign, torch.ones(len(x)))
            centroids = sums / counts[:, None]
    return centroids


def inertia(rows, centroids) -> float:
    data = torch.as_tensor(rows)
    total = 0.0
    for start in range(0, len(data), 1024):
        total += float(torch.cdist(data[start : start + 1024], centroids).min(1).values.pow(2).sum())
    return total


def teacher_rows(glue_dir: str, n_rows: int) -> tuple[torch.Tensor, float]:
    """FSDG's default teacher rows (vec of the penultimate layer padded to MAX_LENGTH) for MRPC training rows, and
    the seconds of the encoding pass itself (the teacher's forward over the rows, batch 64)."""
    from fsdkit.features import FeatureRequest, forward_features
    from fsdkit.memory import feature_rows

    teacher, _ = models()
    encoded, collator = mrpc_rows(glue_dir, n_rows)
    encoded = encoded.remove_columns(["idx", "labels"])
    out = []
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, n_rows, 64):
            batch = collator([encoded[i] for i in range(start, min(start + 64, n_rows))])
            feats = forward_features(teacher, batch, FeatureRequest(hidden_states=True))
            out.append(feature_rows(feats.hidden("penultimate"), batch["attention_mask"], "flatten", MAX_LENGTH))
    return torch.cat(out), time.perf_counter() - started


def kmeans_bench(glue_dir: str, n_rows: int, k: int, reps: int) -> dict[str, Any]:
    """fsdkit k-means vs scikit-learn KMeans vs the reference procedure on the same teacher rows."""
    from fsdkit.memory import kmeans

    rows, encoding = teacher_rows(glue_dir, n_rows)
    # the memory build's other pass, timed apart: the teacher's forward over the rows (not part of any k-means)
    results: dict[str, Any] = {"rows": list(rows.shape), "k": k, "encoding_seconds": encoding}
    np_rows = rows.numpy()

    def measure(name, fn):
        times, value = [], None
        for _ in range(reps):
            start = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - start)
        centroids, extra = value
        results[name] = {
            "seconds": statistics.median(times),
            "inertia": inertia(rows, torch.as_tensor(centroids)),
            **extra,
        }

    def fsdkit_kmeans():
        r = kmeans(rows, k, tol=1e-4, max_iter=100, seed=0)
        return r.centroids, {"iterations": r.n_iter, "converged": r.converged}

    def sklearn_kmeans():
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, init="k-means++", n_init=1, tol=1e-4, max_iter=100, random_state=0).fit(np_rows)
        return torch.from_numpy(km.cluster_centers_).float(), {"iterations": int(km.n_iter_)}

    measure("fsdkit kmeans", fsdkit_kmeans)
    measure("scikit-learn KMeans", sklearn_kmeans)
    measure(
        "reference procedure (3 epochs)",
        lambda: (reference_kmeans(rows, k), {"iterations": "3 epochs of mini-batch steps"}),
    )
    return results
