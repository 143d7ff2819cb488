"""Memory rows, the TeacherMemory artifact and building a memory with the packaged MiniLM teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from data_paths import GLUE_SAMPLE
from fsdkit.errors import ConfigError, DataError
from fsdkit.memory import TeacherMemory, build_teacher_memory, feature_rows, kmeans

pytestmark = pytest.mark.usefixtures("single_thread")


def _hidden_and_mask(lengths: list[int], total: int, dim: int = 6, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(len(lengths), total, dim, generator=generator)
    mask = (torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]).long()
    return hidden, mask


# ---------------------------------------------------------------- rows


@pytest.mark.parametrize(("total", "max_length"), [(5, 8), (8, 8), (11, 8)])
def test_flatten_rows_have_max_length_positions(total, max_length):
    hidden, mask = _hidden_and_mask([3, min(total, 7)], total)
    rows = feature_rows(hidden, mask, "flatten", max_length)
    assert rows.shape == (2, max_length * 6)
    grid = rows.reshape(2, max_length, 6)
    kept = min(total, max_length)
    torch.testing.assert_close(grid[:, :kept], hidden[:, :kept] * mask[:, :kept, None])
    assert torch.all(grid[:, kept:] == 0)


def test_pooled_rows():
    hidden, mask = _hidden_and_mask([2, 5], 5)
    torch.testing.assert_close(feature_rows(hidden, mask, "cls"), hidden[:, 0])
    mean = feature_rows(hidden, mask, "mean")
    assert mean.shape == (2, 6)
    torch.testing.assert_close(mean[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(mean[1], hidden[1].mean(0))


@pytest.mark.parametrize("pooling", ["flatten", "mean", "cls"])
def test_extra_padding_does_not_change_rows(pooling):
    hidden, mask = _hidden_and_mask([2, 4], 4)
    garbage = torch.randn(2, 3, 6)  # padding positions carry arbitrary hidden states
    padded_hidden = torch.cat([hidden, garbage], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=mask.dtype)], dim=1)
    plain = feature_rows(hidden, mask, pooling, max_length=10)
    padded = feature_rows(padded_hidden, padded_mask, pooling, max_length=10)
    assert torch.equal(plain, padded)


def test_rows_are_differentiable_and_ignore_padding():
    hidden, mask = _hidden_and_mask([2, 4], 4)
    hidden.requires_grad_(True)
    feature_rows(hidden, mask, "flatten", 4).square().sum().backward()
    assert torch.all(hidden.grad[0, 2:] == 0) and torch.all(hidden.grad[0, :2] != 0)
    hidden.grad = None
    feature_rows(hidden, mask, "mean").sum().backward()
    assert torch.all(hidden.grad[0, 2:] == 0) and torch.all(hidden.grad[1] != 0)


def test_row_errors():
    hidden, mask = _hidden_and_mask([2, 4], 4)
    with pytest.raises(ValueError, match="flatten, cls, mean"):
        feature_rows(hidden, mask, "max")
    with pytest.raises(ValueError, match="max_length"):
        feature_rows(hidden, mask, "flatten")
    with pytest.raises(ValueError, match="mask shape"):
        feature_rows(hidden, mask[:, :3], "cls")
    with pytest.raises(ValueError, match=r"\(B, L, D\)"):
        feature_rows(hidden[0], mask, "cls")


# ---------------------------------------------------------------- artifact


def _memory() -> TeacherMemory:
    centroids = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    return TeacherMemory(centroids, {"pooling": "flatten", "layer": "penultimate", "max_length": 2, "task": None})


def test_artifact_round_trip(tmp_path):
    memory = _memory()
    memory.save(tmp_path / "memory")
    assert sorted(p.name for p in (tmp_path / "memory").iterdir()) == ["memory.json", "memory.safetensors"]
    text = (tmp_path / "memory" / "memory.json").read_text()
    assert text.startswith("{\n  ")
    loaded = TeacherMemory.load(tmp_path / "memory")
    assert torch.equal(loaded.centroids, memory.centroids)
    assert loaded.metadata == memory.metadata == json.loads(text)
    assert (loaded.n_clusters, loaded.dim, loaded.pooling, loaded.layer, loaded.max_length) == (
        3,
        8,
        "flatten",
        "penultimate",
        2,
    )


def test_artifact_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        TeacherMemory.load(tmp_path / "absent")
    folder = _memory().save(tmp_path / "memory")
    (folder / "memory.json").rename(tmp_path / "kept.json")
    with pytest.raises(DataError, match="has no memory.json"):
        TeacherMemory.load(folder)
    (tmp_path / "kept.json").rename(folder / "memory.json")

    metadata = json.loads((folder / "memory.json").read_text())
    (folder / "memory.json").write_text(json.dumps({**metadata, "n_clusters": 4}))
    with pytest.raises(DataError, match=r"4 × 8 .* \(3, 8\)"):
        TeacherMemory.load(folder)
    (folder / "memory.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        TeacherMemory.load(folder)
    (folder / "memory.json").write_text(json.dumps(metadata))
    save_file({"other": torch.zeros(3, 8)}, str(folder / "memory.safetensors"))
    with pytest.raises(DataError, match="no tensor 'centroids'"):
        TeacherMemory.load(folder)
    (folder / "memory.safetensors").unlink()
    with pytest.raises(DataError, match="has no memory.safetensors"):
        TeacherMemory.load(folder)
    with pytest.raises(ValueError, match="n_clusters = 5"):
        TeacherMemory(torch.zeros(3, 8), {"n_clusters": 5})


# ---------------------------------------------------------------- build with the real teacher


@pytest.fixture(scope="module")
def teacher():
    from fsdkit.models import load_teacher

    return load_teacher("minilm")


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """64 real sentences, the same on every machine: the first sentences of the shipped MRPC dev rows."""
    from fsdkit.data import load_task_data

    return load_task_data("mrpc", GLUE_SAMPLE)["validation"]["sentence1"][:64]


def _dataloader(tokenizer, sentences: list[str], max_length: int):
    from datasets import Dataset
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    encoded = tokenizer(sentences, truncation=True, max_length=max_length)
    dataset = Dataset.from_dict({**encoded, "labels": [i % 2 for i in range(len(sentences))]})
    return DataLoader(dataset, batch_size=16, collate_fn=DataCollatorWithPadding(tokenizer))


@pytest.mark.slow
def test_build_teacher_memory_with_minilm(teacher, sentences, tmp_path):
    model, tokenizer = teacher
    loader = _dataloader(tokenizer, sentences, 32)
    memory = build_teacher_memory(
        model,
        loader,
        n_clusters=4,
        max_length=32,
        work_dir=tmp_path / "work",
        metadata={"task": "mrpc"},
        keep_rows=True,
        progress=False,
    )
    assert memory.centroids.shape == (4, 32 * 384)
    meta = memory.metadata
    expected = {
        "teacher", "task", "layer", "layer_index", "pooling", "max_length", "hidden_size", "n_clusters", "dim",
        "n_rows", "inertia_history", "n_iter", "converged", "cluster_sizes", "seed", "tol", "max_iter",
        "fsdkit_version", "created", "rows_file",
    }  # fmt: skip
    assert expected <= set(meta)
    assert meta["teacher"] == model.name_or_path and meta["task"] == "mrpc"
    assert (meta["layer"], meta["layer_index"], meta["pooling"], meta["max_length"]) == (
        "penultimate",
        5,
        "flatten",
        32,
    )
    assert (meta["hidden_size"], meta["n_clusters"], meta["dim"], meta["n_rows"]) == (384, 4, 32 * 384, 64)
    assert meta["converged"] and len(meta["inertia_history"]) == meta["n_iter"] + 1
    assert sum(meta["cluster_sizes"]) == 64 and meta["fsdkit_version"] != ""
    assert not model.training

    # The kept rows are exactly the teacher's penultimate-layer rows, and clustering them gives the memory.
    stored = np.load(meta["rows_file"], mmap_mode="r")
    with torch.inference_mode():
        batch = next(iter(loader))
        out = model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
        first = feature_rows(out.hidden_states[5], batch["attention_mask"], "flatten", 32)
    np.testing.assert_allclose(stored[:16], first.numpy(), atol=1e-5)
    again = kmeans(stored, 4, seed=0, chunk_size=20)
    torch.testing.assert_close(again.centroids, memory.centroids, atol=1e-4, rtol=1e-4)

    loaded = TeacherMemory.load(memory.save(tmp_path / "memory"))
    assert torch.equal(loaded.centroids, memory.centroids) and loaded.metadata == memory.metadata


@pytest.mark.slow
def test_build_pooled_memory_removes_rows_and_checks_options(teacher, sentences, tmp_path):
    model, tokenizer = teacher
    loader = _dataloader(tokenizer, sentences[:24], 32)
    memory = build_teacher_memory(
        model, loader, n_clusters=3, layer="last", pooling="cls", work_dir=tmp_path, progress=False
    )
    assert memory.centroids.shape == (3, 384)
    assert (memory.pooling, memory.layer, memory.max_length, memory.metadata["layer_index"]) == ("cls", "last", None, 6)
    assert "rows_file" not in memory.metadata
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="n_clusters = 25 .* N = 24"):
        build_teacher_memory(model, loader, n_clusters=25, work_dir=tmp_path)
    with pytest.raises(ConfigError, match="flatten, cls, mean"):
        build_teacher_memory(model, loader, pooling="sum", work_dir=tmp_path)
    with pytest.raises(ConfigError, match="n_iter"):
        build_teacher_memory(model, loader, n_clusters=3, work_dir=tmp_path, metadata={"n_iter": 1})

    from torch.utils.data import DataLoader, RandomSampler

    dataset, collate = loader.dataset, loader.collate_fn
    nothing = DataLoader(dataset, batch_size=8, sampler=[], collate_fn=collate)
    with pytest.raises(DataError, match="no batches"):
        build_teacher_memory(model, nothing, n_clusters=3, work_dir=tmp_path, progress=False)
    too_many = DataLoader(
        dataset, batch_size=8, sampler=RandomSampler(dataset, replacement=True, num_samples=32), collate_fn=collate
    )
    with pytest.raises(DataError, match="more than len"):
        build_teacher_memory(model, too_many, n_clusters=3, pooling="cls", work_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
