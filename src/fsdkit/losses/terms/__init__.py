"""Built-in loss terms; importing this package registers them."""

from fsdkit.losses.terms import logits, memory, structure  # noqa: F401
