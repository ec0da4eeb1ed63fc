#!/usr/bin/env bash
# Decode v5 experiment (issue 5 follow-up): windowed decode with the CTA's activation slice staged in
# shared memory (cp.async, 128-row CTAs; VNMC_DECODE_STAGE=1) vs v4 (the default: direct T <= 4,
# pairs T >= 5), each one kernel_bench run with cuBLAS, decode cells only. Kernel tests first (default and
# with the staged path forced for T = 1 too). Needs .cache/ort-cuda/include (headers for cmake only).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; cd "$root"
out="${1:-${OUT:-/tmp/ds-out}}"; mkdir -p "$out"
b=/tmp/kb-build; t0=$(date +%s)
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S runtime-ops -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DVNMC_WITH_CUDA=ON -DVNMC_BUILD_BENCH=OFF \
  -DVNMC_BUILD_NODE_ADDON=OFF -DORT_INCLUDE_DIR="$root/.cache/ort-cuda/include" \
  "-DVNMC_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a" >/dev/null || exit 1
cmake --build "$b" --parallel 16 --target vnmc_cuda_tests vnmc_cuda_capi 2>&1 | grep -E "error|warning: " 
echo "== build $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=name --format=csv,noheader
echo "== tests, default"; timeout 120 "$b/vnmc_cuda_tests" > "$out/tests_default.log" 2>&1; echo "rc=$?"; tail -2 "$out/tests_default.log"; grep -m5 FAIL "$out/tests_default.log"
echo "== tests, VNMC_DECODE_STAGE=1"; VNMC_DECODE_STAGE=1 timeout 120 "$b/vnmc_cuda_tests" > "$out/tests_stage1.log" 2>&1; echo "rc=$?"; tail -2 "$out/tests_stage1.log"; grep -m5 FAIL "$out/tests_stage1.log"
echo "== tests $(( $(date +%s) - t0 )) s"
for mode in ${MODES:-0 1}; do
  env $([ "$mode" = auto ] && echo -u VNMC_DECODE_STAGE || echo VNMC_DECODE_STAGE=$mode) VNMC_DEBUG=1 timeout 200 python3 -X faulthandler bench/gpu/kernel_bench.py --lib "$b/libvnmc_cuda.so" --shapes 0,1,2 \
    --tokens ${TOKENS:-1,2,4,8,16} --no-describe --out "$out/kb_stage$mode.json" --tag "v5 decode stage=$mode" > "$out/kb_stage$mode.log" 2>&1 || echo "bench $mode failed"
  grep -m1 "staged decode" "$out/kb_stage$mode.log"; echo "== bench $mode done $(( $(date +%s) - t0 )) s"
done
python3 - "$out" ${MODES:-0 1} <<'PY'
import json, sys
o = sys.argv[1]; ms = sys.argv[2:]
r = {m: {(x["shape"], x["T"], x["config"], x["indices"]): x for x in json.load(open(f"{o}/kb_stage{m}.json"))} for m in ms}
print("shape T config kind | " + " | ".join(f"stage={m} us (x cuBLAS, cuBLAS us)" for m in ms))
f = lambda x: f"{x['ours_ms']*1e3:.1f} ({x['cublas_ms']/x['ours_ms']:.2f}x, {x['cublas_ms']*1e3:.1f})" if x else "-"
for k in r[ms[0]]:
    print(*k, "|", " | ".join(f(r[m].get(k)) for m in ms))
PY
echo "== total $(( $(date +%s) - t0 )) s"
