// A C interface to the CUDA kernels for ctypes (bench/gpu/kernel_bench.py) and other FFI users.
// Host arrays in, device pointers for A / Y / workspace, the stream as an integer handle.
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>

#include "cuda/vnm_cuda.h"

#define VNMC_CAPI extern "C" __attribute__((visibility("default")))

namespace {
void put_err(const std::string& e, char* buf, int len) {
  if (!buf || len <= 0) return;
  std::snprintf(buf, static_cast<size_t>(len), "%s", e.c_str());
}
}  // namespace

// act_dtype: 10 = float16, 16 = bfloat16 (ONNX numbering). row_index / bias may be null.
// force_path: 0 auto, 1 decode, 2 prefill. Returns null on failure (message in err).
VNMC_CAPI void* vnmc_cuda_create(int64_t K, int64_t N_out, int64_t V, int64_t M, int act_dtype, const void* values,
                                 const int32_t* columns, const uint8_t* meta, const int32_t* row_index,
                                 const void* bias, int force_path, char* err, int errlen) {
  using namespace vnmc;
  Attributes a;
  a.in_features = K;
  a.out_features = N_out;
  a.v = V;
  a.m = M;
  a.n = 2;
  Dims d;
  std::string e = validate_attributes(a, &d);
  if (!e.empty()) {
    put_err(e, err, errlen);
    return nullptr;
  }
  const DType act = static_cast<DType>(act_dtype);
  TensorView tv, tc, tm, tr, tb;
  tv.data = values;
  tv.dtype = act;
  tv.shape = {d.R, 2 * d.G};
  tv.present = true;
  tc.data = columns;
  tc.dtype = DType::kInt32;
  tc.shape = {d.B, d.G, 4};
  tc.present = true;
  tm.data = meta;
  tm.dtype = DType::kUInt8;
  tm.shape = {d.R, d.meta_cols};
  tm.present = true;
  if (row_index) {
    tr.data = row_index;
    tr.dtype = DType::kInt32;
    tr.shape = {d.R};
    tr.present = true;
  }
  if (bias) {
    tb.data = bias;
    tb.dtype = act;
    tb.shape = {d.N_out};
    tb.present = true;
  }
  cuda::Options opt;
  opt.force_path = force_path;
  // Benchmarks compare prefill tile configurations in one process (VnmGemmCuda::Options::prefill_config).
  if (const char* c = std::getenv("VNMC_PREFILL_CONFIG")) opt.prefill_config = std::atoi(c);
  if (const char* c = std::getenv("VNMC_WGMMA_BN")) opt.wgmma_bn = std::atoi(c);
  if (const char* c = std::getenv("VNMC_WGMMA_RASTER")) opt.wgmma_raster = std::atoi(c);
  if (const char* c = std::getenv("VNMC_WGMMA_WS")) opt.wgmma_ws = std::atoi(c);
  if (const char* c = std::getenv("VNMC_WGMMA_PERSISTENT")) opt.wgmma_persistent = std::atoi(c);
  if (const char* c = std::getenv("VNMC_WGMMA_KSPLIT")) opt.wgmma_ksplit = std::atoi(c);
  if (const char* c = std::getenv("VNMC_DECODE_KSPLIT")) opt.decode_ksplit = std::atoi(c);
  if (const char* c = std::getenv("VNMC_PREFILL_WGMMA")) opt.prefill_wgmma = c[0] != '0';
  auto g = cuda::VnmGemmCuda::create(a, act, tv, tc, tm, tr, tb, opt, &e);
  if (!g) {
    put_err(e, err, errlen);
    return nullptr;
  }
  return g.release();
}

VNMC_CAPI size_t vnmc_cuda_workspace(void* h, int64_t T) {
  return static_cast<vnmc::cuda::VnmGemmCuda*>(h)->workspace_bytes(T);
}

VNMC_CAPI int vnmc_cuda_run(void* h, const void* A, int64_t T, void* Y, void* ws, size_t ws_bytes, void* stream,
                            char* err, int errlen) {
  const std::string e = static_cast<vnmc::cuda::VnmGemmCuda*>(h)->run(A, T, Y, ws, ws_bytes, stream);
  if (!e.empty()) {
    put_err(e, err, errlen);
    return 1;
  }
  return 0;
}

VNMC_CAPI int vnmc_cuda_describe(void* h, int64_t T, char* buf, int len) {
  put_err(static_cast<vnmc::cuda::VnmGemmCuda*>(h)->describe_launch(T), buf, len);
  return 0;
}

VNMC_CAPI size_t vnmc_cuda_weight_bytes(void* h) {
  return static_cast<vnmc::cuda::VnmGemmCuda*>(h)->device_weight_bytes();
}

VNMC_CAPI void* vnmc_cuda_clone(void* h, char* err, int errlen) {
  std::string e;
  auto g = static_cast<vnmc::cuda::VnmGemmCuda*>(h)->clone(&e);
  if (!g) {
    put_err(e, err, errlen);
    return nullptr;
  }
  return g.release();
}

VNMC_CAPI void vnmc_cuda_destroy(void* h) { delete static_cast<vnmc::cuda::VnmGemmCuda*>(h); }
