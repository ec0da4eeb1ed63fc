#!/usr/bin/env bash
# GPU time of one onnxruntime run, per kernel (ncu gpu__time_duration, clocks and caches as found), for
# the e2e models: what a run costs on the GPU alone, without onnxruntime's host-side launch overhead
# (which is what CUDA-graph replay would remove). Run after bench/gpu/e2e_run.sh on the same machine.
#   bench/gpu/e2e_gpu_time.sh OUT_DIR
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; cd "$root"
out="${1:-${OUT:-/tmp/e2e-out}}"; mkdir -p "$out"
source .cache/ort-cuda/setup.sh
M=/tmp/e2e-models; H=(/tmp/e2e_host "$ORT_CUDA_LIB/libonnxruntime.so" /tmp/vnmc-gpu-build/libvnmc_ort.so)
prof() {  # label dims model
  ncu --profile-from-start off --metrics gpu__time_duration.sum --csv --page raw --cache-control none \
    --clock-control none "${H[@]}" --profile-run --warmup 3 --iters 1 --dims "$2" "$M/$3" \
    > "$out/ncu_$1_${3%.onnx}.csv" 2> "$out/ncu_$1_${3%.onnx}.err" || echo "ncu failed: $1 $3"
}
for m in llama_dec_dense.onnx llama_dec_64-2-5.onnx llama_dec_64-2-8.onnx; do
  prof dec1 batch=1,seq=1,past=511,total=512 $m
  prof dec16 batch=1,seq=16,past=496,total=512 $m
done
for m in llama_pre_dense.onnx llama_pre_64-2-5.onnx llama_pre_64-2-8.onnx; do prof pre512 batch=1,seq=512,total=512 $m; done
for m in vit_dense.onnx vit_64-2-5.onnx vit_64-2-8.onnx; do prof vitb1 batch=1 $m; prof vitb64 batch=64 $m; done
python3 bench/gpu/e2e_gpu_time.py "$out"
