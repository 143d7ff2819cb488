"""Typed run configurations, shared by the CLI flags and YAML/JSON config files.

A config file is a mapping whose keys are the command's flag names (``data-dir`` or ``data_dir``);
flags given on the command line override it. Unknown keys, wrongly typed values and values outside a setting's
declared range raise :class:`~fsdkit.errors.ConfigError` naming the file, the key and what was expected. Every field
is declared once with :func:`fsdkit.settings.setting` (type, default, help, range); a distillation method's own
settings live in its typed options class (:mod:`fsdkit.methods`), held by ``DistillConfig.method_options``.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fsdkit.coercion import parse_loss_flag
from fsdkit.errors import ConfigError, decode_utf8, short_repr
from fsdkit.methods import all_settings, get_method, method_options
from fsdkit.settings import Setting, setting, settings_of

ConfigT = TypeVar("ConfigT")


@dataclass
class DataOptions:
    """Your own data instead of a registry task (``run_glue.py``'s flags; see fsdkit.data.files)."""

    train_file: str | None = setting(
        None, "your training data: a .csv, .tsv, .json, .jsonl or .parquet file (instead of --task)"
    )
    validation_file: str | None = setting(None, "your validation data (same format and columns)")
    test_file: str | None = setting(None, "your test data (labels optional): what `fsdkit predict --split test` reads")
    dataset: str | None = setting(None, "a datasets.load_dataset name or local folder (instead of --task / files)")
    dataset_config: str | None = setting(None, "the dataset's configuration name")
    train_split: str = setting("train", "--dataset split used for training")
    validation_split: str = setting("validation", "--dataset split used for validation")
    test_split: str = setting("test", "--dataset split used for prediction")
    text_columns: list[str] | None = setting(
        None, "text column(s) of your data: a or a,b (default sentence1,sentence2, sentence or text)"
    )
    label_column: str = setting("label", "label column of your data (strings, integers, or floats for regression)")
    task_type: str | None = setting(None, "classification or regression (default: regression for a float label column)")


@dataclass
class RunConfig(DataOptions):
    """Options every training command shares (names follow transformers' TrainingArguments where they exist)."""

    task: str = setting("rt-sentiment", "task name (GLUE task, sick, or the offline default rt-sentiment)")
    data_dir: str | None = setting(None, "GLUE folder in the standard layout; without it GLUE is loaded from the hub")
    output_dir: str | None = setting(None, "where the model folder, checkpoints and run record are written")
    seed: int = setting(42, "random seed (model init, data order, dropout)")
    epochs: float = setting(3.0, "training epochs (ignored when --max-steps > 0)", low=0)
    max_steps: int = setting(-1, "stop after this many optimizer steps (overrides --epochs)")
    learning_rate: float = setting(5e-5, "peak learning rate (AdamW, linear decay)", low=0, low_open=True)
    batch_size: int = setting(32, "training batch size per device", low=1)
    eval_batch_size: int = setting(128, "evaluation batch size", low=1)
    max_length: int = setting(128, "truncate inputs to this many tokens (padding is dynamic)", low=1)
    warmup_ratio: float = setting(0.1, "fraction of steps with linear warm-up", low=0, high=1)
    weight_decay: float = setting(0.01, "AdamW weight decay", low=0)
    gradient_accumulation_steps: int = setting(1, "accumulate gradients over this many batches", low=1)
    logging_steps: int = setting(50, "log losses every N steps", low=1)
    save_steps: int = setting(500, "checkpoint every N steps (for --resume)", low=1)
    save_total_limit: int = setting(2, "keep at most this many checkpoints", low=1)
    resume: bool = setting(False, "resume from the last checkpoint in OUTPUT_DIR/checkpoints")
    max_train_samples: int | None = setting(None, "use only the first N training examples", low=1)
    max_eval_samples: int | None = setting(None, "use only the first N evaluation examples", low=1)
    group_by_length: bool = setting(False, "batch examples of similar length together (less padding, faster)")
    eval_strategy: str = setting(
        "no",
        "'epoch': score the student on the evaluation split after every epoch (the run "
        "record's curve); 'no': only at the end",
        choices=("no", "epoch"),
    )
    holdout_fraction: float | None = setting(
        None,
        "carve this fraction of the training set (fixed seed 0) as the 'holdout' split: per-epoch evaluation and "
        "sweeps select on it, the task's dev split is only reported",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    bf16: bool = setting(
        False, "bfloat16 mixed precision (autocast of the forward passes; losses in float32; CPU or GPU)"
    )
    fp16: bool = setting(False, "float16 mixed precision with loss scaling (CUDA GPUs only; losses in float32)")
    torch_compile: bool = setting(
        False,
        "compile the model being trained with torch.compile (TrainingArguments' torch_compile: inductor, shapes "
        "made dynamic after the first change); whether it pays depends on the device (see benchmarks/README.md)",
    )
    report_to: str = setting("none", "tracking integrations for transformers (none, tensorboard, wandb, ...)")
    reuse_host_memory: bool = setting(
        True,
        "keep host memory freed during the run for the next step (glibc malloc: no mmap'd chunks, no trimming) "
        "instead of faulting fresh pages in at every step (CPU steps 2-17 % faster, most on a busy machine); numerics "
        "unchanged",
    )
    progress: bool = setting(True, "show progress bars")
    cache_dir: str | None = setting(None, "cache folder for prepared data (default ~/.cache/fsdkit)")


@dataclass
class FinetuneConfig(RunConfig):
    """``fsdkit finetune``: fine-tune a (teacher) model on a task."""

    model: str = setting("minilm", "pretrained model folder or hub name ('minilm' = packaged all-MiniLM-L6-v2)")


@dataclass
class DistillConfig(RunConfig):
    """``fsdkit distill``: train a student from a fine-tuned teacher with a distillation method."""

    teacher: str | None = setting(None, "fine-tuned teacher model folder (fsdkit finetune output)")
    transfer_file: str | None = setting(
        None,
        "unlabelled texts (same format and text columns as the training data; a "
        "label column is ignored): the distillation terms train on them too, the "
        "task loss on the labelled rows only",
    )
    student: str = setting(
        "minilm",
        "checkpoint the student's layers are taken from: a pretrained model, or 'teacher' "
        "(chosen layers and the classification head of the fine-tuned teacher)",
    )
    student_config: str | None = setting(
        None,
        "a fresh student of another shape instead of chosen layers: key=value pairs (hidden_size=256,"
        "num_hidden_layers=4,num_attention_heads=4,intermediate_size=1024) or a JSON file; teacher's tokenizer",
    )
    student_tokenizer: str | None = setting(
        None,
        "with --student-config: the student's own tokenizer folder (another vocabulary than the teacher's; "
        "each model then reads its own tokens and only sample-level losses apply)",
    )
    student_layers: int | list[int] = setting(
        3, "first k layers (e.g. 3) or an explicit list of 0-based layers (e.g. 0,2,4)"
    )
    method: str = setting("vkd", "distillation method (see `fsdkit methods`)")
    losses: list[dict] | None = setting(
        None,
        "extra loss terms: NAME:WEIGHT[:key=value,...], repeatable (config: list of {name, weight, ...options})",
        repeat="loss",
    )
    relation_every: int = setting(50, "log relation differences to the teacher every N steps (0 = off)", low=0)
    teacher_cache: str | None = setting(
        None,
        "folder of teacher-output caches: the teacher runs once per task/data/layers, later runs read its outputs from disk",
    )
    method_options: Any = field(
        default=None,
        metadata={
            "hidden": True,
            "help": "the method's typed options (an instance of its options class, fsdkit.methods): given as "
            "top-level keys / flags (alpha, lambda_intra, beta_pkd, ...), read as config.method_options.alpha",
        },
    )

    def __post_init__(self) -> None:
        self.method_options = method_options(self.method, self.method_options)

    @classmethod
    def declared_options(cls) -> dict[str, Setting]:
        """Every method's settings (name → :class:`~fsdkit.settings.Setting`): ``fsdkit distill`` flags and config
        keys beside the fields above; a run takes those of its ``--method``."""
        return all_settings()

    def replace(self, **changes: Any) -> DistillConfig:
        """A copy with ``changes`` applied, fields and method settings alike (checked as :func:`make_config` does).
        Changing the method keeps the settings the new method has too (``alpha``) and drops the others."""
        values = config_to_dict(self)
        if changes.get("method", self.method) != self.method:
            own, new = get_method(self.method).settings(), get_method(changes["method"]).settings()
            values = {k: v for k, v in values.items() if k not in own or k in new}
        return make_config(type(self), values, **changes)


@dataclass
class MemoryConfig(DataOptions):
    """``fsdkit memory build``: k-means memory of a teacher's features over the training set (FSDG stage 1)."""

    teacher: str | None = setting(None, "fine-tuned teacher model folder")
    transfer_file: str | None = setting(None, "unlabelled texts encoded with the training set (see distill)")
    task: str = setting("rt-sentiment", "task whose training set is encoded")
    data_dir: str | None = setting(None, "GLUE folder in the standard layout")
    output_dir: str | None = setting(None, "folder for memory.safetensors + memory.json")
    n_clusters: int = setting(100, "number of centroids K (the paper: 100; 300 for QQP/MNLI)", low=1)
    layer: str = setting("penultimate", "teacher hidden layer: index or 'penultimate'/'last'")
    pooling: str = setting("flatten", "row of a sample: flatten (vec of the padded layer), cls or mean")
    max_length: int = setting(128, "tokens per sample (flatten rows are padded/truncated to this)", low=1)
    tol: float = setting(1e-4, "k-means tolerance (centroid shift relative to the data variance)", low=0, low_open=True)
    max_iter: int = setting(100, "maximum Lloyd iterations", low=1)
    seed: int = setting(42, "seed of the k-means++ seeding")
    batch_size: int = setting(64, "encoding batch size", low=1)
    max_train_samples: int | None = setting(None, "use only the first N training examples", low=1)
    holdout_fraction: float | None = setting(
        None,
        "leave out the rows a run with this --holdout-fraction scores on (the same seed-0 split)",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    teacher_cache: str | None = setting(
        None,
        "teacher-output cache folder: the rows are read from it (built on first use; a distillation run "
        "with the same --teacher-cache then reads the same teacher pass)",
    )
    progress: bool = setting(True, "show progress bars")
    cache_dir: str | None = setting(None, "cache folder for prepared data")


@dataclass
class EvaluateConfig(DataOptions):
    """``fsdkit evaluate``: the task's metrics of a model folder on the evaluation split(s)."""

    model: str | None = setting(None, "model folder", positional=True)
    task: str = setting("rt-sentiment", "task name")
    data_dir: str | None = setting(None, "GLUE folder in the standard layout")
    split: str | None = setting(None, "evaluation split (default: all of the task's evaluation splits)")
    output: str | None = setting(None, "write the metrics as JSON to this file")
    output_dir: str | None = setting(None, "write eval_results.json into this folder")
    batch_size: int = setting(128, "evaluation batch size", low=1)
    max_length: int = setting(128, "truncate inputs to this many tokens", low=1)
    max_eval_samples: int | None = setting(None, "use only the first N examples", low=1)
    speed_batches: int = setting(
        0,
        "also time inference on this many batches: latency at batch 1 and throughput at "
        "batch 32 (0 = off; the FSD paper's Table 8)",
        low=0,
    )
    seed: int = setting(42, "random seed (evaluation is deterministic; kept for a uniform interface)")
    progress: bool = setting(True, "show progress bars")
    cache_dir: str | None = setting(None, "cache folder for prepared data")


@dataclass
class PredictConfig(DataOptions):
    """``fsdkit predict``: a model's predictions on a task split, as a GLUE submission (.tsv) or JSON Lines / CSV."""

    model: str | None = setting(None, "model folder", positional=True)
    input: str | None = setting(
        None,
        "texts to predict from the model folder alone: .csv, .tsv, .json, .jsonl, .parquet "
        "or .txt (one text per line); label names from the model, scored when the file "
        "has the label column",
    )
    task: str = setting("rt-sentiment", "task name")
    data_dir: str | None = setting(None, "GLUE folder in the standard layout (the test split is its test.tsv)")
    split: str = setting(
        "test", "split to predict: test (unlabelled test.tsv) or an evaluation split such as validation"
    )
    output: str | None = setting(
        None,
        "prediction file: .tsv = GLUE submission (index<TAB>prediction), .jsonl or .csv = "
        "index, label name and class probabilities (or score)",
    )
    batch_size: int = setting(128, "prediction batch size", low=1)
    max_length: int = setting(128, "truncate inputs to this many tokens", low=1)
    progress: bool = setting(True, "show progress bars")
    cache_dir: str | None = setting(None, "cache folder for prepared data")


@dataclass
class ExportConfig(DataOptions):
    """``fsdkit export``: a model folder to ONNX (model.onnx + config + tokenizer + weights), checked with ONNX
    Runtime; with ``--quantize int8`` also an int8 model measured against it on the task's evaluation split."""

    model: str | None = setting(None, "model folder", positional=True)
    output_dir: str | None = setting(None, "folder for model.onnx, config.json, the tokenizer and the weights")
    opset: int = setting(17, "ONNX opset", low=7)
    atol: float = setting(
        1e-4, "largest accepted difference between ONNX Runtime's and PyTorch's logits", low=0, low_open=True
    )
    quantize: str | None = setting(
        None,
        "also write model.int8.onnx (int8: ONNX Runtime's dynamic or static quantization, the faster than float "
        "and better scoring) with a report on the evaluation split",
        choices=("int8",),
    )
    quantize_tolerance: float = setting(1.0, "points of --metric the int8 model may lose before it is flagged", low=0)
    metric: str | None = setting(None, "metric that chooses and flags the int8 model (default: the task's main metric)")
    calibration_samples: int = setting(128, "training rows that calibrate static quantization", low=1)
    task: str | None = setting(
        None, "task whose evaluation split measures --quantize (default: the model's run record's data)"
    )
    data_dir: str | None = setting(None, "GLUE folder in the standard layout")
    max_length: int = setting(128, "truncate inputs to this many tokens (--quantize's measurement)", low=1)


@dataclass
class CompressConfig(DataOptions):
    """``fsdkit compress``: the fastest student of a teacher that meets a quality, latency or size target, found by
    a multi-objective Optuna study (see fsdkit.compress)."""

    teacher: str | None = setting(None, "fine-tuned teacher model folder")
    task: str = setting("rt-sentiment", "task name (or your own data with the data flags)")
    data_dir: str | None = setting(None, "GLUE folder in the standard layout")
    output_dir: str | None = setting(None, "trial folders, front.md / front.png / compress.json, the chosen student")
    target_retention: float | None = setting(
        0.97,
        "the student's holdout score as a fraction of the teacher's (none: no quality target)",
        low=0,
        low_open=True,
        high=1,
    )
    max_latency_ms: float | None = setting(
        None, "largest batch-1 latency (ms, measured on this machine)", low=0, low_open=True
    )
    max_size_mb: float | None = setting(None, "largest weight file (MB)", low=0, low_open=True)
    metric: str | None = setting(
        None, "holdout metric the students are judged and the target is set on (default: the task's main metric)"
    )
    trials: int = setting(
        12, "students to train (finished trials of the study; resumable, several workers share it)", low=1
    )
    epochs: float = setting(3.0, "epochs of each student", low=0, low_open=True)
    max_steps: int = setting(-1, "steps of each student instead of epochs (> 0)")
    batch_size: int = setting(32, "training batch size", low=1)
    max_length: int = setting(128, "truncate inputs to this many tokens", low=1)
    transfer_file: str | None = setting(
        None,
        "unlabelled texts every student's distillation terms train on too (see distill --transfer-file; the task "
        "loss and the holdout split stay labelled)",
    )
    pretrained: str | None = setting(
        None,
        "the pretrained model the teacher was fine-tuned from, for students of its "
        "layers (default: the teacher's run record's --model)",
    )
    quantize: str | None = setting(
        None, "also export the chosen student as int8 (see fsdkit export --quantize)", choices=("int8",)
    )
    storage: str | None = setting(None, "Optuna storage URL (default: sqlite:///OUTPUT_DIR/compress.db)")
    study_name: str = setting("fsdkit-compress", "study name in the storage")
    heartbeat: int = setting(60, "seconds between a running trial's heartbeats (a silent trial is retried)", low=1)
    speed_batches: int = setting(20, "batches timed for each latency", low=1)
    seed: int = setting(42, "seed of the students and the sampler")


@dataclass
class SweepConfig:
    """``fsdkit sweep``: an Optuna study over the options of ``distill`` or ``finetune`` (see docs/sweeps.md).

    Usually given as ``--config SPACE.yaml``; flags override the file (``--trials``, ``--storage``, ...).
    """

    command: str = setting("distill", "what each trial runs: distill or finetune", choices=("distill", "finetune"))
    base: dict | None = setting(
        None, "options every trial shares (the command's option names), e.g. task, data-dir, teacher"
    )
    space: dict | None = setting(
        None, "search space: option name -> {type: float|int|categorical, low, high, log, step, choices}"
    )
    fixed_from: dict | None = setting(
        None,
        "fix options at another study's best trial: {study: NAME, storage: URL, "
        "options: [names]} (staged tuning; that study must have finished)",
    )
    metric: str | None = setting(None, "metric to optimise (default: the task's main metric)")
    direction: str = setting("maximize", "maximize or minimize the metric", choices=("maximize", "minimize"))
    trials: int = setting(
        10, "finished trials (complete or pruned) the study should have; several workers share them", low=1
    )
    storage: str = setting(
        "sqlite:///fsdkit-study.db", "Optuna storage URL (sqlite:///FILE, postgresql://..., any RDB URL)"
    )
    study_name: str = setting("fsdkit-sweep", "study name in the storage (several workers on one name share the study)")
    output_dir: str | None = setting(None, "trial run folders (trial-N/) and the summary (summary.json, PNG plots)")
    seed: int = setting(0, "seed of the TPE sampler (a worker joining or resuming a study adds its process id)")
    pruner: str = setting(
        "median", "prune on the per-epoch curve: median (MedianPruner) or none", choices=("median", "none")
    )
    accept_teacher_change: bool = setting(
        False,
        "resume a study whose trials distilled from other teacher weights (the teacher fine-tuned again, e.g. on "
        "another machine: the same recipe and seed give other weights on another CPU); refused when the teacher's "
        "fsdkit_run.json shows other fine-tuning options; the study lists each teacher in 'teachers'",
    )
    startup_trials: int = setting(
        10,
        "trials drawn at random before TPE models the space (Optuna's 10); the median "
        "pruner prunes once as many have completed, never on a trial's first or last "
        "evaluation",
        low=1,
    )
    heartbeat: int = setting(
        60,
        "seconds between a running trial's heartbeats; a trial silent for 3 heartbeats (a "
        "killed worker) is marked failed and retried with the same parameters",
        low=1,
    )


@dataclass
class AnalyzeConfig(DataOptions):
    """``fsdkit analyze``: restoration rate, CKA heat maps, relation differences and complexity in one report."""

    task: str = setting("rt-sentiment", "task name")
    teacher: str | None = setting(None, "fine-tuned teacher model folder (the reference)")
    models: list[str] | None = setting(None, "models to compare as NAME=DIR (several)", nargs="+")
    data_dir: str | None = setting(None, "GLUE folder in the standard layout")
    output_dir: str | None = setting(None, "report folder (report.html, report.md, results.json, PNG figures)")
    split: str | None = setting(None, "evaluation split (default: the task's first evaluation split)")
    batch_size: int = setting(32, "mini-batch size of the CKA heat-map pool", low=1)
    max_length: int = setting(128, "truncate inputs to this many tokens", low=1)
    max_eval_samples: int | None = setting(None, "use only the first N examples", low=1)
    runs: list[str] | None = setting(
        None, "run folders (methods × seeds) for the mean (std) and significance table", nargs="+"
    )
    reference: str = setting("vkd", "model the complexity table is relative to")
    proposed: str = setting("fsd", "method tested (one-sided Welch) against the best other method")
    throughput_batches: int | None = setting(None, "batches timed for inference throughput (default: all)", low=1)
    device: str | None = setting(None, "torch device (default: cuda if available, else cpu)")
    seed: int = setting(42, "random seed (kept for a uniform interface; the analysis is deterministic)")
    progress: bool = setting(True, "show progress bars")
    cache_dir: str | None = setting(None, "cache folder for prepared data")


def declared_options(cls) -> dict[str, Setting]:
    """The settings a config class takes beside its fields (DistillConfig: every method's settings), or {}."""
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
    """Every key a config of ``cls`` takes: its visible fields, then its declared settings."""
    return [*settings_of(cls), *(name for name in declared_options(cls) if name not in settings_of(cls))]


def coerce_field(cls, name: str, value: Any, where: str) -> Any:
    """``value`` of setting ``name`` of ``cls`` coerced to its type and checked against its declared range;
    :class:`ConfigError` naming ``where`` and the flag otherwise."""
    table = settings_of(cls)
    declared = table[name] if name in table else declared_options(cls)[name]
    return declared.check(value, where)


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


def make_config(cls: type[ConfigT], values: dict[str, Any] | None = None, **overrides: Any) -> ConfigT:
    """Build ``cls`` from a mapping plus keyword overrides, coercing every value and checking it against its declared
    range. A method's settings (``alpha=…``, ``beta_pkd=…``) are given as top-level keys like the fields, and become
    the config's typed ``method_options`` (a setting the run's method does not have is refused)."""
    merged = {**(values or {}), **overrides}
    declared = declared_options(cls)
    if declared:
        given = merged.pop("method_options", None)
        if dataclasses.is_dataclass(given):
            given = dataclasses.asdict(given)  # type: ignore[arg-type]
        merged = {**(given or {}), **merged}
    names = set(option_names(cls))
    unknown = sorted(set(merged) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {cls.__name__}; known: {', '.join(sorted(names))}")
    checked = {k: coerce_field(cls, k, v, cls.__name__) for k, v in merged.items()}
    if declared:
        checked["method_options"] = {
            k: checked.pop(k)
            for k in list(checked)
            if k in declared and k not in settings_of(cls)  # type: ignore[arg-type]  # python/mypy#11470
        }
    return cls(**checked)


def as_config(
    cls: type[ConfigT], config: ConfigT | dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> ConfigT:
    """Every entry point's settings: ``config`` (a ``cls``, a mapping of option names, or None) as a ``cls`` with
    ``overrides`` applied, every value checked like any other (:func:`make_config`; a ``cls`` built directly is
    checked too)."""
    if isinstance(config, cls):
        config = config_to_dict(config)
    elif config is not None and not isinstance(config, dict):
        raise ConfigError(f"expected a {cls.__name__} or a mapping of its option names, got {type(config).__name__}")
    return make_config(cls, config, **(overrides or {}))


def config_to_dict(config) -> dict[str, Any]:
    """The config as one flat mapping of option names (a method's settings beside the fields)."""
    data = dataclasses.asdict(config)
    data.update(data.pop("method_options", None) or {})
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
    """The settings of a config that differ from their defaults: its fields in order, then its method's settings."""
    out = {}
    for f in dataclasses.fields(config):
        if f.metadata.get("hidden"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        value = getattr(config, f.name)
        if value != default:
            out[f.name] = value
    options = getattr(config, "method_options", None)
    if options is not None:
        defaults = settings_of(type(options))  # type: ignore[arg-type]  # python/mypy#11470: a class is hashable
        out.update({k: v for k, v in dataclasses.asdict(options).items() if v != defaults[k].default})
    return out
