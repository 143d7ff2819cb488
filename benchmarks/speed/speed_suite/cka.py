"""Part 2, CKA: fsdkit's batched CKA against the CKA libraries on the same inputs (agreement and time), and what
the SPEED.md section finds in the timings.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from speed_suite.common import BATCH_SIZE


def _interleaved_median_times(fns: dict[str, Any], reps: int, warmup: int = 2) -> dict[str, float]:
    """The median time of each of ``fns`` over ``reps`` rounds, each round calling every function once (the order
    rotated each round): a drift of the machine's speed reaches every function alike."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cka_inputs(view: str, seed: int = 0):
    """Correlated student (D_S) / teacher (D_T) features: intra B × L × D, local B × (L·D) (all tokens real)."""
    g = torch.Generator().manual_seed(seed)
    b, l, d = BATCH_SIZE, 64, 384
    y = torch.randn(b, l, d, generator=g)
    x = y @ torch.randn(d, d, generator=g) / d**0.5 + 0.5 * torch.randn(b, l, d, generator=g)
    if view == "local":
        x, y = x.reshape(b, l * d), y.reshape(b, l * d)
    return x, y


def cka_bench(reps: int) -> dict[str, Any]:
    """CKA of the FSDI / FSDL views, forward + backward, fsdkit against the CKA libraries and the bare products."""
    from fsdkit.losses.similarities import debiased_cka, linear_cka

    out: dict[str, Any] = {}
    for view in ("intra", "local"):
        x0, y = cka_inputs(view)
        batched = view == "intra"  # intra: one CKA per sample; local: one CKA over the batch rows
        rows: dict[str, Any] = {}
        steps: dict[str, Any] = {}

        def timed(name, fn, backward=True, reference=None, exact=None, note=""):
            """Register ``fn(x)``'s forward (+ backward) for timing; max |Δ| to fsdkit (``reference``) and to float64."""

            def step(with_grad):
                x = x0.clone().requires_grad_(with_grad)
                value = fn(x)
                if with_grad:
                    value.sum().backward()
                return value

            try:
                try:
                    value = step(backward).detach()
                except RuntimeError as exc:
                    if not backward or "does not require grad" not in str(exc):
                        raise
                    backward, note = False, "its result carries no gradient"
                    value = step(False).detach()
            except Exception as exc:  # noqa: BLE001 — an unavailable or failing library is recorded
                rows[name] = {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}
                return
            steps[name] = lambda: step(backward)  # timed below, interleaved with the others
            row = {"status": "ok", "backward": backward, "note": note}
            if reference is not None:
                row["max_abs_diff"] = float((value.double() - reference.double()).abs().max())
                row["agrees_1e-5"] = row["max_abs_diff"] <= 1e-5
            if exact is not None:
                row["max_abs_diff_float64"] = float((value.double() - exact).abs().max())
            rows[name] = row

        ref_biased = linear_cka(x0, y).detach()
        ref_unbiased = debiased_cka(x0, y).detach()
        exact_biased = linear_cka(x0.double(), y.double())  # float64 values of the same definitions
        exact_unbiased = debiased_cka(x0.double(), y.double())
        timed("fsdkit linear_cka", lambda x: linear_cka(x, y), exact=exact_biased)
        timed(
            "fsdkit linear_cka (forward)",
            lambda x: linear_cka(x, y),
            backward=False,
            note="against the forward-only libraries",
        )
        timed(
            "fsdkit debiased_cka (forward)",
            lambda x: debiased_cka(x, y),
            backward=False,
            note="against the forward-only libraries",
        )
        timed("fsdkit debiased_cka", lambda x: debiased_cka(x, y), exact=exact_unbiased)

        def bare(x):
            if batched:
                return (torch.bmm(x, x.mT) * torch.bmm(y, y.mT)).sum((-1, -2))
            return ((x @ x.T) * (y @ y.T)).sum()

        timed("bare Gram products (lower bound)", bare)

        def per_sample(fn):
            return lambda x: torch.stack([fn(x[i], y[i]) for i in range(x.shape[0])]) if batched else fn(x, y)

        try:
            from ckatorch.core import cka_base

            timed(
                "ckatorch cka_base (biased)",
                per_sample(lambda a, b: cka_base(a, b)),
                reference=ref_biased,
                exact=exact_biased,
            )
        except ImportError as exc:
            rows["ckatorch cka_base (biased)"] = {"status": "unavailable", "error": str(exc)}
        try:
            from cka_pytorch.hsic import hsic1

            def cka_pytorch(x):
                xs, ys = (x, y) if batched else (x[None], y[None])
                kx, ky = torch.bmm(xs, xs.mT), torch.bmm(ys, ys.mT)
                value = hsic1(kx, ky) / (hsic1(kx, kx) * hsic1(ky, ky)).sqrt()
                return value if batched else value[0]

            timed("cka-pytorch hsic1 (unbiased)", cka_pytorch, reference=ref_unbiased, exact=exact_unbiased)
        except ImportError as exc:
            rows["cka-pytorch hsic1 (unbiased)"] = {"status": "unavailable", "error": str(exc)}
        try:
            from torch_cka.cka import CKA

            class _Device:
                device = "cpu"

            def torch_cka_one(a, b):
                k, l_ = (a @ a.T).fill_diagonal_(0.0), (b @ b.T).fill_diagonal_(0.0)
                hsic = lambda p, q: CKA._HSIC(_Device, p, q)  # noqa: E731 — the library's unbiased HSIC
                return torch.tensor(hsic(k, l_) / (hsic(k, k) ** 0.5 * hsic(l_, l_) ** 0.5))

            timed(
                "torch-cka _HSIC (unbiased)",
                per_sample(torch_cka_one),
                backward=False,
                note="returns floats (.item())",
                reference=ref_unbiased,
                exact=exact_unbiased,
            )
        except ImportError as exc:
            rows["torch-cka _HSIC (unbiased)"] = {"status": "unavailable", "error": str(exc)}
        for name, seconds in _interleaved_median_times(steps, reps).items():
            rows[name]["seconds"] = seconds
        out[view] = {
            "shape_x": list(x0.shape),
            "shape_y": list(y.shape),
            "reps": reps,
            "order": "interleaved",
            "results": rows,
        }
    return out


def fsdkit_counterpart(name: str, row: dict[str, Any], rows: dict[str, Any]) -> str:
    """The fsdkit row a CKA row is compared with: the same estimator (biased or unbiased), the same mode (forward +
    backward, or forward only, when measured)."""
    base = "fsdkit debiased_cka" if "unbiased" in name or "debiased" in name else "fsdkit linear_cka"
    forward = f"{base} (forward)"
    return forward if not row.get("backward", True) and forward in rows else base


def cka_findings(rows: dict[str, Any]) -> list[str]:
    """Plain-language reading of one CKA table: speed against the lower bound and the libraries, and who is off
    when values differ."""
    notes = []
    libraries = {n: r for n, r in rows.items() if r.get("status") == "ok" and not n.startswith(("fsdkit", "bare"))}
    slower = [n for n, r in libraries.items() if r["seconds"] < rows[fsdkit_counterpart(n, r, rows)]["seconds"]]
    if libraries:
        notes.append(
            "- fsdkit is faster than every CKA library measured here (each against fsdkit in its own mode): "
            + ("**yes**" if not slower else f"**no** ({', '.join(slower)} faster)")
        )
    bare = rows.get("bare Gram products (lower bound)", {}).get("seconds")
    for name in ("fsdkit linear_cka", "fsdkit debiased_cka"):
        if bare and rows.get(name, {}).get("seconds"):
            notes.append(
                f"- {name} (forward + backward) takes {rows[name]['seconds'] / bare:.2f}× the bare Gram "
                "products' time (≤ 1.5)."
            )
    for name, r in rows.items():
        if r.get("status") != "ok" or r.get("agrees_1e-5", True):
            continue
        own = rows[fsdkit_counterpart(name, {"backward": True}, rows)].get("max_abs_diff_float64")
        theirs = r.get("max_abs_diff_float64")
        if own is not None and theirs is not None:
            closer = (
                "fsdkit's float32 value is the less accurate one"
                if own > theirs
                else f"{name} is the less accurate one"
            )
            notes.append(
                f"- {name} differs from fsdkit by {r['max_abs_diff']:.1e}: against float64, fsdkit is off by "
                f"{own:.1e} and {name} by {theirs:.1e} — {closer}."
            )
    return notes
