// CUDA kernels for com.vnmc::VNMSparseGemm (shared/design/vnm-format.md), host interface.
//
// Plain C++: no CUDA header is needed to include this file, so the onnxruntime glue (a
// CUDAExecutionProvider custom op, an EP plugin) and the tests can use it from .cc files.
//
//   auto g = vnmc::cuda::VnmGemmCuda::create(attrs, act, values, columns, meta, row_index, bias, {}, &err);
//   size_t ws = g->workspace_bytes(T);                           // device scratch for this T
//   err = g->run(A_dev, T, Y_dev, ws_dev, ws, stream);           // Y[T][N_out] = A[T][K] W^T + bias
//
// create() validates the packed inputs on the host with the contract's validate_* functions (a
// malformed model is an error, never an out-of-bounds access), re-lays the canonical packed weights
// out once into the kernels' mma.sp fragment order and uploads them to the current device.
// run() only checks its own arguments and launches (no allocation, no synchronisation), so it can
// be captured in a CUDA graph.
//
// Activations and values: float16/float16 or bfloat16/bfloat16 (fp32 accumulation, outputs rounded
// to nearest even), and float activations with float16 or bfloat16 values (reduced-precision weights):
// A is rounded to the value type on the fly, the tensor cores run as for half activations, and the
// output is widened back to float (so it carries the value type's rounding, ~2^-11 / 2^-8 relative;
// fp16 activations beyond +-65504 overflow). float/float is CPU only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "vnmc/contract.h"

namespace vnmc {
namespace cuda {

struct Options {
  // T <= decode_max_tokens takes the decode path (weights streamed once, split-K, activations
  // gathered from L1/L2), larger T the prefill path (cp.async pipeline, ldmatrix gather). Max 16.
  int64_t decode_max_tokens = 16;
  // 0 automatic; 1 always decode (only for T <= 16); 2 always prefill (tests use these).
  int force_path = 0;
  // 0 automatic. Decode: CTAs per 64-row tile. Prefill: tile config 1 = 128x128, 2 = 64x128, 3 = 64x64,
  // 4 = 256x128 and 5 = 128x128 with the activation window staged per CTA (windowed indices, V a
  // multiple of 64, M <= 16; otherwise they fall back to 1 or 2), 6 = 128x128 with 32 tokens per warp
  // (16 warps per SM), 7 = 256x128 window with 32 tokens per warp. 4-7 are opt-in: none beat 1 by more
  // than run-to-run spread on an H100 (bench/gpu/NOTES.md, v6-v8).
  int decode_ksplit = 0;
  int prefill_config = 0;
  // Use the windowed-index fast path when the indices allow it (tests turn it off to cover the
  // general path on windowed data too).
  bool allow_windowed = true;
  // Prefill on wgmma.sp (config 8, sm_90 only) on the weight as 2:4 along K: in place where it already
  // is (windowed indices with M % 4 == 0, K % 8 == 0), else in a zero-padded channel order that X is
  // gathered into per call (windowed indices with any M, or one input permutation for all blocks;
  // 6 positions per 5 channels at M = 5). Not for per-block permutations. Costs a second device copy
  // of the weight in 2:4 form (half the bytes of the padded order). prefill_config 1-7 select the
  // mma.sp configurations instead; 8 = this one where possible.
  bool prefill_wgmma = true;
  // Token tile of the wgmma.sp prefill: 0 automatic, or 64, 128, 256.
  int wgmma_bn = 0;
  // Order of its tiles: 0 automatic (= 1), 1 row tiles fastest, 2 token tiles fastest.
  int wgmma_raster = 0;
  // Its pipeline: 0 automatic (= 1), 1 warp-specialised (a TMA producer warp, mbarriers: v10),
  // 2 all threads copy with cp.async and meet at a barrier per step (v9).
  int wgmma_ws = 0;
  // Persistent tiles (v14: one wave of CTAs, each walking tiles in the raster order above; only with the
  // warp-specialised pipeline): 0 automatic (= off until measured), 1 on, -1 off; N >= 2: on with at
  // most N CTAs (tests: many tiles per CTA on small shapes).
  int wgmma_persistent = 0;
  // Split-K of the warp-specialised wgmma.sp prefill where its tiles fill less than 3/4 of the SMs (v18:
  // the splits of a tile form a cluster and add their sums through distributed shared memory; at most 8):
  // 0 automatic (only where the k loop has >= 4 steps of 64 per tile: measured faster only there), 1 never,
  // N >= 2 at most N splits.
  int wgmma_ksplit = 0;
  // Decode on sm_90 with bulk copies and clusters (decode_bulk.cuh, v13) where it can run (windowed
  // indices, V a multiple of 64, a split whose clusters all fit one wave): 0 automatic (where it was
  // measured faster than v4: T >= 5, or M >= 16), 1 wherever it can run, -1 never (the v4 kernels).
  // 1 also runs it on indices with one permutation for all blocks, after a gather of X into group order
  // (v16; slower than v4 on most shapes, so never automatic).
  int decode_bulk = 0;
};

// True when a CUDA device is usable in this process (false without a GPU or driver).
bool device_available(std::string* why = nullptr);

class VnmGemmCuda {
 public:
  // Validates inputs 1, 2, 3, 5 and 4 (bias, may be absent) against the attributes, then prepares.
  // All tensors are host memory. Returns nullptr and sets *err on any failure.
  static std::unique_ptr<VnmGemmCuda> create(const Attributes& attrs, DType act_dtype, const TensorView& values,
                                             const TensorView& columns, const TensorView& meta,
                                             const TensorView& row_index, const TensorView& bias,
                                             const Options& opt, std::string* err);
  // Same from an already validated PackedWeights; bias_f32 is [N_out] or null.
  static std::unique_ptr<VnmGemmCuda> create(const PackedWeights& w, const float* bias_f32, const Options& opt,
                                             std::string* err);
  ~VnmGemmCuda();
  // A second object with its own device copy of the prepared weights (benchmarks rotate copies so
  // that the weights do not sit in L2). Null and *err on failure.
  std::unique_ptr<VnmGemmCuda> clone(std::string* err) const;
  // Device the weights live on (the current device at create()).
  int device() const;
  VnmGemmCuda(const VnmGemmCuda&) = delete;
  VnmGemmCuda& operator=(const VnmGemmCuda&) = delete;

  // Device scratch that run() needs for T tokens (0 for the decode path).
  size_t workspace_bytes(int64_t T) const;

  // Y[T][N_out] (act dtype) = A[T][K] (act dtype) * W^T + bias, on `stream` (a cudaStream_t, or
  // null for the legacy default stream). A, Y and workspace are device pointers; workspace must hold
  // workspace_bytes(T). Launches of one object must be ordered (one stream, or synchronised): the
  // decode path keeps a small split-K scratch of its own that every launch leaves zeroed.
  std::string run(const void* A, int64_t T, void* Y, void* workspace, size_t workspace_size, void* stream) const;

  const Dims& dims() const { return dims_; }
  DType act_dtype() const { return act_; }
  bool windowed() const;          // the windowed fast path is in use
  size_t device_weight_bytes() const;  // bytes of the re-laid-out weights on the device
  // Which path / configuration run() takes for T tokens (for benchmarks and tests).
  std::string describe_launch(int64_t T) const;

  struct Impl;

 private:
  VnmGemmCuda() = default;
  // run() for half activations and outputs (the float path converts around it).
  std::string run_half(const void* A, int64_t T, void* Y, void* workspace, size_t workspace_size, void* stream) const;
  size_t half_workspace_bytes(int64_t T) const;
  std::unique_ptr<Impl> impl_;
  Dims dims_;
  DType act_ = DType::kFloat16;
};

// A prepared kernel as an onnxruntime kernel uses it: it owns its device workspace (grown on demand)
// and orders its launches across streams (each launch waits for the previous one through an event),
// so concurrent Run() calls on different streams cannot race on the workspace or the decode
// scratch. Thread-safe. Not for CUDA-graph capture when the workspace must grow (cudaMalloc).
class OrderedRunner {
 public:
  static std::unique_ptr<OrderedRunner> create(std::unique_ptr<VnmGemmCuda> gemm, std::string* err);
  ~OrderedRunner();
  OrderedRunner(const OrderedRunner&) = delete;
  OrderedRunner& operator=(const OrderedRunner&) = delete;
  // Y = A W^T + bias for T tokens on `stream` (a cudaStream_t; null = legacy default stream).
  std::string run(const void* A, int64_t T, void* Y, void* stream);
  // Same when A and/or Y are host memory (a runtime that did not move them to the device): they are
  // staged through device scratch and the call waits for the stream before returning.
  std::string run_staged(const void* A, bool a_host, int64_t T, void* Y, bool y_host, void* stream);
  const VnmGemmCuda& gemm() const { return *gemm_; }

 private:
  OrderedRunner() = default;
  std::mutex mu_;
  std::unique_ptr<VnmGemmCuda> gemm_;
  std::string ensure_workspace(size_t need);
  void* workspace_ = nullptr;
  size_t workspace_size_ = 0;
  void* event_ = nullptr;        // cudaEvent_t of the last launch
  void* last_stream_ = nullptr;
  bool launched_ = false;
  std::mutex stage_mu_;
  void* stage_ = nullptr;  // device copies of host A / Y (run_staged)
  size_t stage_size_ = 0;
};

// "" when p is device memory of the current device (or managed), else what it is ("host memory ...").
std::string check_device_pointer(const void* p, const char* what);
bool is_device_pointer(const void* p);
// Waits for `stream` and reports a pending CUDA error ("" if none): VNMC_CUDA_SYNC_CHECK=1 debugging.
std::string sync_check(void* stream);

// Copies n bytes from device (or host) memory to host memory, synchronously. "" or the error.
std::string copy_to_host(void* dst, const void* src, size_t n);

}  // namespace cuda
}  // namespace vnmc
