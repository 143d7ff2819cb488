"""Figures of the analyses, built on ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend needed).

Each function returns a Figure; :func:`save_figure` writes it as a PNG (Agg renderer, dpi ≥ 120, tight
bounding box). Fonts are ≥ 10 pt; every figure has a title, labelled axes and, where several series share
axes, a legend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fsdkit.analysis.cka_map import diagonal_mean
from fsdkit.analysis.relations import RECORD_KEYS

if TYPE_CHECKING:
    from matplotlib.image import AxesImage
    from matplotlib.typing import RcKeyType

DPI = 130
STYLE: dict[RcKeyType, Any] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
}
RELATION_TITLES = {
    "inter_euclidean": "inter-feature, Euclidean distance",
    "inter_cosine": "inter-feature, cosine similarity",
    "intra_euclidean": "intra-feature, Euclidean distance",
    "intra_cosine": "intra-feature, cosine similarity",
}


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ≥ 120 dpi with a tight bounding box."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(STYLE):
        fig.savefig(path, format="png", dpi=max(DPI, 120), bbox_inches="tight")
    return path


def restoration_bar_chart(restoration: Mapping[str, Mapping[str, float | None]], task_name: str) -> Figure:
    """Grouped bars: one group per restoration metric, one bar per model (None values are left out).

    Args:
        restoration: model name → {metric: value} (see :func:`fsdkit.analysis.restoration.restoration_rate`).
    """
    models = list(restoration)
    metrics = list(dict.fromkeys(m for values in restoration.values() for m in values))
    with matplotlib.rc_context(STYLE):
        fig = _figure(max(6.5, 2.0 + len(metrics) * (0.6 + 0.45 * len(models))), 4.5)
        ax = fig.add_subplot()
        width = 0.8 / max(1, len(models))
        x = np.arange(len(metrics))
        for k, model in enumerate(models):
            values = [restoration[model].get(m) for m in metrics]
            xs = [x[i] + (k - (len(models) - 1) / 2) * width for i, v in enumerate(values) if v is not None]
            ys = [v for v in values if v is not None]
            bars = ax.bar(xs, ys, width=width * 0.95, label=model)
            ax.bar_label(bars, fmt="%.3f", fontsize=10, padding=2, rotation=90 if len(models) > 2 else 0)
        ax.set_xticks(x, metrics)
        low = min((v for vals in restoration.values() for v in vals.values() if v is not None), default=0.0)
        ax.set_ylim(min(0.0, low - 0.05), 1.18 if len(models) > 2 else 1.1)
        ax.set_xlabel("restoration metric (teacher predictions as ground truth)")
        ax.set_ylabel("score")
        ax.set_title(f"Restoration rate of the teacher's predictions — {task_name}")
        ax.legend(title="model", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(axis="y", alpha=0.3)
    return fig


def cka_heatmaps(heatmaps: Mapping[str, np.ndarray], task_name: str, teacher_name: str = "T") -> Figure:
    """One heat map panel per model (teacher batch i × model batch j), one shared colour scale and colour bar.

    Panel titles read ``T–<model>`` with the diagonal mean; the colour range spans the minimum and maximum
    over all maps.
    """
    if not heatmaps:
        raise ValueError("no heat maps to plot")
    names = list(heatmaps)
    vmin = float(min(np.min(h) for h in heatmaps.values()))
    vmax = float(max(np.max(h) for h in heatmaps.values()))
    if vmax - vmin < 1e-6:
        vmin, vmax = vmin - 0.01, vmax + 0.01
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    with matplotlib.rc_context(STYLE):
        fig = _figure(4.2 * cols + 1.2, 4.0 * rows + 0.6)
        axes = fig.subplots(rows, cols, squeeze=False)
        image = None
        for ax, name in zip(axes.flat, names, strict=False):
            h = np.asarray(heatmaps[name])
            image = ax.imshow(h, vmin=vmin, vmax=vmax, cmap="viridis", origin="upper", interpolation="nearest")
            ax.set_title(f"{teacher_name}–{name} (diagonal mean {diagonal_mean(h):.3f})")
            ax.set_xlabel("model mini-batch j")
            ax.set_ylabel("teacher mini-batch i")
            ticks = _ticks(h.shape[0])
            ax.set_yticks(ticks, [str(t) for t in ticks])
            ticks = _ticks(h.shape[1])
            ax.set_xticks(ticks, [str(t) for t in ticks])
        for ax in list(axes.flat)[len(names) :]:
            ax.set_axis_off()
        fig.colorbar(cast("AxesImage", image), ax=axes, label="linear CKA", shrink=0.9)  # names is not empty
        fig.suptitle(f"CKA heat maps of penultimate-layer features — {task_name}")
    return fig


def _ticks(n: int) -> list[int]:
    step = max(1, math.ceil(n / 8))
    return list(range(0, n, step))


def relation_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], task_name: str) -> Figure:
    """Relation differences over training steps: one panel per level × metric, one line per run."""
    with matplotlib.rc_context(STYLE):
        fig = _figure(11.0, 7.5)
        axes = fig.subplots(2, 2, squeeze=False)
        for ax, key in zip(axes.flat, RECORD_KEYS, strict=True):
            for name, records in histories.items():
                if not records:
                    continue
                steps = [r["step"] for r in records]
                values = [r[key] for r in records]
                ax.plot(steps, values, label=name, marker="o" if len(records) < 30 else None, markersize=3)
            ax.set_title(RELATION_TITLES[key])
            ax.set_xlabel("training step")
            ax.set_ylabel("relation difference (lower = closer)")
            ax.grid(alpha=0.3)
            ax.legend(title="run")
        fig.suptitle(f"Student–teacher relation differences during training — {task_name}")
    return fig


LINESTYLES = ("-", "-.", ":", (0, (6, 2, 1, 2, 1, 2)))  # "--" is the reference's


def learning_curves(
    curves: Mapping[str, Sequence[Sequence[tuple[float, float]]]],
    task_name: str,
    metric: str,
    reference: float | None = None,
    reference_label: str = "teacher",
    styles: Mapping[str, tuple[str, str]] | None = None,
) -> Figure:
    """Quality against training budget: the metric after every epoch, one line per method (the mean over its seeds)
    with the seeds' range as a band; ``curves``: method → one ``[(epoch, value), …]`` list per seed. ``reference``
    (the teacher's score) is drawn as a dashed line. ``styles``: a line's name → ``(family, variant)`` (e.g. its method
    and its schedule): lines of one family share a colour and lines of one variant a line style, in order of first
    appearance; without it every line has its own colour, drawn solid."""
    looks = {name: (styles or {}).get(name, (name, "")) for name in curves}  # a line → (family, variant)
    families: dict[str, Any] = {}  # a family → its colour
    variants: dict[str, Any] = {}
    with matplotlib.rc_context(STYLE):
        fig = _figure(7.5, 4.8)
        ax = fig.subplots()
        palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        if len({family for family, _ in looks.values()}) > len(palette):  # no two families alike
            palette = list(cast(Any, matplotlib.colormaps["tab20"]).colors)  # a ListedColormap: a list of colours
        for name, runs in curves.items():
            runs = [sorted(run) for run in runs if run]
            if not runs:
                continue
            epochs = sorted({e for run in runs for e, _ in run})
            table = [[dict(run).get(e) for run in runs] for e in epochs]
            mean = [float(np.mean([v for v in row if v is not None])) for row in table]
            family, variant = looks[name]
            colour = families.setdefault(family, palette[len(families) % len(palette)])
            linestyle = variants.setdefault(variant, LINESTYLES[len(variants) % len(LINESTYLES)])
            line = ax.plot(
                epochs,
                mean,
                marker="o",
                markersize=4,
                color=colour,
                linestyle=linestyle,
                label=f"{name} (n={len(runs)})",
            )[0]
            if len(runs) > 1:
                low = [min(v for v in row if v is not None) for row in table]
                high = [max(v for v in row if v is not None) for row in table]
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if reference is not None:
            ax.axhline(reference, linestyle="--", color="0.3", linewidth=1.2, label=reference_label)
            bottom, top = ax.get_ylim()  # the reference inside the frame, not on its edge
            margin = 0.05 * (max(top, reference) - min(bottom, reference))
            ax.set_ylim(min(bottom, reference - margin), max(top, reference + margin))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"dev {metric}")
        ax.grid(alpha=0.3)
        if len(curves) > 6:  # a long legend beside the axes, where it hides no line
            ax.legend(title="method (seeds)", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.legend(title="method (seeds)", loc="best")
        ax.set_title(f"Dev {metric} after every epoch — {task_name} (band: range over seeds)")
    return fig
