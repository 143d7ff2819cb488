"""FSDG: global inter-feature structure through a k-means memory of teacher centroids (FSD eq. 8–10).

The teacher memory ``M_T`` (K × d_T) is built once by :func:`fsdkit.memory.build_teacher_memory`; the
student memory ``M_S`` (K × d_S) is a parameter of this term, randomly initialised, trained with the student,
checkpointed with it and not exported. For batch rows ``s_b`` (student) and ``t_b`` (teacher):

- ``D_T[b,k] = ‖t_b − M_T,k‖₂``, ``D_S[b,k] = ‖s_b − M_S,k‖₂``, ``C_T[b,k] = cos(t_b, M_T,k)``, ``C_S`` likewise
- ``F_Mh = γ · MSE(D_S, D_T) + (1 − γ) · MSE(C_S, C_T)`` — feature-to-centroid structure
- ``F_MM = −log( CKA(M_S, M_T) + ε )`` — centroid structure (any similarity of :mod:`fsdkit.losses.measures`)
- ``L_G = F_Mh + F_MM``
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsdkit.errors import ConfigError, ModelError
from fsdkit.features import FeatureRequest, Features
from fsdkit.losses.base import LossTerm, TermContext
from fsdkit.losses.measures import check_loss_form, get_measure, measure_loss
from fsdkit.losses.registry import register_term
from fsdkit.memory import TeacherMemory, feature_rows


def centroid_geometry(rows: Tensor, centroids: Tensor, centroid_sq_norms: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """B × K Euclidean distances and cosine similarities of ``rows`` to ``centroids``, from one product.

    With ``g = rows · centroidsᵀ``: ``D = √(‖r‖² − 2g + ‖m‖²)``, ``C = g / (‖r‖ · ‖m‖)``, norms floored at 1e-12
    like ``F.normalize`` (so the gradient stays finite when a row sits on a centroid or a row is zero).
    ``centroid_sq_norms`` (K,) may be given when the centroids are constant (the teacher memory).
    """
    dots = rows @ centroids.T
    row_sq = rows.pow(2).sum(-1, keepdim=True)
    centroid_sq = centroids.pow(2).sum(-1) if centroid_sq_norms is None else centroid_sq_norms
    distances = (row_sq - 2 * dots + centroid_sq).clamp_min(1e-12).sqrt()
    cosines = dots / (row_sq.clamp_min(1e-24).sqrt() * centroid_sq.clamp_min(1e-24).sqrt())
    return distances, cosines


@register_term("memory")
class GlobalMemoryStructure(LossTerm):
    """``L_G = γ·MSE(D_S, D_T) + (1−γ)·MSE(C_S, C_T) + (−log(CKA(M_S, M_T) + ε))`` (see module docstring).

    Options: ``memory`` (folder of a teacher memory artifact, or a :class:`TeacherMemory`), ``gamma``,
    ``similarity`` for the centroid structure, ``form``, ``eps``, ``init_std`` of the student memory.
    The feature rows use the memory's layer, pooling and max length, so they match the teacher memory.
    """

    def __init__(
        self,
        ctx: TermContext,
        memory: str | os.PathLike | TeacherMemory | None = None,
        gamma: float = 0.5,
        similarity: str = "linear_cka",
        form: str = "neg_log",
        eps: float = 1e-8,
        init_std: float = 0.02,
        student_layer: int | str = "penultimate",
    ):
        super().__init__()
        if memory is None:
            raise ConfigError("the memory loss (FSDG) needs a teacher memory: build one with `fsdkit memory build`")
        if not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"memory gamma must be in [0, 1], got {gamma}")
        if not isinstance(memory, TeacherMemory):
            memory = TeacherMemory.load(memory)
        built_width = memory.metadata.get("hidden_size")
        teacher_width = getattr(ctx.teacher_config, "hidden_size", None)
        if built_width is not None and teacher_width is not None and built_width != teacher_width:
            raise ModelError(
                f"the teacher memory was built from features of width {built_width}, but the teacher has width "
                f"{teacher_width}: rebuild the memory with this teacher (fsdkit memory build)"
            )
        self.layer = memory.layer
        self.student_layer = student_layer
        self.pooling = memory.pooling
        self.max_length = memory.max_length
        self.gamma = gamma
        self.measure = get_measure(similarity)
        self.form = check_loss_form(form)
        self.eps = eps
        hidden = ctx.student_config.hidden_size
        student_dim = hidden * self.max_length if self.pooling == "flatten" else hidden
        self.register_buffer("teacher_memory", memory.centroids.float(), persistent=False)
        # constant over the run: computed once, not at every step
        self.register_buffer("teacher_sq_norms", self.teacher_memory.pow(2).sum(-1), persistent=False)
        self.student_memory = nn.Parameter(torch.randn(memory.n_clusters, student_dim) * init_std)

    def request(self) -> FeatureRequest:
        return FeatureRequest(hidden_states=True)

    def _rows(self, features: Features, layer) -> Tensor:
        return feature_rows(features.hidden(layer), features.attention_mask, self.pooling, self.max_length)

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        s_rows = self._rows(student, self.student_layer)
        t_rows = self._rows(teacher, self.layer)
        m_s, m_t = self.student_memory, self.teacher_memory
        d_s, c_s = centroid_geometry(s_rows, m_s)
        with torch.no_grad():  # the teacher side is a target
            d_t, c_t = centroid_geometry(t_rows, m_t, self.teacher_sq_norms)
        distance_term = F.mse_loss(d_s, d_t)
        cosine_term = F.mse_loss(c_s, c_t)
        feature_to_centroid = self.gamma * distance_term + (1 - self.gamma) * cosine_term
        centroid_structure = measure_loss(self.measure.fn(m_s, m_t), self.measure, self.form, self.eps)
        return feature_to_centroid + centroid_structure

    def extra_repr(self) -> str:
        k, d = self.student_memory.shape
        return f"K={k}, student_dim={d}, pooling={self.pooling}, gamma={self.gamma}"
