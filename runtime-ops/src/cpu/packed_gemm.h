// The CPU VNMSparseGemm kernel core: weights re-laid out once, then run on any number of tokens.
// Independent of onnxruntime, so the tests and the benchmark call it directly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vnmc/contract.h"

namespace vnmc {
namespace cpu {

enum class Isa { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa);
bool isa_supported(Isa isa);  // compiled in and supported by this CPU
// The fastest supported ISA (avx512 > avx2 > portable); the environment variable
// VNMC_CPU_ISA=portable|avx2|avx512 caps it (a request the CPU cannot run falls back to the next one
// down).
Isa best_isa();

// Runs fn(ctx, i) for i in [0, n), possibly concurrently, and returns when all calls are done.
class Parallel {
 public:
  virtual ~Parallel() = default;
  virtual int num_threads() const = 0;  // a hint for splitting work
  virtual void for_each(size_t n, void (*fn)(void*, size_t), void* ctx) = 0;
};

class SerialParallel final : public Parallel {
 public:
  int num_threads() const override { return 1; }
  void for_each(size_t n, void (*fn)(void*, size_t), void* ctx) override {
    for (size_t i = 0; i < n; ++i) fn(ctx, i);
  }
};

struct PrepareOptions {
  Isa isa = best_isa();
  // How to keep float16/bfloat16 values: -1 auto (as they are on AVX2, converted on the fly in
  // registers; converted to fp32 once for the portable path), 0 always fp32, 1 keep 16-bit.
  int keep_half_values = -1;
  // Largest token count that takes the row path (rows vectorised, for decode); larger counts take
  // the token path (tokens vectorised). -1: default (kDefaultRowPathMaxTokens). An ISA without a
  // token path (AVX-512) takes the row path for every token count.
  int64_t row_path_max_tokens = -1;
};

constexpr int64_t kDefaultRowPathMaxTokens = 16;

// Owns 64-byte aligned memory.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  void* data() const { return p_; }
  size_t size() const { return n_; }
  template <typename T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

class PackedGemm {
 public:
  // Re-lays out validated weights. Returns nullptr and sets *err on failure (out of memory).
  static std::unique_ptr<PackedGemm> create(const PackedWeights& w, const PrepareOptions& opt, std::string* err);
  ~PackedGemm();

  // Y[T][N_out] = A[T][K] * W^T (+ bias). A and Y are of the activation type given at creation;
  // bias is fp32 [N_out] or null. Returns "" or an error (out of memory).
  std::string run(const void* A, int64_t T, const float* bias, void* Y, Parallel& par) const;

  const Dims& dims() const { return dims_; }
  DType act_dtype() const { return act_; }
  Isa isa() const { return isa_; }
  size_t weight_bytes() const;  // bytes of the re-laid-out weights
  bool windowed() const { return windowed_; }
  int value_store() const;  // ValueStore of kernel_data.h

 private:
  PackedGemm() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Dims dims_;
  DType act_ = DType::kFloat32;
  Isa isa_ = Isa::kPortable;
  bool windowed_ = false;
  int64_t row_max_ = kDefaultRowPathMaxTokens;
};

// bias of type dt (float, float16 or bfloat16), n elements -> fp32.
std::vector<float> to_f32(const void* src, DType dt, int64_t n);

}  // namespace cpu
}  // namespace vnmc
