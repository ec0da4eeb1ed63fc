#!/usr/bin/env bash
# Decode experiment (issue 5 follow-up): T = 2..16 with activations gathered straight from A
# (VNMC_DECODE_DIRECT=1, no re-pack launch) vs the At2 pairs path, each in one kernel_bench run with cuBLAS;
# kernel tests of both paths first. Needs .cache/ort-cuda (headers).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="${1:-${OUT:-/tmp/dd-out}}"; mkdir -p "$out"
t0=$(date +%s)
build_kernels || exit 1
echo "== build $(( $(date +%s) - t0 )) s"
[ "${SKIP_TESTS:-0}" = 1 ] || { echo "== tests, pairs path (default)"; "$b/vnmc_cuda_tests" | tail -2
echo "== tests, VNMC_DECODE_DIRECT=1"; VNMC_DECODE_DIRECT=1 "$b/vnmc_cuda_tests" | tail -2; }
modes="${MODES:-0 1}"   # 0 = pairs, 1 = direct, auto = the library's default (direct for T <= 4)
for mode in $modes; do
  env $([ "$mode" = auto ] && echo -u VNMC_DECODE_DIRECT || echo VNMC_DECODE_DIRECT=$mode) python3 -X faulthandler bench/gpu/kernel_bench.py --lib "$b/libvnmc_cuda.so" --shapes 0,1,2 \
    --tokens 1,2,4,8,16 --no-describe --out "$out/kb_direct$mode.json" --tag "decode direct=$mode" > "$out/kb_direct$mode.log" 2>&1 || echo "bench $mode failed"
done
python3 bench/gpu/compare_runs.py "$out" kb_direct $modes
echo "== total $(( $(date +%s) - t0 )) s"
