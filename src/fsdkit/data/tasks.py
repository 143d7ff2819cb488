"""The task registry: label space, text columns, metrics and evaluation splits of every supported task.

Label names are listed in the order of the Hugging Face ``nyu-mll/glue`` ``ClassLabel`` features, so a
task read from a local GLUE folder and the same task read from the hub give identical label ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsdkit.errors import ConfigError, DataError

SINGLE = ("sentence",)
PAIR = ("sentence1", "sentence2")


@dataclass(frozen=True)
class TaskSpec:
    """What fsdkit knows about one task.

    Attributes:
        name: canonical name (``cola``, ``sst2``, ..., ``sick``, ``rt-sentiment``).
        glue_folder: the task's folder name in a GLUE-layout data folder (``SST-2``, ``STS-B``, ...).
        text_columns: ``("sentence",)`` or ``("sentence1", "sentence2")``: the text columns of loaded data.
        labels: label names, index = label id; ``None`` for the regression task (STS-B).
        metric_names: the keys :func:`fsdkit.data.compute_metrics` returns for this task.
        main_metric: the metric used to rank models / select checkpoints.
        eval_splits: the evaluation split names (``("validation",)``; MNLI has matched and mismatched).
        hub_config: the ``nyu-mll/glue`` config name, or ``None`` when the task has no hub source.
    """

    name: str
    glue_folder: str
    text_columns: tuple[str, ...]
    labels: tuple[str, ...] | None
    metric_names: tuple[str, ...]
    main_metric: str
    eval_splits: tuple[str, ...] = ("validation",)
    hub_config: str | None = None

    @property
    def is_regression(self) -> bool:
        """True for a task with a real-valued target (STS-B)."""
        return self.labels is None

    @property
    def num_labels(self) -> int:
        """Size of the model's output layer: the number of classes, or 1 for regression."""
        return 1 if self.labels is None else len(self.labels)

    def metric(self, name: str | None, option: str = "--metric") -> str:
        """``name`` checked against :attr:`metric_names`, or :attr:`main_metric` when ``name`` is ``None``."""
        if name is None:
            return self.main_metric
        if name not in self.metric_names:
            raise ConfigError(f"{option} {name!r} is not a metric of {self.name} ({', '.join(self.metric_names)})")
        return name


_ACC = ("accuracy",)
_ACC_F1 = ("accuracy", "f1")

_SPECS = (
    TaskSpec("cola", "CoLA", SINGLE, ("unacceptable", "acceptable"), ("mcc",), "mcc", hub_config="cola"),
    TaskSpec("sst2", "SST-2", SINGLE, ("negative", "positive"), _ACC, "accuracy", hub_config="sst2"),
    TaskSpec("mrpc", "MRPC", PAIR, ("not_equivalent", "equivalent"), _ACC_F1, "f1", hub_config="mrpc"),
    TaskSpec("qqp", "QQP", PAIR, ("not_duplicate", "duplicate"), _ACC_F1, "f1", hub_config="qqp"),
    TaskSpec("stsb", "STS-B", PAIR, None, ("pearson", "spearman"), "pearson", hub_config="stsb"),
    TaskSpec(
        "mnli",
        "MNLI",
        PAIR,
        ("entailment", "neutral", "contradiction"),
        _ACC,
        "accuracy",
        eval_splits=("validation_matched", "validation_mismatched"),
        hub_config="mnli",
    ),
    TaskSpec("qnli", "QNLI", PAIR, ("entailment", "not_entailment"), _ACC, "accuracy", hub_config="qnli"),
    TaskSpec("rte", "RTE", PAIR, ("entailment", "not_entailment"), _ACC, "accuracy", hub_config="rte"),
    TaskSpec("wnli", "WNLI", PAIR, ("not_entailment", "entailment"), _ACC, "accuracy", hub_config="wnli"),
    TaskSpec("sick", "SICK", PAIR, ("entailment", "neutral", "contradiction"), _ACC, "accuracy"),
    TaskSpec("rt-sentiment", "rt-sentiment", SINGLE, ("negative", "positive"), _ACC, "accuracy"),
)

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}
"""Canonical task name -> :class:`TaskSpec`, in GLUE order followed by ``sick`` and ``rt-sentiment``."""


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


_BY_KEY = {_normalise(spec.name): spec for spec in _SPECS} | {"multinli": TASKS["mnli"]}


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Return the :class:`TaskSpec` of ``name``.

    Matching ignores case, ``-`` and ``_``: ``"SST-2"``, ``"sst2"``, ``"STS-B"``, ``"rt_sentiment"`` all
    work. A ``TaskSpec`` is returned unchanged. An unknown name raises :class:`DataError` listing the
    known tasks.
    """
    if isinstance(name, TaskSpec):
        return name
    spec = _BY_KEY.get(_normalise(str(name)))
    if spec is None:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return spec


def task_features(task: str | TaskSpec):
    """The ``datasets.Features`` of loaded task data: string text columns + ``label``.

    ``label`` is a ``ClassLabel`` with the task's label names (so ids and names travel with the data),
    or ``float32`` for regression — the same features as ``nyu-mll/glue`` on the hub.
    """
    from datasets import ClassLabel, Features, Value

    spec = get_task(task)
    columns = {column: Value("string") for column in spec.text_columns}
    columns["label"] = Value("float32") if spec.labels is None else ClassLabel(names=list(spec.labels))
    return Features(columns)
