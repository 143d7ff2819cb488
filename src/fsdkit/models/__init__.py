"""Loading, building and exporting teacher and student models (standard Hugging Face folders)."""

from fsdkit.models.loading import (
    DEFAULT_BASE_MODEL,
    check_model_folder,
    check_same_tokenizer,
    load_classifier,
    load_model_config,
    load_teacher,
    resolve_model_path,
    save_model,
)
from fsdkit.models.student import build_student, encoder_layers

__all__ = [
    "DEFAULT_BASE_MODEL",
    "build_student",
    "check_model_folder",
    "check_same_tokenizer",
    "encoder_layers",
    "load_classifier",
    "load_model_config",
    "load_teacher",
    "resolve_model_path",
    "save_model",
]
