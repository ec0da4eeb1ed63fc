#include "ort/cuda_kernel.h"

#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

namespace vnmc {
namespace ort {

DType node_activation_type(const OrtApi& api, const OrtKernelInfo* info) {
  OrtTypeInfo* ti = nullptr;
  if (OrtStatus* st = api.KernelInfo_GetInputTypeInfo(info, kInA, &ti)) {
    api.ReleaseStatus(st);
    return DType::kUndefined;
  }
  DType out = DType::kUndefined;
  const OrtTensorTypeAndShapeInfo* tsi = nullptr;
  ONNXTensorElementDataType et = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  OrtStatus* st = api.CastTypeInfoToTensorInfo(ti, &tsi);
  if (!st && tsi) st = api.GetTensorElementType(tsi, &et);
  if (st) {
    api.ReleaseStatus(st);
  } else {
    out = from_ort(et);
  }
  api.ReleaseTypeInfo(ti);
  return out;
}

OrtStatus* CudaGemmKernel::error(OrtErrorCode code, const std::string& msg) const {
  return make_status(api_, code, std::string(kOpType) + " node '" + node_ + "' (CUDA): " + msg);
}

// A constant initializer as a host view. Both integrations ask for these inputs in host memory;
// should a runtime still hand over device memory, the tensor is copied to the host first.
OrtStatus* CudaGemmKernel::constant_host_input(const OrtKernelInfo* info, size_t index, bool required,
                                               TensorView* view, std::vector<unsigned char>* host_copy) {
  *view = TensorView();
  if (input_name(api_, info, index).empty()) {
    if (required) return error(ORT_INVALID_GRAPH, "required input " + std::to_string(index) + " is missing");
    return nullptr;
  }
  int is_constant = 0;
  const OrtValue* v = nullptr;
  VNMC_ORT_RETURN_IF_ERROR(api_.KernelInfoGetConstantInput_tensor(info, index, &is_constant, &v));
  if (!is_constant || v == nullptr)
    return error(ORT_INVALID_GRAPH, "input " + std::to_string(index) + " ('" + input_name(api_, info, index) +
                                        "') must be a constant initializer for the GPU kernel");
  VNMC_ORT_RETURN_IF_ERROR(view_of(api_, v, view));
  const OrtMemoryInfo* mi = nullptr;
  VNMC_ORT_RETURN_IF_ERROR(api_.GetTensorMemoryInfo(v, &mi));
  OrtMemoryInfoDeviceType dt = OrtMemoryInfoDeviceType_CPU;
  api_.MemoryInfoGetDeviceType(mi, &dt);
  if (dt != OrtMemoryInfoDeviceType_CPU) {
    const int64_t n = view->element_count();
    const size_t es = dtype_size(view->dtype);
    if (n < 0 || es == 0) return error(ORT_INVALID_GRAPH, "input " + std::to_string(index) + " has a bad shape or type");
    host_copy->resize(static_cast<size_t>(n) * es);
    const std::string e = cuda::copy_to_host(host_copy->data(), view->data, host_copy->size());
    if (!e.empty()) return error(ORT_FAIL, e);
    view->data = host_copy->data();
  }
  return nullptr;
}

OrtStatus* CudaGemmKernel::Init(const OrtKernelInfo* info) {
  node_ = node_name(api_, info);
  const char* sc = std::getenv("VNMC_CUDA_SYNC_CHECK");
  sync_check_ = sc && sc[0] == '1';
  VNMC_ORT_RETURN_IF_ERROR(read_attributes(api_, info, &attrs_));
  const std::string aerr = validate_attributes(attrs_, &dims_);
  if (!aerr.empty()) return error(ORT_INVALID_GRAPH, aerr);
  TensorView values, columns, meta, row_index, bias;
  std::vector<unsigned char> c1, c2, c3, c4, c5;
  VNMC_ORT_RETURN_IF_ERROR(constant_host_input(info, kInValues, true, &values, &c1));
  VNMC_ORT_RETURN_IF_ERROR(constant_host_input(info, kInColumns, true, &columns, &c2));
  VNMC_ORT_RETURN_IF_ERROR(constant_host_input(info, kInMeta, true, &meta, &c3));
  VNMC_ORT_RETURN_IF_ERROR(constant_host_input(info, kInRowIndex, false, &row_index, &c4));
  VNMC_ORT_RETURN_IF_ERROR(constant_host_input(info, kInBias, false, &bias, &c5));
  // Validation (validate_packed_weights, validate_bias) happens inside create(), before any upload.
  std::string err;
  std::unique_ptr<cuda::VnmGemmCuda> g =
      cuda::VnmGemmCuda::create(attrs_, act_, values, columns, meta, row_index, bias, cuda::Options(), &err);
  if (!g) return error(ORT_INVALID_GRAPH, err);
  runner_ = cuda::OrderedRunner::create(std::move(g), &err);
  if (!runner_) return error(ORT_FAIL, err);
  return nullptr;
}

OrtStatus* CudaGemmKernel::Compute(OrtKernelContext* ctx, void* stream) noexcept {
  try {
    const OrtValue* av = nullptr;
    VNMC_ORT_RETURN_IF_ERROR(api_.KernelContext_GetInput(ctx, kInA, &av));
    TensorView a;
    VNMC_ORT_RETURN_IF_ERROR(view_of(api_, av, &a));
    int64_t tokens = 0;
    const std::string aerr = validate_activations(dims_, act_, a, &tokens);
    if (!aerr.empty()) return error(ORT_INVALID_ARGUMENT, aerr);
    void* ydata = nullptr;
    VNMC_ORT_RETURN_IF_ERROR(output_like(api_, ctx, a, dims_.N_out, tokens > 0, &ydata));
    if (tokens == 0) return nullptr;
    // A and Y should be device memory, but onnxruntime 1.30 was seen handing an EP-plugin kernel the
    // host buffer of a CPU node's output (no copy node inserted); the kernels would fault on it (sticky
    // for the process). Checked on every call (~1 us each); host buffers are staged through the device.
    const bool a_host = !cuda::is_device_pointer(a.data), y_host = !cuda::is_device_pointer(ydata);
    if ((a_host || y_host) && !staged_warned_) {
      staged_warned_ = true;
      std::fprintf(stderr, "VNMSparseGemm node '%s' (CUDA): %s%s%s in host memory, staged through the GPU\n",
                   node_.c_str(), a_host ? "input A" : "", a_host && y_host ? " and " : "", y_host ? "output Y" : "");
    }
    std::string rerr = runner_->run_staged(a.data, a_host, tokens, ydata, y_host, stream);
    if (rerr.empty() && sync_check_) rerr = cuda::sync_check(stream);
    if (!rerr.empty()) return error(ORT_FAIL, rerr + " (T=" + std::to_string(tokens) + ")");
    return nullptr;
  } catch (const std::bad_alloc&) {
    return error(ORT_FAIL, "out of memory");
  } catch (const std::exception& e) {
    return error(ORT_FAIL, e.what());
  } catch (...) {
    return error(ORT_FAIL, "unknown error");
  }
}

}  // namespace ort
}  // namespace vnmc
