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

    config = copy.deepcopy(teacher.config)
    for key, value in shape.items():
        setattr(config, key, value)
    if tokenizer is not None:
        config.vocab_size = len(tokenizer)
        config.pad_token_id = tokenizer.pad_token_id
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(f"--student-config: hidden_size {config.hidden_size} is not a multiple of "
                          f"num_attention_heads {config.num_attention_heads}")
    config.fsdkit_student_layers = None
    config.fsdkit_student_shape = dict(shape)
    return AutoModelForSequenceClassification.from_config(config)
