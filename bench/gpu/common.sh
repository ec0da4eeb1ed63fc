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

# Builds the cuSPARSELt helper (against the cuSPARSELt inside PyTorch's environment) into $b and sets
# cslt=(--cslt PATH) for kernel_bench.py, or cslt=() where it cannot be built.
build_cslt_helper() {
  local cs; cs=$(python3 -c "import nvidia.cusparselt as m; print(list(m.__path__)[0])" 2>/dev/null)
  cslt=()
  if [ -n "$cs" ] && nvcc -O2 -shared -Xcompiler -fPIC -I"$cs/include" bench/gpu/cslt_helper.cc -L"$cs/lib" \
       -l:$(basename "$(ls "$cs"/lib/libcusparseLt.so* | head -1)") -Xlinker -rpath="$cs/lib" -o "$b/libcslt_helper.so"; then
    cslt=(--cslt "$b/libcslt_helper.so")
  else
    echo "cuSPARSELt helper not built: the benchmark runs without it"
  fi
}
