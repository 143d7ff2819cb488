"""Build a shallower student from chosen transformer layers of a pretrained checkpoint (PKD-style)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from fsdkit.errors import ConfigError, ModelError


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of transformer blocks of a BERT-family classifier (BERT, RoBERTa, ELECTRA, DistilBERT...)."""
    base = getattr(model, model.base_model_prefix, model)
    for path in ("encoder.layer", "transformer.layer", "encoder.layers"):
        obj = base
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ModelError(f"cannot find the transformer layers of {type(model).__name__}")


def _set_encoder_layers(model: nn.Module, layers: nn.ModuleList) -> None:
    base = getattr(model, model.base_model_prefix, model)
    owner = base.encoder if hasattr(base, "encoder") else base.transformer
    owner.layer = layers


def resolve_layer_indices(layers: int | Sequence[int], num_base_layers: int) -> list[int]:
    """``k`` → the first k layers ``[0..k-1]`` (PKD initialisation); a list is validated and returned."""
    if isinstance(layers, int):
        if not 1 <= layers <= num_base_layers:
            raise ConfigError(f"student layers={layers}: expected 1..{num_base_layers} (the base has {num_base_layers} layers)")
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

    The embeddings, pooler and classification head are kept; ``config.num_hidden_layers`` is updated, so
    ``save_pretrained`` writes a folder that ``AutoModelForSequenceClassification`` loads as the student.
    """
    blocks = encoder_layers(base_model)
    idx = resolve_layer_indices(layers, len(blocks))
    _set_encoder_layers(base_model, nn.ModuleList(blocks[i] for i in idx))
    config = base_model.config
    for key in ("num_hidden_layers", "n_layers"):
        if hasattr(config, key):
            setattr(config, key, len(idx))
    for new_i, block in enumerate(encoder_layers(base_model)):
        attn = getattr(block, "attention", None)
        inner = getattr(attn, "self", None) if attn is not None else None
        if inner is not None and hasattr(inner, "layer_idx"):
            inner.layer_idx = new_i
    config.fsdkit_student_layers = idx
    return base_model
