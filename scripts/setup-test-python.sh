#!/usr/bin/env bash
# Makes the Python the interoperability tests use: a virtual environment `.venv-test` in the package root with
# torch (the CPU build), transformers, safetensors, tokenizers and tensorboard. The tests find it by itself
# (or through LOCKSTEP_TEST_PYTHON). Idempotent: does nothing when the environment already imports them all.
# Takes a few minutes the first time (torch is about 200 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
torch_requirement="${LOCKSTEP_TORCH:-torch==2.13.0+cpu}"
modules="torch, transformers, safetensors, tokenizers, tensorboard"
if [ -x "$venv/bin/python3" ] && "$venv/bin/python3" -c "import $modules" 2>/dev/null; then
    exit 0
fi
if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
    # Debian's python3 has venv in a package of its own.
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "Installing python3-venv" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
fi
echo "Creating $venv with $torch_requirement, transformers, safetensors, tokenizers, tensorboard" >&2
python3 -m venv "$venv"
# torch's CPU build (+cpu) is not on PyPI itself: pip finds it through the machine's find-links (PIP_FIND_LINKS)
# or an extra index that the user configures; say so when it cannot.
if ! "$venv/bin/pip" install -q "$torch_requirement"; then
    echo "error: pip could not install $torch_requirement; point pip at a source of PyTorch CPU wheels" >&2
    echo "       (pip config, PIP_FIND_LINKS or PIP_EXTRA_INDEX_URL), or set LOCKSTEP_TORCH=torch for PyPI's build" >&2
    exit 1
fi
"$venv/bin/pip" install -q transformers safetensors tokenizers tensorboard
"$venv/bin/python3" -c "import $modules; print('test Python ready:', torch.__version__, transformers.__version__)"
