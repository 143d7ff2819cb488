"""Counting the reads of tensor values into Python (``.item()``, ``.tolist()``, ``bool(t)``, ...): on an accelerator
each one synchronises the host with the device (test_similarities, test_trainer)."""

from __future__ import annotations

import pytest
import torch


def count_reads(mp: pytest.MonkeyPatch) -> list[str]:
    """Record, in the returned list, every read of tensor values while ``mp`` is in effect."""
    reads: list[str] = []
    for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
        real = getattr(torch.Tensor, name)
        mp.setattr(
            torch.Tensor,
            name,
            lambda self, *a, _real=real, _name=name, **k: reads.append(_name) or _real(self, *a, **k),
        )
    return reads
