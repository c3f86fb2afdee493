#!/usr/bin/env bash
# Create .venv with the pinned dependencies (envs/requirements.txt, the runtime lock, and
# envs/requirements-dev.txt, the test tools) and onebit installed in editable mode;
# install Debian's Fashion-MNIST package where it is missing and apt is usable.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# On a machine without an NVIDIA GPU, PyTorch comes from its CPU index where that index can be
# reached (PyPI's wheel is the CUDA build, several GB); an index the user set is left alone.
if ! command -v nvidia-smi >/dev/null && [ -z "${PIP_INDEX_URL:-}${PIP_EXTRA_INDEX_URL:-}" ] \
    && ! .venv/bin/python -c "import torch" 2>/dev/null \
    && .venv/bin/python -c "import urllib.request as u; u.urlopen('https://download.pytorch.org/whl/cpu/', timeout=5)" \
        >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "$(grep -E '^torch==' envs/requirements.txt)" \
        --index-url https://download.pytorch.org/whl/cpu \
        || echo "setup: PyTorch's CPU index failed; installing torch from the configured index" >&2
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r envs/requirements-dev.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -e "$FMNIST/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian package dataset-fashion-mnist" >&2
    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) \
        || echo "setup: could not install dataset-fashion-mnist; onebit will download Fashion-MNIST instead" >&2
fi
