#!/usr/bin/env bash
# wgmma.sp prefill experiments (v9, issue 6): kernel tests (full set, then compute-sanitizer on the quick
# set), then one kernel_bench run per mode, cuBLAS (and cuSPARSELt, where its helper builds) in each
# process. A mode is PREFILL_CONFIG:WGMMA_BN (VNMC_PREFILL_CONFIG, VNMC_WGMMA_BN; 0 = automatic), e.g.
# "1:0" = the mma.sp prefill v2, "8:128" = wgmma.sp with 128-token tiles; an optional third field is
# VNMC_WGMMA_RASTER (1 row tiles fastest, 2 token tiles fastest), a fourth VNMC_WGMMA_WS (1 the
# warp-specialised v10, 2 v9), e.g. "8:128:2" or "8:0:0:2". Needs .cache/ort-cuda/include.
# Usage: bench/gpu/wgmma_exp.sh [OUT]; env MODES (default "1:0 0:0"), TOKENS, SHAPES, CONFIGS, KINDS, DTYPE.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="${1:-${OUT:-/tmp/wg-out}}"; mkdir -p "$out"
t0=$(date +%s)
build_kernels || exit 1
cslt=(); [ "${CSLT:-1}" = 1 ] && build_cslt_helper
echo "== build $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=name --format=csv,noheader
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout 300 "$b/vnmc_cuda_tests" > "$out/tests.log" 2>&1; echo "tests rc=$?"; tail -2 "$out/tests.log"; grep -m5 FAIL "$out/tests.log"
  timeout 200 compute-sanitizer --tool memcheck "$b/vnmc_cuda_tests" --quick > "$out/memcheck.log" 2>&1
  echo "memcheck rc=$?"; tail -2 "$out/memcheck.log"; echo "== tests $(( $(date +%s) - t0 )) s"
fi
names=()
for mode in ${MODES:-1:0 0:0}; do
  IFS=: read -r cfg bn ras ws <<< "$mode"; ras=${ras:-0}; ws=${ws:-0}; name="cfg${cfg}_bn${bn}_r${ras}_ws${ws}"; names+=("$name")
  VNMC_PREFILL_CONFIG=$cfg VNMC_WGMMA_BN=$bn VNMC_WGMMA_RASTER=$ras VNMC_WGMMA_WS=$ws timeout 250 python3 -X faulthandler bench/gpu/kernel_bench.py \
    --lib "$b/libvnmc_cuda.so" "${cslt[@]}" --shapes ${SHAPES:-0,1,2} --tokens ${TOKENS:-256,2048,8192} \
    --configs ${CONFIGS:-64:4,64:8,64:16} --kinds ${KINDS:-windowed} --dtype ${DTYPE:-fp16} --reps ${REPS:-10} \
    --out "$out/kb_$name.json" --tag "${TAG:-v9} prefill_config=$cfg wgmma_bn=$bn raster=$ras ws=$ws" > "$out/kb_$name.log" 2>&1 || echo "bench $mode failed"
  echo "== bench $mode $(( $(date +%s) - t0 )) s"
  cslt=()  # cuSPARSELt once is enough: the same cases in every mode
done
python3 bench/gpu/compare_runs.py "$out" kb_ "${names[@]}"
echo "== total $(( $(date +%s) - t0 )) s"
