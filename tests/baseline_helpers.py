"""Helpers shared by the baseline terms' tests (test_pkd, test_rkd, test_minilm, test_internal, test_relation_cka):
tiny term contexts, hand-made features and NumPy references of attention KL and value relations."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import torch

from fsdkit.features import Features
from fsdkit.losses import TermContext


def ctx(hidden=4, teacher_hidden=4, layers=2, teacher_layers=2, heads=1, teacher_heads=1):
    student = SimpleNamespace(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads)
    teacher = SimpleNamespace(
        hidden_size=teacher_hidden, num_hidden_layers=teacher_layers, num_attention_heads=teacher_heads
    )
    return TermContext(student, teacher, SimpleNamespace(name="toy", is_regression=False, num_labels=2))


def feats(hidden, mask=None, attentions=None, values=None, logits=None) -> Features:
    """Features whose every hidden state is ``hidden`` (a tensor) or ``hidden[l]`` (a list, index = layer)."""
    layers = hidden if isinstance(hidden, (list, tuple)) else [hidden] * 3
    b, length, _ = layers[0].shape
    mask = mask if mask is not None else torch.ones(b, length, dtype=torch.long)
    logits = logits if logits is not None else torch.zeros(b, 2, dtype=layers[0].dtype)
    return Features(logits, mask, hidden_states=tuple(layers), attentions=attentions, values=values or {})


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention maps as a model gives them: rows over the real keys, 0 on padded keys."""
    return scores.masked_fill(~mask[:, None, None, :].bool(), float("-inf")).softmax(-1)


def np_kl_rows(p_t: np.ndarray, p_s: np.ndarray, mask: np.ndarray) -> float:
    """mean over heads and real query rows of Σ_j p_T log(p_T / p_S) over real keys, by loops."""
    values = []
    for b, h, i in itertools.product(range(p_t.shape[0]), range(p_t.shape[1]), range(p_t.shape[2])):
        if mask[b, i]:
            keys = mask[b].astype(bool)
            values.append(np.sum(p_t[b, h, i, keys] * np.log(p_t[b, h, i, keys] / p_s[b, h, i, keys])))
    return float(np.mean(values))


def np_value_relation(v: np.ndarray, mask: np.ndarray, heads: int) -> np.ndarray:
    b, length, width = v.shape
    d_k = width // heads
    out = np.zeros((b, heads, length, length))
    for bi, h in itertools.product(range(b), range(heads)):
        vh = v[bi, :, h * d_k : (h + 1) * d_k]
        scores = vh @ vh.T / np.sqrt(d_k)
        scores[:, ~mask[bi].astype(bool)] = -np.inf
        e = np.exp(scores - scores.max(-1, keepdims=True))
        out[bi, h] = e / e.sum(-1, keepdims=True)
    return out


def pad(x: torch.Tensor, n: int, dims, fill: float) -> torch.Tensor:
    """Append ``n`` positions filled with ``fill`` along each of ``dims``."""
    for d in dims:
        shape = list(x.shape)
        shape[d] = n
        x = torch.cat([x, torch.full(shape, fill, dtype=x.dtype)], dim=d)
    return x
