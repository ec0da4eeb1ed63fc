// The CPUExecutionProvider kernel of com.vnmc::VNMSparseGemm.
//
// Weights (inputs 1, 2, 3, 5) and bias (4) are read at kernel creation when they are constant
// initializers, validated and re-laid out once. Otherwise they are validated and re-laid out at
// compute time, cached by (data pointers, shapes, content hash).
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "cpu/packed_gemm.h"
#include "ort/ort_common.h"
#include "ort/vnm_custom_op.h"

namespace vnmc {
namespace ort {
namespace {

// cpu::Parallel over onnxruntime's intra-op thread pool (KernelContext_ParallelFor, API >= 17).
class OrtParallel final : public cpu::Parallel {
 public:
  OrtParallel(const OrtApi& api, OrtKernelContext* ctx) : api_(api), ctx_(ctx) {}
  int num_threads() const override {
    static const int n = [] {
      const unsigned hc = std::thread::hardware_concurrency();
      return hc ? static_cast<int>(hc) : 1;
    }();
    return n;
  }
  void for_each(size_t n, void (*fn)(void*, size_t), void* ctx) override {
    if (n > 1) {
      OrtStatus* st = api_.KernelContext_ParallelFor(ctx_, fn, n, 0, ctx);
      if (st == nullptr) return;
      api_.ReleaseStatus(st);  // no pool: run serially (items are idempotent)
    }
    for (size_t i = 0; i < n; ++i) fn(ctx, i);
  }

 private:
  const OrtApi& api_;
  OrtKernelContext* ctx_;
};

uint64_t hash_bytes(const void* p, size_t n, uint64_t h) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  uint64_t l[4] = {h ^ 0x9e3779b97f4a7c15ull, h + 0x632be59bd9b4e019ull, h ^ 0x85ebca77c2b2ae63ull, h + n};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, b + i + 8 * k, 8);
      l[k] = (l[k] ^ w) * 0x100000001b3ull;
      l[k] ^= l[k] >> 29;
    }
  }
  uint64_t r = l[0] ^ (l[1] * 3) ^ (l[2] * 5) ^ (l[3] * 7);
  for (; i < n; ++i) r = (r ^ b[i]) * 0x100000001b3ull;
  return r;
}

struct WeightKey {
  const void* ptr[4] = {};
  std::vector<int64_t> shapes[4];
  DType dtype[4] = {};
  uint64_t hash = 0;
  bool operator==(const WeightKey& o) const {
    for (int i = 0; i < 4; ++i)
      if (ptr[i] != o.ptr[i] || shapes[i] != o.shapes[i] || dtype[i] != o.dtype[i]) return false;
    return hash == o.hash;
  }
};

class CpuKernel {
 public:
  CpuKernel(const OrtApi& api, DType act) : api_(api), act_(act) {}

  OrtStatus* Init(const OrtKernelInfo* info) {
    node_ = node_name(api_, info);
    VNMC_ORT_RETURN_IF_ERROR(read_attributes(api_, info, &attrs_));
    const std::string aerr = validate_attributes(attrs_, &dims_);
    if (!aerr.empty()) return error(ORT_INVALID_GRAPH, aerr);
    has_bias_ = !input_name(api_, info, kInBias).empty();
    has_row_index_ = !input_name(api_, info, kInRowIndex).empty();

    // Constant weights: validate and re-lay out now.
    TensorView views[4];  // values, columns, meta, row_index
    const size_t idx[4] = {kInValues, kInColumns, kInMeta, kInRowIndex};
    bool all_constant = true;
    for (int i = 0; i < 4; ++i) {
      if (i == 3 && !has_row_index_) continue;
      bool constant = false;
      VNMC_ORT_RETURN_IF_ERROR(constant_input(info, idx[i], &constant, &views[i]));
      all_constant = all_constant && constant;
    }
    if (all_constant) {
      std::shared_ptr<const cpu::PackedGemm> g;
      VNMC_ORT_RETURN_IF_ERROR(prepare(views[0], views[1], views[2], views[3], &g));
      constant_ = std::move(g);
    }
    if (has_bias_) {
      TensorView bias;
      bool constant = false;
      VNMC_ORT_RETURN_IF_ERROR(constant_input(info, kInBias, &constant, &bias));
      if (constant) {
        const std::string berr = validate_bias(dims_, act_, bias);
        if (!berr.empty()) return error(ORT_INVALID_GRAPH, berr);
        bias_f32_ = cpu::to_f32(bias.data, act_, dims_.N_out);
        bias_constant_ = true;
      }
    }
    return nullptr;
  }

  OrtStatus* ComputeV2(OrtKernelContext* ctx) noexcept {
    try {
      return Compute(ctx);
    } catch (const std::bad_alloc&) {
      return error(ORT_FAIL, "out of memory");
    } catch (const std::exception& e) {
      return error(ORT_FAIL, e.what());
    } catch (...) {
      return error(ORT_FAIL, "unknown error");
    }
  }

 private:
  OrtStatus* error(OrtErrorCode code, const std::string& msg) const {
    return make_status(api_, code, std::string(kOpType) + " node '" + node_ + "': " + msg);
  }

  OrtStatus* constant_input(const OrtKernelInfo* info, size_t index, bool* constant, TensorView* view) {
    int is_constant = 0;
    const OrtValue* v = nullptr;
    VNMC_ORT_RETURN_IF_ERROR(api_.KernelInfoGetConstantInput_tensor(info, index, &is_constant, &v));
    *constant = is_constant != 0 && v != nullptr;
    if (*constant) VNMC_ORT_RETURN_IF_ERROR(view_of(api_, v, view));
    return nullptr;
  }

  OrtStatus* prepare(const TensorView& values, const TensorView& columns, const TensorView& meta,
                     const TensorView& row_index, std::shared_ptr<const cpu::PackedGemm>* out) const {
    PackedWeights pw;
    const std::string err = validate_packed_weights(attrs_, act_, values, columns, meta, row_index, &pw);
    if (!err.empty()) return error(ORT_INVALID_GRAPH, err);
    std::string perr;
    std::unique_ptr<cpu::PackedGemm> g = cpu::PackedGemm::create(pw, cpu::PrepareOptions(), &perr);
    if (!g) return error(ORT_FAIL, perr);
    *out = std::move(g);
    return nullptr;
  }

  OrtStatus* input(OrtKernelContext* ctx, size_t count, size_t index, TensorView* view) const {
    *view = TensorView();
    if (index >= count) return nullptr;
    const OrtValue* v = nullptr;
    VNMC_ORT_RETURN_IF_ERROR(api_.KernelContext_GetInput(ctx, index, &v));
    return view_of(api_, v, view);
  }

  OrtStatus* Compute(OrtKernelContext* ctx) {
    size_t count = 0;
    VNMC_ORT_RETURN_IF_ERROR(api_.KernelContext_GetInputCount(ctx, &count));
    TensorView a;
    VNMC_ORT_RETURN_IF_ERROR(input(ctx, count, kInA, &a));
    int64_t tokens = 0;
    const std::string aerr = validate_activations(dims_, act_, a, &tokens);
    if (!aerr.empty()) return error(ORT_INVALID_ARGUMENT, aerr);

    std::shared_ptr<const cpu::PackedGemm> gemm = constant_;
    if (!gemm) VNMC_ORT_RETURN_IF_ERROR(runtime_weights(ctx, count, &gemm));

    std::vector<float> bias_tmp;
    const float* bias = nullptr;
    if (bias_constant_) {
      bias = bias_f32_.data();
    } else if (has_bias_) {
      TensorView bv;
      VNMC_ORT_RETURN_IF_ERROR(input(ctx, count, kInBias, &bv));
      if (bv.present) {
        const std::string berr = validate_bias(dims_, act_, bv);
        if (!berr.empty()) return error(ORT_INVALID_ARGUMENT, berr);
        bias_tmp = cpu::to_f32(bv.data, act_, dims_.N_out);
        bias = bias_tmp.data();
      }
    }

    void* ydata = nullptr;
    VNMC_ORT_RETURN_IF_ERROR(output_like(api_, ctx, a, dims_.N_out, tokens > 0, &ydata));
    if (tokens == 0) return nullptr;

    OrtParallel par(api_, ctx);
    const std::string rerr = gemm->run(a.data, tokens, bias, ydata, par);
    if (!rerr.empty()) return error(ORT_FAIL, rerr);
    return nullptr;
  }

  // Non-constant weights: validate + re-lay out, cached by pointers, shapes and content.
  OrtStatus* runtime_weights(OrtKernelContext* ctx, size_t count, std::shared_ptr<const cpu::PackedGemm>* out) {
    TensorView v[4];
    const size_t idx[4] = {kInValues, kInColumns, kInMeta, kInRowIndex};
    WeightKey key;
    uint64_t h = 0;
    for (int i = 0; i < 4; ++i) {
      if (i == 3 && !has_row_index_) continue;
      VNMC_ORT_RETURN_IF_ERROR(input(ctx, count, idx[i], &v[i]));
      key.ptr[i] = v[i].data;
      key.shapes[i] = v[i].shape;
      key.dtype[i] = v[i].dtype;
      const int64_t n = v[i].element_count();
      if (v[i].present && v[i].data && n > 0 && dtype_size(v[i].dtype) > 0)
        h = hash_bytes(v[i].data, static_cast<size_t>(n) * dtype_size(v[i].dtype), h + i);
    }
    key.hash = h;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (cached_ && cached_key_ == key) {
        *out = cached_;
        return nullptr;
      }
    }
    std::shared_ptr<const cpu::PackedGemm> g;
    VNMC_ORT_RETURN_IF_ERROR(prepare(v[0], v[1], v[2], v[3], &g));
    {
      std::lock_guard<std::mutex> lk(mu_);
      cached_ = g;
      cached_key_ = std::move(key);
    }
    *out = std::move(g);
    return nullptr;
  }

  const OrtApi& api_;
  const DType act_;
  std::string node_;
  Attributes attrs_;
  Dims dims_;
  bool has_bias_ = false, has_row_index_ = false;
  std::shared_ptr<const cpu::PackedGemm> constant_;
  std::vector<float> bias_f32_;
  bool bias_constant_ = false;
  std::mutex mu_;
  std::shared_ptr<const cpu::PackedGemm> cached_;
  WeightKey cached_key_;
};

// One OrtCustomOp per (activation type TA, value type TW); onnxruntime merges them into one schema
// and picks the kernel whose types match the node.
template <ONNXTensorElementDataType TA, ONNXTensorElementDataType TW>
struct CpuOp : VnmCustomOp<CpuOp<TA, TW>, CpuKernel, TA, TW> {
  static constexpr const char* kProvider = "CPUExecutionProvider";
  static constexpr const char* kLabel = "VNMSparseGemm";
};

}  // namespace

void AppendCpuOps(std::vector<const OrtCustomOp*>& ops) {
  static const CpuOp<kF32, kF32> f32_f32;
  static const CpuOp<kF32, kF16> f32_f16;
  static const CpuOp<kF32, kBF16> f32_bf16;
  static const CpuOp<kF16, kF16> f16_f16;
  static const CpuOp<kBF16, kBF16> bf16_bf16;
  ops.push_back(&f32_f32);
  ops.push_back(&f32_f16);
  ops.push_back(&f32_bf16);
  ops.push_back(&f16_f16);
  ops.push_back(&bf16_bf16);
}

}  // namespace ort
}  // namespace vnmc
