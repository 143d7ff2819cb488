"""The teacher-output cache gives the same teacher features, and so the same training losses, as the live teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from fsdkit.errors import ConfigError
from fsdkit.features import FeatureRequest, forward_features
from fsdkit.training.teacher_cache import StaleCacheError, TeacherCache

N_ROWS = 24


@pytest.fixture(scope="module")
def setup(glue_dir, tmp_path_factory):
    """Packaged MiniLM as teacher (eval mode), a 3-layer student, and MRPC rows with the ``idx`` column."""
    from fsdkit.data import encode_dataset, get_task, load_task_data, make_collator
    from fsdkit.models import build_student, load_classifier

    task = get_task("mrpc")
    torch.manual_seed(0)
    teacher, tokenizer = load_classifier("minilm", task)
    teacher.eval().requires_grad_(False)
    base, _ = load_classifier("minilm", task)
    student = build_student(base, 3)
    train = load_task_data(task, glue_dir)["train"].select(range(N_ROWS))
    train = train.add_column("idx", list(range(N_ROWS)))
    encoded = encode_dataset(train, tokenizer, task, max_length=64)
    collator = make_collator(tokenizer)
    cache_dir = tmp_path_factory.mktemp("cache") / "mrpc"
    request = FeatureRequest(
        hidden_states=True, value_layers=frozenset({-1}), teacher_layers=frozenset({"penultimate", 0})
    )
    cache = TeacherCache.build(teacher, encoded, collator, request, cache_dir, batch_size=5, task="mrpc", max_length=64)
    return {
        "task": task,
        "teacher": teacher,
        "student": student,
        "encoded": encoded,
        "collator": collator,
        "cache": cache,
        "cache_dir": cache_dir,
        "request": request,
    }


def test_collator_passes_the_index_column_through(setup):
    batch = setup["collator"]([setup["encoded"][i] for i in (3, 1, 7)])
    assert batch["idx"].tolist() == [3, 1, 7]
    assert batch["idx"].dtype == torch.long


def test_cached_features_equal_live_features(setup):
    """Any subset and order of examples, padded to the batch's own length: same logits, layers and values."""
    cache, teacher = setup["cache"], setup["teacher"]
    batch = setup["collator"]([setup["encoded"][i] for i in (17, 2, 9, 0)])
    live = forward_features(teacher, batch, setup["request"])
    cached = cache.features(batch, setup["request"])
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(cached.logits, live.logits, atol=1e-5, rtol=1e-5)
    for layer in (0, "penultimate"):
        torch.testing.assert_close(cached.hidden(layer)[mask], live.hidden(layer)[mask], atol=1e-5, rtol=1e-5)
        assert cached.hidden(layer).shape == live.hidden(layer).shape
        assert torch.all(cached.hidden(layer)[~mask] == 0)
    torch.testing.assert_close(cached.values[-1][mask], live.values[-1][mask], atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="not in the teacher-output cache"):
        cached.hidden(3)


def test_training_step_losses_with_cache_equal_live_teacher(setup, tmp_path):
    """One DistillationTrainer step of FSD (intra + local + memory structure) + VKD: same terms, same total."""
    from fsdkit.config import DistillConfig
    from fsdkit.losses import TermContext, build_term
    from fsdkit.memory import TeacherMemory
    from fsdkit.methods import TermSpec
    from fsdkit.training.run import training_arguments
    from fsdkit.training.trainer import DistillationTrainer, StudentWithTerms

    student, teacher = setup["student"], setup["teacher"]
    ctx = TermContext(student.config, teacher.config, setup["task"], max_length=64)
    memory = TeacherMemory(
        torch.randn(3, 384), {"layer": "penultimate", "pooling": "mean", "max_length": 64, "hidden_size": 384}
    )
    specs = [
        TermSpec("task", 0.5),
        TermSpec("kd", 0.5, {"temperature": 5.0}),
        TermSpec("structure", 30.0, {"view": "intra"}, "intra"),
        TermSpec("structure", 30.0, {"view": "local"}, "local"),
        TermSpec("memory", 1e-3, {"memory": memory}, "global"),
    ]
    torch.manual_seed(0)
    terms = nn.ModuleDict({s.label: build_term(s.name, ctx, s.options) for s in specs})
    request = FeatureRequest.union(*(term.request() for term in terms.values()))
    assert request.hidden_layers_read() == {"penultimate"}  # what the cache stores: the one layer the terms read
    args = training_arguments(DistillConfig(output_dir=str(tmp_path), batch_size=8, max_steps=1), tmp_path)

    def step_losses(source):
        trainer = DistillationTrainer(
            model=StudentWithTerms(student, terms),
            args=args,
            term_specs=specs,
            teacher=source,
            train_dataset=setup["encoded"],
            data_collator=setup["collator"],
        )
        batch = next(iter(trainer.get_train_dataloader()))
        assert "idx" in batch
        torch.manual_seed(1)  # same dropout masks in both steps
        total = trainer.compute_loss(trainer.model, batch)
        per_term = {k: float(trainer._term_sums[k]) / trainer._term_counts[k] for k in trainer._term_sums}
        return batch["idx"].tolist(), total.item(), per_term

    idx_live, total_live, terms_live = step_losses(teacher)
    idx_cache, total_cache, terms_cache = step_losses(setup["cache"])
    assert idx_live == idx_cache
    assert total_cache == pytest.approx(total_live, rel=1e-5, abs=1e-5)
    parts = {f"global_{p}" for p in ("distance", "cosine", "centroid")}
    assert terms_live.keys() == terms_cache.keys() == {"task", "kd", "intra", "local", "global"} | parts
    for label in terms_live:
        assert terms_cache[label] == pytest.approx(terms_live[label], rel=1e-5, abs=1e-5), label


def test_manifest_reopen_and_stale_key(setup):
    cache_dir = setup["cache_dir"]
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    assert manifest["n_examples"] == N_ROWS and manifest["task"] == "mrpc" and manifest["max_length"] == 64
    assert manifest["hidden_layers"] == [0, 5] and manifest["value_layers"] == [5]
    assert len(manifest["teacher_sha256"]) == 64
    offsets = np.load(cache_dir / "offsets.npy")
    assert offsets[-1] == manifest["n_tokens"] == sum(sum(m) for m in setup["encoded"]["attention_mask"])
    reopened = TeacherCache.open(cache_dir, key=manifest["key"])
    assert len(reopened) == N_ROWS
    with pytest.raises(StaleCacheError):
        TeacherCache.open(cache_dir, key="another-key")
    # open_or_build keeps one subfolder per key: a second call reuses it, another data subset gets its own
    root = cache_dir.parent / "root"
    args = (setup["teacher"], setup["encoded"], setup["collator"], setup["request"], root)
    first = TeacherCache.open_or_build(*args, task="mrpc", max_length=64)
    assert first.key == manifest["key"] and first.cache_dir == root / manifest["key"]
    stamp = (first.cache_dir / "manifest.json").stat().st_mtime_ns
    again = TeacherCache.open_or_build(*args, task="mrpc", max_length=64)
    assert again.cache_dir == first.cache_dir and (again.cache_dir / "manifest.json").stat().st_mtime_ns == stamp
    fewer = TeacherCache.open_or_build(
        setup["teacher"],
        setup["encoded"].select(range(10)),
        setup["collator"],
        setup["request"],
        root,
        task="mrpc",
        max_length=64,
    )
    assert fewer.key != first.key and len(fewer) == 10 and len(TeacherCache.open(root / first.key)) == N_ROWS
    # a narrower request (logits only, as VKD's; or one of the stored layers) reads the covering cache, unbuilt
    for request in (FeatureRequest(), FeatureRequest(hidden_states=True, teacher_layers=frozenset({0}))):
        covered = TeacherCache.open_or_build(*args[:3], request, root, task="mrpc", max_length=64)
        assert covered.cache_dir == first.cache_dir
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted([first.key, fewer.key])
    # a layer the cache lacks gets a cache of its own
    wider = TeacherCache.open_or_build(
        *args[:3], FeatureRequest(hidden_states=True, teacher_layers=frozenset({3})), root, task="mrpc", max_length=64
    )
    assert wider.cache_dir not in (first.cache_dir, fewer.cache_dir) and wider.hidden_layers == [3]


def test_refusals(setup):
    batch = setup["collator"]([setup["encoded"][i] for i in (0, 1)])
    with pytest.raises(ConfigError, match=r"attention layers \[5\] are not in the teacher-output cache"):
        setup["cache"].features(batch, FeatureRequest(attentions=True, attention_layers=frozenset({-1})))
    no_idx = {k: v for k, v in batch.items() if k != "idx"}
    with pytest.raises(ConfigError, match="'idx'"):
        setup["cache"].features(no_idx, FeatureRequest(hidden_states=True))
    wrong = dict(batch, idx=torch.tensor([5, 6]))  # other examples than the rows of the batch
    with pytest.raises(StaleCacheError):
        setup["cache"].features(wrong, FeatureRequest(hidden_states=True))


def test_cached_attention_maps_equal_the_live_teachers_and_give_the_same_minilm_loss(setup, tmp_path):
    """Attention maps recomputed from the cached queries and keys equal the live (eager, eval-mode) teacher's on every
    real query row, for the layers asked for; MiniLM's loss is the same with either teacher source. A narrower request
    reads the cache, unbuilt; a layer it lacks is refused by name."""
    import copy

    from fsdkit.losses import TermContext, build_term
    from fsdkit.training.trainer import LiveTeacher

    teacher = copy.deepcopy(setup["teacher"])
    teacher.set_attn_implementation("eager")  # attention maps are returned by the eager implementation only
    request = FeatureRequest(attentions=True, value_layers=frozenset({-1}), attention_layers=frozenset({1, -1}))
    cache = TeacherCache.open_or_build(
        teacher, setup["encoded"], setup["collator"], request, tmp_path, batch_size=5, task="mrpc", max_length=64
    )
    assert cache.attention_layers == [1, 5] and cache.heads == 12
    assert (cache.cache_dir / "queries_5.npy").is_file() and (cache.cache_dir / "keys_1.npy").is_file()
    batch = setup["collator"]([setup["encoded"][i] for i in (11, 4, 20, 7)])
    live = forward_features(teacher, batch, request)
    cached = cache.features(batch, request)
    mask = batch["attention_mask"].bool()
    for layer in (1, -1):
        assert cached.attentions[layer].shape == live.attentions[layer].shape
        rows = mask[:, None, :].expand(-1, 12, -1)  # the real query rows of every head
        torch.testing.assert_close(cached.attentions[layer][rows], live.attentions[layer][rows], atol=1e-6, rtol=1e-5)
    with pytest.raises(ConfigError, match="attention layer 0 is not in the teacher-output cache"):
        cached.attentions[0]

    student = copy.deepcopy(setup["student"]).eval()
    student.set_attn_implementation("eager")
    term = build_term("minilm", TermContext(student.config, teacher.config, setup["task"], max_length=64), {})
    with torch.no_grad():
        student_features = forward_features(student, batch, term.request())
        losses = [
            term(student_features, source.features(batch, term.request()), batch).item()
            for source in (cache, LiveTeacher(teacher))
        ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)

    narrower = TeacherCache.open_or_build(
        teacher, setup["encoded"], setup["collator"], term.request(), tmp_path, task="mrpc", max_length=64
    )
    assert narrower.cache_dir == cache.cache_dir
    with pytest.raises(ConfigError, match=r"attention layers \[0\] are not in the teacher-output cache"):
        cache.features(batch, FeatureRequest(attentions=True, attention_layers=frozenset({0})))
