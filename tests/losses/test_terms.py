"""Loss terms against their definitions in docs/math.md: golden values, NumPy references, padding, gradients, errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from fsdkit.errors import ConfigError, ModelError
from fsdkit.features import Features
from fsdkit.losses import TermContext, build_term
from fsdkit.losses.terms.memory import centroid_geometry
from fsdkit.memory import TeacherMemory

EPS = 1e-8


def ctx(hidden=6, teacher_hidden=5, regression=False, same_tokenizer=True, max_length=7):
    task = SimpleNamespace(name="toy", is_regression=regression, num_labels=1 if regression else 2)
    return TermContext(
        SimpleNamespace(hidden_size=hidden),
        SimpleNamespace(hidden_size=teacher_hidden),
        task,
        same_tokenizer=same_tokenizer,
        max_length=max_length,
    )


def features(hidden_last: torch.Tensor, mask: torch.Tensor, logits=None) -> Features:
    """Features of a 2-layer model whose penultimate hidden state (index 1) is ``hidden_last``."""
    b = hidden_last.shape[0]
    other = torch.zeros_like(hidden_last)
    logits = logits if logits is not None else torch.zeros(b, 2, dtype=hidden_last.dtype)
    return Features(logits=logits, attention_mask=mask, hidden_states=(other, hidden_last, other))


def np_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from its definition: HSIC(K, Λ) / sqrt(HSIC(K, K) HSIC(Λ, Λ)), H = I − 11ᵀ/n."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
    hs = torch.randn(4, 7, 6, generator=g, dtype=torch.float64)
    ht = torch.randn(4, 7, 5, generator=g, dtype=torch.float64) + hs[..., :5] * 0.5
    return hs, ht, mask


# ---------------------------------------------------------------------------------------------- logits
def test_kd_golden_value():
    """T² · KL(softmax(z_T/T) ‖ softmax(z_S/T)), batch mean, computed by hand for T = 2."""
    term = build_term("kd", ctx(), {"temperature": 2.0})
    s = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    t = torch.tensor([[2.0, 1.0], [0.0, 0.0]])
    value = term(Features(s, torch.ones(2, 1)), Features(t, torch.ones(2, 1)), {})
    assert value.item() == pytest.approx(0.3823663135, rel=1e-6)


def test_kd_is_zero_for_identical_logits_and_regression_is_mse():
    z = torch.tensor([[0.3, -0.2], [1.0, 2.0]])
    assert build_term("kd", ctx(), {})(Features(z, None), Features(z, None), {}).item() == pytest.approx(0.0, abs=1e-7)
    reg = build_term("kd", ctx(regression=True), {})
    value = reg(Features(torch.tensor([[1.0], [3.0]]), None), Features(torch.tensor([[2.0], [1.0]]), None), {})
    assert value.item() == pytest.approx((1 + 4) / 2)


def test_task_loss_classification_and_regression():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    expected = (np.log(1 + np.exp(-2.0)) + np.log(1 + np.exp(1.0))) / 2
    assert build_term("task", ctx(), {})(Features(logits, None), None, {"labels": labels}).item() == pytest.approx(
        expected, rel=1e-6
    )
    reg = build_term("task", ctx(regression=True), {})
    value = reg(Features(torch.tensor([[1.0], [2.5]]), None), None, {"labels": torch.tensor([0.0, 2.5])})
    assert value.item() == pytest.approx(0.5)


def test_kd_rejects_bad_temperature():
    with pytest.raises(ConfigError, match="temperature"):
        build_term("kd", ctx(), {"temperature": 0})


# ---------------------------------------------------------------------------------------------- FSDI / FSDL
def test_intra_equals_definition(batch):
    hs, ht, mask = batch
    term = build_term("structure", ctx(), {"view": "intra"})
    value = term(features(hs, mask), features(ht, mask), {}).item()
    ckas = [np_cka(hs[b, mask[b].bool()].numpy(), ht[b, mask[b].bool()].numpy()) for b in range(4)]
    assert value == pytest.approx(-np.log(np.mean(ckas) + EPS), rel=1e-9)


def test_intra_ignores_padding(batch):
    """Adding padding (with arbitrary values under mask 0) to a batch leaves the loss unchanged."""
    hs, ht, mask = batch
    term = build_term("structure", ctx(), {"view": "intra"})
    base = term(features(hs, mask), features(ht, mask), {})
    pad = 5
    g = torch.Generator().manual_seed(1)
    hs_p = torch.cat([hs, 100 * torch.randn(4, pad, 6, generator=g, dtype=hs.dtype)], dim=1)
    ht_p = torch.cat([ht, -50 * torch.randn(4, pad, 5, generator=g, dtype=ht.dtype)], dim=1)
    mask_p = torch.cat([mask, torch.zeros(4, pad, dtype=mask.dtype)], dim=1)
    padded = term(features(hs_p, mask_p), features(ht_p, mask_p), {})
    assert padded.item() == pytest.approx(base.item(), rel=1e-12)


@pytest.mark.parametrize("pooling", ["flatten", "cls", "mean"])
def test_local_equals_definition(batch, pooling):
    hs, ht, mask = batch
    term = build_term("structure", ctx(), {"view": "local", "pooling": pooling})
    value = term(features(hs, mask), features(ht, mask), {}).item()
    m = mask.numpy()[..., None]

    def rows(h):
        h = h.numpy() * m
        if pooling == "flatten":
            return h.reshape(4, -1)
        if pooling == "cls":
            return h[:, 0]
        return h.sum(1) / m.sum(1)

    assert value == pytest.approx(-np.log(np_cka(rows(hs), rows(ht)) + EPS), rel=1e-9)


def test_local_flatten_ignores_padding(batch):
    hs, ht, mask = batch
    term = build_term("structure", ctx(), {"view": "local"})
    base = term(features(hs, mask), features(ht, mask), {})
    hs_p = torch.cat([hs, torch.full((4, 3, 6), 7.0, dtype=hs.dtype)], dim=1)
    ht_p = torch.cat([ht, torch.full((4, 3, 5), -3.0, dtype=ht.dtype)], dim=1)
    mask_p = torch.cat([mask, torch.zeros(4, 3, dtype=mask.dtype)], dim=1)
    assert term(features(hs_p, mask_p), features(ht_p, mask_p), {}).item() == pytest.approx(base.item(), rel=1e-12)


def test_one_minus_form(batch):
    hs, ht, mask = batch
    term = build_term("structure", ctx(), {"view": "local", "form": "one_minus"})
    value = term(features(hs, mask), features(ht, mask), {}).item()
    m = mask.numpy()[..., None]
    assert value == pytest.approx(
        1 - np_cka((hs.numpy() * m).reshape(4, -1), (ht.numpy() * m).reshape(4, -1)), rel=1e-9
    )


@pytest.mark.parametrize(
    "options",
    [
        {"view": "intra"},
        {"view": "local"},
        {"view": "local", "pooling": "mean"},
        {"view": "intra", "similarity": "procrustes"},
        {"view": "local", "similarity": "gram"},
    ],
)
def test_structure_gradcheck(batch, options):
    hs, ht, mask = batch
    term = build_term("structure", ctx(), options)
    hs = hs.clone().requires_grad_(True)
    assert gradcheck(lambda h: term(features(h, mask), features(ht, mask), {}), (hs,), eps=1e-6, atol=1e-5)


def test_local_needs_two_samples(batch):
    hs, ht, mask = batch
    term = build_term("structure", ctx(), {"view": "local"})
    with pytest.raises(ValueError, match="at least 2 samples"):
        term(features(hs[:1], mask[:1]), features(ht[:1], mask[:1]), {})


@pytest.mark.parametrize("view", ["intra", "local"])
def test_zero_variance_student_gives_finite_loss_and_gradient(batch, view):
    """Constant student features (all rows equal) must not send NaN to the optimizer."""
    _, ht, mask = batch
    hs = torch.ones(4, 7, 6, dtype=torch.float64, requires_grad=True)
    term = build_term("structure", ctx(), {"view": view})
    value = term(features(hs, mask), features(ht, mask), {})
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(hs.grad).all()


def test_intra_refuses_different_tokenizers():
    with pytest.raises(ModelError, match="tokenizers differ"):
        build_term("structure", ctx(same_tokenizer=False), {"view": "intra"})


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown loss 'nope'.*known losses"):
        build_term("nope", ctx(), {})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['colour'\]"):
        build_term("structure", ctx(), {"colour": "red"})
    with pytest.raises(ConfigError, match="unknown similarity"):
        build_term("structure", ctx(), {"similarity": "cosine"})
    with pytest.raises(ConfigError, match="unknown view"):
        build_term("structure", ctx(), {"view": "global"})


# ---------------------------------------------------------------------------------------------- FSDG
@pytest.fixture(params=["normalized", "raw"])
def memory_term(batch, request):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    centroids = torch.randn(3, 7 * 5, generator=g)
    memory = TeacherMemory(centroids, {"layer": "penultimate", "pooling": "flatten", "max_length": 7, "hidden_size": 5})
    options = {"memory": memory, "gamma": 0.3, "distances": request.param, "centroid_weight": 0.8}
    return build_term("memory", ctx(), options).double()


def test_memory_equals_definition(batch, memory_term):
    hs, ht, mask = batch
    value = memory_term(features(hs, mask), features(ht, mask), {}).item()
    m = mask.numpy()[..., None]
    s_rows = (hs.numpy() * m).reshape(4, -1)
    t_rows = (ht.numpy() * m).reshape(4, -1)
    m_s = memory_term.student_memory.detach().numpy()
    m_t = memory_term.teacher_memory.numpy()

    def dist(r, c):
        return np.sqrt(((r[:, None, :] - c[None, :, :]) ** 2).sum(-1))

    def cos(r, c):
        return (r @ c.T) / np.linalg.norm(r, axis=1)[:, None] / np.linalg.norm(c, axis=1)[None, :]

    d_s, d_t = dist(s_rows, m_s), dist(t_rows, m_t)
    if memory_term.normalized:  # each side over the mean of its B × K distances
        d_s, d_t = d_s / d_s.mean(), d_t / d_t.mean()
    f_mh = 0.3 * np.mean((d_s - d_t) ** 2) + 0.7 * np.mean((cos(s_rows, m_s) - cos(t_rows, m_t)) ** 2)
    f_mm = -np.log(np_cka(m_s, m_t) + EPS)
    assert value == pytest.approx(f_mh + 0.8 * f_mm, rel=1e-6)
    assert set(memory_term.last_parts) == {"distance", "cosine", "centroid"}


def test_memory_of_a_batch_padded_to_fewer_tokens_than_max_length(batch, memory_term):
    """A batch padded to 5 of the memory's 7 tokens compares its rows with the centroids' first 5 · D columns:
    the same value and gradients as the batch padded to 7 (the term skips the zero columns, never the centroids'
    norms)."""
    hs, ht, mask = batch
    mask = mask.clone()
    mask[:, 5:] = 0  # at most 5 real tokens per sample
    results = []
    for length in (7, 5):
        h = hs[:, :length].clone().requires_grad_(True)
        memory_term.zero_grad()
        value = memory_term(features(h, mask[:, :length]), features(ht[:, :length], mask[:, :length]), {})
        value.backward()
        results.append((value.item(), h.grad[:, :5], memory_term.student_memory.grad.clone()))
    (v7, g7, m7), (v5, g5, m5) = results
    assert v5 == pytest.approx(v7, rel=1e-12)
    assert torch.allclose(g5, g7, rtol=1e-10, atol=1e-12) and torch.allclose(m5, m7, rtol=1e-10, atol=1e-12)


def test_the_local_view_and_the_memory_term_share_one_pass_rows(batch, memory_term):
    """FSDL and FSDG read the same flattened rows of a pass: computed once (one mask product per side), and the value
    and gradients are those of each term on its own features."""
    hs, ht, mask = batch
    local = build_term("structure", ctx(), {"view": "local"}).double()
    h = hs.clone().requires_grad_(True)
    student, teacher = features(h, mask), features(ht, mask)
    together = local(student, teacher, {}) + memory_term(student, teacher, {})
    assert len(student._rows) == 1 and len(teacher._rows) == 1  # one row tensor per side, read by both terms
    (grad,) = torch.autograd.grad(together, h)
    apart = []
    for term in (local, memory_term):
        h_alone = hs.clone().requires_grad_(True)
        value = term(features(h_alone, mask), features(ht, mask), {})
        apart.append((value, torch.autograd.grad(value, h_alone)[0]))
    assert together.item() == pytest.approx(sum(v.item() for v, _ in apart), rel=1e-12)
    assert torch.allclose(grad, apart[0][1] + apart[1][1], rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # rows made without a graph are kept apart from the ones a gradient flows through
        student.rows("penultimate")
    assert len(student._rows) == 2


def test_optimising_the_memory_alone_halves_the_feature_to_centroid_term():
    """Student features fixed (a random linear map of the teacher's, other width, plus noise): 300 Adam steps on
    the student memory alone at the term's defaults (N(0, 1) start, memory_lr) cut the distance + cosine parts
    by more than half. The paper's form (raw distances, std 0.02, the student's 1e-4) barely moves them."""
    g = torch.Generator().manual_seed(0)
    k, b, d_t, d_s = 8, 32, 24, 16
    centres = torch.randn(k, d_t, generator=g) * 3
    teacher = centres[torch.randint(k, (256,), generator=g)] + 0.5 * torch.randn(256, d_t, generator=g)
    student = teacher @ torch.randn(d_t, d_s, generator=g) / d_t**0.5 + 0.1 * torch.randn(256, d_s, generator=g)
    from fsdkit.memory import kmeans

    centroids = kmeans(teacher.numpy(), k, seed=0).centroids
    memory = TeacherMemory(
        centroids, {"layer": "penultimate", "pooling": "mean", "max_length": None, "hidden_size": d_t}
    )

    def feature_to_centroid(options, lr):
        torch.manual_seed(0)
        term = build_term("memory", ctx(hidden=d_s, teacher_hidden=d_t), {"memory": memory, **options})
        optimizer = torch.optim.Adam([term.student_memory], lr=lr or term.memory_lr)
        values = []
        for step in range(300):
            rows = torch.randint(256, (b,), generator=g)
            parts = term.parts(student[rows], teacher[rows])
            f_mh = term.gamma * parts["distance"] + (1 - term.gamma) * parts["cosine"]
            values.append(f_mh.item())
            optimizer.zero_grad()
            f_mh.backward()
            optimizer.step()
        return np.mean(values[:10]), np.mean(values[-10:])

    first, last = feature_to_centroid({}, lr=None)
    print(f"defaults: {first:.4f} -> {last:.4f}")
    assert last < 0.5 * first, (first, last)
    first_paper, last_paper = feature_to_centroid({"distances": "raw", "init_std": 0.02}, lr=1e-4)
    print(f"paper form: {first_paper:.4f} -> {last_paper:.4f}")
    assert last_paper > 0.9 * first_paper, (first_paper, last_paper)


def test_memory_gradcheck_and_owns_student_memory(batch, memory_term):
    hs, ht, mask = batch
    assert [n for n, _ in memory_term.named_parameters()] == ["student_memory"]
    assert "teacher_memory" not in memory_term.state_dict()
    hs = hs.clone().requires_grad_(True)
    m_s = memory_term.student_memory.detach().clone().requires_grad_(True)

    def loss(h, student_memory):
        args = (features(h, mask), features(ht, mask), {})
        return torch.func.functional_call(memory_term, {"student_memory": student_memory}, args)

    assert gradcheck(loss, (hs, m_s), eps=1e-6, atol=1e-5)


def test_centroid_geometry_is_cdist_and_cosine_with_finite_gradients_at_degenerate_rows():
    """One product gives both B × K matrices; a zero row and a row sitting on a centroid keep finite gradients."""
    g = torch.Generator().manual_seed(5)
    centroids = torch.randn(4, 6, generator=g, dtype=torch.float64)
    rows = torch.randn(5, 6, generator=g, dtype=torch.float64)
    rows[1] = 0.0
    rows[3] = centroids[2]
    rows.requires_grad_(True)
    distances, cosines = centroid_geometry(rows, centroids)
    torch.testing.assert_close(distances, torch.cdist(rows, centroids), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        cosines, torch.nn.functional.cosine_similarity(rows[:, None], centroids[None], dim=-1, eps=1e-12)
    )
    again, _ = centroid_geometry(rows, centroids, centroids.pow(2).sum(-1))  # precomputed centroid norms: the same
    assert torch.equal(again, distances)
    (distances.sum() + cosines.sum()).backward()
    assert torch.isfinite(rows.grad).all()


def test_memory_refuses_wrong_teacher_width():
    memory = TeacherMemory(
        torch.randn(3, 70), {"layer": "penultimate", "pooling": "flatten", "max_length": 7, "hidden_size": 10}
    )
    with pytest.raises(ModelError, match="width 10"):
        build_term("memory", ctx(teacher_hidden=5), {"memory": memory})


def test_memory_requires_memory():
    with pytest.raises(ConfigError, match="fsdkit memory build"):
        build_term("memory", ctx(), {})
