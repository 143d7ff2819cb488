"""The model card (``README.md``) every exported model folder carries: what it is, how it was made, how it scores.

Front matter in the Hugging Face Hub's format (``library_name``, ``tags``, ``pipeline_tag``), then the model
(base, layers, parameters, labels), the teacher and the loss terms with their weights, the data, the metrics,
the ``fsdkit`` command line that made it, and the fsdkit version and commit.
"""

from __future__ import annotations

from pathlib import Path

from fsdkit.artifacts import atomic_write_text
from fsdkit.run_record import RunRecord


def _metrics_table(metrics: dict[str, dict[str, float]]) -> list[str]:
    names = sorted({name for split in metrics.values() for name in split})
    lines = ["| split | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for split, values in metrics.items():
        lines.append(
            f"| {split} | " + " | ".join(f"{100 * values[n]:.2f}" if n in values else "" for n in names) + " |"
        )
    return lines


def render_model_card(record: RunRecord, labels: dict[int, str] | None) -> str:
    """The card's Markdown for a run record."""
    distilled = record.command == "distill"
    config = record.config
    data = config.get("train_file") or config.get("dataset") or config.get("task")
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags:",
        "- fsdkit",
        *(["- knowledge-distillation", f"- {record.method}"] if distilled else ["- fine-tuned"]),
        "---",
        "",
        f"# {'Student distilled with ' + record.method if distilled else 'Fine-tuned model'} ({record.task})",
        "",
        "## Model",
        (
            f"- A fresh student of shape {record.student_shape} (random initialisation, the teacher's tokenizer)"
            if record.student_shape
            else f"- Base: `{record.student_base or record.model}`"
            + (
                f", layers {record.student_layers} ({record.student_init or 'pretrained'} initialisation)"
                if distilled
                else ""
            )
        ),
        f"- Transformer layers: {record.num_layers}; parameters: {record.parameters:,}",
    ]
    if labels:
        lines.append("- Labels: " + ", ".join(f"{i} = `{name}`" for i, name in sorted(labels.items())))
    if distilled:
        teacher = f"`{record.teacher}`" if record.teacher else "none (the method has no teacher term)"
        lines += [
            "",
            "## Distillation",
            f"- Teacher: {teacher}",
            "- Loss: "
            + " + ".join(f"{t['weight']:g} · {t['label']}" for t in record.terms)
            + " (term definitions: fsdkit's docs/math.md)",
        ]
    lines += [
        "",
        "## Data",
        f"- `{data}`; {record.train_examples:,} training examples, seed {record.seed}",
        f"- {record.global_steps} optimizer steps, {record.train_runtime:.0f} s of training",
        "",
        "## Metrics (×100)",
        "",
        *_metrics_table(record.metrics),
        "",
        "## Reproduce",
        "",
        "```bash",
        record.command_line or "",
        "```",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        'classify = pipeline("text-classification", model="PATH_TO_THIS_FOLDER")',
        "```",
        "",
        f"Made with fsdkit {record.fsdkit_version}"
        + (f" (commit {record.git_commit[:12]})" if record.git_commit else "")
        + f", torch {record.torch_version}.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder: str | Path, record: RunRecord, labels: dict[int, str] | None) -> Path:
    """Write the card of ``record`` as ``FOLDER/README.md``; returns its path."""
    path = Path(folder) / "README.md"
    atomic_write_text(path, render_model_card(record, labels))
    return path
