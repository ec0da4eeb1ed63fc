#!/usr/bin/env bash
# Builds the CUDA kernels of VNMSparseGemm (runtime-ops/src/cuda), their GPU tests and libvnmc_cuda.so
# into runtime-ops/build/cuda. Without a GPU this is the compile check that CI runs; the GPU tests
# then report "skipped".
#
#   runtime-ops/cuda/build.sh            build (sm_80 + sm_90a)
#   runtime-ops/cuda/build.sh --test     build, then ctest -R cuda (skipped without a GPU)
#
# Environment: CUDACXX (nvcc; default: nvcc on PATH or /usr/local/cuda/bin/nvcc), ORT_INCLUDE_DIR,
# VNMC_CUDA_BUILD_DIR (default runtime-ops/build/cuda), CMAKE_BUILD_PARALLEL_LEVEL.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
test=0
for a in "$@"; do
  case "$a" in
    --test) test=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "cuda/build.sh: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done
if ! command -v cmake >/dev/null 2>&1; then echo "cuda/build.sh: cmake not found" >&2; exit 1; fi
if [ -z "${CUDACXX:-}" ]; then
  if command -v nvcc >/dev/null 2>&1; then export CUDACXX="$(command -v nvcc)";
  elif [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc;
  else echo "cuda/build.sh: nvcc not found (install the CUDA toolkit >= 12.5 or set CUDACXX)" >&2; exit 1; fi
fi
build="${VNMC_CUDA_BUILD_DIR:-$root/build/cuda}"
args=(-DCMAKE_BUILD_TYPE=Release -DVNMC_WITH_CUDA=ON -DVNMC_BUILD_BENCH=OFF -DVNMC_BUILD_NODE_ADDON=OFF)
if [ -n "${ORT_INCLUDE_DIR:-}" ]; then args+=("-DORT_INCLUDE_DIR=$ORT_INCLUDE_DIR"); fi
gen=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
cmake -S "$root" -B "$build" "${gen[@]}" "${args[@]}" >/dev/null
cmake --build "$build" --parallel "$jobs" --target vnmc_cuda vnmc_cuda_capi vnmc_cuda_tests vnmc_ort vnmc_ep vnmc_ort_cuda_host
echo "built: $build/{libvnmc_cuda.so,vnmc_cuda_tests,libvnmc_ort.so (CPU + CUDA kernels),libvnmc_ep.so (EP plugin),vnmc_ort_cuda_host}"
if [ "$test" = 1 ]; then
  ctest --test-dir "$build" -R '^cuda\.' --output-on-failure
fi
