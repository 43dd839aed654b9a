#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): train throughput (classic and conv; XLA, bfloat16,
# float16), MirroredStrategy over 2 logical GPUs vs 1 replica, a k=5000 evaluation of the
# 10,000 MNIST test images and the export parity checks, into OUT_DIR/gpu_check.json.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]            # on a GPU: under 8 minutes
#   bash benchmarks/gpu_check.sh --smoke [OUT_DIR]    # on CPU, tiny sizes (what CI runs)
#
# Uses $PYTHON (default: python3) if it has keras_vae and LiteRT, else installs the package
# (with its gpu extra on a GPU machine) into .venv-gpu-check beside the repository's files.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export KERAS_VAE_SHARED_DATA="${KERAS_VAE_SHARED_DATA:-$(cd .. && pwd)/shared/data}"

python="${PYTHON:-python3}"
if ! "$python" -c "import keras_vae, ai_edge_litert" 2>/dev/null; then
  extra="litert"
  if command -v nvidia-smi >/dev/null 2>&1; then extra="litert,gpu"; fi
  python3 -m venv .venv-gpu-check
  .venv-gpu-check/bin/python -m pip install --quiet -e ".[${extra}]"
  python=.venv-gpu-check/bin/python
fi
exec "$python" benchmarks/gpu_check.py "$@"
