#!/usr/bin/env bash
# Generates the compiled models that the GPU integration tests run (runtime-ops/cuda/ort_gpu_tests.sh),
# with the vnmc CLI (needs Node and a built dist/: `npx tsc -p .`). Output: .cache/ort-cuda-models/
# (ignored; carry it to the GPU machine, which has no Node). Small MLPs whose K and N are not multiples
# of 64: fp16 at 64:2:8 (windowed indices) and 32:2:5 with --permute (permuted indices, row_index),
# and fp32 at 64:2:8 (the GPU machine's prepare step turns its values into fp16 / bf16 for the
# float-activation path, and writes malformed copies).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/.cache/ort-cuda-models}"
mkdir -p "$out"
cd "$root"
m() { node dist/models/cli.js "$@"; }
c() { node dist/compiler/cli.js compile "$@" --no-verify -q; }
m mlp -o "$out/mlp16.onnx" --dtype fp16 --in-features 300 --hidden 1000 --out-features 200 --layers 3 --seed 1
m mlp -o "$out/mlp32.onnx" --dtype fp32 --in-features 300 --hidden 1000 --out-features 200 --layers 3 --seed 2
c "$out/mlp16.onnx" -o "$out/mlp16_64-2-8.vnm.onnx" --vnm 64:2:8
c "$out/mlp16.onnx" -o "$out/mlp16_32-2-5_perm.vnm.onnx" --vnm 32:2:5 --permute --permute-time 1
c "$out/mlp32.onnx" -o "$out/mlp32_64-2-8.vnm.onnx" --vnm 64:2:8
rm -f "$out/mlp16.onnx" "$out/mlp32.onnx"
ls -la "$out"
