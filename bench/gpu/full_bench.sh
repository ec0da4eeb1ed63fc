#!/usr/bin/env bash
# The issue-5 kernel benchmark in one call: builds libvnmc_cuda.so (sm_90a) and the cuSPARSELt helper
# (against the cuSPARSELt inside PyTorch's environment), runs the kernel tests, then kernel_bench.py over
# every shape, T, config and index kind (windowed, per-block permuted, one permutation for all blocks; env
# KINDS) in two processes (Llama-2-7B shapes, ViT-base shapes), each with
# cuBLAS and cuSPARSELt in the same process. Usage: bench/gpu/full_bench.sh [OUT] (SKIP_TESTS=1: no kernel tests). Needs
# .cache/ort-cuda/include (headers for cmake only). Writes OUT/results.json (both parts, the format of
# bench/gpu/results.json).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="${1:-${OUT:-/tmp/fb-out}}"; mkdir -p "$out"
t0=$(date +%s)
build_kernels || exit 1
build_cslt_helper
echo "== build $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=name --format=csv,noheader
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout 300 "$b/vnmc_cuda_tests" > "$out/tests.log" 2>&1; echo "tests rc=$?"; tail -2 "$out/tests.log"; grep -m5 FAIL "$out/tests.log"
fi
echo "== tests $(( $(date +%s) - t0 )) s"
for part in "llama 0,1,2" "vit 3,4,5"; do
  set -- $part
  timeout ${PART_TIMEOUT:-250} python3 -X faulthandler bench/gpu/kernel_bench.py --lib "$b/libvnmc_cuda.so" "${cslt[@]}" \
    --shapes "$2" --tokens ${TOKENS:-1,16,64,256,2048,8192} --configs ${CONFIGS:-64:4,64:5,64:8,128:8,64:16} \
    --kinds ${KINDS:-windowed,permuted,globalperm} --reps ${REPS:-10} --out "$out/kb_$1.json" --tag "${TAG:-v4 decode + v10 / v2 prefill}" > "$out/kb_$1.log" 2>&1 || echo "bench $1 failed"
  tail -1 "$out/kb_$1.log"; echo "== bench $1 $(( $(date +%s) - t0 )) s"
done
python3 -c "import json, sys; json.dump(sum((json.load(open(f)) for f in sys.argv[2:]), []), open(sys.argv[1], 'w'), indent=1)" \
  "$out/results.json" "$out/kb_llama.json" "$out/kb_vit.json" && echo "wrote $out/results.json"
