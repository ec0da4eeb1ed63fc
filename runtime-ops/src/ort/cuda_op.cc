// The CUDAExecutionProvider kernel of com.vnmc::VNMSparseGemm (onnxruntime-gpu users load it with
// the same RegisterCustomOps as the CPU kernel; see src/ort/register.cc).
//
// The packed weights and the bias (inputs 1-5) are requested in host memory (OrtMemTypeCPUInput), so
// the CUDA provider leaves them where the kernel validates and re-lays them out once; A and Y live on
// the GPU. The stream is the provider's compute stream (KernelContext_GetGPUComputeStream).
#include <memory>
#include <new>

#include "ort/cuda_kernel.h"
#include "ort/vnm_custom_op.h"

namespace vnmc {
namespace ort {
namespace {

struct CudaOpKernel {
  CudaGemmKernel k;
  CudaOpKernel(const OrtApi& api, DType act) : k(api, act) {}
  OrtStatus* Init(const OrtKernelInfo* info) { return k.Init(info); }
  OrtStatus* ComputeV2(OrtKernelContext* ctx) noexcept {
    void* stream = nullptr;
    const OrtApi& api = Ort::GetApi();
    if (OrtStatus* st = api.KernelContext_GetGPUComputeStream(ctx, &stream)) return st;
    return k.Compute(ctx, stream);
  }
};

template <ONNXTensorElementDataType TA, ONNXTensorElementDataType TW>
struct CudaOp : VnmCustomOp<CudaOp<TA, TW>, CudaOpKernel, TA, TW> {
  static constexpr const char* kProvider = "CUDAExecutionProvider";
  static constexpr const char* kLabel = "VNMSparseGemm (CUDA)";
  // The packed weights and the bias stay in host memory, where the kernel validates and re-lays them out.
  OrtMemType GetInputMemoryType(size_t i) const { return i == kInA ? OrtMemTypeDefault : OrtMemTypeCPUInput; }
};

}  // namespace

// float/float has no GPU kernel: such a node stays on the CPU kernel.
void AppendCudaOps(std::vector<const OrtCustomOp*>& ops) {
  static const CudaOp<kF16, kF16> f16_f16;
  static const CudaOp<kBF16, kBF16> bf16_bf16;
  static const CudaOp<kF32, kF16> f32_f16;
  static const CudaOp<kF32, kBF16> f32_bf16;
  ops.push_back(&f16_f16);
  ops.push_back(&bf16_bf16);
  ops.push_back(&f32_f16);
  ops.push_back(&f32_bf16);
}

}  // namespace ort
}  // namespace vnmc
