"""The quality suite: the FSD paper's comparison (Tables 2–3) on real GLUE tasks, resumable across sessions.

One command::

    python benchmarks/suite.py --glue-dir ../shared/glue --tasks mrpc,stsb,cola,sick \\
        --methods nds,vkd,pkd,rkd,minilm,fsd,fsd-procrustes --seeds 1,2,3

Per task: the MiniLM teacher is fine-tuned once by the recipe's ``teacher`` settings (recorded as method
``teacher``); the majority-class baseline (``fsdkit.evaluation.majority_baseline``, the floor a student must
clear) is scored and recorded as method ``majority``; the FSDG teacher memory is built once from it when a method needs one; then every method × seed
distils a 3-layer student (``fsdkit.distill``) and is evaluated on the dev set. Every finished or failed run is
appended as one JSON line to the results file (see :func:`run_record`). A run already recorded ``ok`` with the
same settings is skipped, so the suite can be interrupted (Ctrl-C, or ``touch WORK_DIR/STOP``: the suite stops
before its next run) and continued later; a run interrupted mid-training resumes from its last checkpoint. A
failed run is recorded with its error and the suite goes on. Several workers may run the same command: each job
is claimed under a file lock (see :meth:`Suite.run`). Every finished teacher and student predicts the task's
unlabelled ``test.tsv`` (where the GLUE folder has one) into ``benchmarks/predictions/<task>/<method>/seed<k>.tsv``
(the GLUE submission format; the labels are in neither this repository nor ``../shared``), recorded as
``test_predictions``. Checkpoints of finished runs are deleted; the
model folders are kept only for the teacher and for seed 1 of each method (the analysis report needs them).
A run of the weight search (``tune.py``, ``results/tuning.jsonl``) with exactly the same settings — the
tuning task's seed-1 run of the chosen weight — is adopted (copied, marked ``adopted_from``), not repeated.

Settings come from the recipe, ``benchmarks/recipe-v2.yaml`` by default (shared + student + per-method settings +
each task's budget, and the ``table`` run when no ``--tasks``, ``--methods`` or ``--seeds`` is given; see its header;
v1's is ``benchmarks/recipe.yaml``); ``--set key=value`` overrides any of them for every run (for smoke tests: the
override is part of the settings hash, so such runs never count as the real ones).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fsdkit.methods import METHODS, all_settings, get_method

HERE = Path(__file__).resolve().parent
#: benchmark v2 (``RESULTS.md``): the recipe, results and work folder every benchmark script uses by default
DEFAULT_RECIPE = HERE / "recipe-v2.yaml"
DEFAULT_RESULTS = HERE / "results" / "v2.jsonl"
DEFAULT_WORK_DIR = HERE / "work" / "v2"
#: benchmark v1 (``RESULTS-v1.md``: 3-epoch students from the pretrained layers, the weight search of ``tune.py``)
V1_RECIPE = HERE / "recipe.yaml"
V1_RESULTS = HERE / "results" / "results.jsonl"
V1_WORK_DIR = HERE / "work"
#: test-set predictions of finished runs, committed: PREDICTIONS_DIR/<task>/<method>/seed<k>.tsv (GLUE submission)
DEFAULT_PREDICTIONS_DIR = HERE / "predictions"
TABLE_TASKS = ("mrpc", "stsb", "cola", "sick")
TABLE_METHODS = ("nds", "vkd", "pkd", "rkd", "minilm", "fsd", "fsd-procrustes")
ABLATION_METHODS = ("fsdi", "fsdl", "fsdg", "fsdil")
#: methods whose settings (and hash) name the memory's K; every method that reads a memory gets the suite's shared one
#: (:func:`reads_memory`: fsd-procrustes too — its v1 records were hashed without K, so it is not listed here)
MEMORY_METHODS = ("fsd", "fsdg")
TEACHER = "teacher"
#: the constant predictor of the training set's majority label (mean score for regression): a reference row
MAJORITY = "majority"
#: config keys that name places, not settings: they do not enter the settings hash
PLACE_KEYS = ("output_dir", "data_dir", "teacher", "memory", "progress", "resume", "cache_dir", "teacher_cache")

logger = logging.getLogger("fsdkit.benchmarks")

#: the recipe's memory settings that a built memory records in its memory.json (``Suite.ensure_memory`` compares them)
MEMORY_KEYS = ("n_clusters", "seed", "max_length", "max_train_samples")


def reads_memory(method: str) -> bool:
    """Whether fsdkit's ``method`` reads a teacher memory (the suite then passes its shared one, built once)."""
    return method in METHODS and METHODS[method].needs_memory


def runnable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a run of ``settings["method"]`` takes: those of other methods left out. The recipe's shared
    ``student`` section gives every student VKD's alpha and T, which nDS does not have; a job's hash is taken over
    the recipe's settings, so results recorded before fsdkit refused another method's setting keep their hash."""
    foreign = set(all_settings()) - set(get_method(settings["method"]).settings())
    return {k: v for k, v in settings.items() if k not in foreign}


# ------------------------------------------------------------------------------------------------ records
def settings_hash(settings: dict[str, Any]) -> str:
    """A short hash of the settings that decide a run's result (places such as folders excluded)."""
    kept = {k: v for k, v in sorted(settings.items()) if k not in PLACE_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what :func:`platform.processor` says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_info() -> dict[str, Any]:
    """The machine a run was measured on."""
    import torch

    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def teacher_fingerprint(folder: str | os.PathLike) -> str | None:
    """The first 12 hex digits of the SHA-256 of a model folder's ``model.safetensors`` (the hash a teacher memory
    records of its teacher, :func:`fsdkit.artifacts.model_weights_sha256`); None without one. It says which
    fine-tuning a student distilled from: the same recipe and seed give other weights on another CPU (its kernels
    round differently), and ``work/`` is not committed, so a new machine fine-tunes the teacher again."""
    from fsdkit.artifacts import sha256_file

    weights = Path(folder) / "model.safetensors"
    return sha256_file(weights)[:12] if weights.is_file() else None


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All JSON lines of a results file (an absent file has none); a truncated last line is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s:%d is not valid JSON (an interrupted write?); ignored", path, n)
    return records


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one run record as a JSON line (flushed and fsynced: a crash right after loses nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def done_keys(records: Iterable[dict[str, Any]]) -> set[tuple[str, str, int, str]]:
    """(task, method, seed, settings_hash) of every run recorded ``ok``."""
    return {
        (r["task"], r["method"], int(r["seed"]), r.get("settings_hash", "")) for r in records if r.get("status") == "ok"
    }


def curve_points(record: dict[str, Any], metric: str) -> list[tuple[float, float]]:
    """A run record's dev curve as ``[(epoch, 100 · metric)]`` (the evaluations that have the metric)."""
    return [(p["epoch"], 100 * p[f"eval_{metric}"]) for p in record.get("curve") or [] if f"eval_{metric}" in p]


def flatten_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """fsdkit's ``{split: {name: value}}`` → ``{name: value}`` for one split, ``{"split/name": value}`` for several."""
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    if not nested:
        return dict(metrics)
    if len(nested) == 1:
        return dict(next(iter(nested.values())))
    return {f"{split}/{name}": value for split, values in nested.items() for name, value in values.items()}


def run_record(
    *,
    task: str,
    method: str,
    seed: int,
    settings: dict[str, Any],
    job_hash: str,
    status: str,
    started: float,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    output_dir: str | None = None,
) -> dict[str, Any]:
    """One results line: what ran, with which settings (``job_hash``: see :meth:`Suite.job_hash`), its dev
    metrics (and per-epoch curve), timings, versions and machine."""
    from fsdkit import __version__
    from fsdkit.training.run import git_commit

    result = result or {}
    metrics = result.get("metrics", {})
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "status": status,
        "metrics": flatten_metrics(metrics),
        "main_metric": result.get("main_metric"),
        "curve": result.get("curve") or [],  # the dev (or holdout) metrics after every epoch, with eval_strategy epoch
        "losses_by_epoch": result.get("losses_by_epoch") or [],  # each logged loss term and part, mean per epoch
        "error": error,
        "settings_hash": job_hash,
        "settings": {k: v for k, v in settings.items() if k not in PLACE_KEYS},
        "config": result.get("config"),
        "wall_time": round(time.time() - started, 2),
        "train_runtime": result.get("train_runtime"),
        "train_samples_per_second": result.get("train_samples_per_second"),
        "train_examples": result.get("train_examples"),
        "teacher_source": result.get("teacher_source"),  # live, or the teacher-output cache's key
        "output_dir": output_dir,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fsdkit_version": __version__,
        "git_commit": git_commit(),
        "host": host_info(),
    }


# ------------------------------------------------------------------------------------------------ runner
class FsdkitRunner:
    """Runs the suite's jobs through the fsdkit Python API (tests substitute a fake with the same methods)."""

    def finetune(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Fine-tune a teacher; returns fsdkit's run record (with ``metrics``)."""
        from fsdkit import finetune

        return finetune(**settings)

    def distill(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Distil a student; returns fsdkit's run record (with ``metrics``)."""
        from fsdkit import distill

        return distill(**runnable(settings))

    def build_memory(self, settings: dict[str, Any]) -> None:
        """Build the FSDG teacher memory into ``settings["output_dir"]``."""
        from fsdkit import build_memory

        build_memory(**settings)

    def predict(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Predict a task's unlabelled test split with a model folder into ``settings["output"]``."""
        from fsdkit import predict

        return predict(**settings)

    def majority(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Score the majority-class baseline of ``settings["task"]`` (with ``metrics`` and ``main_metric``)."""
        from fsdkit.data import get_task, load_task_data
        from fsdkit.evaluation import majority_baseline

        task = get_task(settings["task"])
        metrics = majority_baseline(task, load_task_data(task, settings["data_dir"]))
        return {"metrics": metrics, "main_metric": task.main_metric}


# ------------------------------------------------------------------------------------------------ recipe
def load_recipe(path: str | os.PathLike = DEFAULT_RECIPE) -> dict[str, Any]:
    """The suite's recipe (see benchmarks/recipe-v2.yaml). A recipe with ``extends: OTHER.yaml`` (a path beside it)
    takes OTHER's top-level sections and replaces those it names itself (recipe-v3 keeps v2's teachers, students and
    epoch budgets and brings its own search and settings)."""
    path = Path(path)
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    parent = recipe.pop("extends", None)
    if parent is not None:
        recipe = {**{k: v for k, v in load_recipe(path.parent / parent).items() if k != "title"}, **recipe}
    for key in ("shared", "teacher", "student", "memory", "methods"):
        recipe.setdefault(key, {})
    return recipe


#: where a recipe's runs go unless its ``outputs`` section says otherwise (benchmark v2's places)
DEFAULT_OUTPUTS = {
    "results": DEFAULT_RESULTS,
    "work_dir": DEFAULT_WORK_DIR,
    "predictions": DEFAULT_PREDICTIONS_DIR,
    "report": HERE / "RESULTS.md",
    "curves": HERE / "results" / "v2-curves",
    "analysis": HERE / "analysis-v2",
    "search_plots": HERE / "results" / "search-plots",
    "search_results": HERE / "results" / "search-teachers.jsonl",
    "search_work_dir": HERE / "work" / "search",
}


def recipe_output(recipe: dict[str, Any], name: str) -> str:
    """The recipe's place ``name`` (``results``, ``work_dir``, ``predictions``; the report's ``report``, ``curves``,
    ``analysis``, ``search_plots``; a staged search's ``search_results`` and ``search_work_dir``): its ``outputs`` entry, a path relative to benchmarks/ (recipe-v3 keeps its runs
    and reports apart from v2's), else v2's."""
    place = (recipe.get("outputs") or {}).get(name)
    return str(HERE / place if place is not None else DEFAULT_OUTPUTS[name])


def recipe_section(recipe: dict[str, Any], name: str, task: str) -> dict[str, Any]:
    """The recipe's ``name`` section (``teacher``, ``student``) for ``task``: its settings, with the task's entry of
    its ``per_task`` mapping (e.g. the epoch budget the regime rule chose for that task) applied on top."""
    section = dict(recipe[name])
    per_task = section.pop("per_task", None) or {}
    return {**section, **(per_task.get(task) or {})}


class UnsettledCell(LookupError):
    """A table cell whose method has no per-task settings for its task yet (its search study has not finished)."""


def method_row(recipe: dict[str, Any], method: str, task: str) -> dict[str, Any]:
    """The settings of the recipe's ``methods`` row ``method`` for ``task``. A row with a ``per_task`` mapping (the
    per-task settings a search chose: benchmark v3's ``recipe-v3-table.yaml``) must have the task's entry, which is
    applied on top of the row; the entry's ``chosen_from`` (the study and trial it came from) is provenance, not a
    setting."""
    own = dict(recipe["methods"].get(method) or {})
    if "per_task" not in own:
        return own
    per_task = own.pop("per_task") or {}
    if task not in per_task:
        raise UnsettledCell(
            f"recipe: method {method!r} has no per_task settings for {task!r} (chosen for: "
            f"{', '.join(sorted(per_task)) or 'no task yet'}); finish that task's search and settle it first "
            "(benchmarks/staged_search.py, then --settle)"
        )
    entry = {k: v for k, v in (per_task[task] or {}).items() if k != "chosen_from"}
    return {**own, **entry}


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings → a mapping (values parsed as YAML scalars)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def seeds_for(expected: int | dict[str, int], task: str) -> int:
    """The number of seeds of ``task``'s cells: ``expected`` itself, or its entry for the task (else its ``default``,
    else 3) — the form of the recipe's ``table.seeds`` and ``table.ablation_seeds``."""
    return expected if isinstance(expected, int) else int(expected.get(task, expected.get("default", 3)))


def table_seeds(recipe: dict[str, Any], task: str, method: str) -> list[int]:
    """Seeds 1..n of a (task, method) cell by the recipe's ``table`` (``seeds``; the FSD ablations ``ablation_seeds``
    where given); 1, 2, 3 for a recipe without one."""
    table = recipe.get("table") or {}
    expected = table.get("seeds", 3)
    if method in ABLATION_METHODS and table.get("ablation_seeds") is not None:
        expected = table["ablation_seeds"]
    return list(range(1, seeds_for(expected, task) + 1))


@dataclass
class Suite:
    """The suite's loop over tasks × (teacher, methods × seeds); see the module docstring."""

    glue_dir: str
    tasks: list[str]
    methods: list[str]
    #: the seeds of every cell; None: each cell's by the recipe's ``table`` (:func:`table_seeds`)
    seeds: list[int] | None
    results: Path = DEFAULT_RESULTS
    work_dir: Path = DEFAULT_WORK_DIR
    recipe: dict[str, Any] = field(default_factory=load_recipe)
    overrides: dict[str, Any] = field(default_factory=dict)
    runner: Any = field(default_factory=FsdkitRunner)
    stop_file: Path | None = None
    keep_seed: int = 1
    #: ``ok`` runs of the weight search (tune.py) with the same task, method, seed and settings hash are adopted
    #: (copied into ``results`` with ``adopted_from``) instead of being run again
    tuning_results: Path | None = None
    #: ``ok`` teacher records of another results file (e.g. the learning curves' ``results/curves.jsonl``) whose
    #: settings hash equals this suite's teacher job: its model folder is copied in and the record adopted (marked
    #: ``adopted_from``) instead of fine-tuning the same teacher again
    teacher_results: Path | None = None
    #: called with each record appended (progress output of the command)
    on_record: Callable[[dict[str, Any]], None] | None = None
    #: where each finished run's test-set predictions go (None: not predicted); tasks without a test.tsv are skipped
    predictions_dir: Path | None = DEFAULT_PREDICTIONS_DIR

    @classmethod
    def for_task(
        cls,
        task: str,
        recipe: dict[str, Any],
        *,
        glue_dir: str | os.PathLike,
        work_dir: str | os.PathLike,
        results: str | os.PathLike,
        **options: Any,
    ) -> Suite:
        """A suite of one task and no student cells: its teacher (fine-tuned once and recorded like the table's; see
        :meth:`ensure_teacher`) and memory, on which a search or a measurement builds its own runs. No test-set
        predictions unless ``options`` ask for them."""
        options.setdefault("predictions_dir", None)
        return cls(
            glue_dir=str(glue_dir),
            tasks=[task],
            methods=[],
            seeds=[],
            work_dir=Path(work_dir),
            results=Path(results),
            recipe=recipe,
            **options,
        )

    def ensure_teacher(self, task: str) -> Path:
        """The task's teacher folder, fine-tuned (or adopted) first unless a teacher of these very settings is recorded
        there (a folder left by other settings is not taken for it)."""
        self.run()
        return self.teacher_dir(task)

    # settings ----------------------------------------------------------------------------------
    def teacher_settings(self, task: str) -> dict[str, Any]:
        import dataclasses

        from fsdkit.config import FinetuneConfig

        names = {f.name for f in dataclasses.fields(FinetuneConfig)}
        overrides = {k: v for k, v in self.overrides.items() if k in names}  # student-only keys do not apply
        settings = {**self.recipe["shared"], **recipe_section(self.recipe, "teacher", task), **overrides}
        return {
            **settings,
            "task": task,
            "data_dir": self.glue_dir,
            "output_dir": str(self.teacher_dir(task)),
            "progress": False,
        }

    def student_settings(self, task: str, method: str, seed: int) -> dict[str, Any]:
        """A student row's settings. A row of the recipe's ``methods`` is an fsdkit method of its name, or, with
        ``preset: METHOD``, that method with the row's settings on top (a combination: e.g. FSDI plus the extra loss
        terms of its ``losses``)."""
        own = method_row(self.recipe, method, task)
        preset = own.pop("preset", method)
        settings = {**self.recipe["shared"], **recipe_section(self.recipe, "student", task), **own, **self.overrides}
        if preset in MEMORY_METHODS:  # the memory's K decides the result: part of the settings (and their hash)
            settings.setdefault("memory_clusters", self.memory_settings(task)["n_clusters"])
        return {
            **settings,
            "task": task,
            "method": preset,
            "seed": seed,
            "data_dir": self.glue_dir,
            "teacher": str(self.teacher_dir(task)),
            "output_dir": str(self.run_dir(task, method, seed)),
            "teacher_cache": str(self.work_dir / task / "teacher-cache"),
            "progress": False,
        }

    def majority_settings(self, task: str) -> dict[str, Any]:
        return {"task": task, "data_dir": self.glue_dir, "output_dir": str(self.work_dir / task / MAJORITY)}

    def memory_settings(self, task: str) -> dict[str, Any]:
        keys = ("max_length", "max_train_samples", "holdout_fraction")
        settings = {k: v for k, v in {**self.recipe["shared"], **self.overrides}.items() if k in keys}
        settings.update(self.recipe["memory"])
        settings.setdefault("n_clusters", 100)
        if "memory_clusters" in self.overrides:  # DistillConfig's name for K
            settings["n_clusters"] = self.overrides["memory_clusters"]
        return {
            **settings,
            "task": task,
            "data_dir": self.glue_dir,
            "teacher": str(self.teacher_dir(task)),
            "output_dir": str(self.memory_dir(task)),
            "progress": False,
        }

    def teacher_dir(self, task: str) -> Path:
        return self.work_dir / task / TEACHER

    def memory_dir(self, task: str) -> Path:
        return self.work_dir / task / "memory"

    def run_dir(self, task: str, method: str, seed: int) -> Path:
        return self.work_dir / task / method / f"seed{seed}"

    def job_hash(self, task: str, method: str, settings: dict[str, Any]) -> str:
        """The hash a job is recorded and skipped by: its settings, and for a student its teacher's settings too."""
        if method in (TEACHER, MAJORITY):
            return settings_hash(settings)
        return settings_hash({**settings, "teacher_settings": settings_hash(self.teacher_settings(task))})

    def recipe_hash(self, record: dict[str, Any]) -> str:
        """The hash the current recipe gives the job of ``record`` (a weight-search record: with its candidate)."""
        task, method, seed = record["task"], record["method"], int(record["seed"])
        if method == TEACHER:
            settings = self.teacher_settings(task)
        elif method == MAJORITY:
            settings = self.majority_settings(task)
        else:
            settings = {**self.student_settings(task, method, seed), **(record.get("candidate") or {})}
        return self.job_hash(task, method, settings)

    def split_current(self, records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``records`` run with the current recipe's settings, and the others (run by an earlier recipe: kept in
        the results file as history, superseded by the runs of the current one)."""
        current, earlier = [], []
        for r in records:
            try:
                now = self.recipe_hash(r)
            except UnsettledCell:  # a cell the recipe has no settings for (yet): not one of its runs
                now = None
            (current if r.get("settings_hash") == now else earlier).append(r)
        return current, earlier

    # loop --------------------------------------------------------------------------------------
    def stop_requested(self) -> bool:
        return self.stop_file is not None and self.stop_file.exists()

    def plan(self) -> list[tuple[str, str, int]]:
        """Every (task, method, seed) of the suite: per task the teacher, the majority baseline (seed 0), then the
        students, seed-major."""
        jobs = []
        for task in self.tasks:
            jobs.append((task, TEACHER, int(self.recipe["teacher"].get("seed", 42))))
            jobs.append((task, MAJORITY, 0))
            seeds = {
                m: self.seeds if self.seeds is not None else table_seeds(self.recipe, task, m) for m in self.methods
            }
            jobs.extend(
                (task, method, seed)
                for seed in sorted({s for each in seeds.values() for s in each})
                for method in self.methods
                if seed in seeds[method]
            )
        return jobs

    def run(self) -> dict[str, int]:
        """Run every job not yet recorded ``ok``; returns counts of ``ok``, ``failed``, ``skipped``, ``blocked``,
        ``adopted`` and ``busy``.

        Several workers may run the same command: each job is claimed under a file lock (``<run folder>.lock``)
        and the results file is read again once it is held. A teacher another worker holds is waited for (the
        students need it); a student another worker holds is left to it (``busy``)."""
        counts = {"ok": 0, "failed": 0, "skipped": 0, "blocked": 0, "adopted": 0, "busy": 0}
        tuned = (
            {}
            if self.tuning_results is None
            else {
                (r["task"], r["method"], int(r["seed"]), r.get("settings_hash", "")): r
                for r in read_records(self.tuning_results)
                if r.get("status") == "ok"
            }
        )
        teacher_ok: dict[str, bool] = {}
        for task, method, seed in self.plan():
            if method == TEACHER:
                settings = self.teacher_settings(task)
            elif method == MAJORITY:  # needs no teacher
                settings = self.majority_settings(task)
            else:
                try:
                    settings = self.student_settings(task, method, seed)
                except UnsettledCell as why:  # its search is not finished: the cells it has settled still run
                    logger.info("%s/%s/seed%d: blocked: %s", task, method, seed, why)
                    counts["blocked"] += 1
                    continue
                if not teacher_ok.get(task):
                    counts["blocked"] += 1  # the task's teacher failed: nothing to distil from
                    continue
            key = (task, method, seed, self.job_hash(task, method, settings))
            with _claim(Path(settings["output_dir"]), wait=method == TEACHER) as held:
                if not held:
                    counts["busy"] += 1
                    continue
                if key in done_keys(read_records(self.results)) and (
                    method != TEACHER or (self.teacher_dir(task) / "config.json").is_file()
                ):
                    counts["skipped"] += 1
                    if method == TEACHER:
                        teacher_ok[task] = True
                    continue
                if method == TEACHER and self.adopt_teacher(task, seed, settings):
                    counts["adopted"] += 1
                    teacher_ok[task] = True
                    continue
                if method not in (TEACHER, MAJORITY) and key in tuned:
                    self.adopt(tuned[key])
                    counts["adopted"] += 1
                    continue
                if self.stop_requested():
                    logger.info("stop file %s found: stopping before %s/%s/seed%d", self.stop_file, task, method, seed)
                    break
                record = self.run_one(task, method, seed, settings)
            counts[record["status"]] += 1
            if method == TEACHER:
                teacher_ok[task] = record["status"] == "ok"
        return counts

    def run_one(
        self, task: str, method: str, seed: int, settings: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Train and evaluate one job, record it (ok or failed, plus ``extra`` fields), and clean up its folder."""
        out = Path(settings["output_dir"])
        settings = {**settings, "resume": _prepare_output_dir(out)}
        job_hash = self.job_hash(task, method, settings)
        started = time.time()
        logger.info("running %s / %s / seed %d%s", task, method, seed, " (resuming)" if settings["resume"] else "")
        try:
            if method == TEACHER:
                shutil.rmtree(self.memory_dir(task), ignore_errors=True)  # built from the previous teacher
                result = self.runner.finetune(settings)
            elif method == MAJORITY:
                result = self.runner.majority(settings)
            else:
                if reads_memory(settings["method"]) and "memory" not in settings:
                    settings["memory"] = self.ensure_memory(task)
                result = self.runner.distill(settings)
        except Exception as exc:  # noqa: BLE001 — a failed run is recorded and the suite goes on
            error = f"{type(exc).__name__}: {exc}"
            logger.error("%s / %s / seed %d failed: %s", task, method, seed, error)
            record = run_record(
                task=task,
                method=method,
                seed=seed,
                settings=settings,
                job_hash=job_hash,
                status="failed",
                started=started,
                error=error + "\n" + traceback.format_exc(limit=8),
            )
        else:
            keep = method == TEACHER or (method != MAJORITY and seed == self.keep_seed)
            record = run_record(
                task=task,
                method=method,
                seed=seed,
                settings=settings,
                job_hash=job_hash,
                status="ok",
                started=started,
                result=result,
                output_dir=str(out) if keep else None,
            )
            if method != MAJORITY:
                record["test_predictions"] = self.predict_test(task, method, seed, settings)
            _clean_output_dir(out, keep_model=keep)
        if method != MAJORITY:  # which fine-tuning of the teacher (for the teacher: its own weights)
            record["teacher_fingerprint"] = teacher_fingerprint(self.teacher_dir(task))
        record.update(extra or {})
        append_record(self.results, record)
        if self.on_record is not None:
            self.on_record(record)
        return record

    def adopt(self, tuning_record: dict[str, Any]) -> dict[str, Any]:
        """Record a weight-search run as the suite's run of the same job (same settings hash: the same run)."""
        record = {k: v for k, v in tuning_record.items() if k not in ("candidate", "tuning")}
        record["adopted_from"] = str(self.tuning_results)
        append_record(self.results, record)
        if self.on_record is not None:
            self.on_record(record)
        return record

    def adopt_teacher(self, task: str, seed: int, settings: dict[str, Any]) -> bool:
        """Adopt a teacher of ``teacher_results`` fine-tuned with the same settings: copy its model folder into this
        suite's (through a temporary folder, so a killed copy is never taken for a model) and record it."""
        job_hash = self.job_hash(task, TEACHER, settings)
        source = next(
            (
                r
                for r in (read_records(self.teacher_results) if self.teacher_results else [])
                if (r["task"], r["method"], int(r["seed"]), r.get("status"), r.get("settings_hash"))
                == (task, TEACHER, seed, "ok", job_hash)
                and r.get("output_dir")
                and (Path(r["output_dir"]) / "config.json").is_file()
            ),
            None,
        )
        if source is None:
            return False
        target = self.teacher_dir(task)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source["output_dir"], partial, ignore=shutil.ignore_patterns("checkpoints"))
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(self.memory_dir(task), ignore_errors=True)  # built from the previous teacher
        partial.rename(target)
        logger.info("%s / teacher: adopted %s (same settings, %s)", task, source["output_dir"], self.teacher_results)
        record = {
            **source,
            "output_dir": str(target),
            "adopted_from": str(self.teacher_results),
            "teacher_fingerprint": teacher_fingerprint(target),
        }
        record["test_predictions"] = self.predict_test(task, TEACHER, seed, {**settings, "output_dir": str(target)})
        append_record(self.results, record)
        if self.on_record is not None:
            self.on_record(record)
        return True

    def prediction_file(self, task: str, method: str, seed: int) -> Path | None:
        return None if self.predictions_dir is None else self.predictions_dir / task / method / f"seed{seed}.tsv"

    def predict_test(self, task: str, method: str, seed: int, settings: dict[str, Any]) -> str | None:
        """Write the run's predictions of the task's unlabelled ``test.tsv`` (GLUE submission format); the path
        relative to the predictions folder, or None when the task has no test file here."""
        from fsdkit.data.glue_files import TEST_FILE, task_folder
        from fsdkit.errors import DataError

        target = self.prediction_file(task, method, seed)
        try:
            has_test = (task_folder(task, self.glue_dir) / TEST_FILE).is_file()
        except DataError:  # no folder of this task here
            has_test = False
        if target is None or not has_test:
            return None
        self.runner.predict(
            {
                "model": settings["output_dir"],
                "task": task,
                "data_dir": self.glue_dir,
                "split": "test",
                "output": str(target),
                "max_length": settings.get("max_length", 128),
                "progress": False,
            }
        )
        return str(target.relative_to(self.predictions_dir))

    def ensure_memory(self, task: str) -> str:
        """The task's FSDG teacher memory folder, built on first use (by one worker; the others wait for it), and
        built again when its ``memory.json`` records other :data:`MEMORY_KEYS` than the recipe's (a recipe whose K
        changed would otherwise train every memory method from the old K while its runs record the new one)."""
        folder = self.memory_dir(task)
        settings = self.memory_settings(task)
        with _claim(folder, wait=True):
            if (folder / "memory.json").is_file():
                built = json.loads((folder / "memory.json").read_text())
                keys = (
                    MEMORY_KEYS if built.get("pooling", "flatten") == "flatten" else set(MEMORY_KEYS) - {"max_length"}
                )
                stale = [
                    f"{k} {built.get(k)!r}, not {settings.get(k)!r}" for k in keys if built.get(k) != settings.get(k)
                ]  # pooled rows do not depend on the length: such a memory records none
                if stale:
                    logger.warning("%s was built with %s: building it again", folder, "; ".join(stale))
                    shutil.rmtree(folder)
            if not (folder / "memory.json").is_file():
                self.runner.build_memory(settings)
        return str(folder)


@contextlib.contextmanager
def _claim(folder: Path, *, wait: bool):
    """Hold the file lock ``<folder>.lock`` for the body; yields False (without the lock) when another process
    holds it and ``wait`` is off."""
    from filelock import Timeout

    from fsdkit.artifacts import artifact_lock

    lock = artifact_lock(folder)  # fsdkit's own lock of that folder: fsdkit may take it again inside (build_memory)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _prepare_output_dir(out: Path) -> bool:
    """True when ``out`` holds a checkpoint to resume from; a folder without one is cleared."""
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*")):
        return True
    if out.exists():
        shutil.rmtree(out)
    return False


def _clean_output_dir(out: Path, *, keep_model: bool) -> None:
    """Delete the checkpoints of a finished run, and the whole folder unless its model is kept."""
    if not out.exists():
        return
    shutil.rmtree(out if not keep_model else out / "checkpoints", ignore_errors=True)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--glue-dir", required=True, help="GLUE folder in the standard layout (e.g. ../shared/glue)")
    parser.add_argument(
        "--tasks",
        default=None,
        help="comma-separated task names, lower case (default: the recipe's "
        "table.tasks, else " + ",".join(TABLE_TASKS) + ")",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated fsdkit methods or recipe rows (default: the "
        "recipe's table.methods, else " + ",".join(TABLE_METHODS) + ")",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds of every cell (default: each cell's by "
        "the recipe's table.seeds and table.ablation_seeds, else 1,2,3)",
    )
    parser.add_argument(
        "--results", default=None, help="JSON-lines results file, appended (default: the recipe's outputs.results)"
    )
    parser.add_argument(
        "--work-dir", default=None, help="model folders, memories, checkpoints (default: the recipe's outputs.work_dir)"
    )
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="the suite's settings (YAML)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting for every run (e.g. --set max_train_samples=64 for a smoke test)",
    )
    parser.add_argument(
        "--tuning-results",
        default="",
        help="v1's weight-search runs (tune.py, results/tuning.jsonl) to adopt when a job has the same settings",
    )
    parser.add_argument(
        "--teacher-results",
        default=str(HERE / "results" / "curves.jsonl"),
        help="another results file whose teachers, fine-tuned with the same settings, are adopted "
        "(model folder copied) instead of fine-tuned again (default results/curves.jsonl, the "
        "regime study's; '' = none)",
    )
    parser.add_argument(
        "--predictions-dir",
        default=None,
        help="test-set predictions of every finished run: DIR/<task>/<method>/seed<k>.tsv ('' = none; default: "
        "the recipe's outputs.predictions)",
    )
    parser.add_argument(
        "--stop-file", default=None, help="stop before the next run when this file exists (default WORK_DIR/STOP)"
    )
    args = parser.parse_args(argv)
    from fsdkit.cli import unwind_on_termination

    unwind_on_termination()  # `kill`: the run stops like Ctrl-C, resumable from its checkpoint
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from fsdkit.data import get_task

    recipe = load_recipe(args.recipe)
    work_dir = Path(args.work_dir or recipe_output(recipe, "work_dir"))
    predictions = recipe_output(recipe, "predictions") if args.predictions_dir is None else args.predictions_dir
    table = recipe.get("table") or {}
    suite = Suite(
        glue_dir=args.glue_dir,
        tasks=[get_task(t).name for t in (_csv(args.tasks) if args.tasks else table.get("tasks", TABLE_TASKS))],
        methods=_csv(args.methods) if args.methods else list(table.get("methods", TABLE_METHODS)),
        seeds=[int(s) for s in _csv(args.seeds)] if args.seeds else None,
        results=Path(args.results or recipe_output(recipe, "results")),
        work_dir=work_dir,
        recipe=recipe,
        overrides=parse_overrides(args.overrides),
        stop_file=Path(args.stop_file) if args.stop_file else work_dir / "STOP",
        tuning_results=Path(args.tuning_results) if args.tuning_results else None,
        teacher_results=Path(args.teacher_results) if args.teacher_results else None,
        predictions_dir=Path(predictions) if predictions else None,
        on_record=lambda r: print(
            json.dumps({k: r[k] for k in ("task", "method", "seed", "status", "metrics", "wall_time")}), flush=True
        ),
    )
    counts = suite.run()
    print(json.dumps({"summary": counts, "results": str(suite.results)}), flush=True)
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
