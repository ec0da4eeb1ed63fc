# Sourced by the GPU experiment scripts of bench/gpu: repository root as the working directory, and
# build_kernels, which builds libvnmc_cuda.so and the kernel tests for sm_90a into $b (/tmp/kb-build).
# Needs .cache/ort-cuda/include (onnxruntime headers, for cmake only).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; cd "$root"
b=/tmp/kb-build
build_kernels() {
  local gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S runtime-ops -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DVNMC_WITH_CUDA=ON -DVNMC_BUILD_BENCH=OFF \
    -DVNMC_BUILD_NODE_ADDON=OFF -DORT_INCLUDE_DIR="$root/.cache/ort-cuda/include" \
    "-DVNMC_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a" >/dev/null || return 1
  cmake --build "$b" --parallel 16 --target vnmc_cuda_tests vnmc_cuda_capi 2>&1 | grep -E "error|warning: "
  return 0
}
