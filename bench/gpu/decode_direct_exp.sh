#!/usr/bin/env bash
# Decode experiment (issue 5 follow-up): T = 2..16 with activations gathered straight from A
# (VNMC_DECODE_DIRECT=1, no re-pack launch) vs the At2 pairs path, each in one kernel_bench run with cuBLAS;
# kernel tests of both paths first. Needs .cache/ort-cuda (headers).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; cd "$root"
out="${1:-${OUT:-/tmp/dd-out}}"; mkdir -p "$out"
source .cache/ort-cuda/setup.sh
b=/tmp/kb-build; t0=$(date +%s)
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S runtime-ops -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DVNMC_WITH_CUDA=ON -DVNMC_BUILD_BENCH=OFF \
  -DVNMC_BUILD_NODE_ADDON=OFF -DORT_INCLUDE_DIR="$ORT_CUDA_INCLUDE" \
  "-DVNMC_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a" >/dev/null || exit 1
cmake --build "$b" --parallel 16 --target vnmc_cuda_tests vnmc_cuda_capi 2>&1 | grep -E "error|warning: "
echo "== build $(( $(date +%s) - t0 )) s"
[ "${SKIP_TESTS:-0}" = 1 ] || { echo "== tests, pairs path (default)"; "$b/vnmc_cuda_tests" | tail -2
echo "== tests, VNMC_DECODE_DIRECT=1"; VNMC_DECODE_DIRECT=1 "$b/vnmc_cuda_tests" | tail -2; }
modes="${MODES:-0 1}"   # 0 = pairs, 1 = direct, auto = the library's default (direct for T <= 4)
for mode in $modes; do
  env $([ "$mode" = auto ] && echo -u VNMC_DECODE_DIRECT || echo VNMC_DECODE_DIRECT=$mode) python3 -X faulthandler bench/gpu/kernel_bench.py --lib "$b/libvnmc_cuda.so" --shapes 0,1,2 \
    --tokens 1,2,4,8,16 --no-describe --out "$out/kb_direct$mode.json" --tag "decode direct=$mode" > "$out/kb_direct$mode.log" 2>&1 || echo "bench $mode failed"
done
python3 - "$out" $modes <<'PY'
import json, sys
o = sys.argv[1]
ms = sys.argv[2:4]
r = {m: {(x["shape"] if "shape" in x else str(x.get("N_out"))+"x"+str(x.get("K")), x.get("T"), x.get("config"), x.get("indices", x.get("kind"))): x for x in json.load(open(f"{o}/kb_direct{m}.json"))} for m in ms}
print(f"shape T config kind | mode {ms[0]} us (x cuBLAS) | mode {ms[1]} us (x cuBLAS)")
for k, a in r[ms[0]].items():
    d = r[ms[1]].get(k)
    if not d: continue
    f = lambda x: f"{x.get('ours_ms', 0)*1e3:.1f} ({x.get('cublas_ms', 0)/max(x.get('ours_ms', 1e-9),1e-9):.2f}x)"
    print(k, "|", f(a), "|", f(d))
PY
echo "== total $(( $(date +%s) - t0 )) s"
