"""Structure losses within a batch: a view (intra / local) × a similarity (CKA variants, Procrustes, Gram).

FSDI (FSD eq. 6) is ``view=intra, similarity=linear_cka``:
``L_I = −log( mean_b CKA(H_S[b, mask_b], H_T[b, mask_b]) + ε )``.
FSDL (FSD eq. 7) is ``view=local, similarity=linear_cka``: ``L_L = −log( CKA(X, Y) + ε )`` over the B rows
``x_b = vec(H_S[b] ⊙ mask_b)``. Any other pair (e.g. ``view=local, similarity=procrustes``) is the same class.
"""

from __future__ import annotations

from torch import Tensor

from fsdkit.features import FeatureRequest, Features
from fsdkit.losses.base import LossTerm, TermContext, require_same_tokenizer, teacher_features
from fsdkit.losses.measures import check_loss_form, get_measure, measure_loss
from fsdkit.losses.registry import register_term
from fsdkit.losses.views import check_view, intra_rows, local_rows


@register_term("structure")
class StructureLoss(LossTerm):
    """``view × similarity`` on one hidden layer of teacher and student (default: the penultimate layers).

    Options: ``view`` (intra | local), ``similarity`` (linear_cka | rbf_cka | debiased_cka | procrustes | gram),
    ``pooling`` for the local view (flatten | cls | mean), ``student_layer`` / ``teacher_layer`` (index or
    "penultimate"/"last"), ``form`` for similarities (neg_log | one_minus), ``eps``, and
    ``similarity_options`` passed to the similarity (e.g. ``{"sigma": 0.8}`` for rbf_cka).

    Config example::

        losses:
          - {name: structure, weight: 30.0, label: local, view: local, similarity: procrustes, pooling: cls}
    """

    def __init__(
        self,
        ctx: TermContext,
        view: str = "intra",
        similarity: str = "linear_cka",
        pooling: str = "flatten",
        student_layer: int | str = "penultimate",
        teacher_layer: int | str = "penultimate",
        form: str = "neg_log",
        eps: float = 1e-8,
        similarity_options: dict | None = None,
    ):
        super().__init__()
        check_view(view, pooling)
        self.view = view
        self.measure = get_measure(similarity)
        self.similarity = similarity
        self.pooling = pooling
        self.student_layer = student_layer
        self.teacher_layer = teacher_layer
        self.form = check_loss_form(form)
        self.eps = eps
        self.similarity_options = dict(similarity_options or {})
        if view == "intra":
            require_same_tokenizer(
                ctx,
                "intra-feature (FSDI)",
                "the local view (FSDL, e.g. --method fsdl) or the memory (FSDG), which compare samples, not tokens",
            )

    @property
    def min_batch_size(self) -> int:
        """The local view compares the batch's samples: 2 of them (debiased CKA's estimator needs 4)."""
        if self.view != "local":
            return 1
        return 4 if self.similarity == "debiased_cka" else 2

    def request(self) -> FeatureRequest:
        return FeatureRequest(hidden_states=True, teacher_layers=frozenset({self.teacher_layer}))

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        teacher = teacher_features(teacher)
        mask: Tensor | None
        if self.view == "intra":
            x, y, mask = intra_rows(student, teacher, self.student_layer, self.teacher_layer)
        else:
            x, y, mask = local_rows(student, teacher, self.student_layer, self.teacher_layer, self.pooling)
            if x.shape[0] < self.min_batch_size:
                raise ValueError(
                    f"the local (batch) view needs at least {self.min_batch_size} samples per batch, got {x.shape[0]}; "
                    "use a larger batch size"
                )
        values = self.measure.fn(x, y, mask, **self.similarity_options)
        return measure_loss(values, self.measure, self.form, self.eps)

    def extra_repr(self) -> str:
        return f"view={self.view}, similarity={self.measure.name}, pooling={self.pooling}"
