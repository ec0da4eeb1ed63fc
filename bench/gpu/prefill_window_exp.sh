#!/usr/bin/env bash
# Prefill v6 experiment (issue 5/6): the dense activation window staged once per CTA and gathered by
# ldmatrix row addresses (configs 4 = 256x128, 5 = 128x128; windowed indices, V % 64 == 0, M <= 16) vs
# v2's per-unit gathered B tiles (config 1 = 128x128), each one kernel_bench run with cuBLAS in the same
# process. Kernel tests (and compute-sanitizer on the quick set) first. Needs .cache/ort-cuda/include
# (headers for cmake only). Usage: bench/gpu/prefill_window_exp.sh [OUT]; env MODES (default "1 0":
# VNMC_PREFILL_CONFIG values, 0 = automatic), TOKENS, SHAPES, CONFIGS, KINDS.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; cd "$root"
out="${1:-${OUT:-/tmp/pw-out}}"; mkdir -p "$out"
b=/tmp/kb-build; t0=$(date +%s)
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S runtime-ops -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DVNMC_WITH_CUDA=ON -DVNMC_BUILD_BENCH=OFF \
  -DVNMC_BUILD_NODE_ADDON=OFF -DORT_INCLUDE_DIR="$root/.cache/ort-cuda/include" \
  "-DVNMC_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a" >/dev/null || exit 1
cmake --build "$b" --parallel 16 --target vnmc_cuda_tests vnmc_cuda_capi 2>&1 | grep -E "error|warning: "
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
python3 - "$out" ${MODES:-1 0} <<'PY'
import json, sys
o = sys.argv[1]; ms = sys.argv[2:]
r = {m: {(x["shape"], x["T"], x["config"], x["indices"]): x for x in json.load(open(f"{o}/kb_cfg{m}.json"))} for m in ms}
print("shape T config kind | " + " | ".join(f"cfg={m} us (x cuBLAS, cuBLAS us) path" for m in ms))
f = lambda x: f"{x['ours_ms']*1e3:.1f} ({x['cublas_ms']/x['ours_ms']:.2f}x, {x['cublas_ms']*1e3:.1f}) {x['path']}" if x else "-"
for k in r[ms[0]]:
    print(*k, "|", " | ".join(f(r[m].get(k)) for m in ms))
PY
echo "== total $(( $(date +%s) - t0 )) s"
