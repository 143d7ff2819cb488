"""The run record: ``fsdkit_run.json`` in every training output folder (its config, terms, timings, metrics, curve,
versions), written by :func:`fsdkit.training.run.distill` / ``finetune`` and read by the analyses, the model card,
the demo, ``fsdkit predict`` (a model's text columns) and the benchmarks — one file name, one type
(:class:`RunRecord`), one reader."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fsdkit.artifacts import read_json_object

#: the run record's file name in a training output folder
RUN_RECORD = "fsdkit_run.json"

#: the field metadata that marks a field one command's record alone holds (absent from the others' JSON)
_COMMAND = "command"


def _only(command: str) -> Any:
    """A field that only ``command``'s record holds: None elsewhere, and then left out of the JSON."""
    return field(default=None, metadata={_COMMAND: command})


@dataclass(kw_only=True)
class RunRecord:
    """What one ``fsdkit finetune`` / ``fsdkit distill`` run was and gave, as ``fsdkit_run.json`` holds it.

    The JSON object has one key per field, in field order (a fine-tune's record has ``model`` and no teacher or
    student keys, a distillation's the reverse), then the keys of :attr:`extra`. A record read from an older
    file keeps the keys it does not know in :attr:`extra` (written back after the known ones) and reads a key
    it lacks as None.
    """

    command: str  # "finetune" or "distill"
    task: str
    method: str  # the distillation method; "finetune" for a fine-tune
    seed: int
    config: dict[str, Any]  # every option of the run (``fsdkit.config.config_to_dict``)
    terms: list[dict[str, Any]]  # the loss terms: [{"label", "name", "weight"}]
    metrics: dict[str, dict[str, float]]  # {split: {metric: value}} after training
    main_metric: str
    curve: list[dict[str, Any]]  # the per-epoch evaluation points
    losses_by_epoch: list[dict[str, float]]  # each logged loss term and part, mean per epoch
    train_runtime: float | None
    train_samples_per_second: float | None
    train_examples: int
    global_steps: int
    final_train_loss: float | None
    eval_runtime: float
    parameters: int
    num_layers: int | None
    wall_time: float  # seconds from the start of training to the record
    teacher_source: str | None  # "live", "cache <key>" (the teacher-output cache), or None without a teacher
    fsdkit_version: str
    command_line: str  # the ``fsdkit ...`` line that repeats the run
    git_commit: str | None
    torch_version: str
    model: str | None = _only("finetune")  # the fine-tuned model
    teacher: str | None = _only("distill")  # None for a method without a teacher
    student_base: str | None = _only("distill")  # the student's source folder, or "config" for a fresh student
    student_init: str | None = _only("distill")  # "pretrained", "teacher" or "config"
    student_layers: list[int] | None = _only("distill")
    student_shape: dict[str, int] | None = _only("distill")  # --student-config's shape of a fresh student
    extra: dict[str, Any] = field(default_factory=dict)  # keys of an older record that no field names

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every field this command's record holds, in field order, then :attr:`extra`."""
        data = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.metadata.get(_COMMAND) in (None, self.command) or value is not None:
                data[f.name] = value
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """The record of a JSON object (keys it lacks read as None, keys no field names go to :attr:`extra`)."""
        names = {f.name for f in fields(cls)} - {"extra"}
        given: dict[str, Any] = {name: data.get(name) for name in names}
        return cls(
            **given,
            extra={key: value for key, value in data.items() if key not in names},
        )

    def to_json(self) -> str:
        """The text of ``fsdkit_run.json``."""
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        """The record of ``fsdkit_run.json``'s text."""
        return cls.from_dict(json.loads(text))

    def write(self, folder: str | Path) -> Path:
        """Write ``FOLDER/fsdkit_run.json``; returns its path."""
        path = Path(folder) / RUN_RECORD
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, folder: str | Path) -> RunRecord | None:
        """The run record of a training output folder, or None when it is no folder or has no record."""
        data = read_run_record(folder) if Path(folder).is_dir() else None
        return None if data is None else cls.from_dict(data)


def read_run_record(folder: str | Path) -> dict[str, Any] | None:
    """The run record of a training output folder as its JSON object, or None when the folder has none
    (:meth:`RunRecord.read` gives it typed)."""
    path = Path(folder) / RUN_RECORD
    return read_json_object(path) if path.is_file() else None
