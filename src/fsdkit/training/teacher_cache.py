"""Teacher-output cache: the frozen teacher's outputs, computed once per task and teacher, read back from disk.

The teacher is frozen and in eval mode, so its outputs depend only on the input: a distillation run (every
epoch, method and seed of a benchmark) can read them from disk instead of running the teacher. A
:class:`TeacherCache` is a *teacher source* for :class:`~fsdkit.training.trainer.DistillationTrainer` (the
interface of :class:`~fsdkit.training.trainer.LiveTeacher`: ``features(batch, request)`` and ``to(device)``).

Layout of a cache folder (all arrays float32, memory-mapped ``.npy``; no padding stored)::

    manifest.json        key, teacher path + weights sha256, task, max_length, layers, n_examples, n_tokens, ...
    offsets.npy          int64 (n_examples + 1): example i owns token rows offsets[i] : offsets[i + 1]
    logits.npy           n_examples × C
    hidden_<l>.npy       n_tokens × D, the hidden states of layer l (0 = embeddings) of every real token
    values_<l>.npy       n_tokens × D, the value vectors of transformer layer l (0-based), when requested
    queries_<l>.npy      n_tokens × D, the queries and keys of transformer layer l, when its attention maps are
    keys_<l>.npy         requested

At training time each batch carries the example index column ``idx`` (add it before encoding:
``dataset.add_column("idx", range(len(dataset)))``; the padding collator passes it through as a tensor). The
cache gathers each example's token rows and scatters them into a zero B × L × D tensor at the batch's real-token
positions (its ``attention_mask``), i.e. the same dynamic padding as the live batch. Real-token rows equal the
live teacher's up to float rounding; padding positions are zero where the live teacher has (masked-out, unused)
values — every fsdkit loss masks padding, so the losses agree.

Attention maps are not stored as maps (H × L² floats per example and layer: for MRPC, 12 heads × ~53² tokens × 6
layers × 3,668 examples ≈ 3 GB, growing with L²) but as the queries and keys of the requested layers (2 · D floats
per token and layer, ≈ 0.6 GB for one MRPC layer); a batch's maps are recomputed from them,
``softmax(Q_h K_hᵀ/√d_k)`` over its real keys (:func:`fsdkit.losses.attention.head_softmax`) — the teacher's eval-mode
maps up to float rounding, at the cost of one L × L product per head instead of the teacher's whole forward pass.
Padded query rows get a uniform row over the real keys where the live teacher has its own (unused) rows: the
attention losses leave padded query rows out. For comparison, MRPC's logits + penultimate layer take ≈ 0.3 GB.

The cache ``key`` hashes the teacher's weights, the task, ``max_length``, the stored layers and the token ids of
the training examples in order (so a different subset, tokenizer or truncation is a different key); a stale
cache is never used: :meth:`TeacherCache.open` checks the key it is given, and
:meth:`TeacherCache.open_or_build` keeps one subfolder per key under its root folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from fsdkit.artifacts import build_lock, model_weights_sha256, read_json_object, reserved_npy, staged_dir
from fsdkit.data.encode import length_sorted_batches, token_counts
from fsdkit.errors import ConfigError
from fsdkit.features import FeatureRequest, Features, capture_projections, forward_features, hidden_layer_index
from fsdkit.losses.attention import head_softmax
from fsdkit.models.architecture import exact_attention_from_projections, family, is_causal

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
INDEX_COLUMN = "idx"


class StaleCacheError(ConfigError):
    """The cache on disk was built for another teacher, task, data or layer set than the one asked for."""


class PartialHiddenStates(tuple):
    """The teacher's N + 1 hidden-state slots, of which only the cached layers hold a tensor.

    Indexing a layer that was not cached raises :class:`ConfigError` naming the cached layers (instead of
    handing a loss a ``None``).
    """

    kind = "hidden"

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if item is None:
            present = [i for i, t in enumerate(tuple.__iter__(self)) if t is not None]
            raise ConfigError(
                f"teacher {self.kind} layer {index} is not in the teacher-output cache or this batch's request "
                f"(layers present: {present}); request it, or rebuild the cache with that layer"
            )
        return item

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class PartialAttentions(PartialHiddenStates):
    """The teacher's N attention-map slots, of which only the requested (and cached) layers hold a tensor."""

    kind = "attention"


def data_sha256(dataset) -> str:
    """sha256 of the token ids (and segment ids) of every example, in order: identifies the training subset."""
    digest = hashlib.sha256()
    columns = [c for c in ("input_ids", "token_type_ids") if c in dataset.column_names]
    for column in columns:
        for row in dataset[column]:
            digest.update(np.asarray(row, dtype=np.int64).tobytes())
            digest.update(b"|")
    return digest.hexdigest()


def _resolve_layers(layers: Iterable[int | str] | None, num_layers: int) -> list[int]:
    """Hidden-state layer names → sorted indices in 0..N (``"penultimate"`` = N − 1, ``"last"`` = N)."""
    if layers is None:
        return list(range(num_layers + 1))
    return sorted({hidden_layer_index(layer, num_layers, ConfigError) for layer in layers})


def _resolve_block_layers(layers: Iterable[int] | None, num_layers: int, kind: str) -> list[int]:
    """Transformer-layer indices (negative from the last; None = every layer) → sorted indices in 0..N − 1."""
    if layers is None:
        return list(range(num_layers))
    out = set()
    for layer in layers:
        idx = layer + num_layers if layer < 0 else layer
        if not 0 <= idx < num_layers:
            raise ConfigError(f"{kind} layer {layer} out of range for a teacher with {num_layers} layers")
        out.add(idx)
    return sorted(out)


def cache_key(
    *,
    teacher_sha256: str,
    task: str | None,
    max_length: int | None,
    hidden_layers: Sequence[int],
    value_layers: Sequence[int],
    data_sha256: str,
    attention_layers: Sequence[int] = (),
) -> str:
    """The identity of a cache: what its contents depend on (``attention_layers`` only when there are some, so a
    cache without them keeps the key it had before they could be stored)."""
    parts = {
        "format": FORMAT_VERSION,
        "teacher_sha256": teacher_sha256,
        "task": task,
        "max_length": max_length,
        "hidden_layers": list(hidden_layers),
        "value_layers": list(value_layers),
        "data_sha256": data_sha256,
    }
    if attention_layers:
        parts["attention_layers"] = list(attention_layers)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _covering_cache(root: Path, identity: dict[str, Any]) -> Path | None:
    """A published cache under ``root`` of the same teacher, task, data and length whose layers include those of
    ``identity`` (caches are published under their key, so only complete ones are considered)."""
    same = ("teacher_sha256", "data_sha256", "task", "max_length")
    for manifest_path in sorted(root.glob(f"*/{MANIFEST}")):
        try:
            manifest = read_json_object(manifest_path, StaleCacheError)
        except StaleCacheError:
            continue
        if (
            manifest.get("format") == FORMAT_VERSION
            and manifest.get("key") == manifest_path.parent.name
            and all(manifest.get(k) == identity[k] for k in same)
            and set(identity["hidden_layers"]) <= set(manifest.get("hidden_layers", []))
            and set(identity["value_layers"]) <= set(manifest.get("value_layers", []))
            and set(identity["attention_layers"]) <= set(manifest.get("attention_layers", []))
        ):
            return manifest_path.parent
    return None


def _identity(teacher_model, encoded_train_dataset, request: FeatureRequest, task, max_length) -> dict[str, Any]:
    """What a cache's contents depend on, hashed once: the stored layers (those ``request`` reads), the teacher's
    weights, the data → key."""
    num_layers = int(teacher_model.config.num_hidden_layers)
    layers = request.hidden_layers_read()
    hidden_layers = _resolve_layers(layers, num_layers) if request.hidden_states else []
    value_layers = _resolve_block_layers(request.value_layers, num_layers, "value")
    attention_layers = _resolve_block_layers(request.attention_layers_read(), num_layers, "attention")
    teacher_sha, data_sha = model_weights_sha256(teacher_model), data_sha256(encoded_train_dataset)
    key = cache_key(
        teacher_sha256=teacher_sha,
        task=task,
        max_length=max_length,
        hidden_layers=hidden_layers,
        value_layers=value_layers,
        data_sha256=data_sha,
        attention_layers=attention_layers,
    )
    return {
        "key": key,
        "teacher_sha256": teacher_sha,
        "data_sha256": data_sha,
        "task": task,
        "max_length": max_length,
        "num_layers": num_layers,
        "hidden_layers": hidden_layers,
        "value_layers": value_layers,
        "attention_layers": attention_layers,
    }


class TeacherCache:
    """A teacher source reading the teacher's outputs from a cache folder (see the module docstring)."""

    def __init__(self, cache_dir: str | os.PathLike, manifest: dict[str, Any]):
        self.cache_dir = Path(cache_dir)
        self.manifest = manifest
        self.key: str = manifest["key"]
        self.num_layers: int = manifest["num_layers"]
        self.hidden_layers: list[int] = list(manifest["hidden_layers"])
        self.value_layers: list[int] = list(manifest["value_layers"])
        n, n_tokens, width = manifest["n_examples"], manifest["n_tokens"], manifest["hidden_size"]
        self.offsets = self._array("offsets.npy", (n + 1,), mmap=False)
        self.logits = self._array("logits.npy", (n, manifest["num_labels"]))
        self.hidden = {l: self._array(f"hidden_{l}.npy", (n_tokens, width)) for l in self.hidden_layers}
        self.values = {l: self._array(f"values_{l}.npy", (n_tokens, width)) for l in self.value_layers}
        self.attention_layers: list[int] = list(manifest.get("attention_layers", []))
        self.heads: int | None = manifest.get("num_attention_heads")
        self.queries = {l: self._array(f"queries_{l}.npy", (n_tokens, width)) for l in self.attention_layers}
        self.keys = {l: self._array(f"keys_{l}.npy", (n_tokens, width)) for l in self.attention_layers}
        if int(self.offsets[-1]) != n_tokens:
            raise StaleCacheError(
                f"{self.cache_dir}: offsets.npy ends at {int(self.offsets[-1])}, manifest says {n_tokens} tokens"
            )
        self.device = torch.device("cpu")

    def _array(self, name: str, shape: tuple[int, ...], mmap: bool = True) -> np.ndarray:
        """Open one stored array and verify its shape against the manifest (a damaged cache is refused)."""
        path = self.cache_dir / name
        try:
            array = np.load(path, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as exc:
            raise StaleCacheError(f"{path} is missing or damaged ({exc}); the cache will be rebuilt") from None
        if tuple(array.shape) != tuple(shape):
            raise StaleCacheError(f"{path} has shape {tuple(array.shape)}, the manifest says {tuple(shape)}")
        return array

    def __len__(self) -> int:
        return int(self.manifest["n_examples"])

    # ------------------------------------------------------------------------------------------ build / open
    @classmethod
    def build(
        cls,
        teacher_model: nn.Module,
        encoded_train_dataset,
        collator,
        request: FeatureRequest,
        cache_dir: str | os.PathLike,
        batch_size: int = 64,
        *,
        task: str | None = None,
        max_length: int | None = None,
        teacher_path: str | None = None,
        identity: dict[str, Any] | None = None,
    ) -> TeacherCache:
        """Run the frozen teacher once over ``encoded_train_dataset`` (in order) and store its outputs.

        Args:
            teacher_model: the fine-tuned teacher (put in eval mode, no grad).
            encoded_train_dataset: the tokenized, unpadded training set, in the order of its ``idx`` column.
            collator: the training collator (dynamic padding).
            request: what the losses ask of the teacher; hidden states → the layers it reads are stored
                (``request.hidden_layers_read()``: its ``teacher_layers``, or all N + 1 when it names none), value
                layers → their value vectors, attention maps → the queries and keys of their layers
                (``request.attention_layers_read()``: its ``attention_layers``, or all N when it names none).
            task, max_length, teacher_path: recorded in the manifest (task and max_length enter the key).
            identity: the cache identity when the caller has already computed it (:func:`_identity`).
        """
        identity = identity or _identity(teacher_model, encoded_train_dataset, request, task, max_length)
        if identity["attention_layers"] and not exact_attention_from_projections(teacher_model.config):
            raise ConfigError(
                f"--teacher-cache stores a teacher's queries and keys and rebuilds its attention maps as BERT's "
                f"softmax(q kᵀ / √d); a {family(teacher_model)} teacher's attention is not that (rotary or relative "
                f"positions, or a causal mask): run the attention-map losses (MiniLM, internal KD) without "
                f"--teacher-cache"
            )
        with staged_dir(cache_dir) as tmp:  # published by one rename once complete; removed if the build fails
            manifest = cls._write(
                teacher_model,
                encoded_train_dataset,
                collator,
                tmp,
                batch_size,
                identity,
                task=task,
                max_length=max_length,
                teacher_path=teacher_path,
            )
        return cls(cache_dir, manifest)

    @staticmethod
    def _write(
        teacher_model,
        encoded_train_dataset,
        collator,
        tmp: Path,
        batch_size: int,
        identity,
        *,
        task,
        max_length,
        teacher_path,
    ) -> dict[str, Any]:
        num_layers, key, teacher_sha = identity["num_layers"], identity["key"], identity["teacher_sha256"]
        hidden_layers, value_layers = identity["hidden_layers"], identity["value_layers"]
        attention_layers = identity["attention_layers"]
        lengths = token_counts(encoded_train_dataset)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        n, n_tokens = len(lengths), int(offsets[-1])
        np.save(tmp / "offsets.npy", offsets)
        width = int(teacher_model.config.hidden_size)
        logits = reserved_npy(tmp / "logits.npy", (n, int(teacher_model.config.num_labels)))
        hidden = {l: reserved_npy(tmp / f"hidden_{l}.npy", (n_tokens, width)) for l in hidden_layers}
        config = teacher_model.config  # value vectors: one per key-value head (fewer than the heads under GQA)
        head_dim = getattr(config, "head_dim", None) or width // config.num_attention_heads
        value_width = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * head_dim
        values = {l: reserved_npy(tmp / f"values_{l}.npy", (n_tokens, value_width)) for l in value_layers}
        projections = {
            role: {l: reserved_npy(tmp / f"{role}_{l}.npy", (n_tokens, width)) for l in attention_layers}
            for role in ("queries", "keys")
        }

        teacher_model.eval()
        device = next(teacher_model.parameters()).device
        live_request = FeatureRequest(hidden_states=bool(hidden_layers), value_layers=frozenset(value_layers))
        columns = [
            c for c in encoded_train_dataset.column_names if c in ("input_ids", "attention_mask", "token_type_ids")
        ]
        inputs = encoded_train_dataset.select_columns(columns)
        started = time.time()
        with torch.no_grad():  # batches of similar length (each padded to its longest), written back by index
            for index in length_sorted_batches(lengths, batch_size):
                rows = inputs[index.tolist()]
                batch = collator([{c: rows[c][i] for c in columns} for i in range(len(index))])
                batch = {k: v.to(device) for k, v in batch.items()}
                captured: dict[str, dict[int, Tensor]] = {"queries": {}, "keys": {}}
                with (
                    capture_projections(teacher_model, "query", attention_layers, captured["queries"]),
                    capture_projections(teacher_model, "key", attention_layers, captured["keys"]),
                ):
                    feats = forward_features(teacher_model, batch, live_request)
                mask = batch["attention_mask"].bool()
                if not torch.equal(mask.sum(1).cpu(), torch.from_numpy(lengths[index])):
                    raise ConfigError(
                        "the collated batch's real tokens do not match the dataset rows (is it pre-padded?)"
                    )
                # the token rows of the batch's examples, in the order of feats[mask]
                tokens = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in index])
                logits[index] = feats.logits.float().cpu().numpy()
                for l in hidden_layers:  # requested: the pass has hidden states
                    hidden[l][tokens] = cast("tuple[Tensor, ...]", feats.hidden_states)[l][mask].float().cpu().numpy()
                for l in value_layers:
                    values[l][tokens] = feats.values[l][mask].float().cpu().numpy()
                for role, arrays in projections.items():
                    for l in attention_layers:
                        arrays[l][tokens] = captured[role][l][mask].float().cpu().numpy()
        stored = [
            logits,
            *hidden.values(),
            *values.values(),
            *(a for arrays in projections.values() for a in arrays.values()),
        ]
        for arr in stored:
            arr.flush()
        del logits, hidden, values, projections, stored
        from fsdkit._version import __version__

        manifest = {
            "format": FORMAT_VERSION,
            "key": key,
            "teacher": str(teacher_path or getattr(teacher_model.config, "_name_or_path", "")),
            "teacher_sha256": teacher_sha,
            "data_sha256": identity["data_sha256"],
            "task": task,
            "max_length": max_length,
            "num_layers": num_layers,
            "hidden_size": width,
            "num_labels": int(teacher_model.config.num_labels),
            "hidden_layers": hidden_layers,
            "value_layers": value_layers,
            "attention_layers": attention_layers,
            "num_attention_heads": int(teacher_model.config.num_attention_heads),
            "causal": is_causal(teacher_model.config),
            "n_examples": n,
            "n_tokens": n_tokens,
            "bytes": sum(f.stat().st_size for f in tmp.iterdir()),
            "build_seconds": round(time.time() - started, 3),
            "fsdkit_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    @classmethod
    def open(cls, cache_dir: str | os.PathLike, *, key: str | None = None) -> TeacherCache:
        """Reopen a cache folder; with ``key``, raise :class:`StaleCacheError` if it was built for something else."""
        path = Path(cache_dir) / MANIFEST
        if not path.is_file():
            raise ConfigError(f"{cache_dir} is not a teacher-output cache (no {MANIFEST})")
        manifest = read_json_object(path, StaleCacheError)
        if manifest.get("format") != FORMAT_VERSION:
            raise StaleCacheError(f"{cache_dir}: cache format {manifest.get('format')}, expected {FORMAT_VERSION}")
        if key is not None and manifest.get("key") != key:
            raise StaleCacheError(
                f"{cache_dir} was built for another teacher / task / data / layers (key {manifest.get('key')}, "
                f"expected {key}); rebuild it"
            )
        return cls(cache_dir, manifest)

    @classmethod
    def open_or_build(
        cls,
        teacher_model: nn.Module,
        encoded_train_dataset,
        collator,
        request: FeatureRequest,
        cache_dir: str | os.PathLike,
        batch_size: int = 64,
        *,
        task: str | None = None,
        max_length: int | None = None,
        teacher_path: str | None = None,
    ) -> TeacherCache:
        """The cache of this teacher, data and request under the root folder ``cache_dir``, built on first use.

        Each key gets its own subfolder ``cache_dir/<key>``, so runs with different requests (e.g. VKD: logits
        only; FSD: logits + the penultimate layer) or a retrained teacher never overwrite each other's cache; a
        request that a published cache covers (same teacher, task, data and length, a superset of the layers: the
        FSD cache serves a later VKD run) reads that cache instead of building its own.
        Opening and building happen under the key's inter-process lock (:func:`fsdkit.artifacts.build_lock`) and
        a build is published by one rename, so runs sharing ``cache_dir`` never read a partial cache: the second
        waits for the first and reads its cache. A damaged cache (a file missing or of the wrong shape) is rebuilt.
        """
        identity = _identity(teacher_model, encoded_train_dataset, request, task, max_length)
        key = identity["key"]
        folder = Path(cache_dir) / key
        with build_lock(folder):  # one builder per key; concurrent runs wait for it and read what it published
            try:
                return cls.open(folder, key=key)
            except ConfigError:
                pass
            wider = _covering_cache(Path(cache_dir), identity)
            if wider is not None:
                try:
                    return cls.open(wider, key=wider.name)
                except ConfigError:  # damaged: build this request's own
                    pass
            return cls.build(
                teacher_model,
                encoded_train_dataset,
                collator,
                request,
                folder,
                batch_size,
                task=task,
                max_length=max_length,
                teacher_path=teacher_path,
                identity=identity,
            )

    # ------------------------------------------------------------------------------------------ teacher source
    def to(self, device) -> TeacherCache:
        """Return tensors on ``device`` from now on."""
        self.device = torch.device(device)
        return self

    def features(self, batch: Mapping[str, Tensor], request: FeatureRequest) -> Features:
        """The teacher's :class:`Features` for ``batch`` (which must carry the ``idx`` column), from disk; attention
        maps (of the requested layers only) recomputed from the stored queries and keys."""
        if INDEX_COLUMN not in batch:
            raise ConfigError(
                f"a batch read from the teacher-output cache needs the example index column '{INDEX_COLUMN}': add it "
                f"to the training set before encoding (dataset.add_column('{INDEX_COLUMN}', range(len(dataset))))"
            )
        idx = batch[INDEX_COLUMN].detach().cpu().numpy().astype(np.int64)
        if idx.min(initial=0) < 0 or idx.max(initial=0) >= len(self):
            raise ConfigError(f"example index out of range for a cache of {len(self)} examples")
        mask = batch["attention_mask"]
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        real = mask.detach().cpu().sum(1).numpy()
        if not np.array_equal(real, ends - starts):
            raise StaleCacheError(
                "the batch's token counts differ from the cached examples' (another tokenizer, max_length or data "
                "order than the cache was built with)"
            )
        rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(idx) else np.zeros(0, np.int64)
        where = mask.to(self.device).bool()

        def gather(array: np.ndarray) -> Tensor:
            out = torch.zeros((*mask.shape, array.shape[1]), dtype=torch.float32, device=self.device)
            out[where] = torch.from_numpy(np.ascontiguousarray(array[rows])).to(self.device)
            return out

        hidden_states = None
        if request.hidden_states:
            hidden_states = PartialHiddenStates(
                [gather(self.hidden[l]) if l in self.hidden else None for l in range(self.num_layers + 1)]
            )
        values = {}
        for layer in request.value_layers:
            (index,) = _resolve_block_layers([layer], self.num_layers, "value")
            if index not in self.values:
                raise ConfigError(
                    f"value layer {layer} is not in the teacher-output cache (cached: {self.value_layers})"
                )
            values[layer] = gather(self.values[index])
        attentions = None
        if request.attentions:
            wanted = _resolve_block_layers(request.attention_layers_read(), self.num_layers, "attention")
            if missing := [l for l in wanted if l not in self.queries]:
                raise ConfigError(
                    f"teacher attention layers {missing} are not in the teacher-output cache (cached: "
                    f"{self.attention_layers}); rebuild the cache with the request of the losses that read them"
                )
            attentions = PartialAttentions(
                [
                    # a cache of queries and keys records the number of heads
                    head_softmax(gather(self.queries[l]), gather(self.keys[l]), where, cast(int, self.heads))
                    if l in wanted
                    else None
                    for l in range(self.num_layers)
                ]
            )
        return Features(
            logits=torch.from_numpy(np.ascontiguousarray(self.logits[idx])).to(self.device),
            attention_mask=mask.to(self.device),
            hidden_states=hidden_states,
            attentions=attentions,
            values=values,
            causal=bool(self.manifest.get("causal", False)),
        )
