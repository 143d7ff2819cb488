"""Evaluation after every epoch: the learning curve of a run, kept in its log history (so a resumed run keeps it).

With ``--eval-strategy epoch`` the student is scored on the evaluation split (the held-out ``holdout`` split
when ``--holdout-fraction`` carves one from the training set, else the task's first evaluation split) at the
end of every epoch. Each point is appended to ``trainer.state.log_history`` as
``{"epoch", "step", "eval_split", "eval_<metric>": value, ...}``; the run record's ``curve`` lists them. A
``report(point)`` function (the sweep's pruner) is called with each point and may stop the run by raising.
:func:`losses_by_epoch` summarises the logged training losses the same way (every term and part, per epoch).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from fsdkit.evaluation import evaluate_model

CURVE_KEY = "eval_split"


def curve(log_history: list[dict]) -> list[dict]:
    """The per-epoch evaluation points of a log history."""
    return [entry for entry in log_history if CURVE_KEY in entry]


def losses_by_epoch(log_history: list[dict]) -> list[dict]:
    """The mean of every logged training loss (``loss``, ``loss_<label>``, ``loss_<label>_<part>``) over each epoch's
    logging steps: ``[{"epoch": 1, "loss": …, "loss_global_distance": …}, …]`` (an entry logged at epoch 1.2 counts
    towards epoch 2), so that a run record shows each term and part rising or falling without its log file."""
    sums: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for entry in log_history:
        if "epoch" not in entry or CURVE_KEY in entry:
            continue
        epoch = max(1, math.ceil(entry["epoch"] - 1e-9))
        for key, value in entry.items():
            if key.startswith("loss") and isinstance(value, (int, float)):
                sums[epoch][key].append(float(value))
    return [{"epoch": epoch, **{key: sum(v) / len(v) for key, v in sums[epoch].items()}} for epoch in sorted(sums)]


class EpochEvaluation(TrainerCallback):
    """Scores ``model`` on ``data[split]`` at every epoch end (main process) and records the point."""

    def __init__(
        self,
        model,
        tokenizer,
        task,
        data,
        split: str,
        *,
        batch_size: int,
        max_length: int,
        max_eval_samples: int | None,
        report: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.model, self.tokenizer, self.task, self.data, self.split = model, tokenizer, task, data, split
        self.options: dict[str, Any] = {
            "batch_size": batch_size,
            "max_length": max_length,
            "max_eval_samples": max_eval_samples,
        }
        self.report = report
        self._save_deferred = False

    def on_step_end(self, args, state, control, **kwargs):
        """A checkpoint due on an epoch's last step waits for that epoch's evaluation (:meth:`on_epoch_end` asks for
        it), as transformers' own epoch checkpoints do: it then holds the epoch's point, and the RNG state it keeps is
        the one the next epoch starts from (the evaluation draws from the RNG), so a run resumed from it goes on
        exactly as the uninterrupted run."""
        if control.should_save and state.epoch is not None and state.epoch == round(state.epoch):
            control.should_save = False
            self._save_deferred = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._score(state)
        if self._save_deferred:  # every process saves (its own RNG state)
            control.should_save, self._save_deferred = True, False
        return control

    def _score(self, state) -> None:
        was_training = self.model.training
        metrics = evaluate_model(
            self.model, self.tokenizer, self.task, self.data, splits=[self.split], progress=False, **self.options
        )[self.split]
        self.model.train(was_training)
        point = {
            "epoch": round(state.epoch, 4),
            "step": state.global_step,
            CURVE_KEY: self.split,
            **{f"eval_{name}": value for name, value in metrics.items()},
        }
        state.log_history.append(point)
        if self.report is not None:
            self.report(point)
