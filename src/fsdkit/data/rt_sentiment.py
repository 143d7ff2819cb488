"""The offline default task ``rt-sentiment``: movie-review snippets with human sentiment ratings.

Source: the vaderSentiment 3.3.2 *source* archive (PyPI sdist, MIT licence) ships
``additional_resources/hutto_ICWSM_2014.tar.gz``, whose ``hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt``
holds 10,605 lines ``id<TAB>score<TAB>sentence`` (CRLF, UTF-8): Rotten Tomatoes snippets (Pang & Lee)
with the mean human rating in [-4, 4] collected by Hutto & Gilbert (ICWSM 2014).

Recipe (deterministic on every machine, no RNG involved):

- label = sign of the score: positive -> 1 (``positive``), negative -> 0 (``negative``);
- the 37 rows whose score is exactly 0 have no polarity and are excluded — the only rows fsdkit ever
  drops; the count is recorded in ``meta.json``;
- dev = 1,000 sentences, stratified: each label gets its share of 1,000 (largest remainder), taking
  the sentences with the smallest SHA-256 of their text (ties broken by id); repeated texts (the file
  has two snippets twice, each time with the same polarity) go to the same side;
- train = the rest; both files keep the source order.

The result is cached as ``<cache_root>/rt-sentiment/{train,dev}.tsv`` (SST-2 layout, header
``sentence\\tlabel``) with ``meta.json`` and ``README.txt``; the cache root is ``$FSDKIT_CACHE`` or
``~/.cache/fsdkit`` and is itself a valid data folder. The archive is fetched with
``pip download`` or taken from ``$FSDKIT_VADER_ARCHIVE`` (a local ``vaderSentiment-3.3.2.tar.gz``).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO, cast

from fsdkit.errors import DataError

TASK_NAME = "rt-sentiment"
VADER_VERSION = "3.3.2"
INNER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
GROUND_TRUTH = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
GROUND_TRUTH_SHA256 = "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"
DEV_SIZE = 1000
LABELS = ("negative", "positive")
ARCHIVE_ENV = "FSDKIT_VADER_ARCHIVE"
CACHE_ENV = "FSDKIT_CACHE"
_FILES = ("train.tsv", "dev.tsv")
_NO_PIP_HINT = (
    f"set {ARCHIVE_ENV} to a local vaderSentiment-{VADER_VERSION}.tar.gz (the source archive from PyPI), "
    f"or pass --data-dir with a folder containing {TASK_NAME}/train.tsv and dev.tsv"
)


def default_cache_root() -> Path:
    """The fsdkit cache root: ``$FSDKIT_CACHE`` if set, else ``~/.cache/fsdkit``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fsdkit").expanduser()


def is_built(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds ``train.tsv`` and ``dev.tsv``."""
    return all((Path(folder) / name).is_file() for name in _FILES)


def download_archive(dest_dir: str | os.PathLike) -> Path:
    """Download the vaderSentiment source archive into ``dest_dir`` with pip; return its path.

    Runs ``python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2`` with the current
    interpreter. A failing pip raises :class:`DataError` with pip's last output lines.
    """
    dest = Path(dest_dir)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        f"vaderSentiment=={VADER_VERSION}", "-d", str(dest),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = sorted(dest.glob(f"[vV]ader[sS]entiment-{VADER_VERSION}.tar.gz"))
    if result.returncode != 0 or not archives:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise DataError(
            f"could not download the vaderSentiment {VADER_VERSION} source archive with pip "
            f"(exit code {result.returncode}): {tail or 'no archive was saved'}; {_NO_PIP_HINT}"
        )
    return archives[0]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_ground_truth(archive: str | os.PathLike) -> tuple[bytes, list[tuple[str, float, str]]]:
    """Extract the movie-review ground truth from the vaderSentiment source archive.

    Returns the raw file bytes and its rows ``(id, score, sentence)`` in file order. The file's SHA-256
    is checked, so every machine builds from the same data.
    """
    path = Path(archive)
    try:
        with tarfile.open(path, "r:gz") as outer:
            member = next((m for m in outer.getmembers() if m.name.endswith("/" + INNER_ARCHIVE)), None)
            if member is None:
                raise DataError(f"{path} has no {INNER_ARCHIVE}: not the vaderSentiment {VADER_VERSION} source archive")
            inner_bytes = cast(IO[bytes], outer.extractfile(member)).read()  # a file member: never None
        with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
            raw = cast(IO[bytes], inner.extractfile(GROUND_TRUTH)).read()
    except (OSError, tarfile.TarError, KeyError) as exc:
        raise DataError(f"cannot extract {GROUND_TRUTH} from {path}: {exc}; {_NO_PIP_HINT}") from exc
    if _sha256(raw) != GROUND_TRUTH_SHA256:
        raise DataError(
            f"{GROUND_TRUTH} in {path} has SHA-256 {_sha256(raw)}, expected {GROUND_TRUTH_SHA256} "
            f"(vaderSentiment {VADER_VERSION}): a different file would give a different task"
        )
    rows = []
    for line in raw.decode("utf-8").split("\n"):
        fields = line.rstrip("\r").split("\t")
        rows.append((fields[0], float(fields[1]), fields[2]))
    return raw, rows


def _dev_quota(counts: dict[int, int], dev_size: int) -> dict[int, int]:
    total = sum(counts.values())
    exact = {label: dev_size * n / total for label, n in counts.items()}
    quota = {label: int(share) for label, share in exact.items()}
    by_remainder = sorted(exact, key=lambda label: (-(exact[label] - quota[label]), label))
    for label in by_remainder[: dev_size - sum(quota.values())]:
        quota[label] += 1
    return quota


def split_rows(rows: list[tuple[str, float, str]], dev_size: int = DEV_SIZE) -> dict:
    """Label rows by the sign of their score and split them into train and dev.

    Returns ``{"train": [(sentence, label)], "dev": [...], "excluded_ids": [...]}``; rows with score 0
    are excluded. Dev is stratified and keeps repeated texts of a label together (see the module
    docstring); both splits keep the input order.
    """
    labelled = [(row_id, text, int(score > 0)) for row_id, score, text in rows if score != 0]
    excluded = [row_id for row_id, score, _ in rows if score == 0]
    counts = {label: sum(1 for *_, y in labelled if y == label) for label in (0, 1)}
    quota = _dev_quota(counts, dev_size)
    dev_ids: set[str] = set()
    for label in (0, 1):
        ranked = sorted(
            (r for r in labelled if r[2] == label), key=lambda r: (_sha256(r[1].encode("utf-8")), int(r[0]))
        )
        taken = 0
        for _, same_text in itertools.groupby(ranked, key=lambda r: r[1]):  # rows of one text are adjacent
            group = list(same_text)
            if taken + len(group) <= quota[label]:  # a text's rows go to dev together or not at all
                dev_ids.update(r[0] for r in group)
                taken += len(group)
            if taken == quota[label]:
                break
    return {
        "train": [(text, y) for row_id, text, y in labelled if row_id not in dev_ids],
        "dev": [(text, y) for row_id, text, y in labelled if row_id in dev_ids],
        "excluded_ids": excluded,
    }


def _write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write("sentence\tlabel\n")
        f.writelines(f"{text}\t{label}\n" for text, label in rows)


def _balance(rows: list[tuple[str, int]]) -> dict[str, int]:
    positive = sum(y for _, y in rows)
    return {"rows": len(rows), "negative": len(rows) - positive, "positive": positive}


def _readme(meta: dict) -> str:
    train, dev = meta["splits"]["train"], meta["splits"]["dev"]
    return (
        f"rt-sentiment (built by fsdkit)\n\n"
        f"Source: {meta['source']['file']} inside {meta['source']['inner_archive']} of the vaderSentiment "
        f"{VADER_VERSION} source archive ({meta['source']['archive']}, sha256 {meta['source']['archive_sha256']}).\n"
        "Movie-review snippets (Pang & Lee) with mean human sentiment ratings in [-4, 4] from\n"
        "Hutto & Gilbert, VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text,\n"
        "ICWSM 2014. vaderSentiment is MIT-licensed.\n\n"
        f"Labels: score > 0 -> 1 (positive), score < 0 -> 0 (negative). Rows: {meta['rows']}; "
        f"excluded (score exactly 0): {meta['excluded_zero_score']}; labelled: {meta['labelled']}.\n"
        f"train.tsv: {train['rows']} rows ({train['negative']} negative, {train['positive']} positive)\n"
        f"dev.tsv: {dev['rows']} rows ({dev['negative']} negative, {dev['positive']} positive)\n"
        f"Split: {meta['split']}\n"
    )


def build(cache_root: str | os.PathLike | None = None, *, archive: str | os.PathLike | None = None) -> Path:
    """Build the rt-sentiment folder under ``cache_root`` (default :func:`default_cache_root`) and return it.

    An existing complete folder (``train.tsv`` and ``dev.tsv``) is returned as is, without pip. The
    archive is ``archive``, else ``$FSDKIT_VADER_ARCHIVE``, else downloaded with pip into a temporary
    folder. The folder is written under a temporary name and renamed, so a cache is never half-written.
    """
    root = Path(cache_root).expanduser() if cache_root is not None else default_cache_root()
    folder = root / TASK_NAME
    if is_built(folder):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    archive = archive or os.environ.get(ARCHIVE_ENV)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{TASK_NAME}-") as tmp:
        if archive is None:
            archive_path = download_archive(tmp)
        else:
            archive_path = Path(archive).expanduser()
            if not archive_path.is_file():
                raise DataError(f"vaderSentiment archive {archive_path} not found (from {ARCHIVE_ENV} or archive=)")
        raw, rows = read_ground_truth(archive_path)
        parts = split_rows(rows)
        staging = Path(tmp) / TASK_NAME
        staging.mkdir()
        _write_tsv(staging / "train.tsv", parts["train"])
        _write_tsv(staging / "dev.tsv", parts["dev"])
        meta = {
            "task": TASK_NAME,
            "source": {
                "package": f"vaderSentiment=={VADER_VERSION} (source archive)",
                "archive": archive_path.name,
                "archive_sha256": _sha256(archive_path.read_bytes()),
                "inner_archive": INNER_ARCHIVE,
                "file": GROUND_TRUTH,
                "file_sha256": _sha256(raw),
            },
            "labels": list(LABELS),
            "rows": len(rows),
            "excluded_zero_score": len(parts["excluded_ids"]),
            "excluded_ids": parts["excluded_ids"],
            "labelled": len(parts["train"]) + len(parts["dev"]),
            "splits": {"train": _balance(parts["train"]), "dev": _balance(parts["dev"])},
            "split": (
                f"dev = {DEV_SIZE} sentences stratified by label (largest-remainder quota), "
                "the smallest sha256(sentence) per label, ties by id, repeated texts kept together; "
                "train = the rest; source order kept"
            ),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (staging / "README.txt").write_text(_readme(meta), encoding="utf-8")
        try:
            staging.rename(folder)
        except OSError as exc:
            if not is_built(folder):  # else a concurrent build finished first: use its identical files
                raise DataError(
                    f"cannot create {folder}: it exists without train.tsv and dev.tsv; remove it and retry"
                ) from exc
    return folder
