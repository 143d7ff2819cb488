"""``fsdkit`` command line: flags are generated from the config dataclasses; no logic of its own.

Each command accepts ``--config FILE`` (YAML or JSON) whose keys are the command's flag names; flags given
on the command line override the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fsdkit.config import (
    AnalyzeConfig,
    CompressConfig,
    DistillConfig,
    EvaluateConfig,
    ExportConfig,
    FinetuneConfig,
    MemoryConfig,
    PredictConfig,
    SweepConfig,
    declared_options,
    make_config,
    option_names,
    parse_loss_flag,
    read_config_file,
)
from fsdkit.errors import FsdkitError
from fsdkit.methods import METHODS, methods_with
from fsdkit.settings import Setting, settings_of


def _flag_help(text: str, default=None, valid: str = "") -> str:
    """A flag's help: ``text (default: D; VALID)``, with a literal ``%`` escaped (argparse formats help with %)."""
    notes = "; ".join(filter(None, (None if default is None else f"default: {default}", valid)))
    return (f"{text} ({notes})" if notes else text).replace("%", "%%")


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls) -> None:
    """A flag for every setting of ``cls`` (:func:`fsdkit.settings.settings_of`), then one for every setting of the
    methods (DistillConfig), each with its help, default and valid range."""
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}
    for name, declared in settings_of(cls).items():
        meta = metadata[name]
        help_text = _flag_help(declared.help, declared.default, declared.valid_range())
        if meta.get("positional"):
            parser.add_argument(name, nargs="?", default=argparse.SUPPRESS, help=help_text)
        elif meta.get("repeat"):
            parser.add_argument(
                f"--{meta['repeat']}",
                dest=name,
                action="append",
                default=argparse.SUPPRESS,
                metavar="SPEC",
                help=help_text,
            )
        else:
            _add_flag(parser, declared, help_text, nargs=meta.get("nargs"))
    for declared in declared_options(cls).values():  # the methods' settings (fsdkit.methods), declared with them
        users = ", ".join(methods_with(declared.name))
        _add_flag(
            parser,
            declared,
            _flag_help(f"{declared.help} [--method {users}]", declared.default, declared.valid_range()),
        )
    parser.add_argument("--config", default=None, metavar="FILE", help="YAML/JSON file of options (keys = flag names)")


def _add_flag(parser: argparse.ArgumentParser, declared: Setting, help_text: str, nargs: str | None = None) -> None:
    if declared.type is bool:
        parser.add_argument(
            declared.flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
        )
    else:
        parser.add_argument(declared.flag, nargs=nargs, default=argparse.SUPPRESS, metavar="X", help=help_text)


def _config_from_args(args: argparse.Namespace, cls, command: str):
    values = read_config_file(args.config, cls, command) if args.config else {}
    names = set(option_names(cls))
    flags = {k: v for k, v in vars(args).items() if k in names}
    if "losses" in flags:
        flags["losses"] = [parse_loss_flag(text) for text in flags["losses"]]
    config = make_config(cls, {**values, **flags})
    if not getattr(config, "progress", True):
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    return config


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _print_run(record: dict, config, *keys: str) -> None:
    """The run's summary, printed by the main process only (the others of `accelerate launch` return early)."""
    if "metrics" in record:
        _print_json({"output_dir": config.output_dir, **{k: record[k] for k in keys}, "metrics": record["metrics"]})


def _cmd_finetune(args) -> None:
    from fsdkit.training.run import finetune

    config = _config_from_args(args, FinetuneConfig, "finetune")
    _print_run(finetune(config), config)


def _cmd_distill(args) -> None:
    from fsdkit.training.run import distill

    config = _config_from_args(args, DistillConfig, "distill")
    _print_run(distill(config), config, "method")


def _cmd_memory_build(args) -> None:
    from fsdkit.training.teacher_memory import build_memory

    config = _config_from_args(args, MemoryConfig, "memory build")
    memory = build_memory(config)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # `accelerate launch`: the main process reports
    meta = memory.metadata
    _print_json(
        {
            "output_dir": config.output_dir,
            "n_clusters": memory.n_clusters,
            "dim": memory.dim,
            "n_iter": meta.get("n_iter"),
            "converged": meta.get("converged"),
            "final_inertia": (meta.get("inertia_history") or [None])[-1],
        }
    )


def _cmd_evaluate(args) -> None:
    from fsdkit.evaluation import evaluate

    _print_json(evaluate(_config_from_args(args, EvaluateConfig, "evaluate")))


def _cmd_predict(args) -> None:
    from fsdkit.prediction import predict

    _print_json(predict(_config_from_args(args, PredictConfig, "predict")))


def _cmd_compress(args) -> None:
    """The front as a table (front.md), then where the chosen student went; the whole result is compress.json."""
    from fsdkit.compress import compress, retention_text

    config = _config_from_args(args, CompressConfig, "compress")
    result = compress(config)
    out = Path(config.output_dir)
    print((out / "front.md").read_text(encoding="utf-8"))
    chosen = result["chosen"]
    if chosen is not None:
        print(
            f"chosen: trial {chosen['trial']} ({len(chosen['layers'])} layer{'s' * (len(chosen['layers']) != 1)}, "
            f"{chosen['recipe']}, "
            f"{retention_text(chosen['retention'])} of the teacher, {chosen['latency_ms']:.2f} ms at batch 1) -> "
            f"{out / 'student'}"
        )
    print(f"front plot: {out / 'front.png'}; everything: {out / 'compress.json'}")


def _cmd_export(args) -> None:
    from fsdkit.export import export

    _print_json(export(_config_from_args(args, ExportConfig, "export")))


def _cmd_sweep(args) -> None:
    from fsdkit.sweep import sweep

    _print_json(sweep(_config_from_args(args, SweepConfig, "sweep")))


def _cmd_methods(args) -> None:
    print("methods (--method NAME; each method's settings are `fsdkit distill` flags and config keys):")
    for m in METHODS.values():
        print(f"  {m.name:<20} {m.description}")
        for declared in m.settings().values():
            valid = f"; {declared.valid_range()}" if declared.valid_range() else ""
            print(f"  {'':<22}{declared.flag} {declared.default!r}{valid}: {declared.help}")
    if not args.losses:
        print("\nloss terms: `fsdkit methods --losses` lists them with their options (it imports torch)")
        return
    from fsdkit.losses.catalog import TERMS, term_options

    print("\nloss terms (--loss NAME:WEIGHT[:key=value,...]):")
    for name, cls in sorted(TERMS.items()):
        print(f"  {name:<20} options: {', '.join(term_options(cls)) or '-'}")


def _cmd_demo(args) -> None:
    from fsdkit.demo import DemoConfig, run_demo

    run_demo(_config_from_args(args, DemoConfig, "demo"))


def _cmd_analyze(args) -> None:
    from fsdkit.analysis.run import analyze

    results = analyze(_config_from_args(args, AnalyzeConfig, "analyze"))
    _print_json(results["files"])


def build_parser() -> argparse.ArgumentParser:
    from fsdkit._version import __version__
    from fsdkit.demo import DemoConfig

    parser = argparse.ArgumentParser(
        prog="fsdkit", description="Feature structure distillation for BERT-family models."
    )
    parser.add_argument("--version", action="version", version=f"fsdkit {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show transformers' info and warnings")
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")

    commands: list[tuple[str, str, Any, Callable]] = [
        ("finetune", "fine-tune a teacher on a task", FinetuneConfig, _cmd_finetune),
        ("distill", "distil a student from a fine-tuned teacher", DistillConfig, _cmd_distill),
        ("evaluate", "score a model folder on a task's dev split(s)", EvaluateConfig, _cmd_evaluate),
        (
            "predict",
            "write a model's predictions on a split (GLUE submission .tsv, or .jsonl / .csv)",
            PredictConfig,
            _cmd_predict,
        ),
        (
            "export",
            "export a model folder to ONNX, checked against PyTorch with ONNX Runtime",
            ExportConfig,
            _cmd_export,
        ),
        (
            "sweep",
            "Optuna study over distill/finetune options (--config SPACE.yaml; resumable, parallel workers)",
            SweepConfig,
            _cmd_sweep,
        ),
        (
            "compress",
            "the fastest student of a teacher that keeps its quality: depth, layers, start and recipe searched "
            "against measured latency; the Pareto front and the chosen student exported",
            CompressConfig,
            _cmd_compress,
        ),
        (
            "analyze",
            "restoration, CKA heat maps, relation differences, complexity: one report",
            AnalyzeConfig,
            _cmd_analyze,
        ),
        ("demo", "offline end-to-end demo: teacher, VKD and FSD students, one table", DemoConfig, _cmd_demo),
    ]
    for name, help_text, cls, func in commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_dataclass_flags(p, cls)
        p.set_defaults(func=func)

    memory = sub.add_parser("memory", help="teacher memory for FSDG")
    memory_sub = memory.add_subparsers(dest="memory_command", required=True, metavar="ACTION")
    build = memory_sub.add_parser("build", help="k-means memory of the teacher's features over the training set")
    _add_dataclass_flags(build, MemoryConfig)
    build.set_defaults(func=_cmd_memory_build)

    methods = sub.add_parser(
        "methods", help="list the distillation methods, their options and defaults, and the loss terms"
    )
    methods.add_argument("--losses", action="store_true", help="also list the loss terms and their options")
    methods.set_defaults(func=_cmd_methods)
    return parser


def _terminated(signum, frame):
    raise KeyboardInterrupt


def unwind_on_termination() -> None:
    """Make ``kill`` (SIGTERM) unwind like Ctrl-C: a ``KeyboardInterrupt`` is raised in the main thread, so staged
    artifacts are removed, locks released and checkpoints kept for a resume (for long-running scripts, such as the
    benchmark workers, as for the CLI)."""
    signal.signal(signal.SIGTERM, _terminated)


#: what an interrupted command keeps and how to go on (the others write their output only when they finish)
RESUME_HINTS = {
    "finetune": "checkpoints are kept — rerun with --resume to continue",
    "distill": "checkpoints are kept — rerun with --resume to continue",
    "sweep": "finished trials and the stopped one's checkpoints are kept — run the same command again to resume",
    "memory": "no memory was published — run the same command again",
    "demo": "finished runs and checkpoints are kept — run the same command again to continue",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:  # read by transformers when it is first imported (not here: `fsdkit methods` needs no torch)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    unwind_on_termination()
    try:
        args.func(args)
    except (FsdkitError, FloatingPointError) as exc:
        print(f"fsdkit {args.subcommand}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"fsdkit {args.subcommand}: interrupted; {RESUME_HINTS.get(args.subcommand, 'nothing was written')}",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
