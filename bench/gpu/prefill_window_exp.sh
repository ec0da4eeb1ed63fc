#!/usr/bin/env bash
# Prefill v6 experiment (issue 5/6): the dense activation window staged once per CTA and gathered by
# ldmatrix row addresses (configs 4 = 256x128, 5 = 128x128; windowed indices, V % 64 == 0, M <= 16) vs
# v2's per-unit gathered B tiles (config 1 = 128x128), each one kernel_bench run with cuBLAS in the same
# process. Kernel tests (and compute-sanitizer on the quick set) first. Needs .cache/ort-cuda/include
# (headers for cmake only). Usage: bench/gpu/prefill_window_exp.sh [OUT]; env MODES (default "1 0":
# VNMC_PREFILL_CONFIG values, 0 = automatic), TOKENS, SHAPES, CONFIGS, KINDS.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="${1:-${OUT:-/tmp/pw-out}}"; mkdir -p "$out"
t0=$(date +%s)
build_kernels || exit 1
echo "== build $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=name --format=csv,noheader
cuobjdump --dump-resource-usage "$b/libvnmc_cuda.so" 2>/dev/null | grep -A1 "prefill_kernel" | grep -o "prefill_kernelILb[0-9A-Za-z]*\|REG:[0-9]*\|LOCAL:[0-9]*" | paste - - - | sort -u
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "== tests"; timeout 300 "$b/vnmc_cuda_tests" > "$out/tests.log" 2>&1; echo "rc=$?"; tail -2 "$out/tests.log"; grep -m5 FAIL "$out/tests.log"
  echo "== memcheck (quick set)"; timeout 200 compute-sanitizer --tool memcheck "$b/vnmc_cuda_tests" --quick > "$out/memcheck.log" 2>&1; echo "rc=$?"; tail -3 "$out/memcheck.log"
  echo "== tests $(( $(date +%s) - t0 )) s"
fi
nd=""
python3 - "$b/libvnmc_cuda.so" <<'PY' || { echo "describe smoke FAILED: benchmarks run with --no-describe"; nd=--no-describe; }
import sys, numpy as np
sys.path.insert(0, "bench/gpu"); import kernel_bench as kb
lib = kb.Lib(sys.argv[1]); v, c, m, _ = kb.make_packed(512, 512, 64, 8, "windowed", np.random.default_rng(0))
h = lib.create(512, 512, 64, 8, v, c, m); print("describe smoke:", [lib.describe(h, t) for t in (1, 8, 300, 4096)])
PY
for mode in ${MODES:-1 0}; do
  VNMC_PREFILL_CONFIG=$mode timeout 280 python3 -X faulthandler bench/gpu/kernel_bench.py --lib "$b/libvnmc_cuda.so" \
    --shapes ${SHAPES:-0,1,2} --tokens ${TOKENS:-256,2048,8192} --configs ${CONFIGS:-64:5,64:8} --kinds ${KINDS:-windowed} \
    --reps 10 $nd --out "$out/kb_cfg$mode.json" --tag "v6 prefill config=$mode" > "$out/kb_cfg$mode.log" 2>&1 || echo "bench $mode failed"
  grep -E "^  T=" "$out/kb_cfg$mode.log" | grep -v cuBLAS\ *[0-9.]*\ us$ | head -60
  echo "== bench $mode done $(( $(date +%s) - t0 )) s"
done
python3 bench/gpu/compare_runs.py "$out" kb_cfg ${MODES:-1 0}
echo "== total $(( $(date +%s) - t0 )) s"
