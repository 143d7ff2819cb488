"""FSDG stage 1: encode every training sample with the frozen teacher and cluster the rows into a memory.

The rows (one per sample, made by :func:`fsdkit.memory.feature_rows`) are streamed into a float32 ``.npy``
memmap in a work folder and clustered by the streaming :func:`fsdkit.memory.kmeans`, so the training set's
rows never have to fit in memory (with the default ``flatten`` rows, d = max_length · hidden size).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch import Tensor, nn
from tqdm.auto import tqdm

from fsdkit._version import __version__
from fsdkit.artifacts import reserved_npy
from fsdkit.errors import ConfigError, DataError
from fsdkit.feature_rows import POOLINGS, feature_rows
from fsdkit.features import FeatureRequest, TeacherSource, forward_features
from fsdkit.memory.artifact import TeacherMemory
from fsdkit.memory.kmeans import Collective, KMeansResult, kmeans

_CHUNK_BYTES = 256 * 2**20  # default k-means chunk: at most this many bytes of float32 rows
COMPUTED_METADATA = frozenset(
    {
        "layer", "layer_index", "pooling", "max_length", "hidden_size", "n_clusters", "dim", "n_rows",
        "inertia_history", "n_iter", "converged", "cluster_sizes", "seed", "tol", "max_iter",
        "fsdkit_version", "created", "rows_file",
    }
)  # fmt: skip


def _encode(
    teacher: nn.Module | TeacherSource,
    batches: Iterable[Mapping[str, Any]],
    n_rows: int,
    rows_path: Path,
    *,
    layer: int | str,
    pooling: str,
    max_length: int,
    store: np.memmap | None = None,
    offset: int = 0,
) -> tuple[np.memmap, int, int, int]:
    """Write the teacher rows of ``batches`` into a new (n_rows, d) memmap (or into ``store`` from row
    ``offset``); return it, rows written, the resolved layer index and the hidden size."""
    device = (
        next(teacher.parameters()).device
        if isinstance(teacher, nn.Module)
        else getattr(teacher, "device", torch.device("cpu"))
    )
    request = FeatureRequest(hidden_states=True)
    written = layer_index = hidden_size = 0
    with torch.inference_mode():
        for batch in batches:
            inputs = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            features = (
                forward_features(teacher, inputs, request)
                if isinstance(teacher, nn.Module)
                else teacher.features(inputs, request)
            )
            hidden = features.hidden(layer)
            rows = (
                feature_rows(hidden, features.attention_mask, pooling, max_length, features.pooled_positions())
                .float()
                .cpu()
                .numpy()
            )  # a decoder's cls: its last token
            layer_index, hidden_size = features.layer_index(layer), int(hidden.shape[-1])
            if store is None:
                store = reserved_npy(rows_path, (n_rows, rows.shape[1]))
            if offset + written + len(rows) > len(store):
                raise DataError(
                    f"the dataloader yielded more than len(dataloader.dataset) = {n_rows} samples; "
                    "use a sampler that visits each sample at most once"
                )
            store[offset + written : offset + written + len(rows)] = rows
            written += len(rows)
    if store is None or (written == 0 and offset == 0):
        raise DataError("the dataloader yielded no batches: cannot build a teacher memory from no samples")
    store.flush()
    return store, written, layer_index, hidden_size


def build_teacher_memory(
    teacher: nn.Module | TeacherSource,
    dataloader: Any,
    *,
    n_clusters: int = 100,
    layer: int | str = "penultimate",
    pooling: str = "flatten",
    max_length: int = 128,
    work_dir: str | os.PathLike | None = None,
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
    keep_rows: bool = False,
    chunk_size: int | None = None,
    init_sample_size: int | None = None,
    progress: bool = True,
    collective: Collective | None = None,
) -> TeacherMemory:
    """Build the teacher memory ``M_T`` (K × d) from every sample of ``dataloader``.

    1. Each collated batch (``input_ids``, ``attention_mask``, ``token_type_ids``; labels are ignored) goes
       through the frozen ``teacher`` in eval mode under ``torch.inference_mode()`` — or is read from a teacher
       source such as the teacher-output cache (whose batches carry the ``idx`` column); the hidden states of
       ``layer`` (``"penultimate"``, ``"last"`` or an index, 0 = embeddings) become rows via
       ``feature_rows(hidden, mask, pooling, max_length)``.
    2. The rows are streamed into a float32 memmap ``teacher-rows-*.npy`` preallocated for
       ``len(dataloader.dataset)`` rows (a sampler visiting fewer samples clusters only those), in ``work_dir``
       or, by default, the system's temporary folder (``$TMPDIR``): a build killed outright leaves it where
       the system cleans up, not in an output folder.
    3. :func:`fsdkit.memory.kmeans` clusters the memmap (``tol``, ``max_iter``, ``seed``, ``init_sample_size``;
       ``chunk_size`` defaults to as many rows as fit in 256 MiB, at most 4096).
    4. The memmap is deleted (also when the build fails) unless ``keep_rows`` (its path is then recorded as ``metadata["rows_file"]``).

    Distributed (``collective``, one process of ``accelerate launch``): ``dataloader`` holds this process's
    shard of the samples, in order (rank 0 the first rows); each process encodes its shard into one shared row
    store ``work_dir/.teacher-rows.npy`` (``work_dir`` required, on a file system every process sees) and
    :func:`fsdkit.memory.kmeans` runs distributed Lloyd passes over it — the memory equals a one-process build.

    ``metadata`` adds entries to the artifact's metadata (e.g. ``teacher`` — default the model's
    ``name_or_path`` — and ``task`` — default the task the teacher was fine-tuned on, if recorded); it
    cannot override the computed entries. ``max_length`` is recorded as ``None`` for pooled rows, which do
    not depend on it.
    """
    _check_rows(pooling, max_length)
    n_rows, offset = _row_span(len(dataloader.dataset), collective, work_dir)
    if not 1 <= n_clusters <= n_rows:
        raise ConfigError(f"n_clusters = {n_clusters} must lie between 1 and the number of samples N = {n_rows}")
    if collective is not None and not isinstance(teacher, nn.Module):
        raise ConfigError("a distributed memory build encodes with the live teacher, not a teacher source")
    given = _given_metadata(teacher, metadata)
    rows_path, store = _row_store(teacher, n_rows, work_dir, pooling, max_length, collective)
    was_training = getattr(teacher, "training", False)
    if isinstance(teacher, nn.Module):
        teacher.eval()
    try:
        batches = tqdm(dataloader, desc="teacher rows", unit="batch", disable=not progress)
        store, written, layer_index, hidden_size = _encode(
            teacher,
            batches,
            n_rows,
            rows_path,
            layer=layer,
            pooling=pooling,
            max_length=max_length,
            store=store,
            offset=offset,
        )
        dim = int(store.shape[1])
        written, result = _cluster(
            store,
            written,
            n_clusters,
            collective=collective,
            tol=tol,
            max_iter=max_iter,
            seed=seed,
            chunk_size=chunk_size or max(1, min(4096, _CHUNK_BYTES // (4 * dim))),
            init_sample_size=init_sample_size,
            progress=progress,
        )
        del store
    finally:
        if isinstance(teacher, nn.Module):
            teacher.train(was_training)
        _remove_rows(rows_path, keep_rows, collective)

    computed = {
        "layer": layer,
        "layer_index": layer_index,
        "pooling": pooling,
        "max_length": max_length if pooling == "flatten" else None,
        "hidden_size": hidden_size,
        "n_clusters": n_clusters,
        "dim": dim,
        "n_rows": written,
        "inertia_history": result.inertia_history,
        "n_iter": result.n_iter,
        "converged": result.converged,
        "cluster_sizes": result.counts.tolist(),
        "seed": seed,
        "tol": tol,
        "max_iter": max_iter,
        "fsdkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if keep_rows:
        computed["rows_file"] = str(rows_path)
    return TeacherMemory(result.centroids, {**given, **computed})


def _check_rows(pooling: str, max_length: int | None) -> None:
    """Refuse an unknown pooling, and flattened rows without a length."""
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if pooling == "flatten" and (max_length is None or max_length < 1):
        raise ConfigError(f"pooling 'flatten' needs max_length >= 1, got {max_length!r}")


def _row_span(n_rows: int, collective: Collective | None, work_dir) -> tuple[int, int]:
    """``(rows of all processes, first row of this process's shard)``: ``(n_rows, 0)`` in one process."""
    if collective is None:
        return n_rows, 0
    if work_dir is None:
        raise ConfigError("a distributed memory build needs a work_dir shared by its processes")
    sizes = collective.cat(torch.tensor([n_rows], dtype=torch.int64)).tolist()
    return sum(sizes), sum(sizes[: collective.rank])


def _given_metadata(teacher, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The teacher's name and task, then the caller's ``metadata`` (which may not name a computed entry)."""
    config = getattr(teacher, "config", None)
    base = {
        "teacher": str(getattr(teacher, "name_or_path", "") or type(teacher).__name__),
        "task": getattr(config, "fsdkit_task", None),
    }
    extra = dict(metadata or {})
    clash = sorted(set(extra) & COMPUTED_METADATA)
    if clash:
        raise ConfigError(f"metadata cannot override computed memory metadata: {', '.join(clash)}")
    return {**base, **extra}


def _row_store(
    teacher, n_rows: int, work_dir, pooling: str, max_length: int, collective: Collective | None
) -> tuple[Path, np.memmap | None]:
    """Where the rows go: a new temporary ``teacher-rows-*.npy`` (its store made by the first batch), or in a
    distributed build the shared ``work_dir/.teacher-rows.npy``, made by rank 0 before anyone writes its shard."""
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    if collective is None:
        handle, name = tempfile.mkstemp(prefix="teacher-rows-", suffix=".npy", dir=work_dir)
        os.close(handle)
        return Path(name), None
    rows_path = Path(work_dir) / ".teacher-rows.npy"
    hidden = int(teacher.config.hidden_size)
    dim = hidden * max_length if pooling == "flatten" else hidden
    if collective.rank == 0:
        reserved_npy(rows_path, (n_rows, dim)).flush()
    collective.sum(torch.zeros(1))  # barrier: the file exists
    return rows_path, open_memmap(rows_path, mode="r+")


def _cluster(
    store: np.memmap, written: int, n_clusters: int, *, collective: Collective | None, **options
) -> tuple[int, KMeansResult]:
    """:func:`fsdkit.memory.kmeans` over the rows written (every process's, in a distributed build); returns their
    count and the k-means result. ``options``: kmeans's."""
    if collective is not None:
        store.flush()
        written = int(collective.sum(torch.tensor([written], dtype=torch.int64))[0])  # and a barrier
    return written, kmeans(store[:written], n_clusters, collective=collective, **options)


def _remove_rows(rows_path: Path, keep_rows: bool, collective: Collective | None) -> None:
    """Delete the row store unless ``keep_rows`` (in a distributed build: rank 0, once nobody reads it)."""
    if collective is not None:
        collective.sum(torch.zeros(1))  # nobody reads the rows any more
    if not keep_rows and (collective is None or collective.rank == 0):
        rows_path.unlink(missing_ok=True)
