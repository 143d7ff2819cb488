"""Distillation methods: each a name, a typed options class composed of shared parts, and a builder of weighted loss
terms (:mod:`fsdkit.methods.base`); FSD's in :mod:`fsdkit.methods.fsd`, the baselines' in
:mod:`fsdkit.methods.baselines`, all of them by name in :mod:`fsdkit.methods.registry`. Torch-free: ``fsdkit
methods`` and the CLI's help read it without the training stack.

Adding a method of your own::

    from dataclasses import dataclass
    from fsdkit.methods import KD, Method, TermSpec, register_method, vkd_terms
    from fsdkit.settings import setting

    @dataclass
    class ToyOptions(KD):
        lambda_toy: float = setting(1.0, "weight of the toy term", low=0)

    register_method(Method("toy", "VKD + a toy term", ToyOptions,
                           lambda o, c: vkd_terms(o) + [TermSpec("toy", o.lambda_toy)]))
"""

from fsdkit.methods.base import Method, TermSpec, extra_term_specs, in_use
from fsdkit.methods.fsd import vkd_terms
from fsdkit.methods.parts import (
    KD,
    PKD,
    RKD,
    STAGE_LR_SCHEDULES,
    Geometry,
    Global,
    Internal,
    Intra,
    Local,
    LocalPooling,
    MiniLM,
    RelationCKA,
    Similarity,
    Staged,
)
from fsdkit.methods.registry import (
    METHODS,
    all_settings,
    get_method,
    method_options,
    methods_with,
    not_a_setting,
    register_method,
    run_terms,
    unregister_method,
)

__all__ = [
    "KD",
    "METHODS",
    "PKD",
    "RKD",
    "STAGE_LR_SCHEDULES",
    "Geometry",
    "Global",
    "Internal",
    "Intra",
    "Local",
    "LocalPooling",
    "Method",
    "MiniLM",
    "RelationCKA",
    "Similarity",
    "Staged",
    "TermSpec",
    "all_settings",
    "extra_term_specs",
    "get_method",
    "in_use",
    "method_options",
    "methods_with",
    "not_a_setting",
    "register_method",
    "run_terms",
    "unregister_method",
    "vkd_terms",
]
