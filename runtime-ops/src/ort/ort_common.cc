#include "ort/ort_common.h"

namespace vnmc {
namespace ort {

DType from_ort(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return DType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return DType::kUInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return DType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return DType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return DType::kBFloat16;
    default: return DType::kUndefined;
  }
}

std::string node_name(const OrtApi& api, const OrtKernelInfo* info) {
  size_t size = 0;
  OrtStatus* st = api.KernelInfo_GetNodeName(info, nullptr, &size);
  if (st) {
    api.ReleaseStatus(st);
    return {};
  }
  std::string s(size, '\0');
  st = api.KernelInfo_GetNodeName(info, &s[0], &size);
  if (st) {
    api.ReleaseStatus(st);
    return {};
  }
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

std::string input_name(const OrtApi& api, const OrtKernelInfo* info, size_t index) {
  size_t count = 0;
  OrtStatus* st = api.KernelInfo_GetInputCount(info, &count);
  if (st) {
    api.ReleaseStatus(st);
    return {};
  }
  if (index >= count) return {};
  size_t size = 0;
  st = api.KernelInfo_GetInputName(info, index, nullptr, &size);
  if (st) {
    api.ReleaseStatus(st);
    return {};
  }
  std::string s(size, '\0');
  st = api.KernelInfo_GetInputName(info, index, &s[0], &size);
  if (st) {
    api.ReleaseStatus(st);
    return {};
  }
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

OrtStatus* read_attributes(const OrtApi& api, const OrtKernelInfo* info, Attributes* out) {
  struct {
    const char* name;
    int64_t* dst;
  } attrs[] = {{"in_features", &out->in_features},
               {"out_features", &out->out_features},
               {"v", &out->v},
               {"m", &out->m},
               {"n", &out->n}};
  for (auto& a : attrs) {
    OrtStatus* st = api.KernelInfoGetAttribute_int64(info, a.name, a.dst);
    if (st) {
      const std::string msg = std::string("required int attribute '") + a.name + "' is missing or not an int (" +
                              api.GetErrorMessage(st) + ")";
      api.ReleaseStatus(st);
      return make_status(api, ORT_INVALID_GRAPH, msg);
    }
  }
  return nullptr;
}

OrtStatus* output_like(const OrtApi& api, OrtKernelContext* ctx, const TensorView& a, int64_t n_out, bool has_tokens, void** data) {
  *data = nullptr;
  std::vector<int64_t> yshape(a.shape.begin(), a.shape.end() - 1);
  yshape.push_back(n_out);
  OrtValue* y = nullptr;
  VNMC_ORT_RETURN_IF_ERROR(api.KernelContext_GetOutput(ctx, 0, yshape.data(), yshape.size(), &y));
  if (!has_tokens) return nullptr;
  return api.GetTensorMutableData(y, data);
}

OrtStatus* view_of(const OrtApi& api, const OrtValue* value, TensorView* out) {
  *out = TensorView();
  if (value == nullptr) return nullptr;
  int is_tensor = 0;
  VNMC_ORT_RETURN_IF_ERROR(api.IsTensor(value, &is_tensor));
  if (!is_tensor) return make_status(api, ORT_INVALID_ARGUMENT, "an input is not a tensor");
  OrtTensorTypeAndShapeInfo* ti = nullptr;
  VNMC_ORT_RETURN_IF_ERROR(api.GetTensorTypeAndShape(value, &ti));
  ONNXTensorElementDataType et = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t rank = 0;
  OrtStatus* st = api.GetTensorElementType(ti, &et);
  if (!st) st = api.GetDimensionsCount(ti, &rank);
  if (!st) {
    out->shape.resize(rank);
    st = api.GetDimensions(ti, out->shape.data(), rank);
  }
  api.ReleaseTensorTypeAndShapeInfo(ti);
  if (st) return st;
  void* data = nullptr;
  VNMC_ORT_RETURN_IF_ERROR(api.GetTensorMutableData(const_cast<OrtValue*>(value), &data));
  out->data = data;
  out->dtype = from_ort(et);
  out->present = true;
  return nullptr;
}

}  // namespace ort
}  // namespace vnmc
