"""The saved teacher memory: K × d centroids plus the metadata needed to use them consistently.

On disk a memory is a folder with ``memory.safetensors`` (tensor ``centroids``) and ``memory.json``
(metadata, pretty-printed): teacher (path and weights sha256), task, layer, pooling, max_length, hidden size,
K, dim, number of rows, k-means inertia history / iterations / convergence, seed, tolerance, fsdkit version and
creation time. Each file is written under a temporary name and renamed; ``memory.json`` is removed first and
written last, so a folder with a ``memory.json`` holds a complete memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from fsdkit.artifacts import atomic_write_bytes, atomic_write_text, read_json_object
from fsdkit.errors import DataError

TENSOR_FILE = "memory.safetensors"
METADATA_FILE = "memory.json"


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"memory metadata value {value!r} ({type(value).__name__}) is not JSON serialisable")


@dataclass
class TeacherMemory:
    """Frozen teacher memory ``M_T``: ``centroids`` (K × d float32) and ``metadata``.

    ``metadata["n_clusters"]`` and ``metadata["dim"]`` are filled from the tensor; when given they must agree
    with it. ``pooling``, ``layer`` and ``max_length`` say how rows were made (see
    :func:`fsdkit.memory.feature_rows`); training rows must be made the same way.
    """

    centroids: Tensor
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.centroids.dim() != 2:
            raise ValueError(f"centroids must be K × d, got shape {tuple(self.centroids.shape)}")
        self.centroids = self.centroids.detach().to(device="cpu", dtype=torch.float32)
        for key, actual in (("n_clusters", self.n_clusters), ("dim", self.dim)):
            stated = self.metadata.get(key, actual)
            if stated != actual:
                raise ValueError(f"metadata {key} = {stated} disagrees with the centroids' shape {self.shape}")
        self.metadata = {**self.metadata, "n_clusters": self.n_clusters, "dim": self.dim}

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_clusters, self.dim)

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def pooling(self) -> str | None:
        return self.metadata.get("pooling")

    @property
    def layer(self) -> int | str | None:
        return self.metadata.get("layer")

    @property
    def max_length(self) -> int | None:
        return self.metadata.get("max_length")

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``memory.safetensors`` and ``memory.json`` into ``directory`` (created if needed), atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.metadata, indent=2, default=_json_default)
        (directory / METADATA_FILE).unlink(missing_ok=True)  # no complete memory until both files are in place
        atomic_write_bytes(directory / TENSOR_FILE, safetensors_bytes({"centroids": self.centroids.contiguous()}))
        atomic_write_text(directory / METADATA_FILE, text + "\n")
        return directory

    def differences(self, expected: dict[str, Any]) -> list[str]:
        """Entries of ``expected`` that this memory's metadata does not match, as ``key: memory …, run …`` lines."""
        out = []
        for key, value in expected.items():
            have = self.metadata.get(key, "(not recorded)")
            if have != value:
                out.append(f"{key}: memory {have!r}, this run {value!r}")
        return out

    @staticmethod
    def exists(directory: str | os.PathLike) -> bool:
        """Whether ``directory`` holds a complete memory (its ``memory.json`` is written last)."""
        return (Path(directory) / METADATA_FILE).is_file()

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TeacherMemory:
        """Read a memory saved by :meth:`save`; :class:`DataError` when files are missing or inconsistent."""
        directory = Path(directory)
        if not directory.is_dir():
            raise DataError(f"teacher memory folder {directory} does not exist")
        tensor_path, metadata_path = directory / TENSOR_FILE, directory / METADATA_FILE
        for path in (tensor_path, metadata_path):
            if not path.is_file():
                raise DataError(f"teacher memory folder {directory} has no {path.name}")
        metadata = read_json_object(metadata_path, DataError)
        try:
            tensors = load_file(str(tensor_path))
        except (SafetensorError, OSError) as exc:
            raise DataError(f"{tensor_path} is not a readable safetensors file: {exc}") from exc
        centroids = tensors.get("centroids")
        if centroids is None or centroids.dim() != 2:
            found = "no tensor 'centroids'" if centroids is None else f"shape {tuple(centroids.shape)}"
            raise DataError(f"{tensor_path} must hold a 2-D tensor 'centroids' (K × d), found {found}")
        stated = (metadata.get("n_clusters"), metadata.get("dim"))
        if stated != tuple(centroids.shape):
            raise DataError(
                f"{metadata_path} states n_clusters × dim = {stated[0]} × {stated[1]} but {tensor_path.name} "
                f"holds centroids of shape {tuple(centroids.shape)}"
            )
        return cls(centroids, metadata)
