// What every execution provider's OrtCustomOp for com.vnmc::VNMSparseGemm shares: the schema (inputs,
// types, optional bias and row_index) and kernel creation that turns exceptions into onnxruntime
// statuses. Each provider's op derives from it (CRTP) and adds only what differs: its provider name,
// where it wants its inputs (GetInputMemoryType) and its kernel type.
#pragma once

#include <memory>
#include <new>

#include "ort/ort_common.h"

namespace vnmc {
namespace ort {

// Op supplies `static constexpr const char* kProvider` (the execution provider) and
// `static constexpr const char* kLabel` (how errors name the op); Kernel is constructed from
// (api, activation dtype) and validated by `OrtStatus* Init(const OrtKernelInfo*)`.
template <typename Op, typename Kernel, ONNXTensorElementDataType TA, ONNXTensorElementDataType TW>
struct VnmCustomOp : Ort::CustomOpBase<Op, Kernel, /*WithStatus=*/true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept {
    try {
      std::unique_ptr<Kernel> k(new Kernel(api, from_ort(TA)));
      if (OrtStatus* st = k->Init(info)) return st;
      *kernel = k.release();
      return nullptr;
    } catch (const std::bad_alloc&) {
      return api.CreateStatus(ORT_FAIL, (std::string(Op::kLabel) + ": out of memory while creating the kernel").c_str());
    } catch (const std::exception& e) {
      return api.CreateStatus(ORT_FAIL, e.what());
    } catch (...) {
      return api.CreateStatus(ORT_FAIL, (std::string(Op::kLabel) + ": unknown error while creating the kernel").c_str());
    }
  }
  const char* GetName() const { return kOpType; }
  const char* GetExecutionProviderType() const { return Op::kProvider; }
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
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i >= kInBias ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL
                        : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return TA; }
};

inline constexpr auto kF32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
inline constexpr auto kF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
inline constexpr auto kBF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;

}  // namespace ort
}  // namespace vnmc
