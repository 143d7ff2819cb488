"""What every part of the speed suite shares: its settings (threads, batch size, length, the KD recipe), the
fixed MRPC batches and the models, the batches that time a training loop (alone, or taking turns with others in
one process), FSD's terms, and small helpers.
"""

from __future__ import annotations

import os
import resource
import threading
import time

import torch

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


def peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``). Not ``ru_maxrss``, which Linux carries from the parent into a child
    across fork and exec, so a worker's figure would be its parent's peak whenever that is the larger."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def fsd_term_specs(memory) -> list:
    """The FSD configuration's structure terms (intra, local, and the memory term over ``memory``), as TermSpecs."""
    from fsdkit.methods import TermSpec

    return [
        TermSpec("structure", 30.0, {"view": "intra"}, "intra"),
        TermSpec("structure", 30.0, {"view": "local"}, "local"),
        TermSpec("memory", 1e-3, {"memory": memory}, "global"),
    ]


def fmt_ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "–"
