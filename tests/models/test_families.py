"""Every Hugging Face classifier family as teacher and student: finetune → distil (every method, or its refusal)
→ evaluate → predict from the model alone → export (ONNX, then ``transformers.pipeline`` on the exported folder).

Each family is a tiny random model built from its ``transformers`` config (4 layers, width 32, a 200-piece WordPiece
vocabulary trained here on the shipped tickets data), fine-tuned for two steps on the tickets, then distilled into
``--student teacher --student-layers 2`` (layers 1 and 3: not the first, so that a family whose first layer is built
differently, ModernBERT's, is exercised). Decoders come as the hub ships them: no pad token.

``docs/families.md`` is generated from this module's table (``python tests/models/test_families.py`` rewrites it; a test
checks it is current).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # data_paths, also when run as a script to regenerate docs/families.md

from data_paths import TICKETS, TICKETS_DEV  # noqa: E402
from fsdkit.methods import get_method  # noqa: E402

DOC = TESTS.parent / "docs" / "families.md"
METHODS = ("vkd", "fsd", "fsdi", "pkd", "rkd", "minilm", "internal-all")
#: family → (transformers config class, its keyword arguments); a decoder has no pad token
FAMILIES = {
    "bert": ("BertConfig", dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64)),
    "roberta": (
        "RobertaConfig",
        dict(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=132,
        ),
    ),
    "xlm-roberta": (
        "XLMRobertaConfig",
        dict(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=132,
        ),
    ),
    "distilbert": ("DistilBertConfig", dict(dim=32, n_layers=4, n_heads=2, hidden_dim=64)),
    "electra": (
        "ElectraConfig",
        dict(embedding_size=32, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64),
    ),
    "deberta-v2": (
        "DebertaV2Config",
        dict(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=64,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=16,
            pos_att_type=["p2c", "c2p"],
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            position_biased_input=False,
            max_relative_positions=-1,
        ),
    ),
    "modernbert": (
        "ModernBertConfig",
        dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, local_attention=8),
    ),
    "albert": (
        "AlbertConfig",
        dict(embedding_size=16, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64),
    ),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=4, n_head=2, n_positions=128)),
    "llama": (
        "LlamaConfig",
        dict(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        ),
    ),
    "qwen2": (
        "Qwen2Config",
        dict(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            max_position_embeddings=128,
        ),
    ),
}
DECODERS = ("gpt2", "llama", "qwen2")
#: (family, method) → the refusal's message (a regular expression); every other pair trains
REFUSED: dict[tuple[str, str], str] = {}


def student_layers(family: str) -> str:
    return "2" if family == "albert" else "1,3"  # ALBERT's student repeats its shared group twice


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory) -> Path:
    import pandas as pd
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    texts = list(pd.read_csv(TICKETS)["text"]) + list(pd.read_csv(TICKETS_DEV)["text"])
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts * 4, vocab_size=200, min_frequency=1)
    cls, sep = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    folder = tmp_path_factory.mktemp("family-tokenizer")
    PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(folder)
    return folder


def random_model_folder(family: str, tokenizer_folder: Path, out: Path) -> Path:
    """A tiny random ``*ForSequenceClassification`` of ``family`` saved with its tokenizer (a decoder's without a
    pad token, as GPT-2's and Llama's come from the hub)."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    name, options = FAMILIES[family]
    config = getattr(transformers, name)(vocab_size=len(tokenizer), num_labels=3, **options)
    if family in DECODERS:
        tokenizer.eos_token = "[SEP]"
        tokenizer.pad_token = None
        config.pad_token_id = None
        config.eos_token_id = config.bos_token_id = tokenizer.convert_tokens_to_ids("[SEP]")
    else:
        config.pad_token_id = tokenizer.pad_token_id
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


TEACHERS: dict[str, Path] = {}


@pytest.fixture
def teacher(request, tokenizer_folder, tmp_path_factory) -> Path:
    """The family's random model fine-tuned two steps on the tickets (once per family)."""
    from fsdkit import finetune

    family = request.param
    if family not in TEACHERS:
        base = random_model_folder(family, tokenizer_folder, tmp_path_factory.mktemp(f"{family}-random"))
        out = tmp_path_factory.mktemp(f"{family}-teacher")
        finetune(
            model=str(base),
            train_file=str(TICKETS),
            validation_file=str(TICKETS_DEV),
            output_dir=str(out),
            max_steps=2,
            batch_size=8,
            max_length=32,
            learning_rate=1e-3,
            progress=False,
        )
        TEACHERS[family] = out
    return TEACHERS[family]


def family_of(teacher: Path) -> str:
    return next(f for f, path in TEACHERS.items() if path == teacher)


def distill_options(family: str, teacher: Path, method: str, out: Path) -> dict:
    return dict(
        train_file=str(TICKETS),
        validation_file=str(TICKETS_DEV),
        teacher=str(teacher),
        student="teacher",
        student_layers=student_layers(family),
        method=method,
        output_dir=str(out),
        max_steps=2,
        batch_size=8,
        max_length=32,
        relation_every=0,
        logging_steps=1,
        progress=False,
        **({"memory_clusters": 3} if get_method(method).needs_memory else {}),
    )


@pytest.mark.parametrize(
    "teacher, method",
    [(f, m) for f in FAMILIES for m in METHODS],
    indirect=["teacher"],
    ids=[f"{f}-{m}" for f in FAMILIES for m in METHODS],
)
def test_every_method_distils_every_family(teacher, method, tmp_path):
    from fsdkit import distill

    family = family_of(teacher)
    refusal = REFUSED.get((family, method))
    if refusal is not None:
        with pytest.raises(Exception, match=refusal):
            distill(**distill_options(family, teacher, method, tmp_path / "student"))
        return
    record = distill(**distill_options(family, teacher, method, tmp_path / "student"))
    losses = {key for entry in record["losses_by_epoch"] for key in entry}
    assert "loss_kd" in losses and all(v == v for entry in record["losses_by_epoch"] for v in entry.values())
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tmp_path / "student")
    assert config.num_hidden_layers == 2 and config.id2label == {0: "billing", 1: "bug", 2: "feature"}
    if getattr(config, "layer_types", None) is not None:
        assert len(config.layer_types) == 2


@pytest.mark.parametrize("teacher", list(FAMILIES), indirect=True)
def test_evaluate_predict_and_export_every_family(teacher, tmp_path):
    """A student of the family evaluated, predicted from the model folder alone (no training file), exported to
    ONNX with only the inputs the model takes, and served by ``transformers.pipeline`` from the exported folder."""
    from transformers import pipeline

    from fsdkit import distill, predict
    from fsdkit.evaluation import evaluate
    from fsdkit.export import export_onnx

    family = family_of(teacher)
    student = tmp_path / "student"
    distill(**distill_options(family, teacher, "vkd", student))
    result = evaluate(model=str(student), train_file=str(TICKETS), validation_file=str(TICKETS_DEV), max_length=32)
    assert set(result["metrics"]["validation"]) == {"accuracy", "macro_f1"}
    new = tmp_path / "new.csv"
    new.write_text("body\nmy card was charged twice\nplease add a dark mode\n")
    predict(model=str(student), input=str(new), text_columns=["body"], output=str(tmp_path / "p.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {r["prediction"] for r in rows} <= {"billing", "bug", "feature"}
    assert abs(sum(v for k, v in rows[0].items() if k.startswith("p_")) - 1) < 1e-4
    exported = export_onnx(str(student), str(tmp_path / "onnx"))
    assert (
        exported["max_abs_logit_difference"] < 1e-4
        and "token_type_ids" not in exported["inputs"]
        or family not in ("deberta-v2", "distilbert", *DECODERS)
    )
    served = pipeline("text-classification", model=str(tmp_path / "onnx"))("my card was charged twice")
    assert served[0]["label"] in {"billing", "bug", "feature"}


#: (teacher family, student family): a student made of another family's layers
PAIRS = (("roberta", "distilbert"), ("deberta-v2", "bert"), ("gpt2", "bert"), ("bert", "qwen2"))


@pytest.mark.parametrize("teacher, student_family", PAIRS, indirect=["teacher"], ids=[f"{t}-to-{s}" for t, s in PAIRS])
@pytest.mark.parametrize("method", ("vkd", "fsd", "pkd", "rkd", "minilm"))
def test_a_student_of_another_family(teacher, student_family, method, tokenizer_folder, tmp_path):
    """Cross-family pairs: the teacher of one family, the student 2 layers of a (random) model of another — a
    decoder teacher with an encoder student, and the reverse."""
    from fsdkit import distill

    base = random_model_folder(student_family, tokenizer_folder, tmp_path / "base")
    options = {**distill_options(student_family, teacher, method, tmp_path / "student"), "student": str(base)}
    if student_family in DECODERS and method in ("fsd", "minilm"):  # its tokenizer pads with another token
        with pytest.raises(Exception, match="tokenizers differ; use"):  # the token-level terms name an alternative
            distill(**options)
        return
    record = distill(**options)
    assert record["losses_by_epoch"] and all(v == v for entry in record["losses_by_epoch"] for v in entry.values())


def render_table() -> str:
    """docs/families.md: the family × method matrix of this module."""
    lines = [
        "# Model families",
        "",
        "Generated from `tests/models/test_families.py` (its parametrisation; `python tests/models/test_families.py` rewrites "
        "this page). Each family is a tiny random model built from its `transformers` config, fine-tuned on the "
        "shipped tickets data, then distilled into a 2-layer student of its own layers (`--student teacher`), "
        "evaluated, predicted from the model folder alone, exported to ONNX and served by "
        "`transformers.pipeline` from the exported folder — in CI, on every change.",
        "",
        "| family | " + " | ".join(METHODS) + " | evaluate, predict, export, pipeline |",
        "|---|" + "---|" * len(METHODS) + "---|",
    ]
    for family in FAMILIES:
        cells = [f"refused: {REFUSED[(family, m)]}" if (family, m) in REFUSED else "works" for m in METHODS]
        lines.append(f"| {family}{' (decoder)' if family in DECODERS else ''} | " + " | ".join(cells) + " | works |")
    lines += [
        "",
        "Notes:",
        "",
        "- The layer stack is found from the model's structure (`fsdkit.models.architecture.layer_stack`); a "
        "student's config follows the layers kept (`num_hidden_layers`, a per-layer `layer_types`), and the "
        "student is checked against a model built from its own config, so the saved folder reloads as trained "
        "(ModernBERT's first layer has no attention norm: a student whose first layer is another gets none).",
        "- ALBERT shares one group of layers across its depth: its student repeats the group k times "
        "(`--student-layers k`; a list of other layers is refused).",
        '- Decoders (GPT-2, Llama, Qwen2, Mistral, …): every term that reads "the [CLS] vector" (PKD, RKD, '
        "internal KD, the memory's `cls` rows) reads the last real token, the one their classification head "
        "pools; a tokenizer without a pad token pads with its end-of-sequence token (logged).",
        "- MiniLM reads each family's query / key / value projections by name, and ModernBERT's `Wqkv` and "
        "GPT-2's `c_attn` (fused) in thirds; under grouped-query attention (Qwen2 here) its value relation "
        "splits the key-value heads' values into the attention's head count (MiniLMv2's relation heads).",
        "- Students of another family than their teacher train with every method: tested for a RoBERTa "
        "teacher and a DistilBERT student, DeBERTa → BERT, GPT-2 (decoder) → BERT and BERT → Qwen2 (decoder), "
        "each with VKD, FSD, PKD, RKD and MiniLM (the Qwen2 student's tokenizer pads with its end-of-sequence "
        "token, so the two tokenize differently: each model reads its own tokens and the token-level terms, "
        "FSD's intra view and MiniLM, are refused naming a sample-level alternative).",
        "- `--teacher-cache` with an attention-map loss (MiniLM, internal KD) is refused for a teacher whose "
        "attention is not BERT's softmax(q kᵀ / √d) of absolute positions (DeBERTa, ModernBERT, ALBERT, "
        "decoders): run those without the cache.",
        "",
    ]
    return "\n".join(lines)


def test_the_families_page_is_current():
    assert DOC.read_text(encoding="utf-8") == render_table(), "run `python tests/models/test_families.py` to regenerate"


if __name__ == "__main__":
    DOC.write_text(render_table(), encoding="utf-8")
