#!/usr/bin/env bash
# Decode v5 experiment (issue 5 follow-up): windowed decode with the CTA's activation slice staged in
# shared memory (cp.async, 128-row CTAs; VNMC_DECODE_STAGE=1) vs v4 (the default: direct T <= 4,
# pairs T >= 5), each one kernel_bench run with cuBLAS, decode cells only. Kernel tests first (default and
# with the staged path forced for T = 1 too). Needs .cache/ort-cuda/include (headers for cmake only).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="${1:-${OUT:-/tmp/ds-out}}"; mkdir -p "$out"
t0=$(date +%s)
build_kernels || exit 1
echo "== build $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=name --format=csv,noheader
echo "== tests, default"; timeout 120 "$b/vnmc_cuda_tests" > "$out/tests_default.log" 2>&1; echo "rc=$?"; tail -2 "$out/tests_default.log"; grep -m5 FAIL "$out/tests_default.log"
echo "== tests, VNMC_DECODE_STAGE=1"; VNMC_DECODE_STAGE=1 timeout 120 "$b/vnmc_cuda_tests" > "$out/tests_stage1.log" 2>&1; echo "rc=$?"; tail -2 "$out/tests_stage1.log"; grep -m5 FAIL "$out/tests_stage1.log"
echo "== tests $(( $(date +%s) - t0 )) s"
for mode in ${MODES:-0 1}; do
  env $([ "$mode" = auto ] && echo -u VNMC_DECODE_STAGE || echo VNMC_DECODE_STAGE=$mode) VNMC_DEBUG=1 timeout 200 python3 -X faulthandler bench/gpu/kernel_bench.py --lib "$b/libvnmc_cuda.so" --shapes 0,1,2 \
    --tokens ${TOKENS:-1,2,4,8,16} --no-describe --out "$out/kb_stage$mode.json" --tag "v5 decode stage=$mode" > "$out/kb_stage$mode.log" 2>&1 || echo "bench $mode failed"
  grep -m1 "staged decode" "$out/kb_stage$mode.log"; echo "== bench $mode done $(( $(date +%s) - t0 )) s"
done
python3 bench/gpu/compare_runs.py "$out" kb_stage ${MODES:-0 1}
echo "== total $(( $(date +%s) - t0 )) s"
