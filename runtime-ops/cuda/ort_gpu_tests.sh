#!/usr/bin/env bash
# The GPU integration tests of issue 5 item 2, in one go on the GPU machine (H100/H200):
#   1. builds the CUDA targets (sm_90a only, to save time) with the bundle's onnxruntime 1.29 headers;
#   2. vnmc_cuda_tests (kernels vs dense reference);
#   3. (a) vnmc_ort_cuda_host: libvnmc_ort.so's CUDAExecutionProvider kernel in onnxruntime 1.29's CUDA
#      provider vs the CPU kernel and the fallback function; malformed models rejected at load; the
#      prefill_wgmma switch (session config entry vnmc.prefill_wgmma, then VNMC_PREFILL_WGMMA unset / 0 /
#      a bad value, each in its own process since the variable is read once);
#   4. (b) ep/test_ep.py: libvnmc_ep.so in the installed onnxruntime Python package (1.30 there);
#   5. compute-sanitizer --tool memcheck on the kernel tests (--quick) and on the host (one model).
# Needs: .cache/ort-cuda (shared/tools/ort-cuda-bundle.sh) and .cache/ort-cuda-models
# (runtime-ops/cuda/make_test_models.sh), both carried from the development machine.
#   runtime-ops/cuda/ort_gpu_tests.sh [--no-sanitizer]
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
san=1
[ "${1:-}" = "--no-sanitizer" ] && san=0
nvidia-smi -L || { echo "SKIP: no GPU"; exit 77; }
# shellcheck disable=SC1091
source .cache/ort-cuda/setup.sh
b=/tmp/vnmc-gpu-build
t0=$(date +%s)
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S runtime-ops -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DVNMC_WITH_CUDA=ON -DVNMC_BUILD_BENCH=OFF \
  -DVNMC_BUILD_NODE_ADDON=OFF -DORT_INCLUDE_DIR="$ORT_CUDA_INCLUDE" \
  "-DVNMC_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a" >/dev/null || exit 1
cmake --build "$b" --parallel 16 --target vnmc_cuda_tests vnmc_ort vnmc_ep vnmc_ort_cuda_host 2>&1 | grep -E "error|warning: " ; 
[ -x "$b/vnmc_ort_cuda_host" ] || { echo "build failed"; exit 1; }
echo "== build: $(( $(date +%s) - t0 )) s"
rc=0
echo "== kernel tests"; "$b/vnmc_cuda_tests" | tail -4 || rc=1
python3 runtime-ops/cuda/prepare_models.py .cache/ort-cuda-models /tmp/vnmc-models || exit 1
M=/tmp/vnmc-models
good=("$M/mlp16_64-2-8.vnm.onnx" "$M/mlp16_32-2-5_perm.vnm.onnx" "$M/mlp32w16_64-2-8.vnm.onnx" "$M/mlp32wbf16_64-2-8.vnm.onnx")
echo "== (a) custom op on CUDAExecutionProvider"
"$b/vnmc_ort_cuda_host" "$ORT_CUDA_LIB/libonnxruntime.so" "$b/libvnmc_ort.so" --tokens 1,7,16,300 "${good[@]}" \
  --expect-fail "$M/bad_meta.vnm.onnx" --expect-fail "$M/bad_columns.vnm.onnx" \
  --wgmma-switch "$M/mlp16_64-2-8.vnm.onnx" --wgmma-switch "$M/mlp32wbf16_64-2-8.vnm.onnx" || rc=1
for v in 0 maybe; do
  echo "== (a) prefill_wgmma switch with VNMC_PREFILL_WGMMA=$v"
  VNMC_PREFILL_WGMMA=$v "$b/vnmc_ort_cuda_host" "$ORT_CUDA_LIB/libonnxruntime.so" "$b/libvnmc_ort.so" --tokens 300 \
    --wgmma-switch "$M/mlp16_64-2-8.vnm.onnx" || rc=1
done
echo "== (b) EP plugin in the onnxruntime Python package"
env -u LD_LIBRARY_PATH python3 -X faulthandler runtime-ops/ep/test_ep.py "$b/libvnmc_ep.so" "$b/libvnmc_ort.so" "$M" || rc=1
if [ "$san" = 1 ]; then
  echo "== compute-sanitizer memcheck: kernel tests --quick"
  compute-sanitizer --tool memcheck --error-exitcode 9 "$b/vnmc_cuda_tests" --quick | tail -3 || rc=1
  echo "== compute-sanitizer memcheck: custom op in onnxruntime (one model, T = 1, 300)"
  compute-sanitizer --tool memcheck --error-exitcode 9 "$b/vnmc_ort_cuda_host" "$ORT_CUDA_LIB/libonnxruntime.so" \
    "$b/libvnmc_ort.so" --tokens 1,300 "$M/mlp16_32-2-5_perm.vnm.onnx" 2>&1 | tail -6 || rc=1
fi
echo "== total $(( $(date +%s) - t0 )) s, rc=$rc"
exit $rc
