#!/usr/bin/env bash
# Create .venv with the pinned dependencies (envs/requirements.txt, the runtime lock, and
# envs/requirements-dev.txt, the test tools) and onebit installed in editable mode;
# install Debian's Fashion-MNIST package where it is missing and apt is usable.
# Idempotent: re-running only installs what is missing.
#
#   bash envs/setup.sh [--torch BUILD] [--dry-run]
#
# BUILD (or the environment variable ONEBIT_TORCH) is the PyTorch build to install, whatever
# the machine setup runs on: `cpu`, a CUDA build such as `cu126` or `cu128` (PyTorch's index
# https://download.pytorch.org/whl/BUILD), or `auto` (the default: the CPU build where no
# `nvidia-smi` is found, else PyPI's wheel, which is a CUDA build). On a cluster, run setup on
# the login node with the CUDA build the GPU nodes need: a login node has no GPU, and `auto`
# would install the CPU build there. An installed torch of another build is replaced.
# --dry-run says what would be installed and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_BUILD=${ONEBIT_TORCH:-auto}
DRY=0
usage() {
    echo "usage: bash envs/setup.sh [--torch cpu|cuXYZ|auto] [--dry-run]  (e.g. --torch cu126)" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --torch) [ $# -ge 2 ] || usage; TORCH_BUILD=$2; shift 2 ;;
        --torch=*) TORCH_BUILD=${1#--torch=}; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown argument '$1'" >&2; usage ;;
    esac
done
if ! [[ $TORCH_BUILD =~ ^(auto|cpu|cu[0-9]{3,4}|rocm[0-9]+(\.[0-9]+)*)$ ]]; then
    echo "setup: --torch must be cpu, a CUDA build such as cu126 (PyTorch's names:" \
        "https://download.pytorch.org/whl/), a ROCm build such as rocm6.4, or auto; got '$TORCH_BUILD'." \
        "Nothing was installed." >&2
    exit 2
fi
PIN=$(grep -E '^torch==' envs/requirements.txt)
run() { if [ "$DRY" = 1 ]; then echo "setup (dry run): would run: $*"; else "$@"; fi; }
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if [ ! -x .venv/bin/python ]; then
    run "$PY" -m venv .venv
fi
# What is installed now: "none", "cpu", "cuXYZ" or "rocm..."
installed_build() {
    [ -x .venv/bin/python ] || { echo none; return; }
    .venv/bin/python - <<'EOF' 2>/dev/null || echo none
import torch
if torch.version.cuda:
    print("cu" + torch.version.cuda.replace(".", ""))
elif getattr(torch.version, "hip", None):
    print("rocm" + ".".join(torch.version.hip.split(".")[:2]))
else:
    print("cpu")
EOF
}
HAVE=$(installed_build)
WANT=$TORCH_BUILD
if [ "$WANT" = auto ]; then
    if [ "$HAVE" != none ]; then
        WANT=$HAVE  # keep what is there
    elif command -v nvidia-smi >/dev/null; then
        WANT=pypi
    elif [ -n "${PIP_INDEX_URL:-}${PIP_EXTRA_INDEX_URL:-}" ]; then
        WANT=pypi  # an index the user set is left alone
    else
        WANT=cpu
    fi
fi
if [ "$WANT" != "$HAVE" ] && [ "$WANT" != pypi ]; then
    REINSTALL=()
    if [ "$HAVE" != none ]; then
        echo "setup: replacing PyTorch's $HAVE build with the $WANT build" >&2
        REINSTALL=(--force-reinstall)  # downloads first: a failed download keeps the installed build
    fi
    if [ "$WANT" = cpu ] && [ "$TORCH_BUILD" = auto ] \
        && ! .venv/bin/python -c "import urllib.request as u; u.urlopen('https://download.pytorch.org/whl/cpu/', timeout=5)" \
            >/dev/null 2>&1; then
        echo "setup: PyTorch's CPU index cannot be reached; installing torch from the configured index" >&2
    else
        run "${PIP[@]}" "${REINSTALL[@]}" "$PIN" --index-url "https://download.pytorch.org/whl/$WANT" || {
            echo "setup: could not install $PIN from https://download.pytorch.org/whl/$WANT (is the index" \
                "reachable from here, and is there a $WANT build of this version? The builds of each version" \
                "are listed at https://download.pytorch.org/whl/torch/). PyTorch was left as it was ($HAVE)." >&2
            exit 1
        }
        GOT=$(installed_build)
        if [ "$DRY" = 0 ] && [ "$GOT" != "$WANT" ]; then
            echo "setup: asked for PyTorch's $WANT build but pip installed the $GOT build: an index or" \
                "find-links of your pip configuration (pip config list) offered another $PIN. Install" \
                "it by hand: .venv/bin/python -m pip install --force-reinstall $PIN --index-url" \
                "https://download.pytorch.org/whl/$WANT --no-index --find-links <a folder of its wheels>." >&2
            exit 1
        fi
    fi
fi
run "${PIP[@]}" -r envs/requirements-dev.txt
run "${PIP[@]}" --no-deps --no-build-isolation -e .

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -e "$FMNIST/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian package dataset-fashion-mnist" >&2
    if [ "$DRY" = 1 ]; then
        echo "setup (dry run): would run: apt-get install -y dataset-fashion-mnist"
    else
        (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) \
            || echo "setup: could not install dataset-fashion-mnist; onebit will download Fashion-MNIST instead" >&2
    fi
fi

# What was installed, and what to run next.
[ -x .venv/bin/python ] || exit 0
.venv/bin/python - "$DRY" <<'EOF' >&2 || true
import sys

try:
    import torch
except ImportError:
    print("setup: torch is not installed yet" + (" (dry run)" if sys.argv[1] == "1" else ""))
    raise SystemExit
if torch.version.cuda:
    build = f"CUDA {torch.version.cuda} build"
elif getattr(torch.version, "hip", None):
    build = f"ROCm {torch.version.hip} build"
else:
    build = "CPU-only build"
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(f"setup: PyTorch {torch.__version__}, {build}; GPUs seen here: {n}")
if build == "CPU-only build":
    print("setup: GPU rows (gpus > 0) refuse to run with this build; on a cluster, install the CUDA build "
          "with `bash envs/setup.sh --torch cu126` (the CUDA version your nodes' driver supports)")
elif n == 0:
    print("setup: no GPU is visible here (a login node?): GPU jobs will see theirs on the GPU nodes")
print("setup: next: .venv/bin/snakemake --cores all (or --profile profiles/slurm on a cluster); "
      "tests: .venv/bin/python -m pytest")
EOF
