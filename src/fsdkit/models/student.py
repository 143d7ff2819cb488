"""Build a shallower student from chosen transformer layers of a pretrained checkpoint (PKD-style)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from torch import nn

from fsdkit.errors import ConfigError, ModelError
from fsdkit.models.architecture import family, layer_stack, shares_layers

logger = logging.getLogger("fsdkit")


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` of transformer blocks of a classifier of any family (:func:`layer_stack`)."""
    return layer_stack(model).layers


def resolve_layer_indices(layers: int | Sequence[int], num_base_layers: int) -> list[int]:
    """``k`` → the first k layers ``[0..k-1]`` (PKD initialisation); a list is validated and returned."""
    if isinstance(layers, int):
        if not 1 <= layers <= num_base_layers:
            raise ConfigError(
                f"student layers={layers}: expected 1..{num_base_layers} (the base has {num_base_layers} layers)"
            )
        return list(range(layers))
    idx = [int(i) for i in layers]
    if not idx:
        raise ConfigError("student layers: the list is empty")
    bad = [i for i in idx if not 0 <= i < num_base_layers]
    if bad:
        raise ConfigError(f"student layers {bad} out of range: the base has layers 0..{num_base_layers - 1}")
    if len(set(idx)) != len(idx):
        raise ConfigError(f"student layers {idx} repeat a layer")
    return idx


def build_student(base_model: nn.Module, layers: int | Sequence[int]) -> nn.Module:
    """Keep only ``layers`` (0-based indices of the base's transformer blocks) of ``base_model``, in place.

    The embeddings, pooler and classification head are kept, and the config follows the blocks kept, so that
    ``save_pretrained`` writes a folder that ``AutoModelForSequenceClassification`` loads as this very student:
    ``num_hidden_layers``, a per-layer ``layer_types`` (ModernBERT's global / local attention, Qwen2's sliding
    windows) cut to the chosen layers, each block's ``layer_idx`` renumbered. A block the family builds differently
    at its new position (ModernBERT's first layer has no attention norm) is made so, and the student is checked
    against a model freshly built from its config: the same parameters, or :class:`ModelError`. ALBERT-style models
    share one group of layers: the student repeats it ``k`` times (``layers`` = k, or the list ``0 … k−1``).
    """
    import copy

    import torch

    config: Any = base_model.config  # a PretrainedConfig (nn.Module types its attributes as Tensor | Module)
    if shares_layers(config):
        if config.num_hidden_groups > 1:
            raise ConfigError(
                f"a {family(config)} model of {config.num_hidden_groups} layer groups maps each depth to a "
                f"group by its position, so a shallower student would mix the groups; fsdkit makes "
                f"students of one-group models (the released ALBERTs)"
            )
        idx = resolve_layer_indices(layers, config.num_hidden_layers)
        if idx != list(range(len(idx))):
            raise ConfigError(
                f"student layers {idx}: {family(config)} shares one group of layers across its depth, so "
                f"a student is that group repeated k times: give --student-layers {len(idx)}"
            )
    else:
        stack = layer_stack(base_model)
        idx = resolve_layer_indices(layers, len(stack.layers))
        setattr(stack.owner, stack.name, nn.ModuleList(stack.layers[i] for i in idx))
        for new_i, block in enumerate(getattr(stack.owner, stack.name)):
            for module in block.modules():
                if isinstance(getattr(module, "layer_idx", None), int):
                    module.layer_idx = new_i
    layer_types = getattr(config, "layer_types", None)
    config.num_hidden_layers = len(idx)  # n_layer, n_layers … through each config's attribute map
    if isinstance(layer_types, list) and len(layer_types) > max(idx):
        config.layer_types = [layer_types[i] for i in idx]
    config.fsdkit_student_layers = idx
    with torch.device("meta"):
        fresh = type(base_model)(copy.deepcopy(config))
    if not shares_layers(config):
        _match_fresh_blocks(encoder_layers(base_model), encoder_layers(fresh))
    ours, theirs = (
        {k: tuple(v.shape) for k, v in base_model.state_dict().items()},
        {k: tuple(v.shape) for k, v in fresh.state_dict().items()},
    )
    if ours != theirs:
        differ = sorted(set(ours) ^ set(theirs)) or [k for k in ours if ours[k] != theirs[k]]
        raise ModelError(
            f"a {family(config)} student of layers {idx} would not reload as trained: its parameters "
            f"differ from a model built from its config ({', '.join(differ[:4])}); choose other layers"
        )
    return base_model


def _match_fresh_blocks(kept: nn.ModuleList, fresh: nn.ModuleList) -> None:
    """Where a freshly built block has an identity (ModernBERT's first layer: no attention norm) the kept block
    gets one too, so the trained student is the one its saved config rebuilds."""
    for block, reference in zip(kept, fresh, strict=True):
        for name, module in reference.named_children():
            if isinstance(module, nn.Identity) and not isinstance(getattr(block, name, None), nn.Identity):
                logger.info(
                    "student block %s: %s replaced by an identity, as a block at this position is built",
                    type(block).__name__,
                    name,
                )
                setattr(block, name, nn.Identity())


#: shape options of a student built from a config (``--student-config``), the keys of a BERT-style config
STUDENT_SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def parse_student_config(spec: str) -> dict:
    """``--student-config``: a JSON file, or ``key=value`` pairs (``hidden_size=256,num_hidden_layers=4,...``)."""
    import json
    from pathlib import Path

    path = Path(spec).expanduser()
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"--student-config {spec}: file not found")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--student-config {spec}: not valid JSON ({exc})") from None
    else:
        values = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--student-config {spec!r}: {item!r} is not key=value")
            try:
                values[key.strip()] = int(value)
            except ValueError:
                raise ConfigError(f"--student-config: {key.strip()} must be an integer, got {value!r}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--student-config {spec}: expected an object of config keys")
    unknown = sorted(set(values) - set(STUDENT_SHAPE_KEYS) - {"vocab_size", "max_position_embeddings"})
    if unknown:
        raise ConfigError(f"--student-config: unknown key(s) {unknown}; shape keys: {', '.join(STUDENT_SHAPE_KEYS)}")
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if hidden is not None and heads is not None and hidden % heads:
        raise ConfigError(f"--student-config: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    return values


def student_from_config(teacher: nn.Module, shape: dict, tokenizer=None) -> nn.Module:
    """A fresh (randomly initialised) classifier of the teacher's architecture and labels with ``shape``'s sizes
    (TinyBERT-style students); its vocabulary is ``tokenizer``'s (default: the teacher's)."""
    import copy

    from transformers import AutoModelForSequenceClassification

    config: Any = copy.deepcopy(teacher.config)
    layer_types = getattr(config, "layer_types", None)
    for key, value in shape.items():
        setattr(config, key, value)
    if isinstance(layer_types, list) and layer_types:  # the teacher's per-layer pattern, to the student's depth
        config.layer_types = [layer_types[i % len(layer_types)] for i in range(config.num_hidden_layers)]
    if tokenizer is not None:
        config.vocab_size = len(tokenizer)
        config.pad_token_id = tokenizer.pad_token_id
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(
            f"--student-config: hidden_size {config.hidden_size} is not a multiple of "
            f"num_attention_heads {config.num_attention_heads}"
        )
    config.fsdkit_student_layers = None
    config.fsdkit_student_shape = dict(shape)
    return AutoModelForSequenceClassification.from_config(config)
