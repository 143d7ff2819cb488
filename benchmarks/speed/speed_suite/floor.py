"""Part 4, FSD's floor: fsdkit's VKD and FSD steps taking turns in one process with what FSD's terms compute on
the same batches' shapes, so that the bound on FSD / VKD comes from one run; and its SPEED.md section.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from speed_suite.common import BATCH_SIZE, MAX_LENGTH, TimedBatches, fixed_batches, fsd_term_specs, mrpc_rows, rss_mb
from speed_suite.processes import worker_process

#: what the floor part times beside VKD's and FSD's training steps, per batch (see :class:`FloorWork`)
FLOOR_WORK = ("terms", "products", "teacher_products", "centroid_products", "optimizer")
#: the training steps the floor part times in the same rounds, so that its bound and the measured ratio share them
FLOOR_STEPS = ("fsdkit-vkd", "fsdkit-fsd", "fsdkit-vkd-cache", "fsdkit-fsd-cache")


def floor_config(work: str) -> str:
    return "floor-" + work.replace("_", "-")


class FloorWork:
    """What FSD's terms cost per step beside VKD's, against the least any implementation must compute.

    On a batch's shapes (B × L from its attention mask, random features of the student's and the teacher's width 384
    made once per batch; K = 100 centroids of flattened rows of 128 tokens), one call of:

    - ``terms``: fsdkit's intra + local + memory terms (as the training part's FSD configuration builds them), forward
      and backward;
    - ``products``: only the matrix products those terms need, forward and backward — intra: the student's and the
      teacher's token Grams per sample and the student's Gram backward; local: the same for the batch's flattened
      rows; memory: the student rows and the teacher rows against their memories, ``M_S M_Sᵀ``, and the backward
      ``Ḋ M_S``, ``Ḋᵀ s``, ``(Ġ + Ġᵀ) M_S``;
    - ``teacher_products``: the part of ``products`` that depends on one example alone and so could be read from a
      teacher cache (the teacher's token Grams, its rows against ``M_T``);
    - ``centroid_products``: the part of ``products`` that the memory's centroid structure needs whatever the batch,
      ``M_S M_Sᵀ`` and ``(Ġ + Ġᵀ) M_S`` (each 2·K²·d flops);
    - ``optimizer``: the extra fused AdamW update of the student memory (K × 49,152), the only parameter FSD adds.

    A step of FSD cannot take less than VKD's step plus ``products`` (less ``teacher_products`` with a cache) plus
    ``optimizer``."""

    def __init__(self, seed: int = 0):
        from transformers import BertConfig

        from fsdkit.data import get_task
        from fsdkit.losses import TermContext, build_term
        from fsdkit.memory import TeacherMemory

        self.width, k, d = 384, 100, MAX_LENGTH * 384
        self.generator = torch.Generator().manual_seed(seed)
        config = lambda layers: BertConfig(hidden_size=self.width, num_hidden_layers=layers, num_attention_heads=12)  # noqa: E731
        ctx = TermContext(config(3), config(6), get_task("mrpc"), max_length=MAX_LENGTH)
        memory = TeacherMemory(
            torch.randn(k, d, generator=self.generator) * 0.5,
            {"layer": "penultimate", "pooling": "flatten", "max_length": MAX_LENGTH, "hidden_size": self.width},
        )
        self.terms = [(spec.weight, build_term(spec.name, ctx, spec.options)) for spec in fsd_term_specs(memory)]
        self.student_memory = self.terms[2][1].student_memory
        self.m_s, self.m_t = self.student_memory.detach(), memory.centroids
        self.parameter = torch.nn.Parameter(self.m_s.clone())
        self.parameter.grad = torch.randn_like(self.parameter)
        self.adamw = torch.optim.AdamW([self.parameter], lr=0.1, weight_decay=0.0, fused=True)
        self._inputs: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def inputs(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's mask and its student and teacher features (zero at padding), made on first sight."""
        key = (tuple(mask.shape), mask.numpy().tobytes())
        if key not in self._inputs:
            b, length = mask.shape
            s, t = (torch.randn(b, length, self.width, generator=self.generator) * mask[..., None] for _ in range(2))
            self._inputs[key] = (mask, s, t)
        return self._inputs[key]

    def step(self, work: str, mask: torch.Tensor) -> None:
        if work == "terms":
            self._terms(mask)
        elif work == "optimizer":
            self.adamw.step()
        elif work == "centroid_products":
            gram = self.m_s @ self.m_s.T
            (gram + gram.T) @ self.m_s
        else:
            self._products(mask, teacher_side=True, student_side=work == "products")

    def _terms(self, mask: torch.Tensor) -> None:
        from fsdkit.features import Features

        mask, s, t = self.inputs(mask)
        h = s.clone().requires_grad_(True)
        student = Features(torch.zeros(len(mask), 2), mask, hidden_states=(h,) * 4)
        teacher = Features(torch.zeros(len(mask), 2), mask, hidden_states=(t,) * 7)
        sum(w * term(student, teacher, {}) for w, term in self.terms).backward()
        self.student_memory.grad = None  # as after an optimizer step: the next backward writes it, adds nothing

    def _products(self, mask: torch.Tensor, teacher_side: bool, student_side: bool) -> None:
        mask, s, t = self.inputs(mask)
        m_s, m_t = self.m_s, self.m_t
        b, length, _ = s.shape
        w = length * self.width
        rows_s, rows_t = s.reshape(b, w), t.reshape(b, w)
        if teacher_side:
            torch.bmm(t, t.mT), rows_t @ rows_t.T, rows_t @ m_t[:, :w].T
        if student_side:
            gram = torch.bmm(s, s.mT)
            torch.bmm(gram + gram.mT, s)  # intra: the Gram and its backward
            batch_gram = rows_s @ rows_s.T
            (batch_gram + batch_gram.T) @ rows_s  # local
            dots, centroid_gram = rows_s @ m_s[:, :w].T, m_s @ m_s.T  # memory, forward
            dots @ m_s[:, :w], dots.T @ rows_s, (centroid_gram + centroid_gram.T) @ m_s  # and backward


def floor_worker(work: str, timed: TimedBatches) -> dict[str, Any]:
    """A "training loop" whose step is one of :class:`FloorWork`'s measures for the batch it is given."""
    floor = FloorWork()
    for batch in timed:
        floor.step(work, batch["attention_mask"])
    return {"rss_before_mb": rss_mb()}


def floor_bench(args) -> dict[str, Any]:
    """FSD's floor timed in the same rounds as VKD's and FSD's training steps (:func:`run_paired`: one process,
    each configuration one pass over the same batches per round, the order rotated), so that the bound on
    FSD / VKD and the measured ratio are taken within each round, from one run."""
    encoded, collator = mrpc_rows(args.glue_dir, args.n_batches * BATCH_SIZE)
    lengths = [b["attention_mask"].shape[1] for b in fixed_batches(encoded, collator, args.n_batches)]
    configs = [*FLOOR_STEPS, *map(floor_config, FLOOR_WORK)]
    paired = worker_process(args, "paired:" + ",".join(configs), "--reps", str(args.floor_reps))
    return {"n_batches": args.n_batches, "reps": args.floor_reps, "padded_lengths": lengths, "paired": paired}


def floor_rounds(floor: dict[str, Any]) -> dict[str, Any] | None:
    """Per step (ms, the median pass over the batches) of each floor measure and training step, and per teacher the
    medians over the rounds of: the bound ``t_VKD / (t_VKD + products [− teacher products with a cache] + optimizer)``,
    the ratio fsdkit's terms would allow ``t_VKD / (t_VKD + terms + optimizer)``, and the measured ``t_VKD / t_FSD``."""
    configs = floor.get("paired", {}).get("configs", {})
    names = [*FLOOR_STEPS, *map(floor_config, FLOOR_WORK)]
    if any(configs.get(name, {}).get("status") != "ok" for name in names):
        return None
    passes = {name: configs[name]["pass_seconds"] for name in names}
    work = {w: passes[floor_config(w)] for w in FLOOR_WORK}
    per_step = lambda seconds: 1000 * statistics.median(seconds) / floor["n_batches"]  # noqa: E731
    out: dict[str, Any] = {
        "ms_per_step": {**{w: per_step(work[w]) for w in FLOOR_WORK}, **{c: per_step(passes[c]) for c in FLOOR_STEPS}},
        "teachers": {},
    }
    for teacher, suffix in (("live", ""), ("cache", "-cache")):
        vkd, fsd = passes["fsdkit-vkd" + suffix], passes["fsdkit-fsd" + suffix]
        rounds = range(len(vkd))
        least = [
            work["products"][r] - (work["teacher_products"][r] if suffix else 0) + work["optimizer"][r] for r in rounds
        ]
        out["teachers"][teacher] = {
            "bound": statistics.median(vkd[r] / (vkd[r] + least[r]) for r in rounds),
            "as_run": statistics.median(vkd[r] / (vkd[r] + work["terms"][r] + work["optimizer"][r]) for r in rounds),
            "measured": statistics.median(vkd[r] / fsd[r] for r in rounds),
            "measured_range": [min(vkd[r] / fsd[r] for r in rounds), max(vkd[r] / fsd[r] for r in rounds)],
        }
    return out


def floor_section(floor: dict[str, Any] | None) -> list[str]:
    if not floor:
        return ["Not measured (see `--parts`)."]
    rounds = floor_rounds(floor) if "paired" in floor else None
    if rounds is None:
        failed = {
            c: r.get("error", "")
            for c, r in floor.get("paired", {}).get("configs", {}).items()
            if r.get("status") != "ok"
        } or {"(all)": floor.get("paired", {}).get("error", "not in this form")}
        return [
            "Not measured in this form (re-run `--parts floor`): "
            + "; ".join(f"{c}: {e.splitlines()[0][:120] if e else '?'}" for c, e in failed.items())
        ]
    ms = rounds["ms_per_step"]
    lines = [
        f"One process, {floor['reps']} rounds; in each round every configuration below makes one pass over the "
        f"training part's {floor['n_batches']} batches (padded lengths {', '.join(map(str, floor['padded_lengths']))}), "
        "the order rotated by one place each round — fsdkit's VKD and FSD training steps (live teacher and "
        "teacher-output cache) and, on each batch's shapes, what FSD's terms compute. Per step, the median pass "
        "over the batches:",
        "",
        "| What | ms per step |",
        "|---|---|",
        f"| fsdkit VKD step, live teacher | {ms['fsdkit-vkd']:.0f} |",
        f"| fsdkit FSD step, live teacher | {ms['fsdkit-fsd']:.0f} |",
        f"| fsdkit VKD step, teacher-output cache | {ms['fsdkit-vkd-cache']:.0f} |",
        f"| fsdkit FSD step, teacher-output cache | {ms['fsdkit-fsd-cache']:.0f} |",
        f"| fsdkit's FSD terms (intra + local + memory), forward + backward | {ms['terms']:.1f} |",
        f"| only the matrix products they need, forward + backward | {ms['products']:.1f} |",
        f"| of which the teacher's per-example products (cacheable) | {ms['teacher_products']:.1f} |",
        f"| of which the centroid structure's M_S M_Sᵀ and (Ġ + Ġᵀ) M_S (any batch) | "
        f"{ms.get('centroid_products', float('nan')):.1f} |",
        f"| the student memory's extra AdamW update | {ms['optimizer']:.1f} |",
        "",
        "FSD / VKD, each the median over the rounds of the ratio within a round (the bound: VKD's step over VKD's "
        "step plus the products and the update; a cache spares the teacher's per-example products; general matrix "
        "products — a symmetric rank-k product, which torch does not expose, would halve the forward of each "
        "self-Gram such as M_S M_Sᵀ):",
        "",
        "| teacher | FSD / VKD at most | with fsdkit's terms as they run | measured (range over rounds) | target |",
        "|---|---|---|---|---|",
    ]
    for teacher, label, target in (("live", "live teacher", 0.95), ("cache", "teacher-output cache", 0.97)):
        r = rounds["teachers"][teacher]
        low, high = r["measured_range"]
        lines.append(
            f"| {label} | {r['bound']:.3f} | {r['as_run']:.3f} | {r['measured']:.3f} ({low:.2f}–{high:.2f}) | "
            f"≥ {target} |"
        )
    lines.append("")
    for teacher, label, target in (("live", "live teacher", 0.95), ("cache", "teacher-output cache", 0.97)):
        step = ms["fsdkit-vkd" + ("-cache" if teacher == "cache" else "")]
        budget = step * (1 / target - 1)
        least = ms["products"] - (ms["teacher_products"] if teacher == "cache" else 0) + ms["optimizer"]
        lines.append(
            f"- {label}: FSD / VKD ≥ {target} leaves FSD {budget:.1f} ms per step beyond VKD's {step:.0f}; the "
            f"products and the update alone take {least:.1f}"
            + (
                f", the centroid structure's two products {ms['centroid_products']:.1f}"
                if "centroid_products" in ms
                else ""
            )
            + f": {'within' if least <= budget else 'beyond'} it"
        )
    return lines
