"""FSDG: global inter-feature structure through a k-means memory of teacher centroids (FSD eq. 8–10).

The teacher memory ``M_T`` (K × d_T) is built once by :func:`fsdkit.memory.build_teacher_memory`; the
student memory ``M_S`` (K × d_S) is a parameter of this term, trained with the student, checkpointed with it and
not exported. For batch rows ``s_b`` (student) and ``t_b`` (teacher):

- ``D_T[b,k] = ‖t_b − M_T,k‖₂``, ``D_S[b,k] = ‖s_b − M_S,k‖₂``, ``C_T[b,k] = cos(t_b, M_T,k)``, ``C_S`` likewise
- ``F_Mh = γ · MSE(D̂_S, D̂_T) + (1 − γ) · MSE(C_S, C_T)`` — feature-to-centroid structure
- ``F_MM = −log( CKA(M_S, M_T) + ε )`` — centroid structure (any similarity of :mod:`fsdkit.losses.measures`)
- ``L_G = F_Mh + w_M · F_MM``

``distances="normalized"`` (default) takes ``D̂ = D / mean(D)`` (each side divided by the mean of its B × K
distances, as RKD normalises its distances), so all three parts are scale-free and of order 0.1–1;
``distances="raw"`` is the paper's exact eq. 9 (``D̂ = D``). Why the default departs from the paper: with raw
distances the teacher's spread over centroids (~14 on MRPC) dwarfs the cosine and CKA parts (~2,000× and ~1,000×),
so one λ_G silences two of the three parts; and a student memory started at std 0.02 that trains at the
student's learning rate moves by ~0.03 in a whole run, so the student's distances cannot take the teacher's
structure at all (the logged term barely moved). ``M_S`` therefore starts at N(0, ``init_std``²) with
``init_std = 1`` — the reference code's ``nn.Embedding`` initialisation, on the scale of the student's
LayerNorm-ed rows — and trains at its own learning rate ``memory_lr`` (an optimizer parameter group, decayed
with the run's schedule). The three parts are logged separately (``loss_<label>_distance``, ``_cosine``,
``_centroid``). Why ``memory_lr = 0.1``: on real MRPC features held fixed, 300 steps of the memory alone reach the
floor of the distance and cosine parts at 0.1 (as at 0.3 and 1.0), while 1e-2 leaves the cosine part half-way
(docs/math.md).
"""

from __future__ import annotations

import os
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsdkit.errors import ConfigError, ModelError
from fsdkit.features import FeatureRequest, Features
from fsdkit.losses.base import LossTerm, TermContext, teacher_features
from fsdkit.losses.measures import check_loss_form, get_measure, measure_loss
from fsdkit.losses.registry import register_term
from fsdkit.losses.similarities import compare_to_target, target_gram
from fsdkit.memory import TeacherMemory


def _geometry(dots: Tensor, row_sq: Tensor, centroid_sq: Tensor) -> tuple[Tensor, Tensor]:
    """Distances ``√(‖r‖² − 2g + ‖m‖²)`` and cosines ``g / (‖r‖ · ‖m‖)`` from the products ``g`` and the squared
    norms (``row_sq`` B × 1, ``centroid_sq`` K), norms floored at 1e-12 like ``F.normalize``."""
    distances = (row_sq - 2 * dots + centroid_sq).clamp_min(1e-12).sqrt()
    cosines = dots / (row_sq.clamp_min(1e-24).sqrt() * centroid_sq.clamp_min(1e-24).sqrt())
    return distances, cosines


def centroid_geometry(
    rows: Tensor, centroids: Tensor, centroid_sq_norms: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """B × K Euclidean distances and cosine similarities of ``rows`` to ``centroids``, from one product.

    With ``g = rows · centroidsᵀ``: ``D = √(‖r‖² − 2g + ‖m‖²)``, ``C = g / (‖r‖ · ‖m‖)``, norms floored at 1e-12
    like ``F.normalize`` (so the gradient stays finite when a row sits on a centroid or a row is zero).
    ``centroid_sq_norms`` (K,) may be given when the centroids are constant (the teacher memory). ``rows`` may
    be narrower than the centroids (B × w, w ≤ d): they stand for rows whose remaining columns are zero (the
    flattened rows of a batch padded to fewer than ``max_length`` tokens), so only the first w columns of the
    centroids enter the product, and ``‖m‖²`` is over all d.
    """
    dots = rows @ centroids[:, : rows.shape[-1]].T
    centroid_sq = centroids.square().sum(-1) if centroid_sq_norms is None else centroid_sq_norms
    return _geometry(dots, (rows * rows).sum(-1, keepdim=True), centroid_sq)


class _MemoryProducts(torch.autograd.Function):
    """``(rows · M[:, :w]ᵀ, M Mᵀ)`` for rows B × w and the student memory M (K × d), with a backward that writes
    M's gradient in one product, ``(Ġ + Ġᵀ) M``, plus ``Ḋᵀ rows`` added on its first w columns — instead of the
    separate passes over the K × d memory that autograd makes (the slice's zero-filled gradient, ``‖M_k‖²``'s
    square and the sum of three gradients). ``diag(M Mᵀ)`` gives the centroids' squared norms."""

    @staticmethod
    def forward(ctx, rows, memory):
        ctx.save_for_backward(rows, memory)
        return rows @ memory[:, : rows.shape[-1]].T, memory @ memory.T

    @staticmethod
    def backward(ctx, grad_dots, grad_gram):
        rows, memory = ctx.saved_tensors
        width = rows.shape[-1]
        grad_rows = grad_memory = None
        if grad_dots is None:
            grad_dots = rows.new_zeros(rows.shape[0], memory.shape[0])
        if ctx.needs_input_grad[0]:
            grad_rows = grad_dots @ memory[:, :width]
        if ctx.needs_input_grad[1]:
            grad_memory = (grad_gram + grad_gram.T) @ memory if grad_gram is not None else torch.zeros_like(memory)
            grad_memory[:, :width].addmm_(grad_dots.T, rows)
        return grad_rows, grad_memory


@register_term("memory")
class GlobalMemoryStructure(LossTerm):
    """``L_G = γ·MSE(D̂_S, D̂_T) + (1−γ)·MSE(C_S, C_T) + w_M·(−log(CKA(M_S, M_T) + ε))`` (see module docstring).

    Options: ``memory`` (folder of a teacher memory artifact, or a :class:`TeacherMemory`), ``gamma``,
    ``distances`` (``normalized`` or the paper's ``raw``), ``centroid_weight`` ``w_M``, ``similarity`` for the
    centroid structure, ``form``, ``eps``, ``init_std`` of the student memory, ``memory_lr`` (its own learning
    rate; None = the student's). The feature rows use the memory's layer, pooling and max length, so they
    match the teacher memory.

    Config example::

        losses:
          - {name: memory, weight: 1.0, memory: runs/memory, distances: normalized, memory_lr: 0.1}
    """

    DISTANCES = ("normalized", "raw")

    # buffers (register_buffer); teacher_gram is None for a similarity without a Gram form
    teacher_memory: Tensor
    teacher_sq_norms: Tensor
    teacher_gram: Tensor | None

    def __init__(
        self,
        ctx: TermContext,
        memory: str | os.PathLike | TeacherMemory | None = None,
        gamma: float = 0.5,
        similarity: str = "linear_cka",
        form: str = "neg_log",
        eps: float = 1e-8,
        init_std: float = 1.0,
        student_layer: int | str = "penultimate",
        distances: str = "normalized",
        centroid_weight: float = 1.0,
        memory_lr: float | None = 1e-1,
    ):
        super().__init__()
        if memory is None:
            raise ConfigError("the memory loss (FSDG) needs a teacher memory: build one with `fsdkit memory build`")
        if not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"memory gamma must be in [0, 1], got {gamma}")
        if distances not in self.DISTANCES:
            raise ConfigError(f"memory distances must be one of {', '.join(self.DISTANCES)}, got {distances!r}")
        if not init_std > 0:
            raise ConfigError(f"memory init_std must be > 0, got {init_std}")
        if memory_lr is not None and not memory_lr > 0:
            raise ConfigError(f"memory memory_lr must be > 0 (or null for the student's), got {memory_lr}")
        if not isinstance(memory, TeacherMemory):
            memory = TeacherMemory.load(memory)
        built_width = memory.metadata.get("hidden_size")
        teacher_width = getattr(ctx.teacher_config, "hidden_size", None)
        if built_width is not None and teacher_width is not None and built_width != teacher_width:
            raise ModelError(
                f"the teacher memory was built from features of width {built_width}, but the teacher has width "
                f"{teacher_width}: rebuild the memory with this teacher (fsdkit memory build)"
            )
        # a built memory's metadata names its layer, pooling and max length
        self.layer = cast("int | str", memory.layer)
        self.student_layer = student_layer
        self.pooling = cast(str, memory.pooling)
        self.max_length = cast(int, memory.max_length)
        self.gamma = gamma
        self.normalized = distances == "normalized"
        self.centroid_weight = centroid_weight
        self.memory_lr = memory_lr
        self.measure = get_measure(similarity)
        self.form = check_loss_form(form)
        self.eps = eps
        hidden = ctx.student_config.hidden_size
        student_dim = hidden * self.max_length if self.pooling == "flatten" else hidden
        self.register_buffer("teacher_memory", memory.centroids.float(), persistent=False)
        # constant over the run: computed once, not at every step
        self.register_buffer("teacher_sq_norms", self.teacher_memory.square().sum(-1), persistent=False)
        # F_MM compares M_S with the constant M_T: M_T's side of the similarity (its centred Gram) is computed once
        # (None for a similarity without a Gram form)
        self.register_buffer("teacher_gram", target_gram(self.measure.fn, self.teacher_memory), persistent=False)
        self.student_memory = nn.Parameter(torch.randn(memory.n_clusters, student_dim) * init_std)
        self.last_parts: dict[str, Tensor] = {}

    def request(self) -> FeatureRequest:
        return FeatureRequest(hidden_states=True, teacher_layers=frozenset({self.layer}))

    def param_groups(self) -> list[dict]:
        """The student memory's own optimizer group (no weight decay), when ``memory_lr`` is set."""
        if self.memory_lr is None:
            return []
        return [{"params": [self.student_memory], "lr": self.memory_lr, "weight_decay": 0.0}]

    def _rows(self, features: Features, layer) -> Tensor:
        """The batch's rows (:func:`fsdkit.memory.feature_rows`); flattened rows stop at the batch's padded length
        (at most ``max_length`` tokens): the zero columns after it would change no product with a centroid."""
        length = (
            min(features.attention_mask.shape[1], self.max_length) if self.pooling == "flatten" else self.max_length
        )
        return features.rows(layer, self.pooling, length)

    def parts(self, s_rows: Tensor, t_rows: Tensor) -> dict[str, Tensor]:
        """The three unweighted parts of ``L_G`` for student rows ``s_rows`` and teacher rows ``t_rows``."""
        m_s, m_t = self.student_memory, self.teacher_memory
        dots, gram = _MemoryProducts.apply(s_rows, m_s)
        # x * x rather than x.pow(2): the same values, and a backward of two products instead of pow's slower kernels
        d_s, c_s = _geometry(dots, (s_rows * s_rows).sum(-1, keepdim=True), gram.diagonal())
        with torch.no_grad():  # the teacher side is a target
            d_t, c_t = centroid_geometry(t_rows, m_t, self.teacher_sq_norms)
            if self.normalized:
                d_t = d_t / d_t.mean().clamp_min(1e-12)
        if self.normalized:
            d_s = d_s / d_s.mean().clamp_min(1e-12)
        return {
            "distance": F.mse_loss(d_s, d_t),
            "cosine": F.mse_loss(c_s, c_t),
            "centroid": measure_loss(
                compare_to_target(self.measure.fn, m_s, m_t, self.teacher_gram, x_gram=gram),
                self.measure,
                self.form,
                self.eps,
            ),
        }

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        teacher = teacher_features(teacher)
        parts = self.parts(self._rows(student, self.student_layer), self._rows(teacher, self.layer))
        self.last_parts = {k: v.detach() for k, v in parts.items()}
        return (
            self.gamma * parts["distance"]
            + (1 - self.gamma) * parts["cosine"]
            + self.centroid_weight * parts["centroid"]
        )

    def extra_repr(self) -> str:
        k, d = self.student_memory.shape
        return (
            f"K={k}, student_dim={d}, pooling={self.pooling}, gamma={self.gamma}, "
            f"distances={'normalized' if self.normalized else 'raw'}, memory_lr={self.memory_lr}"
        )
