#!/usr/bin/env bash
# Configures and builds libvnmc_ort.so (Release) into runtime-ops/build/.
#
#   runtime-ops/build.sh              build          -> runtime-ops/build/libvnmc_ort.so
#   runtime-ops/build.sh --test       build, then run ctest
#   runtime-ops/build.sh --sanitize   ASan+UBSan build into runtime-ops/build/asan (add --test to run it)
#   runtime-ops/build.sh --bench      build, then run the CPU benchmark (extra args after --)
#
# Environment: ORT_INCLUDE_DIR (onnxruntime headers; default: found in node_modules of the vnmc
# root), CXX (compiler), CMAKE_BUILD_PARALLEL_LEVEL (jobs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sanitize=0 test=0 bench=0 bench_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=1 ;;
    --test) test=1 ;;
    --bench) bench=1 ;;
    --) shift; bench_args=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v cmake >/dev/null 2>&1; then
  echo "build.sh: cmake not found (install cmake >= 3.16, e.g. apt-get install cmake)" >&2
  exit 1
fi
cxx="${CXX:-}"
if [ -z "$cxx" ]; then
  for c in c++ g++ clang++; do
    if command -v "$c" >/dev/null 2>&1; then cxx="$c"; break; fi
  done
fi
if [ -z "$cxx" ] || ! command -v "$cxx" >/dev/null 2>&1; then
  echo "build.sh: no C++ compiler found (install g++ or clang++, or set CXX)" >&2
  exit 1
fi

build="$here/build"
args=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx")
if [ "$sanitize" = 1 ]; then
  build="$here/build/asan"
  args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" -DVNMC_SANITIZE=ON -DVNMC_BUILD_BENCH=OFF)
fi
if [ -n "${ORT_INCLUDE_DIR:-}" ]; then args+=("-DORT_INCLUDE_DIR=$ORT_INCLUDE_DIR"); fi
gen=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

cmake -S "$here" -B "$build" "${gen[@]}" "${args[@]}" >/dev/null
cmake --build "$build" --parallel "$jobs"
echo "built: $build/libvnmc_ort.so"

if [ "$test" = 1 ]; then
  ctest --test-dir "$build" --output-on-failure
fi
if [ "$bench" = 1 ]; then
  "$build/vnmc_cpu_bench" "${bench_args[@]}"
fi
