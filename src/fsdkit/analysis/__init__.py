"""The FSD paper's analyses (section 5): restoration rate, CKA heat maps, relation differences, complexity,
significance over seeds — as functions, figures and one report (:func:`analyze`)."""

from fsdkit.analysis.cka_map import cka_heatmap, cka_heatmap_from_grams, diagonal_mean, normalised_centred_grams
from fsdkit.analysis.complexity import complexity_table, count_parameters, inference_throughput
from fsdkit.analysis.plots import cka_heatmaps, learning_curves, relation_curves, restoration_bar_chart, save_figure
from fsdkit.analysis.relations import (
    HISTORY_FILENAME,
    RelationTracker,
    rank_values,
    relation_difference,
    relation_differences,
    relation_rank_table,
)
from fsdkit.analysis.report import ReportFigure, Section, Table, write_report
from fsdkit.analysis.restoration import restoration_metric_names, restoration_rate
from fsdkit.analysis.run import analyze, parse_model_specs
from fsdkit.analysis.significance import (
    load_run_record,
    significance_against_best,
    summarize_runs,
    welch_one_sided,
)
from fsdkit.run_record import read_run_record

__all__ = [
    "write_report",
    "HISTORY_FILENAME",
    "RelationTracker",
    "ReportFigure",
    "Section",
    "Table",
    "analyze",
    "cka_heatmap",
    "cka_heatmap_from_grams",
    "cka_heatmaps",
    "learning_curves",
    "complexity_table",
    "count_parameters",
    "diagonal_mean",
    "inference_throughput",
    "load_run_record",
    "normalised_centred_grams",
    "parse_model_specs",
    "rank_values",
    "read_run_record",
    "relation_curves",
    "relation_difference",
    "relation_differences",
    "relation_rank_table",
    "restoration_bar_chart",
    "restoration_metric_names",
    "restoration_rate",
    "save_figure",
    "significance_against_best",
    "summarize_runs",
    "welch_one_sided",
]
