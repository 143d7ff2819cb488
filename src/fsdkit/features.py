"""What one forward pass gives the losses: logits, hidden states, attentions, value vectors and the mask.

Only what some loss asks for is computed: hidden states and attention maps are requested from the model
(attention maps need the eager attention implementation) and value vectors are captured by forward hooks
on the self-attention value projections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from fsdkit.feature_rows import feature_rows
from fsdkit.models.architecture import is_causal, projection_modules

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
#: prefix of the teacher's own tokenisation in a batch when teacher and student tokenize differently
TEACHER_PREFIX = "teacher_"


def hidden_layer_index(layer: int | str, num_layers: int, error: type[Exception] = ValueError) -> int:
    """A hidden-state layer name → its index in 0..N (N transformer layers; 0 = the embeddings): ``"penultimate"``
    → N − 1, ``"last"`` → N, a negative index counts from the end; ``error`` when out of range."""
    if layer == "penultimate":
        return num_layers - 1
    if layer == "last":
        return num_layers
    try:
        idx = int(layer)
    except (TypeError, ValueError):
        raise error(f"hidden-state layer {layer!r}: expected an index, 'penultimate' or 'last'") from None
    idx = idx + num_layers + 1 if idx < 0 else idx
    if not 0 <= idx <= num_layers:
        raise error(f"hidden-state layer {layer} out of range for a model with {num_layers} layers (0..{num_layers})")
    return idx


@dataclass(frozen=True)
class FeatureRequest:
    """What a loss needs from a model's forward pass.

    ``value_layers`` are 0-based transformer layer indices whose value vectors (B × L × D) are captured;
    negative indices count from the last layer. ``teacher_layers`` names the teacher's hidden-state layers the loss
    reads (index, ``"penultimate"``, ``"last"``; what the teacher-output cache stores); None, the default, means
    every layer; it only matters with ``hidden_states``. ``attention_layers`` names the 0-based transformer layers
    (negative from the last) whose teacher attention maps the loss reads (the cache stores their queries and keys);
    None, the default, means every layer; it only matters with ``attentions``.
    """

    hidden_states: bool = False
    attentions: bool = False
    value_layers: frozenset[int] = frozenset()
    teacher_layers: frozenset[int | str] | None = None
    attention_layers: frozenset[int] | None = None

    def hidden_layers_read(self) -> frozenset[int | str] | None:
        """The teacher hidden layers this request reads: none without hidden states, None for every layer."""
        return self.teacher_layers if self.hidden_states else frozenset()

    def attention_layers_read(self) -> frozenset[int] | None:
        """The teacher attention layers this request reads: none without attentions, None for every layer."""
        return self.attention_layers if self.attentions else frozenset()

    @classmethod
    def union(cls, *requests: FeatureRequest) -> FeatureRequest:
        """What all of ``requests`` need together (the empty request when there are none)."""
        out = cls()
        for request in requests:
            out = out | request
        return out

    def __or__(self, other: FeatureRequest) -> FeatureRequest:
        def either(mine, theirs):
            return None if mine is None or theirs is None else mine | theirs

        return FeatureRequest(
            self.hidden_states or other.hidden_states,
            self.attentions or other.attentions,
            self.value_layers | other.value_layers,
            either(self.hidden_layers_read(), other.hidden_layers_read()),
            either(self.attention_layers_read(), other.attention_layers_read()),
        )


@dataclass
class Features:
    """Outputs of one forward pass.

    logits: B × C (C = 1 for regression). hidden_states: N + 1 tensors B × L × D, index 0 = embeddings,
    index l = output of transformer layer l. attentions: N tensors B × H × L × L. values: layer index →
    B × L × D value vectors. attention_mask: B × L, 1 for real tokens.
    """

    logits: Tensor
    attention_mask: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    values: dict[int, Tensor] = field(default_factory=dict)
    #: a decoder's pass: its head pools each sample's last real token, not the first (:meth:`pooled`)
    causal: bool = False
    #: :meth:`rows` computed in this pass, by (layer, pooling, length, grad mode)
    _rows: dict[tuple, Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num_layers(self) -> int:
        if self.hidden_states is not None:
            return len(self.hidden_states) - 1
        if self.attentions is not None:
            return len(self.attentions)
        raise ValueError("these features carry neither hidden states nor attentions")

    def layer_index(self, layer: int | str) -> int:
        """Normalise a hidden-state index (:func:`hidden_layer_index`)."""
        return hidden_layer_index(layer, self.num_layers)

    def hidden(self, layer: int | str) -> Tensor:
        """Hidden states of ``layer`` (see :meth:`layer_index`), B × L × D."""
        if self.hidden_states is None:
            raise ValueError("hidden states were not requested for this forward pass")
        return self.hidden_states[self.layer_index(layer)]

    def pooled_positions(self) -> Tensor | None:
        """The position each sample's classification head pools: None for an encoder (position 0, [CLS]); for a
        decoder the last real token (left or right padding alike), as transformers' ``*ForSequenceClassification``
        of decoders pools."""
        if not self.causal:
            return None
        mask = self.attention_mask
        return mask.shape[1] - 1 - mask.flip(1).argmax(1)

    def pooled(self, layer: int | str) -> Tensor:
        """The hidden state (B × D) of ``layer`` at the position the head pools — "the [CLS] vector" of the terms
        that compare one vector per sample (PKD, RKD, internal KD), for encoders and decoders alike."""
        hidden = self.hidden(layer)
        positions = self.pooled_positions()
        if positions is None:
            return hidden[:, 0]
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions.to(hidden.device)]

    def rows(self, layer: int | str, pooling: str = "flatten", max_length: int | None = None) -> Tensor:
        """One row per sample (:func:`fsdkit.memory.feature_rows` of ``layer`` with this pass's mask; flattened rows
        of ``max_length`` tokens, default the batch's padded length), computed once per pass: the local view and the
        memory term read the same rows, and one product with the mask serves both (and their gradients meet before
        it)."""
        length = self.attention_mask.shape[1] if max_length is None else max_length
        key = (self.layer_index(layer), pooling, length, torch.is_grad_enabled())
        if key not in self._rows:
            self._rows[key] = feature_rows(
                self.hidden(layer), self.attention_mask, pooling, length, self.pooled_positions()
            )
        return self._rows[key]

    def float(self) -> Features:
        """These features with every half-precision tensor (a mixed-precision forward pass) upcast to float32.

        Tensors already in float32 or float64 are returned as they are (no copy); the upcast keeps the graph.
        """

        def up(t: Tensor) -> Tensor:
            return t.float() if t.is_floating_point() and t.element_size() < 4 else t

        def each(layers):  # keeps the container type (the teacher cache's PartialHiddenStates, PartialAttentions)
            return (
                None if layers is None else type(layers)(None if t is None else up(t) for t in tuple.__iter__(layers))
            )

        return Features(
            logits=up(self.logits),
            attention_mask=self.attention_mask,
            hidden_states=each(self.hidden_states),
            attentions=each(self.attentions),
            values={k: up(v) for k, v in self.values.items()},
            causal=self.causal,
        )


@contextmanager
def capture_projections(model: nn.Module, role: str, layers: Iterable[int], store: dict[int, Tensor]):
    """While open, each forward pass of ``model`` puts the output (B × L × D) of the ``role`` projection
    (``"query"``, ``"key"`` or ``"value"``) of each layer in ``layers`` (0-based, negative from the last) into
    ``store[layer]``."""
    handles = []
    if layers:
        projections = projection_modules(model, role)
        n = len(projections)
        wanted: dict[int, int] = {}
        for layer in layers:
            idx = layer + n if layer < 0 else layer
            if not 0 <= idx < n:
                raise ValueError(f"{role} layer {layer} out of range for a model with {n} layers")
            wanted[idx] = layer
        # a module may serve several depths (ALBERT's shared layers): its calls within a pass are counted, the k-th
        # call being the k-th depth it serves
        depths: dict[int, list[int]] = {}
        for idx, projection in enumerate(projections):
            depths.setdefault(id(projection.module), []).append(idx)
        for positions in depths.values():
            if not any(i in wanted for i in positions):
                continue
            calls = [0]

            def hook(_module, _inputs, output, _positions=positions, _calls=calls):
                idx = _positions[_calls[0] % len(_positions)]
                _calls[0] += 1
                if idx in wanted:
                    store[wanted[idx]] = projections[idx].select(output)

            handles.append(projections[positions[0]].module.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def model_inputs(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The keys of a collated batch that a Hugging Face encoder takes (labels are left out)."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUT_KEYS}


def teacher_view(batch: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    """The teacher's inputs of a batch: its own tokenisation (``teacher_*`` keys) when teacher and student
    tokenize differently, else the batch itself."""
    own = {k[len(TEACHER_PREFIX) :]: v for k, v in batch.items() if k.startswith(TEACHER_PREFIX)}
    return own or batch


class TeacherSource(Protocol):
    """Where a teacher's :class:`Features` come from: a live forward pass of the frozen teacher
    (:class:`fsdkit.training.trainer.LiveTeacher`) or the on-disk teacher-output cache
    (:class:`fsdkit.training.teacher_cache.TeacherCache`)."""

    def features(self, batch: Mapping[str, Tensor], request: FeatureRequest) -> Features: ...

    def to(self, device) -> TeacherSource: ...


def forward_features(model: nn.Module, batch: Mapping[str, Tensor], request: FeatureRequest) -> Features:
    """Run ``model`` on ``batch`` and collect what ``request`` asks for."""
    values: dict[int, Tensor] = {}
    inputs = model_inputs(batch)
    with capture_projections(model, "value", request.value_layers, values):
        out = model(
            **inputs,
            output_hidden_states=request.hidden_states,
            output_attentions=request.attentions,
            return_dict=True,
        )
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones(inputs["input_ids"].shape, dtype=torch.long, device=out.logits.device)
    return Features(
        logits=out.logits,
        attention_mask=mask,
        hidden_states=out.hidden_states if request.hidden_states else None,
        attentions=out.attentions if request.attentions else None,
        values=values,
        causal=is_causal(model.config),
    )
