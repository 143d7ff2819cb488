"""Unlabelled transfer data (``--transfer-file``) where labels are scarce: SST-2 with 1,000 labelled sentences.

::

    OMP_NUM_THREADS=1 python benchmarks/transfer_bench.py --glue-dir ../shared/glue [--labels 1000] [--transfer-rows 9000]

The protocol (issue "fsdkit compress", item 2), each step resumable and skipped once done:

1. **Data.** SST-2 as it is, every run reading only its first ``--labels`` training sentences
   (``max_train_samples``: part of every run's settings, so other counts are other runs); the next
   ``--transfer-rows`` sentences, their labels dropped, are the transfer file
   (``work/transfer/sst2-<labels>-<rows>.tsv``, one ``sentence`` column; its name, in the settings too, says which).
2. **Teacher.** The packaged all-MiniLM-L6-v2 fine-tuned on the labelled part only, with the benchmark's teacher
   settings (recipe-v2.yaml ``teacher``).
3. **Students.** VKD and the FSD-family row benchmark v2 recommends (FSDI + MiniLM's attention term), each with its
   searched settings from recipe-v2.yaml (3 teacher layers, 3 epochs), at seeds 1..``--seeds``, once on the labelled
   rows only and once with ``--transfer-file`` (rows ``<method>-transfer``): the same settings, the same number of
   epochs, so a transfer run takes more steps — what a user adding the flag gets. Each finished run is a line of
   ``results/transfer.jsonl`` at once (the suite's record format; a killed run resumes from its checkpoint).
4. **Control.** After those rows, each method on the labelled rows only for as many examples as a transfer run sees
   (rows ``<method>-long``: the epochs times (labelled + transfer rows) / labelled rows, 30 for 1,000 + 9,000):
   whether a gain comes from the unlabelled text or from the longer training it brings.
5. **Report.** ``compress/transfer.md``: dev accuracy per row (mean ± sd over the seeds), the gain of the transfer
   rows over each of the others and its one-sided Welch p-value.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import latest_ok, seeds_cell  # noqa: E402
from suite import TEACHER, Suite, load_recipe, parse_overrides, read_records, recipe_section  # noqa: E402

RESULTS = HERE / "results" / "transfer.jsonl"
REPORT = HERE / "compress" / "transfer.md"
TASK = "sst2"
#: the rows compared: benchmark v2's searched VKD and its recommended FSD-family row
METHODS = ("vkd", "fsdi-minilm")
SUFFIX = "-transfer"
#: the control: labelled rows only, for as many epochs as make the examples a transfer run sees
CONTROL = "-long"


def transfer_file(glue_dir: Path, work: Path, labels: int, transfer_rows: int) -> Path:
    """SST-2's training sentences ``labels`` … ``labels + transfer_rows`` without their labels, as a transfer file
    whose name carries both counts (written once)."""
    with (glue_dir / "SST-2" / "train.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    if labels + transfer_rows > len(body):
        raise SystemExit(f"--labels {labels} + --transfer-rows {transfer_rows} exceed SST-2's {len(body)} rows")
    text = header.index("sentence")
    path = work / f"sst2-{labels}-{transfer_rows}.tsv"
    work.mkdir(parents=True, exist_ok=True)
    _write_tsv(path, [["sentence"], *([row[text]] for row in body[labels : labels + transfer_rows])])
    return path


def _write_tsv(path: Path, rows: list[list[str]]) -> None:
    """``rows`` as a tab-separated file, through a temporary file (a killed write never leaves half a file)."""
    text = "".join("\t".join(row) + "\n" for row in rows)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def suite(
    glue_dir: Path,
    labels: int,
    transfer: Path,
    work: Path,
    seeds: int,
    results: Path,
    overrides: dict[str, Any] | None = None,
    rows: tuple[str, ...] = ("", SUFFIX),
) -> Suite:
    """One suite over ``rows`` of each method — the method itself (``""``), the same with the transfer file
    (:data:`SUFFIX`), the same on the labelled rows for as many examples as a transfer run sees (:data:`CONTROL`:
    the epochs times (labelled + transfer rows) / labelled rows) — every run (the teacher too) on the first ``labels``
    training sentences (``overrides``: the suite's ``--set``, for smoke runs; like ``max_train_samples``, they enter
    the settings hash). Every suite's recipe holds all three rows: the hash of a run does not depend on ``rows``."""
    recipe = load_recipe(HERE / "recipe-v2.yaml")
    transfer_rows = sum(1 for _ in transfer.open(encoding="utf-8")) - 1
    overrides = dict(overrides or {})
    # an --set epochs=N is every method's epochs, the control's scaled from it (a suite override would set it too)
    epochs = overrides.pop("epochs", None)
    for method in METHODS:
        own = dict(recipe["methods"].get(method) or {})
        preset = own.pop("preset", method)
        if epochs is not None:
            own["epochs"] = epochs
            recipe["methods"][method] = {"preset": preset, **own}
        base = own.get("epochs", recipe_section(recipe, "student", TASK)["epochs"])
        recipe["methods"][method + SUFFIX] = {"preset": preset, **own, "transfer_file": str(transfer)}
        recipe["methods"][method + CONTROL] = {
            "preset": preset,
            **own,
            "epochs": base * (labels + transfer_rows) / labels,
        }
    if epochs is not None:  # the teacher's too, as the suite override did
        per_task = dict(recipe["teacher"].get("per_task") or {})
        per_task[TASK] = {**(per_task.get(TASK) or {}), "epochs": epochs}
        recipe["teacher"] = {**recipe["teacher"], "per_task": per_task}
    return Suite(
        glue_dir=str(glue_dir),
        tasks=[TASK],
        methods=[m + s for m in METHODS for s in rows],
        seeds=list(range(1, seeds + 1)),
        results=results,
        work_dir=work,
        recipe=recipe,
        overrides={**overrides, "max_train_samples": labels},
        predictions_dir=None,
    )


def report(runs: Suite, labels: int, transfer_rows: int) -> str:
    """The markdown of ``compress/transfer.md`` from the runs of ``runs``'s settings in the results file."""
    current, _ = runs.split_current(read_records(runs.results))
    records = latest_ok(current)
    by_method: dict[str, list[float]] = {}
    for record in sorted(records, key=lambda r: int(r["seed"])):
        by_method.setdefault(record["method"], []).append(100 * record["metrics"]["accuracy"])

    lines = [
        "# Unlabelled transfer data on SST-2 with scarce labels",
        "",
        f"Generated by `benchmarks/transfer_bench.py` (protocol in its docstring): {labels:,} labelled SST-2 training",
        f"sentences, the next {transfer_rows:,} as unlabelled transfer text (`--transfer-file`; labels dropped), the",
        "teacher fine-tuned on the labelled part only; 3-layer students from the teacher's layers with benchmark v2's",
        "searched settings, the same epochs with and without the transfer file. SST-2 dev accuracy (872 sentences).",
        "",
    ]
    if TEACHER in by_method:
        lines.append(f"- teacher (fine-tuned on the labelled sentences): {seeds_cell(by_method[TEACHER])}")
    lines += [
        "",
        "| method | labelled only | + transfer text | gain | p (one-sided Welch) | labelled only, as many examples "
        "seen | gain over it | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        alone, more, long = (by_method.get(method + suffix, []) for suffix in ("", SUFFIX, CONTROL))
        cells = [seeds_cell(scores) if scores else "—" for scores in (alone, more)]
        lines.append(
            f"| {method} | {cells[0]} | {cells[1]} | {_gain(more, alone)} | {seeds_cell(long) if long else '—'} | "
            f"{_gain(more, long)} |"
        )
    times = f"{(labels + transfer_rows) / labels:g}"
    lines += [
        "",
        f"The transfer runs train for the same epochs over {times} times the rows, so they take {times} times the steps;",
        f"the last columns compare them with the labelled rows trained for as many examples (the epochs times {times}),",
        "which separates what the unlabelled text adds from what longer training adds.",
    ]
    return "\n".join(lines) + "\n"


def _gain(more: list[float], less: list[float]) -> str:
    """``gain | p`` cells: the mean difference and its one-sided Welch p-value (blank when a side has no run)."""
    from fsdkit.analysis.significance import welch_one_sided

    if not more or not less:
        return " | "
    try:
        p = f"{welch_one_sided(more, less):.3f}"
    except ValueError as error:  # fewer than two seeds, or no spread: say so instead of a number
        p = f"n/a ({error})"
    return f"{statistics.mean(more) - statistics.mean(less):+.2f} | {p}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", required=True)
    parser.add_argument("--labels", type=int, default=1000, help="labelled training sentences (SST-2's first)")
    parser.add_argument("--transfer-rows", type=int, default=9000, help="the next sentences, as transfer text")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--work-dir", default=str(HERE / "work" / "transfer"))
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--report", default=str(REPORT))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    args = parser.parse_args(argv)
    work = Path(args.work_dir)
    transfer = transfer_file(Path(args.glue_dir), work, args.labels, args.transfer_rows)
    runs = suite(
        Path(args.glue_dir), args.labels, transfer, work, args.seeds, Path(args.results), parse_overrides(args.set)
    )
    runs.run()  # the compared rows first, then the control
    suite(
        Path(args.glue_dir),
        args.labels,
        transfer,
        work,
        args.seeds,
        Path(args.results),
        parse_overrides(args.set),
        rows=(CONTROL,),
    ).run()
    out = Path(args.report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(runs, args.labels, args.transfer_rows))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
