"""Where a Hugging Face classifier keeps its parts, found from its structure rather than one attribute path.

- :func:`layer_stack`: the ``nn.ModuleList`` of transformer blocks — the shallowest list inside the base model
  whose length is ``config.num_hidden_layers`` and whose items are one class (BERT's ``encoder.layer``,
  DistilBERT's ``transformer.layer``, GPT-2's ``h``, Llama / Qwen2 / ModernBERT's ``layers``, …). ALBERT shares one
  group of layers across its depth: :func:`shares_layers` says so, and its student repeats the group fewer times.
- :func:`projection_modules`: each block's query / key / value projection, by the names the families use
  (``query`` / ``q_lin`` / ``query_proj`` / ``q_proj``, …) or a fused ``[q; k; v]`` projection (ModernBERT's
  ``Wqkv``, GPT-2's ``c_attn``) read in thirds.
- :func:`is_causal`: a decoder (GPT-2, Llama, Qwen2, Mistral, OPT …) reads the sequence left to right and its head
  pools the last real token, where an encoder's pools the first ([CLS]).
- :func:`exact_attention_from_projections`: whether softmax(q kᵀ / √d) of the raw projections and the padding mask
  is the model's attention map (BERT-style absolute positions, no causal mask) — what the teacher-output cache
  assumes when it stores queries and keys instead of maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from fsdkit.errors import ModelError

#: the names of each role's projection in a block: BERT / RoBERTa / ELECTRA, DistilBERT, DeBERTa, Llama-style
PROJECTION_NAMES = {
    "query": ("query", "q_lin", "query_proj", "q_proj"),
    "key": ("key", "k_lin", "key_proj", "k_proj"),
    "value": ("value", "v_lin", "value_proj", "v_proj"),
}
#: fused projections whose output is ``[q; k; v]`` along the last axis (ModernBERT, GPT-2)
FUSED_PROJECTIONS = ("Wqkv", "c_attn")
ROLES = ("query", "key", "value")
#: families whose attention map is softmax of the raw query / key projections with absolute positions
_PLAIN_ATTENTION = frozenset({"bert", "roberta", "xlm-roberta", "electra", "distilbert", "camembert"})


@dataclass(frozen=True)
class LayerStack:
    """A model's transformer blocks: ``owner.<name>`` is the ``nn.ModuleList`` ``layers``."""

    owner: nn.Module
    name: str
    layers: nn.ModuleList
    path: str


def family(model_or_config) -> str:
    config = getattr(model_or_config, "config", model_or_config)
    return str(getattr(config, "model_type", type(model_or_config).__name__))


def shares_layers(config) -> bool:
    """ALBERT-style: fewer layer groups than layers, each group's weights reused across the depth."""
    groups = getattr(config, "num_hidden_groups", None)
    return groups is not None and groups < config.num_hidden_layers


def layer_stack(model: nn.Module) -> LayerStack:
    """The transformer blocks of ``model`` (see the module docstring); :class:`ModelError` naming the family."""
    base = getattr(model, "base_model", model)
    config = model.config
    depth = getattr(config, "num_hidden_layers", None)
    if shares_layers(config):
        groups = [(path, m) for path, m in base.named_modules() if path.endswith("layer_groups")]
        if groups:
            path, layers = groups[0]
            owner_path, _, name = path.rpartition(".")
            return LayerStack(base.get_submodule(owner_path) if owner_path else base, name, layers, path)
    candidates = [
        (path, module)
        for path, module in base.named_modules()
        if isinstance(module, nn.ModuleList)
        and len(module) == depth
        and len(module) > 0
        and len({type(block) for block in module}) == 1
    ]
    if not candidates:
        raise ModelError(
            f"cannot find the {depth} transformer layers of {type(model).__name__} ({family(model)}): no "
            f"list of {depth} blocks of one class in its base model"
        )
    path, layers = min(candidates, key=lambda item: item[0].count("."))
    owner_path, _, name = path.rpartition(".")
    return LayerStack(base.get_submodule(owner_path) if owner_path else base, name, layers, path)


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """One module per layer of depth, in order (an ALBERT-style model repeats its shared group's block)."""
    stack = layer_stack(model)
    if not shares_layers(model.config):
        return list(stack.layers)
    config: Any = model.config  # a PretrainedConfig (nn.Module types its attributes as Tensor | Module)
    depth, groups = config.num_hidden_layers, len(stack.layers)
    return [stack.layers[int(i / (depth / groups))] for i in range(depth)]


def is_causal(config) -> bool:
    """A decoder-only model: a causal LM of transformers' registry without a masked-LM head (GPT-2, Llama, Qwen2,
    Mistral, OPT, …); an encoder outside both registries (LayoutLM, CANINE) is not one."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    return (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and not getattr(config, "is_encoder_decoder", False)
    )


def exact_attention_from_projections(config) -> bool:
    return (
        getattr(config, "model_type", None) in _PLAIN_ATTENTION
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
    )


@dataclass(frozen=True)
class Projection:
    """A block's projection of one role: ``module``'s output, or its ``part``-th third for a fused projection."""

    module: nn.Module
    part: int | None = None

    def select(self, output):
        if self.part is None:
            return output
        width = output.shape[-1] // 3
        return output[..., self.part * width : (self.part + 1) * width]


def projection_modules(model: nn.Module, role: str) -> list[Projection]:
    """Each block's ``role`` projection (``query``, ``key`` or ``value``), in layer order."""
    out = []
    for block in transformer_blocks(model):
        found = None
        for _, module in block.named_modules():
            direct = next(
                (getattr(module, n) for n in PROJECTION_NAMES[role] if isinstance(getattr(module, n, None), nn.Module)),
                None,
            )
            if direct is not None:
                found = Projection(direct)
                break
            fused = next(
                (getattr(module, n) for n in FUSED_PROJECTIONS if isinstance(getattr(module, n, None), nn.Module)), None
            )
            if fused is not None:
                found = Projection(fused, ROLES.index(role))
                break
        if found is None:
            raise ModelError(f"cannot find the {role} projection of {type(block).__name__} ({family(model)})")
        out.append(found)
    return out


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (a tensor shared by several modules counted once)."""
    return sum(p.numel() for p in model.parameters())
