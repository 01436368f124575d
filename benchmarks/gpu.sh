#!/usr/bin/env bash
# The prepared accelerator benchmark (benchmarks/gpu.py): VGG-11 and VGG-16 train/eval img/s
# in float32 and bfloat16 at 64 px, batch 256, beside PyTorch (channels_last fp32 and
# channels_last + bf16 autocast) in the same process, MFU, compile times and a check that the
# jitted steps never recompile. Runs in under 8 minutes on a fresh GPU host that carries jax
# (CUDA), flax, optax, orbax, clu, numpy and PyTorch (no TensorFlow or TFDS); a missing clu is
# installed at the version requirements.txt pins (it brings ml-collections, and no TensorFlow).
# Without a GPU or TPU it prints a banner and runs tiny settings on the CPU.
#
#   bash benchmarks/gpu.sh [OUT_DIR] [flags for benchmarks.gpu, e.g. --depths=16]
#
# What the host needs (Python 3.12+), besides a checkout of this project:
#   pip install "jax[cuda13]==0.12.0.1" flax==0.12.12 optax==0.2.8 orbax-checkpoint==0.12.8 \
#       clu==0.0.12 numpy==2.5.5 torch==2.14.1        # jax[cuda12] for a CUDA 12 driver
#   pip install "jax[tpu]==0.12.0.1" flax==0.12.12 optax==0.2.8 orbax-checkpoint==0.12.8 \
#       clu==0.0.12 numpy==2.5.5                      # on a TPU VM (no PyTorch comparison)
#
# Tables on stdout, everything in OUT_DIR/gpu_results.json; exit 1 if a step recompiled.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-/tmp/vgg_gpu_bench}}"
shift || true
mkdir -p "$OUT"
PYTHON="${PYTHON:-python}"
# JAX would take 75% of the GPU memory up front; leave room for PyTorch in the same process.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
if ! "$PYTHON" -c 'import clu' 2>/dev/null; then
  "$PYTHON" -m pip install -q "$(grep -E '^clu==' requirements.txt)"
fi
"$PYTHON" -m benchmarks.gpu --out="$OUT" "$@" 2>&1 | tee "$OUT/gpu_results.txt"
