"""Typed run configurations, shared by the CLI flags and YAML/JSON config files.

A config file is a mapping whose keys are the command's flag names (``data-dir`` or ``data_dir``);
flags given on the command line override it. Unknown keys and wrongly typed values raise
:class:`~fsdkit.errors.ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fsdkit.coercion import coerce_value, parse_loss_flag
from fsdkit.errors import ConfigError, decode_utf8, short_repr
from fsdkit.training.presets import declared_options as preset_options


def option(default, help: str, **kwargs):
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class DataOptions:
    """Your own data instead of a registry task (``run_glue.py``'s flags; see fsdkit.data.files)."""

    train_file: str | None = option(
        None, "your training data: a .csv, .tsv, .json, .jsonl or .parquet file (instead of --task)"
    )
    validation_file: str | None = option(None, "your validation data (same format and columns)")
    test_file: str | None = option(None, "your test data (labels optional): what `fsdkit predict --split test` reads")
    dataset: str | None = option(None, "a datasets.load_dataset name or local folder (instead of --task / files)")
    dataset_config: str | None = option(None, "the dataset's configuration name")
    train_split: str = option("train", "--dataset split used for training")
    validation_split: str = option("validation", "--dataset split used for validation")
    test_split: str = option("test", "--dataset split used for prediction")
    text_columns: list[str] | None = option(
        None, "text column(s) of your data: a or a,b (default sentence1,sentence2, sentence or text)"
    )
    label_column: str = option("label", "label column of your data (strings, integers, or floats for regression)")
    task_type: str | None = option(None, "classification or regression (default: regression for a float label column)")


@dataclass
class RunConfig(DataOptions):
    """Options every training command shares (names follow transformers' TrainingArguments where they exist)."""

    task: str = option("rt-sentiment", "task name (GLUE task, sick, or the offline default rt-sentiment)")
    data_dir: str | None = option(None, "GLUE folder in the standard layout; without it GLUE is loaded from the hub")
    output_dir: str | None = option(None, "where the model folder, checkpoints and run record are written")
    seed: int = option(42, "random seed (model init, data order, dropout)")
    epochs: float = option(3.0, "training epochs (ignored when --max-steps > 0)")
    max_steps: int = option(-1, "stop after this many optimizer steps (overrides --epochs)")
    learning_rate: float = option(5e-5, "peak learning rate (AdamW, linear decay)")
    batch_size: int = option(32, "training batch size per device")
    eval_batch_size: int = option(128, "evaluation batch size")
    max_length: int = option(128, "truncate inputs to this many tokens (padding is dynamic)")
    warmup_ratio: float = option(0.1, "fraction of steps with linear warm-up")
    weight_decay: float = option(0.01, "AdamW weight decay")
    gradient_accumulation_steps: int = option(1, "accumulate gradients over this many batches")
    logging_steps: int = option(50, "log losses every N steps")
    save_steps: int = option(500, "checkpoint every N steps (for --resume)")
    save_total_limit: int = option(2, "keep at most this many checkpoints")
    resume: bool = option(False, "resume from the last checkpoint in OUTPUT_DIR/checkpoints")
    max_train_samples: int | None = option(None, "use only the first N training examples")
    max_eval_samples: int | None = option(None, "use only the first N evaluation examples")
    group_by_length: bool = option(False, "batch examples of similar length together (less padding, faster)")
    eval_strategy: str = option(
        "no",
        "'epoch': score the student on the evaluation split after every epoch (the run "
        "record's curve); 'no': only at the end",
    )
    holdout_fraction: float | None = option(
        None,
        "carve this fraction of the training set (fixed seed 0) as the 'holdout' split: per-epoch evaluation and "
        "sweeps select on it, the task's dev split is only reported",
    )
    bf16: bool = option(
        False, "bfloat16 mixed precision (autocast of the forward passes; losses in float32; CPU or GPU)"
    )
    fp16: bool = option(False, "float16 mixed precision with loss scaling (CUDA GPUs only; losses in float32)")
    report_to: str = option("none", "tracking integrations for transformers (none, tensorboard, wandb, ...)")
    reuse_host_memory: bool = option(
        True,
        "keep host memory freed during the run for the next step (glibc malloc: no mmap'd chunks, no trimming) "
        "instead of faulting fresh pages in at every step (CPU steps 2-17 % faster, most on a busy machine); numerics "
        "unchanged",
    )
    progress: bool = option(True, "show progress bars")
    cache_dir: str | None = option(None, "cache folder for prepared data (default ~/.cache/fsdkit)")


@dataclass
class FinetuneConfig(RunConfig):
    """``fsdkit finetune``: fine-tune a (teacher) model on a task."""

    model: str = option("minilm", "pretrained model folder or hub name ('minilm' = packaged all-MiniLM-L6-v2)")


@dataclass
class DistillConfig(RunConfig):
    """``fsdkit distill``: train a student from a fine-tuned teacher with a distillation method."""

    teacher: str | None = option(None, "fine-tuned teacher model folder (fsdkit finetune output)")
    transfer_file: str | None = option(
        None,
        "unlabelled texts (same format and text columns as the training data; a "
        "label column is ignored): the distillation terms train on them too, the "
        "task loss on the labelled rows only",
    )
    student: str = option(
        "minilm",
        "checkpoint the student's layers are taken from: a pretrained model, or 'teacher' "
        "(chosen layers and the classification head of the fine-tuned teacher)",
    )
    student_config: str | None = option(
        None,
        "a fresh student of another shape instead of chosen layers: key=value pairs (hidden_size=256,"
        "num_hidden_layers=4,num_attention_heads=4,intermediate_size=1024) or a JSON file; teacher's tokenizer",
    )
    student_tokenizer: str | None = option(
        None,
        "with --student-config: the student's own tokenizer folder (another vocabulary than the teacher's; "
        "each model then reads its own tokens and only sample-level losses apply)",
    )
    student_layers: int | list[int] = option(
        3, "first k layers (e.g. 3) or an explicit list of 0-based layers (e.g. 0,2,4)"
    )
    method: str = option("vkd", "distillation method (see `fsdkit methods`)")
    alpha: float = option(0.5, "weight of the task loss in vanilla KD; the soft-label KD gets 1 - alpha")
    temperature: float = option(5.0, "softmax temperature of vanilla KD")
    losses: list[dict] | None = option(
        None,
        "extra loss terms: NAME:WEIGHT[:key=value,...], repeatable (config: list of {name, weight, ...options})",
        repeat="loss",
    )
    relation_every: int = option(50, "log relation differences to the teacher every N steps (0 = off)")
    teacher_cache: str | None = option(
        None,
        "folder of teacher-output caches: the teacher runs once per task/data/layers, later runs read its outputs from disk",
    )
    method_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "hidden": True,
            "help": "values of the options the method presets declare (fsdkit.options; e.g. beta_pkd), "
            "given as top-level keys / flags and read as attributes (config.beta_pkd)",
        },
    )

    @classmethod
    def declared_options(cls) -> dict[str, Any]:
        """The method presets' declared options (name → :class:`fsdkit.options.Option`): flags and config keys of
        ``fsdkit distill`` beside the fields above, from the preset registry."""
        return preset_options()

    def replace(self, **changes: Any) -> DistillConfig:
        """A copy with ``changes`` applied, fields and declared options alike (checked as :func:`make_config` does)."""
        return make_config(type(self), config_to_dict(self), **changes)

    def __getattr__(self, name: str) -> Any:
        """A declared method option (``config.beta_pkd``): its given value, else its declared default."""
        if name.startswith("__") or "method_options" not in self.__dict__:
            raise AttributeError(name)
        options = type(self).declared_options()
        if name not in options:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute {name!r}")
        return self.method_options.get(name, options[name].default)


@dataclass
class MemoryConfig(DataOptions):
    """``fsdkit memory build``: k-means memory of a teacher's features over the training set (FSDG stage 1)."""

    teacher: str | None = option(None, "fine-tuned teacher model folder")
    transfer_file: str | None = option(None, "unlabelled texts encoded with the training set (see distill)")
    task: str = option("rt-sentiment", "task whose training set is encoded")
    data_dir: str | None = option(None, "GLUE folder in the standard layout")
    output_dir: str | None = option(None, "folder for memory.safetensors + memory.json")
    n_clusters: int = option(100, "number of centroids K (the paper: 100; 300 for QQP/MNLI)")
    layer: str = option("penultimate", "teacher hidden layer: index or 'penultimate'/'last'")
    pooling: str = option("flatten", "row of a sample: flatten (vec of the padded layer), cls or mean")
    max_length: int = option(128, "tokens per sample (flatten rows are padded/truncated to this)")
    tol: float = option(1e-4, "k-means tolerance (centroid shift relative to the data variance)")
    max_iter: int = option(100, "maximum Lloyd iterations")
    seed: int = option(42, "seed of the k-means++ seeding")
    batch_size: int = option(64, "encoding batch size")
    max_train_samples: int | None = option(None, "use only the first N training examples")
    teacher_cache: str | None = option(
        None,
        "teacher-output cache folder: the rows are read from it (built on first use; a distillation run "
        "with the same --teacher-cache then reads the same teacher pass)",
    )
    progress: bool = option(True, "show progress bars")
    cache_dir: str | None = option(None, "cache folder for prepared data")


@dataclass
class EvaluateConfig(DataOptions):
    """``fsdkit evaluate``: the task's metrics of a model folder on the evaluation split(s)."""

    model: str | None = option(None, "model folder", positional=True)
    task: str = option("rt-sentiment", "task name")
    data_dir: str | None = option(None, "GLUE folder in the standard layout")
    split: str | None = option(None, "evaluation split (default: all of the task's evaluation splits)")
    output: str | None = option(None, "write the metrics as JSON to this file")
    output_dir: str | None = option(None, "write eval_results.json into this folder")
    batch_size: int = option(128, "evaluation batch size")
    max_length: int = option(128, "truncate inputs to this many tokens")
    max_eval_samples: int | None = option(None, "use only the first N examples")
    speed_batches: int = option(
        0,
        "also time inference on this many batches: latency at batch 1 and throughput at "
        "batch 32 (0 = off; the FSD paper's Table 8)",
    )
    seed: int = option(42, "random seed (evaluation is deterministic; kept for a uniform interface)")
    progress: bool = option(True, "show progress bars")
    cache_dir: str | None = option(None, "cache folder for prepared data")


@dataclass
class PredictConfig(DataOptions):
    """``fsdkit predict``: a model's predictions on a task split, as a GLUE submission (.tsv) or JSON Lines / CSV."""

    model: str | None = option(None, "model folder", positional=True)
    input: str | None = option(
        None,
        "texts to predict from the model folder alone: .csv, .tsv, .json, .jsonl, .parquet "
        "or .txt (one text per line); label names from the model, scored when the file "
        "has the label column",
    )
    task: str = option("rt-sentiment", "task name")
    data_dir: str | None = option(None, "GLUE folder in the standard layout (the test split is its test.tsv)")
    split: str = option(
        "test", "split to predict: test (unlabelled test.tsv) or an evaluation split such as validation"
    )
    output: str | None = option(
        None,
        "prediction file: .tsv = GLUE submission (index<TAB>prediction), .jsonl or .csv = "
        "index, label name and class probabilities (or score)",
    )
    batch_size: int = option(128, "prediction batch size")
    max_length: int = option(128, "truncate inputs to this many tokens")
    progress: bool = option(True, "show progress bars")
    cache_dir: str | None = option(None, "cache folder for prepared data")


@dataclass
class ExportConfig(DataOptions):
    """``fsdkit export``: a model folder to ONNX (model.onnx + config + tokenizer + weights), checked with ONNX
    Runtime; with ``--quantize int8`` also an int8 model measured against it on the task's evaluation split."""

    model: str | None = option(None, "model folder", positional=True)
    output_dir: str | None = option(None, "folder for model.onnx, config.json, the tokenizer and the weights")
    opset: int = option(17, "ONNX opset")
    atol: float = option(1e-4, "largest accepted difference between ONNX Runtime's and PyTorch's logits")
    quantize: str | None = option(
        None,
        "also write model.int8.onnx (int8: ONNX Runtime's dynamic or static "
        "quantization, whichever scores better) with a report on the evaluation split",
    )
    quantize_tolerance: float = option(1.0, "points of the main metric the int8 model may lose before it is flagged")
    calibration_samples: int = option(128, "training rows that calibrate static quantization")
    task: str | None = option(
        None, "task whose evaluation split measures --quantize (default: the model's run record's data)"
    )
    data_dir: str | None = option(None, "GLUE folder in the standard layout")
    max_length: int = option(128, "truncate inputs to this many tokens (--quantize's measurement)")


@dataclass
class CompressConfig(DataOptions):
    """``fsdkit compress``: the fastest student of a teacher that meets a quality, latency or size target, found by
    a multi-objective Optuna study (see fsdkit.compress)."""

    teacher: str | None = option(None, "fine-tuned teacher model folder")
    task: str = option("rt-sentiment", "task name (or your own data with the data flags)")
    data_dir: str | None = option(None, "GLUE folder in the standard layout")
    output_dir: str | None = option(None, "trial folders, front.md / front.png / compress.json, the chosen student")
    target_retention: float | None = option(
        0.97, "the student's holdout score as a fraction of the teacher's (none: no quality target)"
    )
    max_latency_ms: float | None = option(None, "largest batch-1 latency (ms, measured on this machine)")
    max_size_mb: float | None = option(None, "largest weight file (MB)")
    trials: int = option(12, "students to train (finished trials of the study; resumable, several workers share it)")
    epochs: float = option(3.0, "epochs of each student")
    max_steps: int = option(-1, "steps of each student instead of epochs (> 0)")
    batch_size: int = option(32, "training batch size")
    max_length: int = option(128, "truncate inputs to this many tokens")
    pretrained: str | None = option(
        None,
        "the pretrained model the teacher was fine-tuned from, for students of its "
        "layers (default: the teacher's run record's --model)",
    )
    quantize: str | None = option(None, "also export the chosen student as int8 (see fsdkit export --quantize)")
    storage: str | None = option(None, "Optuna storage URL (default: sqlite:///OUTPUT_DIR/compress.db)")
    study_name: str = option("fsdkit-compress", "study name in the storage")
    heartbeat: int = option(60, "seconds between a running trial's heartbeats (a silent trial is retried)")
    speed_batches: int = option(20, "batches timed for each latency")
    seed: int = option(42, "seed of the students and the sampler")


@dataclass
class SweepConfig:
    """``fsdkit sweep``: an Optuna study over the options of ``distill`` or ``finetune`` (see docs/sweeps.md).

    Usually given as ``--config SPACE.yaml``; flags override the file (``--trials``, ``--storage``, ...).
    """

    command: str = option("distill", "what each trial runs: distill or finetune")
    base: dict | None = option(
        None, "options every trial shares (the command's option names), e.g. task, data-dir, teacher"
    )
    space: dict | None = option(
        None, "search space: option name -> {type: float|int|categorical, low, high, log, step, choices}"
    )
    fixed_from: dict | None = option(
        None,
        "fix options at another study's best trial: {study: NAME, storage: URL, "
        "options: [names]} (staged tuning; that study must have finished)",
    )
    metric: str | None = option(None, "metric to optimise (default: the task's main metric)")
    direction: str = option("maximize", "maximize or minimize the metric")
    trials: int = option(10, "finished trials (complete or pruned) the study should have; several workers share them")
    storage: str = option(
        "sqlite:///fsdkit-study.db", "Optuna storage URL (sqlite:///FILE, postgresql://..., any RDB URL)"
    )
    study_name: str = option("fsdkit-sweep", "study name in the storage (several workers on one name share the study)")
    output_dir: str | None = option(None, "trial run folders (trial-N/) and the summary (summary.json, PNG plots)")
    seed: int = option(0, "seed of the TPE sampler (a worker joining or resuming a study adds its process id)")
    pruner: str = option("median", "prune on the per-epoch curve: median (MedianPruner) or none")
    startup_trials: int = option(
        10,
        "trials drawn at random before TPE models the space (Optuna's 10); the median "
        "pruner prunes once as many have completed, never on a trial's first or last "
        "evaluation",
    )
    heartbeat: int = option(
        60,
        "seconds between a running trial's heartbeats; a trial silent for 3 heartbeats (a "
        "killed worker) is marked failed and retried with the same parameters",
    )


@dataclass
class AnalyzeConfig(DataOptions):
    """``fsdkit analyze``: restoration rate, CKA heat maps, relation differences and complexity in one report."""

    task: str = option("rt-sentiment", "task name")
    teacher: str | None = option(None, "fine-tuned teacher model folder (the reference)")
    models: list[str] | None = option(None, "models to compare as NAME=DIR (several)", nargs="+")
    data_dir: str | None = option(None, "GLUE folder in the standard layout")
    output_dir: str | None = option(None, "report folder (report.html, report.md, results.json, PNG figures)")
    split: str | None = option(None, "evaluation split (default: the task's first evaluation split)")
    batch_size: int = option(32, "mini-batch size of the CKA heat-map pool")
    max_length: int = option(128, "truncate inputs to this many tokens")
    max_eval_samples: int | None = option(None, "use only the first N examples")
    runs: list[str] | None = option(
        None, "run folders (methods × seeds) for the mean (std) and significance table", nargs="+"
    )
    reference: str = option("vkd", "model the complexity table is relative to")
    proposed: str = option("fsd", "method tested (one-sided Welch) against the best other method")
    throughput_batches: int | None = option(None, "batches timed for inference throughput (default: all)")
    device: str | None = option(None, "torch device (default: cuda if available, else cpu)")
    seed: int = option(42, "random seed (kept for a uniform interface; the analysis is deterministic)")
    progress: bool = option(True, "show progress bars")
    cache_dir: str | None = option(None, "cache folder for prepared data")


def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def declared_options(cls) -> dict[str, Any]:
    """The options a config class takes beside its fields (name → :class:`fsdkit.options.Option`; DistillConfig's are
    the method presets' declared options), or {}."""
    lookup = getattr(cls, "declared_options", None)
    return lookup() if lookup is not None else {}


#: ``--student teacher``: the student starts from chosen layers *and the head* of the fine-tuned teacher
STUDENT_FROM_TEACHER = "teacher"
#: the options that name what a command reads (its outputs may never overwrite or hold them)
INPUT_OPTIONS = (
    "train_file",
    "validation_file",
    "test_file",
    "dataset",
    "data_dir",
    "model",
    "teacher",
    "student",
    "input",
    "transfer_file",
)


def input_paths(config, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """The files and folders ``config`` reads, by flag (``--train-file``: path, …), less the options ``without``."""
    paths = {
        f"--{name.replace('_', '-')}": getattr(config, name, None) for name in INPUT_OPTIONS if name not in without
    }
    if paths.get("--student") == STUDENT_FROM_TEACHER:
        paths.pop("--student")
    return {flag: path for flag, path in paths.items() if path is not None}


def option_names(cls) -> list[str]:
    """Every key a config of ``cls`` takes: its visible fields, then its declared options."""
    fields = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("hidden")]
    return fields + [name for name in declared_options(cls) if name not in fields]


def coerce_field(cls, name: str, value: Any, where: str) -> Any:
    """``value`` of option ``name`` of ``cls`` coerced to its type (and, for a declared option, checked against its
    range); :class:`ConfigError` naming ``where`` and the key otherwise."""
    declared = declared_options(cls)
    if name in declared:
        return declared[name].check(value, where)
    try:
        return coerce_value(field_types(cls)[name], value)
    except ValueError as exc:
        raise ConfigError(f"{where}: key '{name.replace('_', '-')}': {exc}") from None


#: a config or sweep-space file larger than this is refused unread (a config is a few hundred bytes)
MAX_CONFIG_BYTES = 1 << 20
#: the values a config file may hold once its YAML aliases are expanded (a "billion laughs" file holds billions)
MAX_CONFIG_VALUES = 100_000
#: config keys spelt as their flag where the flag's name differs from the option's (``--loss`` fills ``losses``)
KEY_ALIASES = {"loss": "losses"}


def load_config_data(path: str | Path) -> Any:
    """The YAML / JSON content of a config file, bounded: at most :data:`MAX_CONFIG_BYTES` bytes, UTF-8, and at
    most :data:`MAX_CONFIG_VALUES` values with its aliases expanded (PyYAML shares an aliased node, but every reader
    of the result walks it expanded). :class:`ConfigError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is {size:,} bytes; a config file may hold at most {MAX_CONFIG_BYTES:,}")
    text = decode_utf8(path.read_bytes(), f"config file {path}", ConfigError)
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid {kind}: {exc}") from None
    count, stack = 0, [data]
    while stack:  # expanded size, counted up to the bound: linear in the bound, whatever the aliases
        value = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"config file {path} holds more than {MAX_CONFIG_VALUES:,} values once its YAML aliases "
                f"are expanded; a config file holds options, not data"
            )
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return data


def read_config_file(path: str | Path, cls, command: str) -> dict[str, Any]:
    """Read a YAML/JSON mapping (:func:`load_config_data`) and validate its keys and value types against ``cls``."""
    data = load_config_data(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping of option names to values, got {type(data).__name__}"
        )
    names = set(option_names(cls))
    values = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        key = KEY_ALIASES.get(key, key) if KEY_ALIASES.get(key) in names else key
        if key == "losses" and isinstance(value, list):  # the --loss flag's NAME:WEIGHT[:k=v,...] form is a key too
            value = [parse_loss_flag(v) if isinstance(v, str) else v for v in value]
        if key not in names:
            known = ", ".join(sorted(n.replace("_", "-") for n in names))
            raise ConfigError(
                f"config file {path}: unknown key {short_repr(str(raw_key))} for 'fsdkit {command}'; "
                f"known keys: {known}"
            )
        values[key] = coerce_field(cls, key, value, f"config file {path}")
    return values


def make_config(cls, values: dict[str, Any] | None = None, **overrides):
    """Build ``cls`` from a mapping plus keyword overrides, coercing and validating every value. Declared options
    (``beta_pkd=…``) are given as top-level keys like the fields, and land in the config's ``method_options``."""
    merged = {**(values or {}), **overrides}
    declared = declared_options(cls)
    if declared:
        merged = {**(merged.pop("method_options", None) or {}), **merged}
    names = set(option_names(cls))
    unknown = sorted(set(merged) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {cls.__name__}; known: {', '.join(sorted(names))}")
    checked = {k: coerce_field(cls, k, v, cls.__name__) for k, v in merged.items()}
    if declared:
        checked["method_options"] = {k: checked.pop(k) for k in list(checked) if k in declared}
    return cls(**checked)


def as_config(cls, config=None, overrides: dict[str, Any] | None = None):
    """Every entry point's settings: ``config`` (a ``cls``, a mapping of option names, or None) as a ``cls`` with
    ``overrides`` applied and checked like any other value (:func:`make_config`)."""
    overrides = overrides or {}
    if isinstance(config, cls):
        return make_config(cls, config_to_dict(config), **overrides) if overrides else config
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"expected a {cls.__name__} or a mapping of its option names, got {type(config).__name__}")
    return make_config(cls, config, **overrides)


def config_to_dict(config) -> dict[str, Any]:
    """The config as one flat mapping of option names (declared options at their values or defaults)."""
    data = dataclasses.asdict(config)
    given = data.pop("method_options", None)
    if given is not None:
        data.update({name: given.get(name, option.default) for name, option in declared_options(type(config)).items()})
    return data


def command_line(command: str, options: dict[str, Any]) -> str:
    """The ``fsdkit COMMAND --flag value ...`` line that gives ``options`` (snake_case keys) back."""
    parts = ["fsdkit", *command.split()]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            if value and isinstance(value[0], dict):  # extra losses: one --loss NAME:WEIGHT:k=v,... each
                for entry in value:
                    rest = {k: v for k, v in entry.items() if k not in ("name", "weight")}
                    parts += [
                        "--loss",
                        f"{entry['name']}:{entry['weight']}"
                        + (":" + ",".join(f"{k}={v}" for k, v in rest.items()) if rest else ""),
                    ]
            else:
                parts += [flag, ",".join(map(str, value))]
        elif value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def changed_options(config) -> dict[str, Any]:
    """The options of a config dataclass that differ from their defaults, in field order, then the declared options
    given a value other than their default."""
    out = {}
    for f in dataclasses.fields(config):
        if f.metadata.get("hidden"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        value = getattr(config, f.name)
        if value != default:
            out[f.name] = value
    declared = declared_options(type(config))
    for name, value in getattr(config, "method_options", {}).items():
        if name in declared and value != declared[name].default:
            out[name] = value
    return out
