#!/usr/bin/env bash
# The issue-5 kernel benchmark in one call: builds libvnmc_cuda.so (sm_90a) and the cuSPARSELt helper
# (against the cuSPARSELt inside PyTorch's environment), runs the kernel tests, then kernel_bench.py over
# every shape, T, config and index kind in two processes (Llama-2-7B shapes, ViT-base shapes), each with
# cuBLAS and cuSPARSELt in the same process. Usage: bench/gpu/full_bench.sh [OUT]. Needs
# .cache/ort-cuda/include (headers for cmake only). Merge: bench/gpu/merge_results.py OUT/kb_*.json.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; cd "$root"
out="${1:-${OUT:-/tmp/fb-out}}"; mkdir -p "$out"
b=/tmp/kb-build; t0=$(date +%s)
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S runtime-ops -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DVNMC_WITH_CUDA=ON -DVNMC_BUILD_BENCH=OFF \
  -DVNMC_BUILD_NODE_ADDON=OFF -DORT_INCLUDE_DIR="$root/.cache/ort-cuda/include" \
  "-DVNMC_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a" >/dev/null || exit 1
cmake --build "$b" --parallel 16 --target vnmc_cuda_tests vnmc_cuda_capi 2>&1 | grep -E "error|warning: "
cs=$(python3 -c "import nvidia.cusparselt as m; print(list(m.__path__)[0])" 2>/dev/null)
cslt=()
if [ -n "$cs" ] && nvcc -O2 -shared -Xcompiler -fPIC -I"$cs/include" bench/gpu/cslt_helper.cc -L"$cs/lib" \
     -l:$(basename "$(ls "$cs"/lib/libcusparseLt.so* | head -1)") -Xlinker -rpath="$cs/lib" -o "$b/libcslt_helper.so"; then
  cslt=(--cslt "$b/libcslt_helper.so")
else
  echo "cuSPARSELt helper not built: the benchmark runs without it"
fi
echo "== build $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 "$b/vnmc_cuda_tests" > "$out/tests.log" 2>&1; echo "tests rc=$?"; tail -2 "$out/tests.log"; grep -m5 FAIL "$out/tests.log"
echo "== tests $(( $(date +%s) - t0 )) s"
for part in "llama 0,1,2" "vit 3,4,5"; do
  set -- $part
  timeout ${PART_TIMEOUT:-250} python3 -X faulthandler bench/gpu/kernel_bench.py --lib "$b/libvnmc_cuda.so" "${cslt[@]}" \
    --shapes "$2" --tokens ${TOKENS:-1,16,64,256,2048,8192} --configs ${CONFIGS:-64:4,64:5,64:8,128:8,64:16} \
    --reps ${REPS:-10} --out "$out/kb_$1.json" --tag "${TAG:-v4 decode + v2 prefill}" > "$out/kb_$1.log" 2>&1 || echo "bench $1 failed"
  tail -1 "$out/kb_$1.log"; echo "== bench $1 $(( $(date +%s) - t0 )) s"
done
