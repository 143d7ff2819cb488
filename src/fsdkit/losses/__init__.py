"""Distillation losses: similarities (pure tensor math), views (which rows are compared) and terms.

A structure loss is a *view* × a *similarity*: the view turns teacher and student features into paired
row matrices, the similarity compares them. Terms are registered by name (:data:`TERMS`), so a config names
them and a new loss is one class plus one ``@register_term``.

The names below are imported on first use, so that a torch-free submodule (``fsdkit.losses.layer_maps``, which the
method presets read) does not pull in torch, and ``import fsdkit.losses.similarities`` does not import every term.
"""

__all__ = ["TERMS", "LossTerm", "TermContext", "build_term", "register_term", "term_class"]

_HOMES = {
    "LossTerm": "fsdkit.losses.base",
    "TermContext": "fsdkit.losses.base",
    "register_term": "fsdkit.losses.registry",
    "TERMS": "fsdkit.losses.catalog",
    "build_term": "fsdkit.losses.catalog",
    "term_class": "fsdkit.losses.catalog",
}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'fsdkit.losses' has no attribute {name!r}")
