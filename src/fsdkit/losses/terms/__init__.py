"""Built-in loss terms; importing this package registers them."""

from fsdkit.losses.terms import internal, logits, memory, minilm, pkd, relation_cka, rkd, structure  # noqa: F401
