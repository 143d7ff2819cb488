"""``fsdkit compress`` on real tasks: MRPC and SST-2 from the packaged MiniLM's fine-tuned teacher (benchmarks/compress/).

::

    OMP_NUM_THREADS=1 python benchmarks/compress_bench.py --glue-dir ../shared/glue [--tasks mrpc,sst2]

Per task, each step resumable and skipped once done (a killed run resumes where it stopped):

1. **Data.** MRPC as it is; SST-2's training set cut to its first ``--sst2-train`` sentences (8,000 of 67,349: one
   trial then costs about an MRPC one), written with SST-2's dev and test files to ``work/compress/glue/SST-2``.
2. **Teacher.** The packaged all-MiniLM-L6-v2 fine-tuned with benchmark v3's teacher settings (recipe-v3.yaml
   ``teacher``) on the training set less compress's holdout split (``--holdout-fraction 0.1``, seed 0: the rows
   every trial is scored on). A teacher fine-tuned on those rows scores them from memory, and so do the students
   started from its layers: the first attempt, with v3's own MRPC teacher, scored a 4-layer VKD student at holdout
   F1 94.2 (the teacher's dev F1 is 85.7).
3. **The study.** ``fsdkit compress --target-retention 0.97 --metric accuracy --trials N`` (an Optuna study in
   ``work/compress/<task>/study/compress.db``; latency measured on this machine). Accuracy for MRPC too, not its
   main metric F1: F1 of the positive class (68 % of MRPC's pairs) forgives a student that calls most pairs
   paraphrases — the first MRPC study, on F1, rated students of 63–69 % holdout accuracy (the majority class is
   68 %) within a few points of the teacher.
4. **Seeds.** The chosen student's settings (its trial's run record) re-run at seeds 1..``--seeds`` on the same
   split, scored on dev, with test-set predictions written to ``predictions/<task>/compress/seed<k>.tsv``; each
   finished seed is a line of ``results/compress.jsonl`` at once.
5. **int8.** The chosen student is exported with ``--quantize int8`` (dynamic or static quantization, as
   ``fsdkit.quantize.choose`` keeps one) and both ONNX models scored and timed on dev.
6. **Report.** ``front.md``, ``front.png`` and ``compress.json`` copied to ``compress/<task>/``, and
   ``compress/README.md`` (the fronts and the seeds' dev scores) regenerated from the results.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fsdkit.config import DistillConfig, option_names  # noqa: E402
from fsdkit.run_record import RunRecord  # noqa: E402
from report import seeds_cell  # noqa: E402
from suite import Suite, append_record, load_recipe, read_records  # noqa: E402

OUT = HERE / "compress"
RESULTS = HERE / "results" / "compress.jsonl"
PLACES = ("output_dir", "data_dir", "teacher", "teacher_cache", "memory", "progress", "resume", "cache_dir")


def sst2_subset(glue_dir: Path, work: Path, rows: int) -> Path:
    """A GLUE folder whose SST-2 has the first ``rows`` training sentences and the full dev and test files, written
    whole or not at all; one made with another ``rows`` is refused (the teacher and the study were made on it)."""
    from fsdkit.artifacts import staged_dir

    folder = work / "glue" / "SST-2"
    lines = (glue_dir / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    rows = min(rows, len(lines) - 1)
    if (folder / "train.tsv").is_file():
        with open(folder / "train.tsv", encoding="utf-8") as train:
            have = sum(1 for _ in train) - 1
        if have != rows:
            raise SystemExit(
                f"{folder} holds SST-2's first {have} training sentences, not --sst2-train {rows}: give another "
                "--work-dir"
            )
        return folder.parent
    with staged_dir(folder) as staging:  # a folder without its training file (killed mid-copy) is made again
        (staging / "train.tsv").write_text("".join(lines[: rows + 1]), encoding="utf-8")
        for name in ("dev.tsv", "test.tsv"):
            shutil.copyfile(glue_dir / "SST-2" / name, staging / name)
    return folder.parent


def teacher(task: str, data_dir: Path, work: Path) -> Path:
    """Benchmark v3's teacher of ``task`` fine-tuned without the rows of compress's holdout split (the same seed-0
    split of the training set): the holdout scores of the teacher and of every student started from its layers
    are then scores on rows none of them was trained on."""
    from fsdkit.compress import HOLDOUT_FRACTION

    suite = Suite.for_task(
        task,
        load_recipe(HERE / "recipe-v3.yaml"),
        glue_dir=data_dir,
        work_dir=work,
        results=work / "teachers.jsonl",
        overrides={"holdout_fraction": HOLDOUT_FRACTION},
    )
    return suite.ensure_teacher(task)


def chosen_student(study_dir: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The study's chosen student (``compress.json``'s, with its teacher's weights sha256) and its distill settings
    (its run record), places left out; None if none."""
    chosen = _chosen(json.loads((study_dir / "compress.json").read_text()))
    if chosen is None:
        return None
    record = RunRecord.read(chosen["output_dir"])
    names = set(option_names(DistillConfig))
    return chosen, {k: v for k, v in record.config.items() if k in names and k not in PLACES}


def _chosen(result: dict[str, Any]) -> dict[str, Any] | None:
    """``compress.json``'s chosen student with its teacher's weights sha256 (``teacher_sha256``); None if none."""
    if result.get("chosen") is None:
        return None
    return {**result["chosen"], "teacher_sha256": result["teacher"].get("sha256")}


def seed_records(task: str, chosen: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded seed runs of ``task`` that re-train ``chosen`` (``compress.json``'s chosen student): the same trial,
    the same student (:func:`student_of` its settings) and, where recorded, the same teacher (weights sha256) — not a
    student chosen before the study had all its trials, nor another study's trial of the same number."""
    key = (chosen["trial"], list(chosen["layers"]), chosen["start"], chosen["recipe"])
    return [
        r
        for r in read_records(RESULTS)
        if r.get("kind") == "seed"
        and r["task"] == task
        and (r["trial"], *student_of(r["settings"])) == key
        and r.get("teacher_sha256", chosen.get("teacher_sha256")) == chosen.get("teacher_sha256")
    ]


def student_of(settings: dict[str, Any]) -> tuple[list[int], str, str]:
    """``(layers, start, recipe)`` of a compress student's distill settings (the names of ``compress.json``)."""
    losses = {loss["name"] for loss in settings.get("losses") or []}
    recipe = f"{settings['method']}-minilm" if "minilm" in losses else settings["method"]
    return list(settings["student_layers"]), "teacher" if settings["student"] == "teacher" else "pretrained", recipe


def seed_runs(task: str, data_dir: Path, teacher_dir: Path, study_dir: Path, seeds: int) -> None:
    """The chosen student at seeds 1..``seeds``: dev scores recorded, test predictions written."""
    from fsdkit import distill, predict

    student = chosen_student(study_dir)
    if student is None:
        return
    chosen, settings = student
    done = {r["seed"] for r in seed_records(task, chosen)}
    for seed in range(1, seeds + 1):
        if seed in done:
            continue
        out = study_dir.parent / "seeds" / f"seed{seed}"
        shutil.rmtree(out, ignore_errors=True)  # a killed run's leftovers: started afresh
        record = distill(
            **{**settings, "seed": seed, "teacher": str(teacher_dir), "data_dir": str(data_dir), "output_dir": str(out)}
        )
        predictions = HERE / "predictions" / task / "compress" / f"seed{seed}.tsv"
        predictions.parent.mkdir(parents=True, exist_ok=True)
        predict(model=str(out), task=task, data_dir=str(data_dir), split="test", output=str(predictions))
        append_record(
            RESULTS,
            {
                "kind": "seed",
                "task": task,
                "trial": chosen["trial"],
                "teacher_sha256": chosen["teacher_sha256"],
                "seed": seed,
                "settings": settings,
                "metrics": record["metrics"],
            },
        )


def _spread(split: str, name: str, runs: list[dict[str, Any]]) -> str:
    """``split name mean ± sd (each seed's score)`` in points."""
    return f"{split} {name} {seeds_cell([100 * r['metrics'][split][name] for r in runs])}"


def _int8_line(q: dict[str, Any]) -> str:
    """The chosen student's int8 export (``fsdkit export --quantize int8``) against its float32 ONNX model."""
    f, i = q["float"], q["int8"]
    scores = ", ".join(
        f"{name} {100 * f['metrics'][name]:.2f} → {100 * i['metrics'][name]:.2f}" for name in f["metrics"]
    )
    return (
        f"Its int8 export ({q['quantization']} quantization, chosen from {', '.join(q['candidates'])} by "
        f"`quantize.choose`), on {q['split']} ({q['n_examples']} rows): {scores}; "
        f"{f['size_mb']:.1f} → {i['size_mb']:.1f} MB; latency batch 1 {f['latency_ms_batch1']:.1f} → "
        f"{i['latency_ms_batch1']:.1f} ms, batch 32 {f['latency_ms_batch32']:.0f} → {i['latency_ms_batch32']:.0f} ms"
        + (f" — **flagged**: {q['drop_points']:.2f} points lost" if q["drop_points"] > q["tolerance_points"] else "")
        + (" — **flagged**: not faster than float at batch 1" if q.get("slower_than_float") else "")
        + "."
    )


def report() -> None:
    """compress/README.md from the copied studies and the seeds' records."""
    lines = [
        "# `fsdkit compress` on MRPC and SST-2",
        "",
        "Generated by `benchmarks/compress_bench.py` (see its docstring for the protocol). Each task's Pareto front",
        "(holdout score against batch-1 latency measured on the machine that ran the study) is in `<task>/front.md`",
        "and `<task>/front.png`; the chosen student is the fastest student that keeps 97 % of the teacher's",
        "holdout accuracy (MRPC too: see the protocol for why not its F1).",
        "",
    ]
    for folder in sorted(p for p in OUT.iterdir() if (p / "compress.json").is_file()):
        result = json.loads((folder / "compress.json").read_text())
        chosen = _chosen(result)
        lines += [f"## {result['task']}", "", (folder / "front.md").read_text().split("\n", 2)[2].strip(), ""]
        runs = seed_records(result["task"], chosen) if chosen else []
        if chosen and runs:
            dev = next(iter(runs[0]["metrics"]))
            lines += [
                f"Chosen student (trial {chosen['trial']}: {len(chosen['layers'])} layers {chosen['layers']}, start "
                f"{chosen['start']}, recipe {chosen['recipe']}), re-trained at seeds "
                f"{', '.join(str(r['seed']) for r in runs)}: "
                + "; ".join(_spread(dev, name, runs) for name in runs[0]["metrics"][dev])
                + f". Test predictions in `predictions/{result['task']}/compress/`.",
                "",
            ]
        if "quantization" in result:
            lines += [_int8_line(result["quantization"]), ""]
    (OUT / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", required=True)
    parser.add_argument("--tasks", default="mrpc,sst2")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sst2-train", type=int, default=8000)
    parser.add_argument("--work-dir", default=str(HERE / "work" / "compress"))
    args = parser.parse_args(argv)
    from fsdkit.compress import compress

    work = Path(args.work_dir)
    for task in args.tasks.split(","):
        data_dir = sst2_subset(Path(args.glue_dir), work, args.sst2_train) if task == "sst2" else Path(args.glue_dir)
        teacher_dir = teacher(task, data_dir, work)
        study_dir = work / task / "study"
        compress(
            teacher=str(teacher_dir),
            task=task,
            data_dir=str(data_dir),
            output_dir=str(study_dir),
            target_retention=0.97,
            metric="accuracy",
            trials=args.trials,
            quantize="int8",
        )
        seed_runs(task, data_dir, teacher_dir, study_dir, args.seeds)
        (OUT / task).mkdir(parents=True, exist_ok=True)
        for name in ("front.md", "front.png", "compress.json"):
            shutil.copyfile(study_dir / name, OUT / task / name)
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
