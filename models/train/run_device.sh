#!/usr/bin/env bash
# Train and export both models on the GPU machine, in one go:
#   bash models/train/run_device.sh OUTDIR
# Leaves OUTDIR/results.tar (models, eval data, metrics) and OUTDIR/train.log.
set -uo pipefail
out="${1:?usage: run_device.sh OUTDIR}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
export PYTHONUNBUFFERED=1
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import sys, torch, numpy, onnx, onnxruntime; print(sys.version.split()[0], torch.__version__, numpy.__version__, onnx.__version__, onnxruntime.__version__)"
  (cd "$here" && python3 digits_vit.py --out "$work") || echo "digits_vit FAILED rc=$?"
  (cd "$here" && python3 charlm.py --out "$work" "${@:2}") || echo "charlm FAILED rc=$?"
  ls -la "$work"
} 2>&1 | tee "$out/train.log"
tar -C "$work" -cf "$out/results.tar" .
