"""Part 1, training throughput and peak memory: each library's training loop over the same timed batches, alone
in its own process (:func:`run_worker`) or taking turns with the others in one (:func:`run_paired`), and its
section of SPEED.md.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from speed_suite.common import (
    ALPHA,
    BATCH_SIZE,
    LR,
    MAX_LENGTH,
    TEMPERATURE,
    THREADS,
    TRAIN_CONFIGS,
    Baton,
    TimedBatches,
    TurnBatches,
    fixed_batches,
    fmt_ratio,
    fsd_term_specs,
    models,
    mrpc_rows,
    peak_rss_mb,
    rss_mb,
)
from speed_suite.floor import floor_worker
from speed_suite.processes import worker_process


def fsdkit_worker(method: str, cached: bool, timed: TimedBatches, encoded, collator, tmp: Path) -> dict[str, Any]:
    """fsdkit's training step (DistillationTrainer.compute_loss, backward) + AdamW step, live teacher or cache."""
    from torch import nn

    from fsdkit.config import DistillConfig
    from fsdkit.data import get_task
    from fsdkit.features import FeatureRequest
    from fsdkit.losses import TermContext, build_term
    from fsdkit.memory import TeacherMemory
    from fsdkit.methods import TermSpec
    from fsdkit.training.run import training_arguments
    from fsdkit.training.teacher_cache import TeacherCache
    from fsdkit.training.trainer import DistillationTrainer, StudentWithTerms

    teacher, student = models()
    ctx = TermContext(student.config, teacher.config, get_task("mrpc"), max_length=MAX_LENGTH)
    specs = [TermSpec("task", ALPHA), TermSpec("kd", 1 - ALPHA, {"temperature": TEMPERATURE})]
    if method == "fsd":
        memory = TeacherMemory(
            torch.randn(100, MAX_LENGTH * teacher.config.hidden_size),
            {
                "layer": "penultimate",
                "pooling": "flatten",
                "max_length": MAX_LENGTH,
                "hidden_size": teacher.config.hidden_size,
            },
        )
        specs += fsd_term_specs(memory)
    terms = nn.ModuleDict({s.label: build_term(s.name, ctx, s.options) for s in specs})
    extra: dict[str, Any] = {}
    source: Any = teacher
    if cached:
        request = FeatureRequest.union(*(term.request() for term in terms.values()))  # stores the layers they read
        started = time.perf_counter()
        source = TeacherCache.build(
            teacher, encoded, collator, request, tmp / "cache", batch_size=64, task="mrpc", max_length=MAX_LENGTH
        )
        extra = {
            "cache_build_seconds": time.perf_counter() - started,
            "cache_bytes": source.manifest["bytes"],
            "cache_examples": len(source),
        }
        del teacher
    n_steps = len(timed)
    args = training_arguments(
        DistillConfig(output_dir=str(tmp), batch_size=BATCH_SIZE, learning_rate=LR, max_steps=n_steps, progress=False),
        tmp,
    )
    trainer = DistillationTrainer(
        model=StudentWithTerms(student, terms), args=args, term_specs=specs, teacher=source, data_collator=collator
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=n_steps)
    trainer.model.train()
    before = rss_mb()
    for batch in timed:
        trainer.compute_loss(trainer.model, batch).backward()
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        trainer.model.zero_grad()
    return {"rss_before_mb": before, **extra}


def textbrewer_worker(timed: TimedBatches, tmp: Path) -> dict[str, Any]:
    """TextBrewer 0.2.1's BasicDistiller.train inside the distiller's context: its own loop, hard-label loss +
    soft-label CE at T."""
    import textbrewer
    from textbrewer import BasicDistiller, DistillationConfig, TrainingConfig

    teacher, student = models()

    def adaptor(batch, outputs):
        return {"logits": outputs.logits, "losses": [outputs.loss]}

    train_config = TrainingConfig(device="cpu", log_dir=str(tmp / "log"), output_dir=str(tmp / "out"), ckpt_frequency=1)
    distill_config = DistillationConfig(
        temperature=TEMPERATURE, hard_label_weight=ALPHA, kd_loss_weight=1 - ALPHA, kd_loss_type="ce"
    )
    distiller = BasicDistiller(train_config, distill_config, teacher, student, adaptor, adaptor)
    optimizer = torch.optim.AdamW(student.parameters(), lr=LR)
    before = rss_mb()
    # as TextBrewer's examples run it: its context puts the student in training mode (dropout on, as in the other
    # libraries' loops) and the teacher in eval mode; without it the student would train in the eval mode that
    # from_pretrained leaves it in (no dropout: 8 % less work per step here)
    with distiller:
        distiller.train(optimizer, timed, num_epochs=1)
    return {"rss_before_mb": before, "version": textbrewer.__version__}


def torchdistill_worker(timed: TimedBatches, tmp: Path) -> dict[str, Any]:
    """torchdistill 1.1.5's DistillationBox: forward_process + post_forward_process, as its training loop does."""
    import torchdistill
    from torchdistill.core.distillation import DistillationBox

    teacher, student = models()
    hook = {"input": [], "output": ["classifier"]}
    # torchdistill's own KD loss, α·CE(y, z_S) + (1 − α)·T²·KL (the same objective as fsdkit's and TextBrewer's VKD)
    kd = {
        "key": "KDLoss",
        "kwargs": {
            "student_module_path": "classifier",
            "student_module_io": "output",
            "teacher_module_path": "classifier",
            "teacher_module_io": "output",
            "temperature": TEMPERATURE,
            "alpha": ALPHA,
            "reduction": "batchmean",
        },
    }
    train_config = {
        "num_epochs": 1,
        "teacher": {"forward_proc": "forward_batch_only_as_kwargs", "forward_hook": hook, "requires_grad": False},
        "student": {"forward_proc": "forward_batch_only_as_kwargs", "forward_hook": hook, "requires_grad": True},
        "optimizer": {"key": "AdamW", "kwargs": {"lr": LR}},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": {"criterion": kd, "weight": 1.0}}}},
    }
    box = DistillationBox(teacher, student, {}, train_config, torch.device("cpu"), None, False, 1.0)
    box.pre_epoch_process(epoch=0)
    before = rss_mb()
    for batch in timed:
        loss = box.forward_process(batch, targets=batch["labels"], supp_dict={})
        box.post_forward_process(loss)
    return {"rss_before_mb": before, "version": torchdistill.__version__}


def strip_for(config: str) -> tuple[str, ...]:
    """Batch keys a library's model does not take (fsdkit's teacher cache reads ``idx``)."""
    return () if config.startswith("fsdkit-") else ("idx",)


def train_config(config: str, timed: TimedBatches, encoded, collator, tmp: Path) -> dict[str, Any]:
    """Run one training configuration's loop over ``timed``; returns its extra fields (RSS after loading, ...)."""
    torch.manual_seed(0)
    library, _, method = config.partition("-")
    if library == "fsdkit":
        return fsdkit_worker(method.removesuffix("-cache"), method.endswith("-cache"), timed, encoded, collator, tmp)
    if library == "floor":
        return floor_worker(method.replace("-", "_"), timed)
    if library == "textbrewer":
        return textbrewer_worker(timed, tmp)
    return torchdistill_worker(timed, tmp)


def run_worker(config: str, glue_dir: str, n_batches: int, warmup: int, reps: int) -> dict[str, Any]:
    """One training configuration alone in this process; returns its throughput and memory."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    encoded, collator = mrpc_rows(glue_dir, n_batches * BATCH_SIZE)
    batches = fixed_batches(encoded, collator, n_batches)
    timed = TimedBatches(batches, warmup, reps, strip=strip_for(config))
    with tempfile.TemporaryDirectory() as tmp:
        extra = train_config(config, timed, encoded, collator, Path(tmp))
    passes = timed.pass_seconds()
    examples = n_batches * BATCH_SIZE
    peak = peak_rss_mb()
    return {
        "config": config,
        "status": "ok",
        "examples_per_second": examples / statistics.median(passes),
        "pass_seconds": passes,
        "examples_per_pass": examples,
        "tokens_per_pass": int(sum(b["attention_mask"].sum() for b in batches)),
        "peak_rss_mb": peak,
        "training_rss_mb": peak - extra.pop("rss_before_mb"),
        "minor_faults_per_step": timed.faults_per_step(),
        **extra,
    }


def run_paired(configs: list[str], glue_dir: str, n_batches: int, warmup: int, reps: int) -> dict[str, Any]:
    """Every configuration in this one process, taking turns pass by pass: round r runs pass r of each (the order
    rotated by one place each round), so a change of the machine's speed between rounds reaches every configuration
    of a round alike and the ratio of two configurations is taken within each round. Each configuration's own loop
    runs in its own thread; only the one whose turn it is runs (:class:`Baton`)."""
    torch.set_num_threads(THREADS)
    encoded, collator = mrpc_rows(glue_dir, n_batches * BATCH_SIZE)
    batches = fixed_batches(encoded, collator, n_batches)
    baton = Baton()
    timed = {c: TurnBatches(batches, warmup, reps, strip_for(c), c, baton) for c in configs}
    errors: dict[str, str] = {}
    finished: set[str] = set()

    def body(config: str, tmp: Path) -> None:
        baton.wait_turn(config)
        try:
            train_config(config, timed[config], encoded, collator, tmp)
        except Exception as exc:  # noqa: BLE001 — recorded, the others go on
            import traceback

            errors[config] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
        finally:
            finished.add(config)
            baton.end_turn()

    with tempfile.TemporaryDirectory() as tmp:
        threads = {c: threading.Thread(target=body, args=(c, Path(tmp) / c), daemon=True) for c in configs}
        turns = [c for c in configs for _ in ("set-up", "warm-up")]  # one configuration after the other
        for r in range(reps + 1):  # the passes, rotated; then the turn that lets each loop finish
            turns += configs[r % len(configs) :] + configs[: r % len(configs)]
        for config in configs:
            threads[config].start()
        for config in turns:
            if config not in finished:
                baton.give(config)
        for thread in threads.values():
            thread.join()
    examples = n_batches * BATCH_SIZE
    out: dict[str, Any] = {"configs": {}, "order": "rotated"}
    for config in configs:
        passes = timed[config].pass_seconds()
        if config in errors or len(passes) != reps:
            out["configs"][config] = {
                "status": "unavailable",
                "error": errors.get(config, f"{len(passes)} of {reps} passes"),
            }
        else:
            out["configs"][config] = {
                "status": "ok",
                "examples_per_second": examples / statistics.median(passes),
                "pass_seconds": passes,
            }
    return out


def paired_ratio(paired: dict[str, Any], a: str, b: str) -> float | None:
    """Throughput of ``a`` over that of ``b``: the median over the rounds of ``t_b / t_a`` within a round."""
    ra, rb = paired["configs"].get(a, {}), paired["configs"].get(b, {})
    if ra.get("status") != "ok" or rb.get("status") != "ok":
        return None
    return statistics.median(tb / ta for ta, tb in zip(ra["pass_seconds"], rb["pass_seconds"]))


def training_section(train: dict[str, Any] | None) -> list[str]:
    """SPEED.md's training table and ratios (throughput from the configurations taking turns in one process,
    memory from each alone in its own)."""
    if not isinstance(train, dict) or "paired" not in train:
        return ["Not measured in this form (re-run `--parts training`).", ""]
    st, paired, alone = train["settings"], train["paired"], train["alone"]
    lines = [
        f"Throughput: every configuration in one process, taking turns pass by pass — {st['paired_reps']} rounds, "
        f"each one pass of every configuration over the same {st['n_batches']} batches (the order rotated by one "
        f"place each round; {st['warmup']} warm-up steps each before the first round). Each configuration runs its "
        "library's own loop in its own thread; only the one whose turn it is runs. examples/s is the median of its "
        "passes; a ratio is the median over the rounds of the ratio within a round, so a change of the machine's "
        "speed between rounds (seen here: up to 2× over minutes) cancels out. Memory: each configuration alone in "
        f"its own process ({st['reps']} passes; its throughput there in the 'alone' column), peak RSS and "
        "'training' = peak minus the RSS after loading the models.",
        "",
        "| Configuration | examples/s | relative to fsdkit VKD | alone: examples/s | peak RSS (MB) | training (MB) |",
        "|---|---|---|---|---|---|",
    ]
    if paired.get("status") == "unavailable":
        return lines + [f"| (all) | unavailable: {paired['error'].splitlines()[0][:160]} | – | – | – | – |", ""]
    for name in TRAIN_CONFIGS:
        r, a = paired["configs"].get(name), alone.get(name, {})
        if r is None:
            continue
        if r["status"] != "ok":
            lines.append(f"| {name} | unavailable: {r['error'].splitlines()[0][:120]} | – | – | – | – |")
            continue
        memory = (
            f"{a['examples_per_second']:.1f} | {a['peak_rss_mb']:.0f} | {a['training_rss_mb']:.0f}"
            if a.get("status") == "ok"
            else "– | – | –"
        )
        lines.append(
            f"| {name} | {r['examples_per_second']:.1f} | {fmt_ratio(paired_ratio(paired, name, 'fsdkit-vkd'), 1)} | "
            f"{memory} |"
        )
    ratio = lambda a, b: fmt_ratio(paired_ratio(paired, a, b), 1)  # noqa: E731
    speed = lambda c: paired["configs"].get(c, {}).get("examples_per_second") or 0  # noqa: E731
    peer = max(("textbrewer-vkd", "torchdistill-vkd"), key=speed)
    lines += [
        "",
        "Ratios (target in brackets):",
        "",
        f"- FSD / VKD throughput, live teacher: **{ratio('fsdkit-fsd', 'fsdkit-vkd')}** (≥ 0.95; the paper: 0.92)",
        f"- FSD / VKD throughput, both with the teacher-output cache: **{ratio('fsdkit-fsd-cache', 'fsdkit-vkd-cache')}** (≥ 0.97)",
        f"- fsdkit VKD / the fastest peer's VKD ({peer}): live teacher **{ratio('fsdkit-vkd', peer)}** (≥ 1), "
        f"teacher-output cache **{ratio('fsdkit-vkd-cache', peer)}** (≥ 1.5)",
        f"- FSD (cache) / VKD (live): **{ratio('fsdkit-fsd-cache', 'fsdkit-vkd')}**",
        f"- cache speed-up, VKD: **{ratio('fsdkit-vkd-cache', 'fsdkit-vkd')}×**; FSD: **{ratio('fsdkit-fsd-cache', 'fsdkit-fsd')}×**",
        f"- TextBrewer / fsdkit (VKD): {ratio('textbrewer-vkd', 'fsdkit-vkd')}; "
        f"torchdistill / fsdkit (VKD): {ratio('torchdistill-vkd', 'fsdkit-vkd')}",
    ]
    cache = alone.get("fsdkit-fsd-cache", {})
    if cache.get("cache_build_seconds"):
        per_example = cache["cache_build_seconds"] / cache["cache_examples"]
        lines += [
            f"- cache build: {cache['cache_build_seconds']:.1f} s for {cache['cache_examples']} examples "
            f"({1 / per_example:.1f} examples/s, one teacher pass; {cache['cache_bytes'] / 2**20:.1f} MB for the "
            "penultimate layer + logits) — paid once per task and teacher, then shared by every epoch, method and seed"
        ]
    return lines


def train_bench(args) -> dict[str, Any]:
    """Throughput from one process in which every configuration takes turns pass by pass (:func:`run_paired`):
    each configuration's throughput is the median of its ``--paired-reps`` passes, and the ratio of two
    configurations the median over the rounds of their ratio within a round. Memory from each configuration alone
    in its own process (peak RSS; its throughput there is kept too, as ``alone``)."""
    configs = [c for c in args.configs.split(",") if c]
    alone = {}
    for config in configs:
        result = worker_process(args, config, "--reps", str(args.reps))
        alone[config] = result
        print(json.dumps({"alone": {k: v for k, v in result.items() if k != "error"}}), flush=True)
    paired = worker_process(args, "paired:" + ",".join(configs), "--reps", str(args.paired_reps))
    print(json.dumps({"paired": paired})[:3000], flush=True)
    settings = {"n_batches": args.n_batches, "warmup": args.warmup, "reps": args.reps, "paired_reps": args.paired_reps}
    return {"settings": settings, "alone": alone, "paired": paired}
