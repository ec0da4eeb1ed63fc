#!/usr/bin/env bash
# Decode v13 experiment (issue 6 item 2): the bulk-copy / cluster decode (decode_bulk.cuh) against the v4
# kernels, each in one kernel_bench run with cuBLAS on the same machine; kernel tests first (the bulk
# cases, then the whole suite unless SKIP_TESTS=1). Needs .cache/ort-cuda/include (headers, for cmake).
#   MODES="0 1" (VNMC_DECODE_BULK: 0 = v4, 1 = bulk), SHAPES=0,1,2, TOKENS=1,2,4,8,16, CONFIGS, KINDS.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="${1:-${OUT:-/tmp/db-out}}"; mkdir -p "$out"
t0=$(date +%s)
build_kernels || exit 1
echo "== build $(( $(date +%s) - t0 )) s"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "== tests: bulk decode cases"; "$b/vnmc_cuda_tests" --only bulk | grep -E "FAIL|passed|device" | head -40
  [ "${BULK_ONLY:-0}" = 1 ] || { echo "== tests: whole suite"; "$b/vnmc_cuda_tests" | grep -E "FAIL|passed|worst" | head -40; }
  echo "== tests $(( $(date +%s) - t0 )) s"
fi
for mode in ${MODES:-0 1}; do
  VNMC_DECODE_BULK=$mode python3 -X faulthandler bench/gpu/kernel_bench.py --lib "$b/libvnmc_cuda.so" \
    --shapes "${SHAPES:-0,1,2}" --tokens "${TOKENS:-1,2,4,8,16}" --configs "${CONFIGS:-64:5,64:8,64:16}" \
    --kinds "${KINDS:-windowed,permuted}" --out "$out/kb_bulk$mode.json" --tag "decode bulk=$mode" \
    > "$out/kb_bulk$mode.log" 2>&1 || { echo "bench $mode failed"; tail -20 "$out/kb_bulk$mode.log"; }
done
python3 bench/gpu/compare_runs.py "$out" kb_bulk ${MODES:-0 1}
# NCU="N K V M T kind" (e.g. "4096 4096 64 5 1 windowed"): one ncu line per mode for the decode kernel.
if [ -n "${NCU:-}" ]; then
  for mode in ${MODES:-0 1}; do
    echo "== ncu VNMC_DECODE_BULK=$mode: $NCU"
    VNMC_DECODE_BULK=$mode ncu -k regex:decode --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,lts__t_bytes.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__occupancy_limit_shared_mem,launch__occupancy_limit_registers,smsp__average_warp_latency_issue_stalled_long_scoreboard,smsp__cycles_active.avg \
      python3 bench/gpu/profile_case.py --lib "$b/libvnmc_cuda.so" $NCU 2 2>&1 | grep -E "decode|gpu__|dram__|lts__|sm__|launch__|smsp__" | head -40
  done
fi
echo "== total $(( $(date +%s) - t0 )) s"
