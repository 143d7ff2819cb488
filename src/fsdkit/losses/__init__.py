"""Distillation losses: similarities (pure tensor math), views (which rows are compared) and terms.

A structure loss is a *view* × a *similarity*: the view turns teacher and student features into paired
row matrices, the similarity compares them. Terms are registered by name (:data:`TERMS`), so a config names
them and a new loss is one class plus one ``@register_term``.
"""

from fsdkit.losses.base import LossTerm, TermContext
from fsdkit.losses.registry import register_term

__all__ = ["TERMS", "LossTerm", "TermContext", "build_term", "register_term"]


def __getattr__(name: str):
    """``TERMS`` and ``build_term`` come from :mod:`fsdkit.losses.catalog`, imported on first use (it imports every
    term module, which ``import fsdkit.losses.similarities`` does not need)."""
    if name in ("TERMS", "build_term"):
        from fsdkit.losses import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module 'fsdkit.losses' has no attribute {name!r}")
