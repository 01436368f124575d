#!/usr/bin/env bash
# Throughput on a GPU host: the project's train/eval steps for VGG-11 and VGG-16 at 64 px,
# batch 256, float32 and bfloat16, beside the PyTorch reference on the same GPU
# (channels_last fp32 and bf16 autocast). Needs only JAX, flax, optax and PyTorch.
#
#   bash benchmarks/gpu.sh [OUT_DIR]      # tables on stdout, JSON files in OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-/tmp/vgg_gpu_bench}}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python}"
# JAX would take 75% of the GPU memory up front; leave room for PyTorch in the same process.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"

"$PYTHON" - <<'PY'
import jax, torch
print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA for torch')
PY

for depth in 11 16; do
  "$PYTHON" benchmarks/throughput.py --depth="$depth" --image_size=64 \
    --batch_size=256 --eval_batch_size=256 --dtype=float32,bfloat16 \
    --reference=torch --torch_settings=torch_channels_last,torch_bf16 \
    --warmup=3 --steps=10 --repeats=5 --json="$OUT/vgg$depth.json"
  echo
done
echo "JSON results in $OUT"
