#!/usr/bin/env bash
# bf16 vs fp16 (issue 6 item 4): the same kernel_bench cases once per dtype, each against cuBLAS in the
# same dtype and process. Usage: bench/gpu/dtype_exp.sh [OUT]; env TOKENS, SHAPES, CONFIGS, KINDS.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="${1:-${OUT:-/tmp/dt-out}}"; mkdir -p "$out"
t0=$(date +%s)
build_kernels || exit 1
echo "== build $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=name --format=csv,noheader
for dt in fp16 bf16; do
  timeout 250 python3 -X faulthandler bench/gpu/kernel_bench.py --lib "$b/libvnmc_cuda.so" --dtype $dt \
    --shapes ${SHAPES:-0,1,2} --tokens ${TOKENS:-1,16,2048} --configs ${CONFIGS:-64:5,64:8} --kinds ${KINDS:-windowed} \
    --reps 10 --out "$out/kb_$dt.json" --tag "v4 decode + v2 prefill, $dt" > "$out/kb_$dt.log" 2>&1 || echo "bench $dt failed"
  echo "== bench $dt $(( $(date +%s) - t0 )) s"
done
python3 bench/gpu/compare_runs.py "$out" kb_ fp16 bf16
