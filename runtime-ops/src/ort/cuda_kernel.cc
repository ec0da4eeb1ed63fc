#include "ort/cuda_kernel.h"

#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

namespace vnmc {
namespace ort {

std::string parse_prefill_wgmma(const std::string& value, const std::string& what, bool* out) {
  if (value == "0" || value == "1") {
    *out = value == "1";
    return {};
  }
  return what + " is '" + value +
         "'; accepted values: \"0\" (wgmma.sp prefill off: no 2:4 copy of the weights on the GPU) or \"1\" "
         "(on, the default)";
}

namespace {

// VNMC_PREFILL_WGMMA, read once per process ("" when unset or empty).
const std::string& env_prefill_wgmma() {
  static const std::string v = [] {
    const char* e = std::getenv(kPrefillWgmmaEnv);
    return std::string(e ? e : "");
  }();
  return v;
}

}  // namespace

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

OrtStatus* CudaGemmKernel::prefill_wgmma_setting(const OrtKernelInfo* info, std::optional<bool> imposed, bool* on,
                                                  std::string* from) {
  *on = true;
  *from = "default";
  if (imposed) {
    *on = *imposed;
    *from = "provider option prefill_wgmma";
    return nullptr;
  }
  OrtKeyValuePairs* cfg = nullptr;
  VNMC_ORT_RETURN_IF_ERROR(api_.KernelInfo_GetConfigEntries(info, &cfg));
  const char* c = cfg ? api_.GetKeyValue(cfg, kPrefillWgmmaConfigKey) : nullptr;
  const bool in_config = c != nullptr;
  std::string value = c ? c : "";  // copied: released with cfg
  if (cfg) api_.ReleaseKeyValuePairs(cfg);
  std::string what;
  if (in_config) {
    what = std::string("session config entry '") + kPrefillWgmmaConfigKey + "'";
  } else if (!env_prefill_wgmma().empty()) {
    value = env_prefill_wgmma();
    what = std::string("environment variable ") + kPrefillWgmmaEnv;
  } else {
    return nullptr;
  }
  const std::string perr = parse_prefill_wgmma(value, what, on);
  if (!perr.empty()) return error(ORT_INVALID_ARGUMENT, perr);
  *from = what;
  return nullptr;
}

// One INFO line per kernel: what the switch resolved to, the device bytes it costs and the prefill path
// (T = 4096 stands for any T > decode_max_tokens: only the prefill path depends on the switch). Logging
// is best effort: a failure here does not fail the session.
void CudaGemmKernel::log_choice(const OrtKernelInfo* info, bool prefill_wgmma, const std::string& from) const {
  const OrtLogger* logger = nullptr;
  OrtLoggingLevel level = ORT_LOGGING_LEVEL_FATAL;
  OrtStatus* st = api_.KernelInfo_GetLogger(info, &logger);
  if (!st) st = api_.Logger_GetLoggingSeverityLevel(logger, &level);
  if (st) {
    api_.ReleaseStatus(st);
    return;
  }
  if (level > ORT_LOGGING_LEVEL_INFO) return;
  const cuda::VnmGemmCuda& g = runner_->gemm();
  const std::string msg = std::string(kOpType) + " node '" + node_ + "' (CUDA): prefill_wgmma=" +
                          (prefill_wgmma ? "1" : "0") + " (" + from + "), device weights " +
                          std::to_string(g.device_weight_bytes()) + " bytes, T=4096: " + g.describe_launch(4096);
  st = api_.Logger_LogMessage(logger, ORT_LOGGING_LEVEL_INFO, msg.c_str(), ORT_FILE, __LINE__, "CudaGemmKernel::Init");
  if (st) api_.ReleaseStatus(st);
}

OrtStatus* CudaGemmKernel::Init(const OrtKernelInfo* info, std::optional<bool> prefill_wgmma) {
  node_ = node_name(api_, info);
  const char* sc = std::getenv("VNMC_CUDA_SYNC_CHECK");
  sync_check_ = sc && sc[0] == '1';
  cuda::Options opt;
  std::string from;
  VNMC_ORT_RETURN_IF_ERROR(prefill_wgmma_setting(info, prefill_wgmma, &opt.prefill_wgmma, &from));
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
      cuda::VnmGemmCuda::create(attrs_, act_, values, columns, meta, row_index, bias, opt, &err);
  if (!g) return error(ORT_INVALID_GRAPH, err);
  runner_ = cuda::OrderedRunner::create(std::move(g), &err);
  if (!runner_) return error(ORT_FAIL, err);
  log_choice(info, opt.prefill_wgmma, from);
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
