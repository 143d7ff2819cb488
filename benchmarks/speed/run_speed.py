"""The speed suite: fsdkit against TextBrewer, torchdistill and the CKA libraries, side by side in one run.

::

    bash benchmarks/speed/setup.sh                       # once: benchmarks/speed/.venv with the other libraries
    benchmarks/speed/.venv/bin/python benchmarks/speed/run_speed.py --glue-dir ../shared/glue

Writes ``benchmarks/speed/results.json`` and ``benchmarks/speed/SPEED.md``. Every measurement uses identical
inputs across libraries, excludes warm-up iterations, reports the median of several repetitions, and pins
``torch.set_num_threads(2)``.

1. **Training throughput and peak memory** of the same distillation — MiniLM teacher (the packaged
   all-MiniLM-L6-v2, 6 layers) → 3-layer student (its first 3 layers), vanilla KD (α = 0.5, T = 5, AdamW
   lr 1e-4) on the same fixed, dynamically padded MRPC batches (batch 32, max length 128) — in fsdkit
   (``DistillationTrainer.compute_loss``, backward, optimizer step), TextBrewer 0.2.1 (``BasicDistiller.train``) and
   torchdistill 1.1.5 (``DistillationBox.forward_process`` / ``post_forward_process``). Each library runs in its
   own process (peak RSS = ``ru_maxrss`` of that process; the increase over the RSS after loading the models is
   the training's own memory). Step times come from the moments the library's own loop asks for the next batch.
   Throughput and its ratios come from one process in which the configurations take turns pass by pass (each
   library's own loop in its own thread, one running at a time): the machine's speed drifts (up to 2× over minutes
   here), and a ratio taken within a round of turns cancels that drift.
   Also fsdkit FSD (intra + local + memory structure, K = 100) against fsdkit VKD, with the live teacher and with
   the teacher-output cache (:mod:`fsdkit.training.teacher_cache`).
2. **CKA** as FSDI (per-sample token CKA, B × L × D) and FSDL (batch CKA of flattened rows) use it, forward +
   backward, fsdkit's batched ``linear_cka`` / ``debiased_cka`` against ckatorch (``cka_base``, biased),
   cka-pytorch (``hsic1``, unbiased) and torch-cka (``CKA._HSIC``, unbiased; returns Python floats, so no
   backward) on the same inputs: agreement (max |Δ|) and time, and the time of the bare Gram products (the lower
   bound of any implementation).
3. **k-means of the FSDG teacher memory**: fsdkit's streaming k-means (k-means++, Lloyd to tolerance) against
   scikit-learn's ``KMeans`` (k-means++, n_init = 1, same tolerance) and the reference code's procedure (docs/math.md:
   a running average whose counters are reset every mini-batch step, 3 epochs ≈ one Lloyd step): time and final
   inertia on the same teacher rows.
4. **FSD's floor** (``--parts floor``): fsdkit's VKD and FSD steps (live and cached) take turns in one process
   with what FSD's terms compute on the same batches' shapes (:class:`FloorWork`: the terms as they run, only the
   matrix products they need, the student memory's update), so the bound on FSD / VKD comes from one run.
5. **Host synchronisations** (``--parts syncs``): reads of tensor values per training step.
6. **Host memory** (``--parts host_memory``): fsdkit's cached steps with freed host memory kept for the next step
   (as its runs train) against glibc's allocator as it comes, each alone in its own process.

A library that cannot be imported is recorded as unavailable (with the error) instead of failing the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # benchmarks/: the quality suite's helpers (suite.cpu_model)
THREADS = 2
BATCH_SIZE = 32
MAX_LENGTH = 128
ALPHA, TEMPERATURE, LR = 0.5, 5.0, 1e-4
TRAIN_CONFIGS = (
    "fsdkit-vkd",
    "fsdkit-fsd",
    "fsdkit-vkd-cache",
    "fsdkit-fsd-cache",
    "textbrewer-vkd",
    "torchdistill-vkd",
)


# ------------------------------------------------------------------------------------------------ inputs
def mrpc_rows(glue_dir: str, n_rows: int):
    """The first ``n_rows`` MRPC training rows, tokenized (unpadded), with the ``idx`` column, and the collator."""
    from fsdkit.data import encode_dataset, get_task, load_task_data, make_collator
    from fsdkit.models import load_classifier

    task = get_task("mrpc")
    _, tokenizer = load_classifier("minilm", task)
    train = load_task_data(task, glue_dir)["train"].select(range(n_rows))
    train = train.add_column("idx", list(range(n_rows)))
    return encode_dataset(train, tokenizer, task, max_length=MAX_LENGTH), make_collator(tokenizer)


def fixed_batches(encoded, collator, n_batches: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive batches of ``BATCH_SIZE`` rows, each padded to its own longest row (dynamic padding)."""
    return [collator([encoded[i] for i in range(b * BATCH_SIZE, (b + 1) * BATCH_SIZE)]) for b in range(n_batches)]


def models():
    """(teacher, student): the packaged MiniLM (eval, frozen) and a 3-layer student from it; same init everywhere."""
    from fsdkit.data import get_task
    from fsdkit.models import build_student, load_classifier

    torch.manual_seed(0)
    teacher, _ = load_classifier("minilm", get_task("mrpc"))
    teacher.eval().requires_grad_(False)
    base, _ = load_classifier("minilm", get_task("mrpc"))
    student = build_student(base, 3)
    student.register_forward_pre_hook(_in_training_mode)
    return teacher, student


def _in_training_mode(student, args) -> None:
    """Every library must train the student in training mode (dropout on): a loop that leaves it in eval mode does
    less work per step and would win the comparison for that alone."""
    if torch.is_grad_enabled() and not student.training:
        raise RuntimeError("the student is trained in eval mode (dropout off): the library's loop never set train()")


class TimedBatches:
    """Yields ``warmup`` batches, then ``reps`` passes over ``batches``, then one sentinel batch, timing each request.

    The moment a training loop asks for batch i + 1 is the end of its step i, so a pass's duration is the time
    between the first requests of consecutive passes (the sentinel closes the last pass; its own step is not timed).
    """

    def __init__(self, batches, warmup: int, reps: int, strip: tuple[str, ...] = ()):
        self.batches = [{k: v for k, v in b.items() if k not in strip} for b in batches]
        self.warmup, self.reps = warmup, reps
        self.stamps: list[float] = []

    def sequence(self):
        return self.batches[: self.warmup] + self.batches * self.reps + self.batches[:1]

    def __len__(self) -> int:
        return len(self.sequence())

    def __iter__(self):
        self.faults: list[int] = []
        for batch in self.sequence():
            self.stamps.append(time.perf_counter())
            self.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
            yield {k: v.clone() for k, v in batch.items()}

    def pass_seconds(self) -> list[float]:
        n = len(self.batches)
        starts = [self.warmup + r * n for r in range(self.reps + 1)]
        return [self.stamps[starts[r + 1]] - self.stamps[starts[r]] for r in range(self.reps)]

    def faults_per_step(self) -> float:
        """The process's minor page faults per step over the timed passes (pages it had to map in afresh)."""
        first, last = self.warmup, self.warmup + len(self.batches) * self.reps
        return (self.faults[last] - self.faults[first]) / (last - first)


class Baton:
    """Whose turn it is among the configurations of one process: one runs, the others wait at a pass boundary."""

    def __init__(self):
        self.cond = threading.Condition()
        self.holder: str | None = None

    def wait_turn(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.holder == name)

    def end_turn(self) -> None:
        with self.cond:
            self.holder = None
            self.cond.notify_all()

    def give(self, name: str) -> None:
        """Let ``name`` run until it ends its turn."""
        with self.cond:
            self.holder = name
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.holder is None)


class TurnBatches(TimedBatches):
    """:class:`TimedBatches` for configurations that share one process and take turns: ``warmup`` batches, then
    ``reps`` timed passes, each pass one turn (the library's own loop blocks in its request for the pass's first
    batch until the turn comes); the turn after the last pass lets the loop finish. A pass runs from the request of
    its first batch to the request after its last (its last step included), as in :class:`TimedBatches`."""

    def __init__(self, batches, warmup: int, reps: int, strip: tuple[str, ...], name: str, baton: Baton):
        super().__init__(batches, warmup, reps, strip)
        if warmup < 1:
            raise ValueError("taking turns needs at least one warm-up step")
        self.name, self.baton = name, baton
        self.passes: list[float] = []

    def __len__(self) -> int:
        return self.warmup + len(self.batches) * self.reps

    def _boundary(self, timed_pass_ended: bool) -> None:
        if timed_pass_ended:
            self.passes.append(time.perf_counter() - self._started)
        self.baton.end_turn()
        self.baton.wait_turn(self.name)
        self._started = time.perf_counter()

    def __iter__(self):
        n = len(self.batches)
        starts = {self.warmup + r * n for r in range(self.reps)}
        for i, batch in enumerate(self.batches[: self.warmup] + self.batches * self.reps):
            if i == 0 or i in starts:  # set-up done (warm-up next), or a pass starts
                self._boundary(timed_pass_ended=i > self.warmup)
            yield {k: v.clone() for k, v in batch.items()}
        self._boundary(timed_pass_ended=True)  # the last pass ended; this turn lets the loop finish

    def pass_seconds(self) -> list[float]:
        return self.passes


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ------------------------------------------------------------------------------------------------ workers
def fsd_term_specs(memory) -> list:
    """The FSD configuration's structure terms (intra, local, and the memory term over ``memory``), as TermSpecs."""
    from fsdkit.methods import TermSpec

    return [
        TermSpec("structure", 30.0, {"view": "intra"}, "intra"),
        TermSpec("structure", 30.0, {"view": "local"}, "local"),
        TermSpec("memory", 1e-3, {"memory": memory}, "global"),
    ]


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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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


# ------------------------------------------------------------------------------------------------ CKA
def _interleaved_median_times(fns: dict[str, Any], reps: int, warmup: int = 2) -> dict[str, float]:
    """The median time of each of ``fns`` over ``reps`` rounds, each round calling every function once (the order
    rotated each round): a drift of the machine's speed reaches every function alike."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cka_inputs(view: str, seed: int = 0):
    """Correlated student (D_S) / teacher (D_T) features: intra B × L × D, local B × (L·D) (all tokens real)."""
    g = torch.Generator().manual_seed(seed)
    b, l, d = BATCH_SIZE, 64, 384
    y = torch.randn(b, l, d, generator=g)
    x = y @ torch.randn(d, d, generator=g) / d**0.5 + 0.5 * torch.randn(b, l, d, generator=g)
    if view == "local":
        x, y = x.reshape(b, l * d), y.reshape(b, l * d)
    return x, y


def cka_bench(reps: int) -> dict[str, Any]:
    """CKA of the FSDI / FSDL views, forward + backward, fsdkit against the CKA libraries and the bare products."""
    from fsdkit.losses.similarities import debiased_cka, linear_cka

    out: dict[str, Any] = {}
    for view in ("intra", "local"):
        x0, y = cka_inputs(view)
        batched = view == "intra"  # intra: one CKA per sample; local: one CKA over the batch rows
        rows: dict[str, Any] = {}
        steps: dict[str, Any] = {}

        def timed(name, fn, backward=True, reference=None, exact=None, note=""):
            """Register ``fn(x)``'s forward (+ backward) for timing; max |Δ| to fsdkit (``reference``) and to float64."""

            def step(with_grad):
                x = x0.clone().requires_grad_(with_grad)
                value = fn(x)
                if with_grad:
                    value.sum().backward()
                return value

            try:
                try:
                    value = step(backward).detach()
                except RuntimeError as exc:
                    if not backward or "does not require grad" not in str(exc):
                        raise
                    backward, note = False, "its result carries no gradient"
                    value = step(False).detach()
            except Exception as exc:  # noqa: BLE001 — an unavailable or failing library is recorded
                rows[name] = {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}
                return
            steps[name] = lambda: step(backward)  # timed below, interleaved with the others
            row = {"status": "ok", "backward": backward, "note": note}
            if reference is not None:
                row["max_abs_diff"] = float((value.double() - reference.double()).abs().max())
                row["agrees_1e-5"] = row["max_abs_diff"] <= 1e-5
            if exact is not None:
                row["max_abs_diff_float64"] = float((value.double() - exact).abs().max())
            rows[name] = row

        ref_biased = linear_cka(x0, y).detach()
        ref_unbiased = debiased_cka(x0, y).detach()
        exact_biased = linear_cka(x0.double(), y.double())  # float64 values of the same definitions
        exact_unbiased = debiased_cka(x0.double(), y.double())
        timed("fsdkit linear_cka", lambda x: linear_cka(x, y), exact=exact_biased)
        timed(
            "fsdkit linear_cka (forward)",
            lambda x: linear_cka(x, y),
            backward=False,
            note="against the forward-only libraries",
        )
        timed(
            "fsdkit debiased_cka (forward)",
            lambda x: debiased_cka(x, y),
            backward=False,
            note="against the forward-only libraries",
        )
        timed("fsdkit debiased_cka", lambda x: debiased_cka(x, y), exact=exact_unbiased)

        def bare(x):
            if batched:
                return (torch.bmm(x, x.mT) * torch.bmm(y, y.mT)).sum((-1, -2))
            return ((x @ x.T) * (y @ y.T)).sum()

        timed("bare Gram products (lower bound)", bare)

        def per_sample(fn):
            return lambda x: torch.stack([fn(x[i], y[i]) for i in range(x.shape[0])]) if batched else fn(x, y)

        try:
            from ckatorch.core import cka_base

            timed(
                "ckatorch cka_base (biased)",
                per_sample(lambda a, b: cka_base(a, b)),
                reference=ref_biased,
                exact=exact_biased,
            )
        except ImportError as exc:
            rows["ckatorch cka_base (biased)"] = {"status": "unavailable", "error": str(exc)}
        try:
            from cka_pytorch.hsic import hsic1

            def cka_pytorch(x):
                xs, ys = (x, y) if batched else (x[None], y[None])
                kx, ky = torch.bmm(xs, xs.mT), torch.bmm(ys, ys.mT)
                value = hsic1(kx, ky) / (hsic1(kx, kx) * hsic1(ky, ky)).sqrt()
                return value if batched else value[0]

            timed("cka-pytorch hsic1 (unbiased)", cka_pytorch, reference=ref_unbiased, exact=exact_unbiased)
        except ImportError as exc:
            rows["cka-pytorch hsic1 (unbiased)"] = {"status": "unavailable", "error": str(exc)}
        try:
            from torch_cka.cka import CKA

            class _Device:
                device = "cpu"

            def torch_cka_one(a, b):
                k, l_ = (a @ a.T).fill_diagonal_(0.0), (b @ b.T).fill_diagonal_(0.0)
                hsic = lambda p, q: CKA._HSIC(_Device, p, q)  # noqa: E731 — the library's unbiased HSIC
                return torch.tensor(hsic(k, l_) / (hsic(k, k) ** 0.5 * hsic(l_, l_) ** 0.5))

            timed(
                "torch-cka _HSIC (unbiased)",
                per_sample(torch_cka_one),
                backward=False,
                note="returns floats (.item())",
                reference=ref_unbiased,
                exact=exact_unbiased,
            )
        except ImportError as exc:
            rows["torch-cka _HSIC (unbiased)"] = {"status": "unavailable", "error": str(exc)}
        for name, seconds in _interleaved_median_times(steps, reps).items():
            rows[name]["seconds"] = seconds
        out[view] = {
            "shape_x": list(x0.shape),
            "shape_y": list(y.shape),
            "reps": reps,
            "order": "interleaved",
            "results": rows,
        }
    return out


# ------------------------------------------------------------------------------------------------ k-means
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


# ------------------------------------------------------------------------------------------------ report
def machine() -> dict[str, Any]:
    from suite import cpu_model  # the quality suite's: one reading of the CPU model for both suites

    model = cpu_model()
    versions = {}
    for name in (
        "fsdkit",
        "textbrewer",
        "torchdistill",
        "torch-cka",
        "cka-pytorch",
        "ckatorch",
        "scikit-learn",
        "transformers",
    ):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 — not installed
            versions[name] = None
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": THREADS,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def fmt_ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def fsdkit_counterpart(name: str, row: dict[str, Any], rows: dict[str, Any]) -> str:
    """The fsdkit row a CKA row is compared with: the same estimator (biased or unbiased), the same mode (forward +
    backward, or forward only, when measured)."""
    base = "fsdkit debiased_cka" if "unbiased" in name or "debiased" in name else "fsdkit linear_cka"
    forward = f"{base} (forward)"
    return forward if not row.get("backward", True) and forward in rows else base


def cka_findings(rows: dict[str, Any]) -> list[str]:
    """Plain-language reading of one CKA table: speed against the lower bound and the libraries, and who is off
    when values differ."""
    notes = []
    libraries = {n: r for n, r in rows.items() if r.get("status") == "ok" and not n.startswith(("fsdkit", "bare"))}
    slower = [n for n, r in libraries.items() if r["seconds"] < rows[fsdkit_counterpart(n, r, rows)]["seconds"]]
    if libraries:
        notes.append(
            "- fsdkit is faster than every CKA library measured here (each against fsdkit in its own mode): "
            + ("**yes**" if not slower else f"**no** ({', '.join(slower)} faster)")
        )
    bare = rows.get("bare Gram products (lower bound)", {}).get("seconds")
    for name in ("fsdkit linear_cka", "fsdkit debiased_cka"):
        if bare and rows.get(name, {}).get("seconds"):
            notes.append(
                f"- {name} (forward + backward) takes {rows[name]['seconds'] / bare:.2f}× the bare Gram "
                "products' time (≤ 1.5)."
            )
    for name, r in rows.items():
        if r.get("status") != "ok" or r.get("agrees_1e-5", True):
            continue
        own = rows[fsdkit_counterpart(name, {"backward": True}, rows)].get("max_abs_diff_float64")
        theirs = r.get("max_abs_diff_float64")
        if own is not None and theirs is not None:
            closer = (
                "fsdkit's float32 value is the less accurate one"
                if own > theirs
                else f"{name} is the less accurate one"
            )
            notes.append(
                f"- {name} differs from fsdkit by {r['max_abs_diff']:.1e}: against float64, fsdkit is off by "
                f"{own:.1e} and {name} by {theirs:.1e} — {closer}."
            )
    return notes


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


def render(results: dict[str, Any]) -> str:
    """SPEED.md from the results."""
    m = results["machine"]
    fmt_load = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    runs = results.get("part_runs", {})
    measured = []
    for part in PARTS:
        if part in runs:
            r = runs[part]
            where = r.get("machine")
            where = (
                f"{where['cpu_model']}, {where['cpu_count']} CPUs, torch {where['torch_version']}"
                if where
                else "machine not recorded (measured before parts recorded theirs)"
            )
            if r.get("host_memory"):
                where += f", host memory {r['host_memory']}"
            measured.append(
                f"- {part}: `{results['commands'][part]}` — {r['finished_at']}, {where}, fsdkit commit "
                f"{str(r['git_commit'])[:10]}, load average (1/5/15 min) {fmt_load(r['load_start'])} at "
                f"start, {fmt_load(r['load_end'])} at end" + (f"; {r['conditions']}" if r.get("conditions") else "")
            )
        elif part in results:  # a results file written before per-part runs were recorded
            measured.append(
                f"- {part}: `{results['command']}` — load average {fmt_load(results['load_start'])} at "
                f"start of the whole run, {fmt_load(results['load_end'])} at its end"
            )
    lines = [
        "# fsdkit speed suite",
        "",
        f"Machine of the latest part run: {m['cpu_model']}, {m['cpu_count']} CPUs, torch {m['torch_version']}, "
        f"{m['torch_threads']} threads, Python {m['python']} (each part below names its own). A load average above "
        "the 2 cores means other jobs competed for them: absolute numbers are then pessimistic; the ratios inside "
        "one table come from one run.",
        "",
        "Measured (each part by its own command; `--parts` re-runs some and keeps the others):",
        "",
        *measured,
        "",
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
        "",
        "Installation (setup.sh):",
        "",
        *(f"- {line}" for line in results.get("install_status", [])),
        "",
        "## Training throughput (vanilla KD, MiniLM → 3-layer student, MRPC, batch 32, max length 128)",
        "",
    ]
    lines += training_section(results.get("training"))
    lines += ["", "## What FSD must compute beyond VKD (the bound on FSD / VKD)", ""]
    lines += floor_section(results.get("floor"))
    lines += ["", "## Freed host memory kept for the next step, against glibc's allocator as it comes", ""]
    lines += host_memory_section(results.get("host_memory"))
    lines += ["", "## Host synchronisations per training step (fsdkit VKD and FSD)", ""] + syncs_section(
        results.get("syncs")
    )
    lines += ["", "## CKA of FSDI and FSDL (forward + backward; forward only where marked)", ""]
    reps = next((b.get("reps") for b in results.get("cka", {}).values() if b.get("order") == "interleaved"), None)
    if reps:
        lines += [
            f"Each time is the median of {reps} rounds; every round calls every implementation once, the order "
            "rotated each round, so a drift of the machine's speed reaches them alike.",
            "",
        ]
    for view, block in results.get("cka", {}).items():
        desc = (
            "FSDI: one CKA per sample over its tokens"
            if view == "intra"
            else "FSDL: one CKA over the batch's flattened rows"
        )
        lines += [
            f"### {view} — {desc}; x {block['shape_x']}, y {block['shape_y']}",
            "",
            "| Implementation | time (ms) | relative to fsdkit | max abs diff to fsdkit | agrees to 1e-5 | "
            "max abs diff to float64 |",
            "|---|---|---|---|---|---|",
        ]
        res = block["results"]
        for name, r in res.items():
            if r["status"] != "ok":
                lines.append(f"| {name} | unavailable: {r['error'][:100]} | – | – | – | – |")
                continue
            ref = res[fsdkit_counterpart(name, r, res)].get("seconds")
            diff = (
                f"{r['max_abs_diff']:.2e}"
                if "max_abs_diff" in r
                else "(reference)"
                if name.startswith("fsdkit")
                else "–"
            )
            agree = ("yes" if r["agrees_1e-5"] else "**no**") if "agrees_1e-5" in r else "–"
            exact = f"{r['max_abs_diff_float64']:.2e}" if "max_abs_diff_float64" in r else "–"
            label = name + ("" if r["backward"] else f" — forward only{': ' + r['note'] if r.get('note') else ''}")
            lines.append(
                f"| {label} | {1000 * r['seconds']:.2f} | {fmt_ratio(r['seconds'], ref)} | {diff} | {agree} | {exact} |"
            )
        lines += [""] + cka_findings(res) + [""]
    km = results.get("kmeans")
    if km is None:
        return "\n".join(lines + ["## k-means of the teacher memory", "", "Not measured (see `--parts`).", ""]) + "\n"
    lines += [
        f"## k-means of the teacher memory ({km['rows'][0]} MRPC rows × {km['rows'][1]} dims — flattened penultimate "
        f"layer — K = {km['k']})",
        "",
        "| Procedure | time (s) | final inertia | relative to fsdkit | iterations |",
        "|---|---|---|---|---|",
    ]
    ref = km["fsdkit kmeans"]["inertia"]
    for name in ("fsdkit kmeans", "scikit-learn KMeans", "reference procedure (3 epochs)"):
        r = km[name]
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['inertia']:.4g} | {r['inertia'] / ref:.3f} | {r['iterations']} |"
        )
    sk = km["scikit-learn KMeans"]
    lines += [
        "",
        f"- fsdkit / scikit-learn time: **{km['fsdkit kmeans']['seconds'] / sk['seconds']:.2f}** (≤ 0.15) at "
        f"inertia {ref / sk['inertia']:.4f} × scikit-learn's (within 1 %: {abs(ref / sk['inertia'] - 1) <= 0.01})",
    ]
    if "encoding_seconds" in km:
        lines.append(
            f"- the memory build's encoding pass (the teacher's forward over the {km['rows'][0]} rows, batch 64), "
            f"not part of the k-means times above: {km['encoding_seconds']:.1f} s"
        )
    lines += ["", "Raw numbers: [results.json](results.json)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", default=str(ROOT.parent / "shared" / "glue"))
    parser.add_argument("--output-dir", default=str(HERE))
    parser.add_argument("--n-batches", type=int, default=6, help="batches per timed pass")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps before the timed passes")
    parser.add_argument("--reps", type=int, default=3, help="timed passes of a configuration alone in its process")
    parser.add_argument(
        "--cka-reps",
        type=int,
        default=50,
        help="rounds of the CKA timings (each round calls every implementation once, rotated)",
    )
    parser.add_argument(
        "--paired-reps",
        type=int,
        default=8,
        help="rounds of the configurations taking turns in one process (one pass each per round)",
    )
    parser.add_argument(
        "--floor-reps",
        type=int,
        default=8,
        help="rounds of the floor part (VKD's and FSD's steps and FSD's floor taking turns)",
    )
    parser.add_argument("--kmeans-rows", type=int, default=1024)
    parser.add_argument("--kmeans-k", type=int, default=100)
    parser.add_argument("--configs", default=",".join(TRAIN_CONFIGS))
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="which measurements to (re)run; the others are kept from OUTPUT_DIR/results.json",
    )
    parser.add_argument("--render-only", action="store_true", help="rewrite SPEED.md from OUTPUT_DIR/results.json")
    parser.add_argument(
        "--conditions",
        default=None,
        help="what the load average cannot tell (e.g. other jobs paused), recorded with each part run",
    )
    parser.add_argument(
        "--host-memory",
        choices=("reuse", "system"),
        default="reuse",
        help="reuse: the training processes keep freed host memory for the next step, as fsdkit's "
        "runs do (fsdkit.training.host_memory; process-wide, so the other libraries get it too); "
        "system: glibc's defaults",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(THREADS)
    if args.worker:
        from fsdkit.training.host_memory import reused_host_memory

        try:
            # fsdkit trains inside reused_host_memory; the setting is process-wide, so in a paired process the other
            # libraries' loops get it too (which can only favour them)
            with reused_host_memory(args.host_memory == "reuse"):
                result = run_worker_command(args)
        except Exception as exc:  # noqa: BLE001 — recorded by the parent
            import traceback

            result = {
                "config": args.worker,
                "status": "unavailable",
                "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}",
            }
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    command = "python benchmarks/speed/run_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.output_dir)
    if args.render_only:
        results = json.loads((out / "results.json").read_text())
        (out / "SPEED.md").write_text(render(results))
        print(f"wrote {out / 'SPEED.md'}")
        return 0
    from fsdkit.training.run import git_commit

    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    status_file = Path(sys.prefix) / "install-status.txt"  # written by setup.sh
    previous = out / "results.json"
    results: dict[str, Any] = (
        json.loads(previous.read_text()) if set(parts) != set(PARTS) and previous.is_file() else {}
    )
    results.update(
        {
            "machine": machine(),
            "install_status": status_file.read_text().splitlines() if status_file.is_file() else [],
            "settings": {"batch_size": BATCH_SIZE, "max_length": MAX_LENGTH},
        }
    )
    results.setdefault("commands", {})
    results.setdefault("part_runs", {})
    for part in parts:
        started = os.getloadavg()
        results[part] = MEASURE[part](args)
        results["commands"][part] = command.strip()
        here = results["machine"]  # each part keeps the machine it ran on: parts of one file may come from several
        results["part_runs"][part] = {
            "load_start": started,
            "load_end": os.getloadavg(),
            "git_commit": git_commit(),
            "finished_at": time.strftime("%Y-%m-%d %H:%M"),
            "conditions": args.conditions,
            "host_memory": args.host_memory,
            "machine": {k: here[k] for k in ("cpu_model", "cpu_count", "torch_version")},
        }
        print(json.dumps({part: results[part]})[:2000], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "SPEED.md").write_text(render(results))
    print(f"wrote {out / 'results.json'} and {out / 'SPEED.md'}")
    return 0


def run_worker_command(args) -> dict[str, Any]:
    """``--worker paired:A,B,...`` (the configurations taking turns in this process) or ``--worker CONFIG`` (alone)."""
    if args.worker.startswith("paired:"):
        return run_paired(
            args.worker.removeprefix("paired:").split(","), args.glue_dir, args.n_batches, args.warmup, args.reps
        )
    return run_worker(args.worker, args.glue_dir, args.n_batches, args.warmup, args.reps)


def _worker(args, config: str, *extra: str) -> dict[str, Any]:
    """Run ``--worker config`` in a fresh process; its RESULT line, or the failure."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        config,
        "--glue-dir",
        args.glue_dir,
        "--n-batches",
        str(args.n_batches),
        "--warmup",
        str(args.warmup),
        "--host-memory",
        args.host_memory,
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    return (
        json.loads(line[7:])
        if line
        else {
            "config": config,
            "status": "unavailable",
            "error": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}",
        }
    )


def train_bench(args) -> dict[str, Any]:
    """Throughput from one process in which every configuration takes turns pass by pass (:func:`run_paired`):
    each configuration's throughput is the median of its ``--paired-reps`` passes, and the ratio of two
    configurations the median over the rounds of their ratio within a round. Memory from each configuration alone
    in its own process (peak RSS; its throughput there is kept too, as ``alone``)."""
    configs = [c for c in args.configs.split(",") if c]
    alone = {}
    for config in configs:
        result = _worker(args, config, "--reps", str(args.reps))
        alone[config] = result
        print(json.dumps({"alone": {k: v for k, v in result.items() if k != "error"}}), flush=True)
    paired = _worker(args, "paired:" + ",".join(configs), "--reps", str(args.paired_reps))
    print(json.dumps({"paired": paired})[:3000], flush=True)
    settings = {"n_batches": args.n_batches, "warmup": args.warmup, "reps": args.reps, "paired_reps": args.paired_reps}
    return {"settings": settings, "alone": alone, "paired": paired}


# ------------------------------------------------------------------------------------------------ host reads
class CountedBatches(TimedBatches):
    """Yields the batches of :class:`TimedBatches`, counting the reads of tensor values into Python (``.item()``,
    ``.tolist()``, ``bool``/``int``/``float`` of a tensor) between consecutive requests: the reads of each step."""

    NAMES = ("item", "tolist", "__bool__", "__int__", "__float__")

    def __iter__(self):
        reads = [0]
        real = {name: getattr(torch.Tensor, name) for name in self.NAMES}

        def counted(name):
            def read(tensor, *args, **kwargs):
                reads[0] += 1
                return real[name](tensor, *args, **kwargs)

            return read

        self.step_reads: list[int] = []
        try:
            for name in self.NAMES:
                setattr(torch.Tensor, name, counted(name))
            for batch in super().__iter__():
                self.step_reads.append(reads[0])
                reads[0] = 0
                yield batch
        finally:
            for name, method in real.items():
                setattr(torch.Tensor, name, method)


def sync_bench(args) -> dict[str, Any]:
    """Reads of tensor values per training step (each one a host–device synchronisation on an accelerator) of fsdkit
    VKD and FSD with the live teacher, on the CPU and with the similarities on their accelerator path (the CPU taken
    for an accelerator: ``fsdkit.losses.similarities._on_accelerator`` answering yes). Counts, not times: the load
    of the machine does not change them."""
    from fsdkit.losses import similarities

    torch.set_num_threads(THREADS)
    encoded, collator = mrpc_rows(args.glue_dir, 2 * BATCH_SIZE)
    batches = fixed_batches(encoded, collator, 2)
    out: dict[str, Any] = {}
    real = similarities._on_accelerator
    for path in ("cpu", "accelerator"):
        similarities._on_accelerator = (lambda z: True) if path == "accelerator" else real
        try:
            for method in ("vkd", "fsd"):
                counted = CountedBatches(batches, 2, 1)
                with tempfile.TemporaryDirectory() as tmp:
                    fsdkit_worker(method, False, counted, encoded, collator, Path(tmp))
                # the reads of a step are counted at the next request: skip the first request and the warm-up steps
                out[f"fsdkit-{method} ({path})"] = {"reads_per_step": counted.step_reads[3:]}
        finally:
            similarities._on_accelerator = real
    return out


def syncs_section(syncs: dict[str, Any] | None) -> list[str]:
    if not syncs:
        return ["Not measured (see `--parts`)."]
    lines = [
        "Reads of tensor values into Python per training step (`.item()`, `.tolist()`, `bool(t)`, ...: on an "
        "accelerator each one makes the host wait for the device), counted over the steps of one pass (live "
        'teacher); "accelerator": the similarities on their accelerator path (the CPU taken for one).',
        "",
        "| Configuration | reads per step |",
        "|---|---|",
    ]
    lines += [f"| {name} | {', '.join(map(str, r['reads_per_step']))} |" for name, r in syncs.items()]
    vkd, fsd = (syncs.get(f"fsdkit-{m} (accelerator)", {}).get("reads_per_step") for m in ("vkd", "fsd"))
    if vkd and fsd:
        lines += [
            "",
            f"- FSD's structure terms add **{max(fsd) - max(vkd)}** reads per step on the accelerator path "
            "(target 6: none); VKD's are transformers' two attention-mask checks (one per model) and the trainer's "
            "one finiteness check of the loss.",
        ]
    return lines


# ------------------------------------------------------------------------------------------------ FSD's floor
#: what the floor part times beside VKD's and FSD's training steps, per batch (see :class:`FloorWork`)
FLOOR_WORK = ("terms", "products", "teacher_products", "centroid_products", "optimizer")
#: the training steps the floor part times in the same rounds, so that its bound and the measured ratio share them
FLOOR_STEPS = ("fsdkit-vkd", "fsdkit-fsd", "fsdkit-vkd-cache", "fsdkit-fsd-cache")


def floor_config(work: str) -> str:
    return "floor-" + work.replace("_", "-")


class FloorWork:
    """What FSD's terms cost per step beside VKD's, against the least any implementation must compute.

    On a batch's shapes (B × L from its attention mask, random features of the student's and the teacher's width 384
    made once per batch; K = 100 centroids of flattened rows of 128 tokens), one call of:

    - ``terms``: fsdkit's intra + local + memory terms (as the training part's FSD configuration builds them), forward
      and backward;
    - ``products``: only the matrix products those terms need, forward and backward — intra: the student's and the
      teacher's token Grams per sample and the student's Gram backward; local: the same for the batch's flattened
      rows; memory: the student rows and the teacher rows against their memories, ``M_S M_Sᵀ``, and the backward
      ``Ḋ M_S``, ``Ḋᵀ s``, ``(Ġ + Ġᵀ) M_S``;
    - ``teacher_products``: the part of ``products`` that depends on one example alone and so could be read from a
      teacher cache (the teacher's token Grams, its rows against ``M_T``);
    - ``centroid_products``: the part of ``products`` that the memory's centroid structure needs whatever the batch,
      ``M_S M_Sᵀ`` and ``(Ġ + Ġᵀ) M_S`` (each 2·K²·d flops);
    - ``optimizer``: the extra fused AdamW update of the student memory (K × 49,152), the only parameter FSD adds.

    A step of FSD cannot take less than VKD's step plus ``products`` (less ``teacher_products`` with a cache) plus
    ``optimizer``."""

    def __init__(self, seed: int = 0):
        from transformers import BertConfig

        from fsdkit.data import get_task
        from fsdkit.losses import TermContext, build_term
        from fsdkit.memory import TeacherMemory

        self.width, k, d = 384, 100, MAX_LENGTH * 384
        self.generator = torch.Generator().manual_seed(seed)
        config = lambda layers: BertConfig(hidden_size=self.width, num_hidden_layers=layers, num_attention_heads=12)  # noqa: E731
        ctx = TermContext(config(3), config(6), get_task("mrpc"), max_length=MAX_LENGTH)
        memory = TeacherMemory(
            torch.randn(k, d, generator=self.generator) * 0.5,
            {"layer": "penultimate", "pooling": "flatten", "max_length": MAX_LENGTH, "hidden_size": self.width},
        )
        self.terms = [(spec.weight, build_term(spec.name, ctx, spec.options)) for spec in fsd_term_specs(memory)]
        self.student_memory = self.terms[2][1].student_memory
        self.m_s, self.m_t = self.student_memory.detach(), memory.centroids
        self.parameter = torch.nn.Parameter(self.m_s.clone())
        self.parameter.grad = torch.randn_like(self.parameter)
        self.adamw = torch.optim.AdamW([self.parameter], lr=0.1, weight_decay=0.0, fused=True)
        self._inputs: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def inputs(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's mask and its student and teacher features (zero at padding), made on first sight."""
        key = (tuple(mask.shape), mask.numpy().tobytes())
        if key not in self._inputs:
            b, length = mask.shape
            s, t = (torch.randn(b, length, self.width, generator=self.generator) * mask[..., None] for _ in range(2))
            self._inputs[key] = (mask, s, t)
        return self._inputs[key]

    def step(self, work: str, mask: torch.Tensor) -> None:
        if work == "terms":
            self._terms(mask)
        elif work == "optimizer":
            self.adamw.step()
        elif work == "centroid_products":
            gram = self.m_s @ self.m_s.T
            (gram + gram.T) @ self.m_s
        else:
            self._products(mask, teacher_side=True, student_side=work == "products")

    def _terms(self, mask: torch.Tensor) -> None:
        from fsdkit.features import Features

        mask, s, t = self.inputs(mask)
        h = s.clone().requires_grad_(True)
        student = Features(torch.zeros(len(mask), 2), mask, hidden_states=(h,) * 4)
        teacher = Features(torch.zeros(len(mask), 2), mask, hidden_states=(t,) * 7)
        sum(w * term(student, teacher, {}) for w, term in self.terms).backward()
        self.student_memory.grad = None  # as after an optimizer step: the next backward writes it, adds nothing

    def _products(self, mask: torch.Tensor, teacher_side: bool, student_side: bool) -> None:
        mask, s, t = self.inputs(mask)
        m_s, m_t = self.m_s, self.m_t
        b, length, _ = s.shape
        w = length * self.width
        rows_s, rows_t = s.reshape(b, w), t.reshape(b, w)
        if teacher_side:
            torch.bmm(t, t.mT), rows_t @ rows_t.T, rows_t @ m_t[:, :w].T
        if student_side:
            gram = torch.bmm(s, s.mT)
            torch.bmm(gram + gram.mT, s)  # intra: the Gram and its backward
            batch_gram = rows_s @ rows_s.T
            (batch_gram + batch_gram.T) @ rows_s  # local
            dots, centroid_gram = rows_s @ m_s[:, :w].T, m_s @ m_s.T  # memory, forward
            dots @ m_s[:, :w], dots.T @ rows_s, (centroid_gram + centroid_gram.T) @ m_s  # and backward


def floor_worker(work: str, timed: TimedBatches) -> dict[str, Any]:
    """A "training loop" whose step is one of :class:`FloorWork`'s measures for the batch it is given."""
    floor = FloorWork()
    for batch in timed:
        floor.step(work, batch["attention_mask"])
    return {"rss_before_mb": rss_mb()}


def floor_bench(args) -> dict[str, Any]:
    """FSD's floor timed in the same rounds as VKD's and FSD's training steps (:func:`run_paired`: one process,
    each configuration one pass over the same batches per round, the order rotated), so that the bound on
    FSD / VKD and the measured ratio are taken within each round, from one run."""
    encoded, collator = mrpc_rows(args.glue_dir, args.n_batches * BATCH_SIZE)
    lengths = [b["attention_mask"].shape[1] for b in fixed_batches(encoded, collator, args.n_batches)]
    configs = [*FLOOR_STEPS, *map(floor_config, FLOOR_WORK)]
    paired = _worker(args, "paired:" + ",".join(configs), "--reps", str(args.floor_reps))
    return {"n_batches": args.n_batches, "reps": args.floor_reps, "padded_lengths": lengths, "paired": paired}


def floor_rounds(floor: dict[str, Any]) -> dict[str, Any] | None:
    """Per step (ms, the median pass over the batches) of each floor measure and training step, and per teacher the
    medians over the rounds of: the bound ``t_VKD / (t_VKD + products [− teacher products with a cache] + optimizer)``,
    the ratio fsdkit's terms would allow ``t_VKD / (t_VKD + terms + optimizer)``, and the measured ``t_VKD / t_FSD``."""
    configs = floor.get("paired", {}).get("configs", {})
    names = [*FLOOR_STEPS, *map(floor_config, FLOOR_WORK)]
    if any(configs.get(name, {}).get("status") != "ok" for name in names):
        return None
    passes = {name: configs[name]["pass_seconds"] for name in names}
    work = {w: passes[floor_config(w)] for w in FLOOR_WORK}
    per_step = lambda seconds: 1000 * statistics.median(seconds) / floor["n_batches"]  # noqa: E731
    out: dict[str, Any] = {
        "ms_per_step": {**{w: per_step(work[w]) for w in FLOOR_WORK}, **{c: per_step(passes[c]) for c in FLOOR_STEPS}},
        "teachers": {},
    }
    for teacher, suffix in (("live", ""), ("cache", "-cache")):
        vkd, fsd = passes["fsdkit-vkd" + suffix], passes["fsdkit-fsd" + suffix]
        rounds = range(len(vkd))
        least = [
            work["products"][r] - (work["teacher_products"][r] if suffix else 0) + work["optimizer"][r] for r in rounds
        ]
        out["teachers"][teacher] = {
            "bound": statistics.median(vkd[r] / (vkd[r] + least[r]) for r in rounds),
            "as_run": statistics.median(vkd[r] / (vkd[r] + work["terms"][r] + work["optimizer"][r]) for r in rounds),
            "measured": statistics.median(vkd[r] / fsd[r] for r in rounds),
            "measured_range": [min(vkd[r] / fsd[r] for r in rounds), max(vkd[r] / fsd[r] for r in rounds)],
        }
    return out


def floor_section(floor: dict[str, Any] | None) -> list[str]:
    if not floor:
        return ["Not measured (see `--parts`)."]
    rounds = floor_rounds(floor) if "paired" in floor else None
    if rounds is None:
        failed = {
            c: r.get("error", "")
            for c, r in floor.get("paired", {}).get("configs", {}).items()
            if r.get("status") != "ok"
        } or {"(all)": floor.get("paired", {}).get("error", "not in this form")}
        return [
            "Not measured in this form (re-run `--parts floor`): "
            + "; ".join(f"{c}: {e.splitlines()[0][:120] if e else '?'}" for c, e in failed.items())
        ]
    ms = rounds["ms_per_step"]
    lines = [
        f"One process, {floor['reps']} rounds; in each round every configuration below makes one pass over the "
        f"training part's {floor['n_batches']} batches (padded lengths {', '.join(map(str, floor['padded_lengths']))}), "
        "the order rotated by one place each round — fsdkit's VKD and FSD training steps (live teacher and "
        "teacher-output cache) and, on each batch's shapes, what FSD's terms compute. Per step, the median pass "
        "over the batches:",
        "",
        "| What | ms per step |",
        "|---|---|",
        f"| fsdkit VKD step, live teacher | {ms['fsdkit-vkd']:.0f} |",
        f"| fsdkit FSD step, live teacher | {ms['fsdkit-fsd']:.0f} |",
        f"| fsdkit VKD step, teacher-output cache | {ms['fsdkit-vkd-cache']:.0f} |",
        f"| fsdkit FSD step, teacher-output cache | {ms['fsdkit-fsd-cache']:.0f} |",
        f"| fsdkit's FSD terms (intra + local + memory), forward + backward | {ms['terms']:.1f} |",
        f"| only the matrix products they need, forward + backward | {ms['products']:.1f} |",
        f"| of which the teacher's per-example products (cacheable) | {ms['teacher_products']:.1f} |",
        f"| of which the centroid structure's M_S M_Sᵀ and (Ġ + Ġᵀ) M_S (any batch) | "
        f"{ms.get('centroid_products', float('nan')):.1f} |",
        f"| the student memory's extra AdamW update | {ms['optimizer']:.1f} |",
        "",
        "FSD / VKD, each the median over the rounds of the ratio within a round (the bound: VKD's step over VKD's "
        "step plus the products and the update; a cache spares the teacher's per-example products; general matrix "
        "products — a symmetric rank-k product, which torch does not expose, would halve the forward of each "
        "self-Gram such as M_S M_Sᵀ):",
        "",
        "| teacher | FSD / VKD at most | with fsdkit's terms as they run | measured (range over rounds) | target |",
        "|---|---|---|---|---|",
    ]
    for teacher, label, target in (("live", "live teacher", 0.95), ("cache", "teacher-output cache", 0.97)):
        r = rounds["teachers"][teacher]
        low, high = r["measured_range"]
        lines.append(
            f"| {label} | {r['bound']:.3f} | {r['as_run']:.3f} | {r['measured']:.3f} ({low:.2f}–{high:.2f}) | "
            f"≥ {target} |"
        )
    lines.append("")
    for teacher, label, target in (("live", "live teacher", 0.95), ("cache", "teacher-output cache", 0.97)):
        step = ms["fsdkit-vkd" + ("-cache" if teacher == "cache" else "")]
        budget = step * (1 / target - 1)
        least = ms["products"] - (ms["teacher_products"] if teacher == "cache" else 0) + ms["optimizer"]
        lines.append(
            f"- {label}: FSD / VKD ≥ {target} leaves FSD {budget:.1f} ms per step beyond VKD's {step:.0f}; the "
            f"products and the update alone take {least:.1f}"
            + (
                f", the centroid structure's two products {ms['centroid_products']:.1f}"
                if "centroid_products" in ms
                else ""
            )
            + f": {'within' if least <= budget else 'beyond'} it"
        )
    return lines


# ------------------------------------------------------------------------------------------------ host memory
#: the steps the host-memory part compares (cached: the teacher's forward, which allocates alike in both, left out)
HOST_MEMORY_CONFIGS = ("fsdkit-vkd-cache", "fsdkit-fsd-cache")
#: each configuration's processes in this order (a drift of the machine's speed over the minutes reaches both alike)
HOST_MEMORY_ORDER = ("reuse", "system", "system", "reuse")


def host_memory_bench(args) -> dict[str, Any]:
    """fsdkit's cached VKD and FSD steps, each alone in its own process (:func:`run_worker`), with freed host memory
    kept for the next step as fsdkit's runs train (``reuse``) and with glibc's allocator as it comes (``system``: a
    process that never calls mallopt, its thresholds dynamic), in the order of :data:`HOST_MEMORY_ORDER`."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for config in HOST_MEMORY_CONFIGS:
        for mode in HOST_MEMORY_ORDER:
            result = _worker(
                argparse.Namespace(**{**vars(args), "host_memory": mode}), config, "--reps", str(args.reps)
            )
            runs.setdefault(config, {}).setdefault(mode, []).append(result)
            print(
                json.dumps(
                    {"host_memory": config, "mode": mode, "result": {k: v for k, v in result.items() if k != "error"}}
                ),
                flush=True,
            )
    return {"n_batches": args.n_batches, "reps": args.reps, "order": list(HOST_MEMORY_ORDER), "runs": runs}


def host_memory_section(result: dict[str, Any] | None) -> list[str]:
    if not result or "runs" not in result:
        return ["Not measured in this form (re-run `--parts host_memory`)."]
    lines = [
        f"Each configuration alone in its own process, {result['reps']} timed passes over {result['n_batches']} "
        f"batches after the warm-up, four processes per configuration in the order {', '.join(result['order'])}. "
        "'kept': freed host memory kept for the next step, as fsdkit's runs do (`fsdkit.training.host_memory`, on "
        "by default; `--no-reuse-host-memory` turns it off); 'glibc': the allocator as it comes (large tensors "
        "mapped afresh and unmapped at every step, the heap trimmed). examples/s: the mean of the processes' medians; "
        "page faults: the process's minor faults per step over the timed passes.",
        "",
        "| Configuration | kept: examples/s | glibc: examples/s | kept / glibc | kept: page faults per step | "
        "glibc: page faults per step |",
        "|---|---|---|---|---|---|",
    ]
    speed = {}
    for config, modes in result["runs"].items():
        ok = {mode: [r for r in runs if r.get("status") == "ok"] for mode, runs in modes.items()}
        if not all(ok.get(mode) for mode in ("reuse", "system")):
            error = next((r.get("error", "?") for runs in modes.values() for r in runs if r.get("status") != "ok"), "?")
            lines.append(f"| {config} | unavailable: {error.splitlines()[0][:120]} | – | – | – | – |")
            continue
        mean = lambda key, mode: statistics.mean(r[key] for r in ok[mode])  # noqa: E731
        speed[config] = {mode: mean("examples_per_second", mode) for mode in ("reuse", "system")}
        lines.append(
            f"| {config} | {speed[config]['reuse']:.1f} | {speed[config]['system']:.1f} | "
            f"{speed[config]['reuse'] / speed[config]['system']:.2f} | "
            f"{mean('minor_faults_per_step', 'reuse'):.0f} | {mean('minor_faults_per_step', 'system'):.0f} |"
        )
    if len(speed) == 2:
        vkd, fsd = speed["fsdkit-vkd-cache"], speed["fsdkit-fsd-cache"]
        lines += [
            "",
            f"- FSD / VKD with the teacher-output cache (separate processes, so less exact than the floor "
            f"part's): memory kept {fsd['reuse'] / vkd['reuse']:.2f}, glibc {fsd['system'] / vkd['system']:.2f}",
        ]
    return lines


#: the measurements, by the name of their section in results.json
MEASURE = {
    "training": train_bench,
    "syncs": sync_bench,
    "floor": floor_bench,
    "host_memory": host_memory_bench,
    "cka": lambda args: cka_bench(reps=args.cka_reps),
    "kmeans": lambda args: kmeans_bench(args.glue_dir, args.kmeans_rows, args.kmeans_k, reps=1),
}
PARTS = tuple(MEASURE)


if __name__ == "__main__":
    sys.exit(main())
