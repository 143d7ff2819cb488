"""``fsdkit demo``: the offline default end to end.

Fine-tune the packaged all-MiniLM-L6-v2 on ``rt-sentiment``, distil a 3-layer student with VKD and with FSD
(intra + local + global structure; the teacher memory is built on the way), evaluate all three and print
one table. The teacher's outputs are computed once into a teacher-output cache that the memory and both
students read (FSD runs first: its cache of logits and features covers VKD's request). The table gives each
model's metric, parameters, training and evaluation time. Each stage is a normal fsdkit run folder under
``OUTPUT_DIR``; a stage already finished is reused and an interrupted one resumes, so the demo can be re-run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsdkit.config import DistillConfig
from fsdkit.methods import get_method, run_terms
from fsdkit.run_record import RunRecord
from fsdkit.settings import setting


@dataclass
class DemoConfig:
    task: str = setting("rt-sentiment", "task (the offline default: Rotten Tomatoes sentences, vaderSentiment 3.3.2)")
    data_dir: str | None = setting(None, "GLUE folder, for running the demo on a GLUE task instead")
    output_dir: str = setting("runs/demo", "folder of the three runs and the result table")
    model: str = setting("minilm", "pretrained base of teacher and student")
    student_layers: int | list[int] = setting(3, "student layers (first k, or a list)")
    methods: list[str] = field(
        default_factory=lambda: ["vkd", "fsd"], metadata={"help": "distillation methods to run (comma-separated)"}
    )
    memory_clusters: int = setting(100, "K of FSD's teacher memory")
    seed: int = setting(42, "random seed")
    epochs: float = setting(1.0, "epochs of each training run")
    max_steps: int = setting(-1, "optimizer steps of each run (overrides --epochs)")
    batch_size: int = setting(32, "training batch size")
    max_length: int = setting(
        64, "truncate inputs to this many tokens (padding is dynamic; 99.9 % of rt-sentiment fits in 64)"
    )
    group_by_length: bool = setting(True, "batch sentences of similar length together (less padding)")
    max_train_samples: int | None = setting(None, "use only the first N training examples")
    progress: bool = setting(True, "show progress bars")
    cache_dir: str | None = setting(None, "cache folder for prepared data")


def _run_or_reuse(out: Path, run) -> RunRecord:
    """The run record of ``out``: the one there, else that of ``run(resume)`` (resuming its checkpoints)."""
    record = RunRecord.read(out)
    if record is not None:
        return record
    resume = (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("checkpoint-*"))
    return RunRecord.from_dict(run(resume))


def format_table(rows: list[dict], metric: str) -> str:
    header = f"| model | layers | parameters | dev {metric} | train time (s) | eval time (s) |"
    lines = [header, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['layers']} | {r['parameters'] / 1e6:.1f}M | {100 * r['metric']:.2f} | "
            f"{r['train_time']:.0f} | {r['eval_time']:.1f} |"
        )
    return "\n".join(lines)


def _cache_order(methods: list[str]) -> list[str]:
    """The methods whose terms read the teacher's hidden states first: the teacher-output cache the first of them
    builds (logits and features) then serves the others too (a covering cache), so the teacher passes over the
    training set once for all the students."""

    def reads_features(method: str) -> bool:
        return any(spec.name not in ("task", "kd") for spec in run_terms(DistillConfig(method=method)))

    return sorted(methods, key=lambda m: not reads_features(m))


def _memory_settings(method: str, config: DemoConfig) -> dict:
    """The demo's K of the teacher memory, for a method that reads one."""
    return {"memory_clusters": config.memory_clusters} if "memory_clusters" in get_method(method).settings() else {}


def run_demo(config: DemoConfig | None = None) -> list[dict]:
    """Run the demo; returns the table rows and writes ``OUTPUT_DIR/demo_results.{json,md}``."""
    from fsdkit.training.run import distill, finetune

    config = config or DemoConfig()
    started = time.time()
    root = Path(config.output_dir)
    common: dict[str, Any] = dict(
        task=config.task,
        data_dir=config.data_dir,
        seed=config.seed,
        epochs=config.epochs,
        max_steps=config.max_steps,
        batch_size=config.batch_size,
        max_length=config.max_length,
        group_by_length=config.group_by_length,
        max_train_samples=config.max_train_samples,
        progress=config.progress,
        cache_dir=config.cache_dir,
    )
    print(f"[fsdkit demo] 1/{1 + len(config.methods)}: fine-tuning the teacher ({config.model}) on {config.task}")
    teacher_dir = root / "teacher"
    records = {
        "teacher": _run_or_reuse(
            teacher_dir,
            lambda resume: finetune(model=config.model, output_dir=str(teacher_dir), resume=resume, **common),
        )
    }
    for i, method in enumerate(_cache_order(config.methods), start=2):
        print(
            f"[fsdkit demo] {i}/{1 + len(config.methods)}: distilling a {config.student_layers}-layer student with {method}"
        )
        out = root / method
        records[method] = _run_or_reuse(
            out,
            lambda resume, m=method, o=out: distill(
                teacher=str(teacher_dir),
                student=config.model,
                student_layers=config.student_layers,
                method=m,
                teacher_cache=str(root / "teacher-cache"),
                output_dir=str(o),
                **_memory_settings(m, config),
                resume=resume,
                **common,
            ),
        )
    rows = []
    for name in ["teacher", *config.methods]:  # the table in the order asked for
        record = records[name]
        metrics = next(iter(record.metrics.values()))
        rows.append(
            {
                "model": name if name == "teacher" else f"student ({name})",
                "layers": record.num_layers,
                "parameters": record.parameters,
                "metric": metrics[record.main_metric],
                "metrics": metrics,
                "train_time": record.train_runtime,
                "eval_time": record.eval_runtime,
                "output_dir": record.config["output_dir"],
            }
        )
    table = format_table(rows, records["teacher"].main_metric)
    wall = time.time() - started
    summary = f"{table}\n\ntask {config.task}, dev set; wall time of this demo run: {wall / 60:.1f} min; runs in {root}"
    print(summary)
    (root / "demo_results.json").write_text(json.dumps({"rows": rows, "wall_time": wall}, indent=2) + "\n")
    (root / "demo_results.md").write_text(summary + "\n")
    return rows
