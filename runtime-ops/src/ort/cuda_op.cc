// The CUDAExecutionProvider kernel of com.vnmc::VNMSparseGemm (onnxruntime-gpu users load it with
// the same RegisterCustomOps as the CPU kernel; see src/ort/register.cc).
//
// The packed weights and the bias (inputs 1-5) are requested in host memory (OrtMemTypeCPUInput), so
// the CUDA provider leaves them where the kernel validates and re-lays them out once; A and Y live on
// the GPU. The stream is the provider's compute stream (KernelContext_GetGPUComputeStream).
#include <memory>
#include <new>

#include "ort/cuda_kernel.h"

namespace vnmc {
namespace ort {
namespace {

struct CudaOpKernel {
  CudaGemmKernel k;
  CudaOpKernel(const OrtApi& api, DType act) : k(api, act) {}
  OrtStatus* ComputeV2(OrtKernelContext* ctx) noexcept {
    void* stream = nullptr;
    const OrtApi& api = Ort::GetApi();
    if (OrtStatus* st = api.KernelContext_GetGPUComputeStream(ctx, &stream)) return st;
    return k.Compute(ctx, stream);
  }
};

template <ONNXTensorElementDataType TA, ONNXTensorElementDataType TW>
struct CudaOp : Ort::CustomOpBase<CudaOp<TA, TW>, CudaOpKernel, /*WithStatus=*/true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept {
    try {
      std::unique_ptr<CudaOpKernel> k(new CudaOpKernel(api, from_ort(TA)));
      if (OrtStatus* st = k->k.Init(info)) return st;
      *kernel = k.release();
      return nullptr;
    } catch (const std::bad_alloc&) {
      return api.CreateStatus(ORT_FAIL, "VNMSparseGemm (CUDA): out of memory while creating the kernel");
    } catch (const std::exception& e) {
      return api.CreateStatus(ORT_FAIL, e.what());
    } catch (...) {
      return api.CreateStatus(ORT_FAIL, "VNMSparseGemm (CUDA): unknown error while creating the kernel");
    }
  }
  const char* GetName() const { return kOpType; }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  size_t GetInputTypeCount() const { return 6; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    switch (i) {
      case kInA: return TA;
      case kInValues: return TW;
      case kInColumns: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
      case kInMeta: return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
      case kInBias: return TA;
      default: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;  // row_index
    }
  }
  OrtMemType GetInputMemoryType(size_t i) const { return i == kInA ? OrtMemTypeDefault : OrtMemTypeCPUInput; }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i >= kInBias ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL
                        : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return TA; }
};

constexpr auto kF32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr auto kF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
constexpr auto kBF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;

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
