// vnmc's execution-provider plugin (onnxruntime EP ABI, onnxruntime >= 1.24): an EP named
// "VnmcCUDA" that runs com.vnmc::VNMSparseGemm on an NVIDIA GPU through a kernel registry, with its
// own device allocator and data transfer. Built as libvnmc_ep.so (runtime-ops/cuda/CMakeLists.txt).
//
//   import onnxruntime as ort
//   ort.register_execution_provider_library("vnmc", "libvnmc_ep.so")
//   dev = [d for d in ort.get_ep_devices() if d.ep_name == "VnmcCUDA"]
//   so = ort.SessionOptions(); so.add_provider_for_devices(dev, {})
//   sess = ort.InferenceSession("model.vnm.onnx", so)
//
// Provider options (the dict of add_provider_for_devices), checked when the session creates the EP:
//   prefill_wgmma  "1" (default) / "0": the Hopper wgmma.sp prefill and the 2:4 copy of each qualifying
//                  weight it keeps on the GPU (half the dense bytes per layer), for every kernel of this
//                  EP. Unset, the kernels read the session config entry vnmc.prefill_wgmma, then the
//                  environment variable VNMC_PREFILL_WGMMA, as the custom-op library does
//                  (src/ort/cuda_kernel.h).
// A bad value or an unknown key fails session creation (a typo must not silently keep the copy).
//
// The kernel is the one the CUDAExecutionProvider custom op uses (src/ort/cuda_kernel.cc, the CUDA
// code in src/cuda/): the same host validation, re-layout and launches. Every other node of the model
// runs on the CPU provider; onnxruntime moves tensors between the two with this plugin's data transfer.
// The factory also hands onnxruntime the `com.vnmc` custom-op domain of the CPU kernels
// (GetCustomOpDomains), which gives the op its schema and a CPU kernel for nodes the EP does not take
// (float/float) — so the plugin is all a session needs; do not also register libvnmc_ort.so in it.
//
// Streams: the EP is not stream-aware. Kernels run on the legacy default stream and the data transfer
// uses synchronous cudaMemcpy on it, which orders every copy after the kernels that produced its source.
#include <cuda_runtime.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "ort/cuda_kernel.h"
#include "ort/ort_common.h"

#if defined(_WIN32)
#define VNMC_EP_EXPORT __declspec(dllexport)
#else
#define VNMC_EP_EXPORT __attribute__((visibility("default")))
#endif

namespace vnmc {
namespace ort {
void AppendCpuOps(std::vector<const OrtCustomOp*>& ops);  // src/ort/cpu_op.cc
}  // namespace ort
}  // namespace vnmc

namespace {

using vnmc::DType;

constexpr const char* kEpName = "VnmcCUDA";
constexpr const char* kEpVendor = "vnmc";
constexpr const char* kEpVersion = "0.1.0";
constexpr uint32_t kNvidiaVendorId = 0x10DE;

struct EpFactory;

// Every ABI struct below is value-initialised first (Base{}): onnxruntime reads each optional function
// pointer of the struct's version, so none may be left indeterminate.

// ---- device allocator: cudaMalloc / cudaFree on device 0 ---------------------------------------------
struct CudaAllocator : OrtAllocator {
  explicit CudaAllocator(const OrtMemoryInfo* info) : OrtAllocator{}, info_(info) {
    version = ORT_API_VERSION;
    Alloc = AllocImpl;
    Free = FreeImpl;
    Info = InfoImpl;
    Reserve = AllocImpl;
    GetStats = nullptr;
    AllocOnStream = nullptr;
  }
  static void* ORT_API_CALL AllocImpl(OrtAllocator*, size_t size) {
    void* p = nullptr;
    if (size == 0) size = 1;
    if (cudaMalloc(&p, size) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return p;
  }
  static void ORT_API_CALL FreeImpl(OrtAllocator*, void* p) {
    if (p) cudaFree(p);
  }
  static const OrtMemoryInfo* ORT_API_CALL InfoImpl(const OrtAllocator* self) {
    return static_cast<const CudaAllocator*>(self)->info_;
  }
  const OrtMemoryInfo* info_;
};

// ---- data transfer: CPU <-> our GPU, GPU <-> GPU --------------------------------------------------------
struct DataTransfer : OrtDataTransferImpl {
  DataTransfer(const OrtApi& api, const OrtEpApi& ep_api) : OrtDataTransferImpl{}, api_(api), ep_api_(ep_api) {
    ort_version_supported = ORT_API_VERSION;
    Release = ReleaseImpl;
    CanCopy = CanCopyImpl;
    CopyTensors = CopyTensorsImpl;
  }
  bool is_ours(const OrtMemoryDevice* d) const {
    return ep_api_.MemoryDevice_GetDeviceType(d) == OrtMemoryInfoDeviceType_GPU &&
           ep_api_.MemoryDevice_GetVendorId(d) == kNvidiaVendorId && ep_api_.MemoryDevice_GetDeviceId(d) == 0;
  }
  bool is_host(const OrtMemoryDevice* d) const {
    return ep_api_.MemoryDevice_GetDeviceType(d) == OrtMemoryInfoDeviceType_CPU ||
           ep_api_.MemoryDevice_GetMemoryType(d) == OrtDeviceMemoryType_HOST_ACCESSIBLE;
  }
  static void ORT_API_CALL ReleaseImpl(OrtDataTransferImpl*) noexcept {}  // owned by the factory
  static bool ORT_API_CALL CanCopyImpl(const OrtDataTransferImpl* self, const OrtMemoryDevice* src,
                                       const OrtMemoryDevice* dst) noexcept {
    const auto& t = *static_cast<const DataTransfer*>(self);
    const bool s = t.is_ours(src), d = t.is_ours(dst);
    return (s && d) || (s && t.is_host(dst)) || (d && t.is_host(src));
  }
  static OrtStatus* ORT_API_CALL CopyTensorsImpl(OrtDataTransferImpl* self, const OrtValue** src, OrtValue** dst,
                                                 OrtSyncStream** /*streams*/, size_t n) noexcept {
    const auto& t = *static_cast<const DataTransfer*>(self);
    for (size_t i = 0; i < n; ++i) {
      const void* s = nullptr;
      void* d = nullptr;
      size_t bytes = 0, dbytes = 0;
      VNMC_ORT_RETURN_IF_ERROR(t.api_.GetTensorData(src[i], &s));
      VNMC_ORT_RETURN_IF_ERROR(t.api_.GetTensorMutableData(dst[i], &d));
      VNMC_ORT_RETURN_IF_ERROR(t.api_.GetTensorSizeInBytes(src[i], &bytes));
      VNMC_ORT_RETURN_IF_ERROR(t.api_.GetTensorSizeInBytes(dst[i], &dbytes));
      if (dbytes < bytes) return t.api_.CreateStatus(ORT_INVALID_ARGUMENT, "VnmcCUDA copy: destination too small");
      if (bytes == 0 || s == d) continue;
      // Unified addressing: cudaMemcpyDefault infers the direction. Synchronous on the legacy default
      // stream, so a copy from the GPU waits for the kernels that wrote its source.
      const cudaError_t e = cudaMemcpy(d, s, bytes, cudaMemcpyDefault);
      if (e != cudaSuccess) {
        const std::string msg = std::string("VnmcCUDA copy: ") + cudaGetErrorString(e);
        return t.api_.CreateStatus(ORT_EP_FAIL, msg.c_str());
      }
    }
    return nullptr;
  }
  const OrtApi& api_;
  const OrtEpApi& ep_api_;
};

// ---- the kernel: OrtKernelImpl around the shared CudaGemmKernel -----------------------------------------
struct VnmKernel : OrtKernelImpl {
  vnmc::ort::CudaGemmKernel k;
  VnmKernel(const OrtApi& api, DType act) : OrtKernelImpl{}, k(api, act) {
    ort_version_supported = ORT_API_VERSION;
    flags = 0;
    Compute = ComputeImpl;
    Release = ReleaseImpl;
    PrePackWeight = nullptr;
    SetSharedPrePackedWeight = nullptr;
  }
  static OrtStatus* ORT_API_CALL ComputeImpl(OrtKernelImpl* self, OrtKernelContext* ctx) noexcept {
    return static_cast<VnmKernel*>(self)->k.Compute(ctx, /*stream=*/nullptr);
  }
  static void ORT_API_CALL ReleaseImpl(OrtKernelImpl* self) noexcept { delete static_cast<VnmKernel*>(self); }
};

// Type pairs the GPU kernel takes (activations, values).
bool gpu_types(ONNXTensorElementDataType a, ONNXTensorElementDataType w) {
  constexpr auto f32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, f16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
                 bf16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
  return (a == f16 && w == f16) || (a == bf16 && w == bf16) || (a == f32 && (w == f16 || w == bf16));
}

// ---- the EP ------------------------------------------------------------------------------------------
struct Ep : OrtEp {
  Ep(EpFactory& f, const OrtApi& api, const OrtEpApi& ep_api) : OrtEp{}, factory(f), api_(api), ep_api_(ep_api) {
    ort_version_supported = ORT_API_VERSION;
    GetName = GetNameImpl;
    GetCapability = GetCapabilityImpl;
    GetKernelRegistry = GetKernelRegistryImpl;
    Compile = nullptr;
    ReleaseNodeComputeInfos = nullptr;
    GetDefaultMemoryDevice = [](const OrtEp* self, const OrtMemoryDevice** out) noexcept -> OrtStatus* {
      const Ep& ep = *static_cast<const Ep*>(self);
      *out = ep.ep_api_.MemoryInfo_GetMemoryDevice(ep.factory_mem_info());
      return nullptr;
    };
  }
  const OrtMemoryInfo* factory_mem_info() const;
  static const char* ORT_API_CALL GetNameImpl(const OrtEp*) noexcept { return kEpName; }
  static OrtStatus* ORT_API_CALL GetCapabilityImpl(OrtEp* self, const OrtGraph* graph,
                                                   OrtEpGraphSupportInfo* info) noexcept;
  static OrtStatus* ORT_API_CALL GetKernelRegistryImpl(OrtEp* self, const OrtKernelRegistry** out) noexcept;
  EpFactory& factory;
  const OrtApi& api_;
  const OrtEpApi& ep_api_;
  std::optional<bool> prefill_wgmma;  // provider option; unset: the kernels' own defaults
};

// Provider options reach CreateEp as session config entries "ep.vnmccuda.<key>" (onnxruntime prefixes
// them with the lower-cased EP name; compared case-insensitively here in case that changes).
OrtStatus* read_provider_options(const OrtApi& api, const OrtSessionOptions* so, std::optional<bool>* prefill_wgmma) {
  OrtKeyValuePairs* kv = nullptr;
  VNMC_ORT_RETURN_IF_ERROR(api.GetSessionOptionsConfigEntries(so, &kv));
  const char* const* keys = nullptr;
  const char* const* values = nullptr;
  size_t n = 0;
  api.GetKeyValuePairs(kv, &keys, &values, &n);
  const std::string prefix = std::string("ep.") + kEpName + ".";
  std::string err;
  for (size_t i = 0; i < n && err.empty(); ++i) {
    const std::string key = keys[i] ? keys[i] : "";
    if (key.size() <= prefix.size() ||
        !std::equal(prefix.begin(), prefix.end(), key.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        }))
      continue;
    const std::string name = key.substr(prefix.size());
    if (name == "prefill_wgmma") {
      bool on = true;
      err = vnmc::ort::parse_prefill_wgmma(values[i] ? values[i] : "", "VnmcCUDA: provider option 'prefill_wgmma'",
                                           &on);
      if (err.empty()) *prefill_wgmma = on;
    } else {
      err = "VnmcCUDA: unknown provider option '" + name + "' (known: prefill_wgmma)";
    }
  }
  api.ReleaseKeyValuePairs(kv);
  return err.empty() ? nullptr : api.CreateStatus(ORT_INVALID_ARGUMENT, err.c_str());
}

// The kernel takes its EP's provider options: the registry is the factory's, shared by every session's
// EP, so the EP comes from the kernel info.
OrtStatus* ORT_API_CALL CreateVnmKernel(void* /*state*/, const OrtKernelInfo* info, OrtKernelImpl** out) noexcept {
  *out = nullptr;
  const OrtApi& api = Ort::GetApi();
  try {
    const OrtEp* ep = nullptr;
    VNMC_ORT_RETURN_IF_ERROR(Ort::GetEpApi().KernelInfo_GetEp(info, &ep));
    const DType act = vnmc::ort::node_activation_type(api, info);
    std::unique_ptr<VnmKernel> k(new VnmKernel(api, act));
    if (OrtStatus* st = k->k.Init(info, static_cast<const Ep*>(ep)->prefill_wgmma)) return st;
    *out = k.release();
    return nullptr;
  } catch (const std::bad_alloc&) {
    return api.CreateStatus(ORT_FAIL, "VNMSparseGemm (VnmcCUDA): out of memory while creating the kernel");
  } catch (const std::exception& e) {
    return api.CreateStatus(ORT_FAIL, e.what());
  }
}

// ---- the factory ----------------------------------------------------------------------------------------
struct EpFactory : OrtEpFactory {
  EpFactory(const OrtApi& api, const OrtEpApi& ep_api)
      : OrtEpFactory{}, api_(api), ep_api_(ep_api), transfer_(api, ep_api) {
    ort_version_supported = ORT_API_VERSION;
    GetName = [](const OrtEpFactory*) noexcept { return kEpName; };
    GetVendor = [](const OrtEpFactory*) noexcept { return kEpVendor; };
    GetVendorId = [](const OrtEpFactory*) noexcept { return kNvidiaVendorId; };
    GetVersion = [](const OrtEpFactory*) noexcept { return kEpVersion; };
    GetSupportedDevices = GetSupportedDevicesImpl;
    CreateEp = CreateEpImpl;
    ReleaseEp = [](OrtEpFactory*, OrtEp* ep) noexcept { delete static_cast<Ep*>(ep); };
    CreateAllocator = CreateAllocatorImpl;
    ReleaseAllocator = [](OrtEpFactory*, OrtAllocator* a) noexcept { delete static_cast<CudaAllocator*>(a); };
    CreateDataTransfer = [](OrtEpFactory* self, OrtDataTransferImpl** out) noexcept -> OrtStatus* {
      *out = &static_cast<EpFactory*>(self)->transfer_;
      return nullptr;
    };
    IsStreamAware = [](const OrtEpFactory*) noexcept { return false; };
    CreateSyncStreamForDevice = nullptr;
    GetNumCustomOpDomains = [](OrtEpFactory*, size_t* n) noexcept -> OrtStatus* {
      *n = 1;
      return nullptr;
    };
    GetCustomOpDomains = GetCustomOpDomainsImpl;
  }
  ~EpFactory() {
    if (registry_) ep_api_.ReleaseKernelRegistry(registry_);
    if (mem_info_) api_.ReleaseMemoryInfo(mem_info_);
    if (own_hw_) ep_api_.ReleaseHardwareDevice(own_hw_);
    if (domain_) api_.ReleaseCustomOpDomain(domain_);
  }

  OrtStatus* init() {
    VNMC_ORT_RETURN_IF_ERROR(api_.CreateMemoryInfo_V2("VnmcCUDA", OrtMemoryInfoDeviceType_GPU, kNvidiaVendorId,
                                                      /*device_id=*/0, OrtDeviceMemoryType_DEFAULT, /*alignment=*/0,
                                                      OrtDeviceAllocator, &mem_info_));
    return nullptr;
  }

  static OrtStatus* ORT_API_CALL GetSupportedDevicesImpl(OrtEpFactory* self, const OrtHardwareDevice* const* devices,
                                                         size_t num_devices, OrtEpDevice** ep_devices,
                                                         size_t max_ep_devices, size_t* num_ep_devices) noexcept {
    auto& f = *static_cast<EpFactory*>(self);
    *num_ep_devices = 0;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {  // no GPU: no device to offer
      cudaGetLastError();
      return nullptr;
    }
    if (max_ep_devices == 0) return nullptr;
    const OrtHardwareDevice* hw = nullptr;
    for (size_t i = 0; i < num_devices && !hw; ++i) {
      if (f.api_.HardwareDevice_Type(devices[i]) == OrtHardwareDeviceType_GPU &&
          f.api_.HardwareDevice_VendorId(devices[i]) == kNvidiaVendorId)
        hw = devices[i];  // the first NVIDIA GPU = CUDA device 0
    }
    if (!hw) {
      // onnxruntime's device discovery did not list the GPU (containers without /sys/class/drm): describe
      // CUDA device 0 ourselves. The factory keeps it alive as long as the EP devices that use it.
      if (!f.own_hw_) {
        cudaDeviceProp prop;
        const char* name = cudaGetDeviceProperties(&prop, 0) == cudaSuccess ? prop.name : "NVIDIA GPU";
        OrtKeyValuePairs* md = nullptr;
        f.api_.CreateKeyValuePairs(&md);
        f.api_.AddKeyValuePair(md, "Description", name);
        f.api_.AddKeyValuePair(md, "DiscoveredBy", kEpName);
        OrtStatus* st = f.ep_api_.CreateHardwareDevice(OrtHardwareDeviceType_GPU, kNvidiaVendorId, 0, "NVIDIA", md,
                                                       &f.own_hw_);
        f.api_.ReleaseKeyValuePairs(md);
        if (st) return st;
      }
      hw = f.own_hw_;
    }
    OrtEpDevice* epd = nullptr;
    VNMC_ORT_RETURN_IF_ERROR(f.ep_api_.CreateEpDevice(&f, hw, nullptr, nullptr, &epd));
    if (OrtStatus* st = f.ep_api_.EpDevice_AddAllocatorInfo(epd, f.mem_info_)) {
      f.ep_api_.ReleaseEpDevice(epd);
      return st;
    }
    ep_devices[0] = epd;
    *num_ep_devices = 1;
    return nullptr;
  }

  static OrtStatus* ORT_API_CALL CreateEpImpl(OrtEpFactory* self, const OrtHardwareDevice* const*,
                                              const OrtKeyValuePairs* const*, size_t num_devices,
                                              const OrtSessionOptions* session_options, const OrtLogger*,
                                              OrtEp** out) noexcept {
    auto& f = *static_cast<EpFactory*>(self);
    *out = nullptr;
    if (num_devices != 1) return f.api_.CreateStatus(ORT_INVALID_ARGUMENT, "VnmcCUDA: select exactly one device");
    try {
      std::optional<bool> prefill_wgmma;
      VNMC_ORT_RETURN_IF_ERROR(read_provider_options(f.api_, session_options, &prefill_wgmma));
      Ep* ep = new Ep(f, f.api_, f.ep_api_);
      ep->prefill_wgmma = prefill_wgmma;
      *out = ep;
    } catch (const std::bad_alloc&) {
      return f.api_.CreateStatus(ORT_FAIL, "VnmcCUDA: out of memory");
    }
    return nullptr;
  }

  static OrtStatus* ORT_API_CALL CreateAllocatorImpl(OrtEpFactory* self, const OrtMemoryInfo* info,
                                                     const OrtKeyValuePairs*, OrtAllocator** out) noexcept {
    auto& f = *static_cast<EpFactory*>(self);
    *out = nullptr;
    OrtMemoryInfoDeviceType dt = OrtMemoryInfoDeviceType_CPU;
    f.api_.MemoryInfoGetDeviceType(info, &dt);
    if (dt != OrtMemoryInfoDeviceType_GPU)
      return f.api_.CreateStatus(ORT_INVALID_ARGUMENT, "VnmcCUDA: allocator asked for memory that is not ours");
    try {
      *out = new CudaAllocator(f.mem_info_);
    } catch (const std::bad_alloc&) {
      return f.api_.CreateStatus(ORT_FAIL, "VnmcCUDA: out of memory");
    }
    return nullptr;
  }

  static OrtStatus* ORT_API_CALL GetCustomOpDomainsImpl(OrtEpFactory* self, OrtCustomOpDomain** domains,
                                                        size_t num_domains) noexcept {
    auto& f = *static_cast<EpFactory*>(self);
    if (num_domains < 1) return nullptr;
    std::lock_guard<std::mutex> lk(f.mu_);
    if (!f.domain_) {
      std::vector<const OrtCustomOp*> ops;
      vnmc::ort::AppendCpuOps(ops);
      OrtCustomOpDomain* d = nullptr;
      VNMC_ORT_RETURN_IF_ERROR(f.api_.CreateCustomOpDomain(vnmc::kOpDomain, &d));
      for (const OrtCustomOp* op : ops) {
        if (OrtStatus* st = f.api_.CustomOpDomain_Add(d, op)) {
          f.api_.ReleaseCustomOpDomain(d);
          return st;
        }
      }
      f.domain_ = d;
    }
    domains[0] = f.domain_;
    return nullptr;
  }

  // The kernel registry: VNMSparseGemm (com.vnmc, since 1) on this EP; the packed weights and the bias
  // in host memory (read once at kernel creation), A and Y on the GPU.
  OrtStatus* registry(const OrtKernelRegistry** out) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!registry_) {
      OrtKernelRegistry* reg = nullptr;
      VNMC_ORT_RETURN_IF_ERROR(ep_api_.CreateKernelRegistry(&reg));
      OrtKernelDefBuilder* b = nullptr;
      OrtKernelDef* def = nullptr;
      OrtStatus* st = ep_api_.CreateKernelDefBuilder(&b);
      if (!st) st = ep_api_.KernelDefBuilder_SetOperatorType(b, vnmc::kOpType);
      if (!st) st = ep_api_.KernelDefBuilder_SetDomain(b, vnmc::kOpDomain);
      if (!st) st = ep_api_.KernelDefBuilder_SetSinceVersion(b, 1, INT_MAX);
      if (!st) st = ep_api_.KernelDefBuilder_SetExecutionProvider(b, kEpName);
      for (size_t i : {vnmc::kInValues, vnmc::kInColumns, vnmc::kInMeta, vnmc::kInBias, vnmc::kInRowIndex})
        if (!st) st = ep_api_.KernelDefBuilder_SetInputMemType(b, i, OrtMemTypeCPUInput);
      if (!st) st = ep_api_.KernelDefBuilder_Build(b, &def);
      if (!st) st = ep_api_.KernelRegistry_AddKernel(reg, def, CreateVnmKernel, this);
      if (def) ep_api_.ReleaseKernelDef(def);
      if (b) ep_api_.ReleaseKernelDefBuilder(b);
      if (st) {
        ep_api_.ReleaseKernelRegistry(reg);
        return st;
      }
      registry_ = reg;
    }
    *out = registry_;
    return nullptr;
  }

  const OrtApi& api_;
  const OrtEpApi& ep_api_;
  DataTransfer transfer_;
  OrtMemoryInfo* mem_info_ = nullptr;
  OrtHardwareDevice* own_hw_ = nullptr;
  OrtKernelRegistry* registry_ = nullptr;
  OrtCustomOpDomain* domain_ = nullptr;
  std::mutex mu_;
};

const OrtMemoryInfo* Ep::factory_mem_info() const { return factory.mem_info_; }

OrtStatus* ORT_API_CALL Ep::GetKernelRegistryImpl(OrtEp* self, const OrtKernelRegistry** out) noexcept {
  *out = nullptr;
  return static_cast<Ep*>(self)->factory.registry(out);
}

// Takes every VNMSparseGemm node whose types the GPU kernel supports and that has a kernel here.
OrtStatus* ORT_API_CALL Ep::GetCapabilityImpl(OrtEp* self, const OrtGraph* graph, OrtEpGraphSupportInfo* info) noexcept {
  auto& ep = *static_cast<Ep*>(self);
  try {
    Ort::ConstGraph g{graph};
    for (const Ort::ConstNode& node : g.GetNodes()) {
      if (node.GetOperatorType() != vnmc::kOpType || node.GetDomain() != vnmc::kOpDomain) continue;
      const std::vector<Ort::ConstValueInfo> in = node.GetInputs();
      if (in.size() < 4 || !in[0] || !in[1]) continue;
      const auto ta = in[0].TypeInfo().GetTensorTypeAndShapeInfo().GetElementType();
      const auto tw = in[1].TypeInfo().GetTensorTypeAndShapeInfo().GetElementType();
      if (!gpu_types(ta, tw)) continue;
      const OrtKernelDef* def = nullptr;
      VNMC_ORT_RETURN_IF_ERROR(ep.ep_api_.EpGraphSupportInfo_LookUpKernel(info, node, &def));
      if (def) VNMC_ORT_RETURN_IF_ERROR(ep.ep_api_.EpGraphSupportInfo_AddSingleNode(info, node));
    }
  } catch (const Ort::Exception& e) {
    return ep.api_.CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return ep.api_.CreateStatus(ORT_EP_FAIL, e.what());
  }
  return nullptr;
}

}  // namespace

extern "C" {

VNMC_EP_EXPORT OrtStatus* CreateEpFactories(const char* /*registration_name*/, const OrtApiBase* api_base,
                                            const OrtLogger* /*default_logger*/, OrtEpFactory** factories,
                                            size_t max_factories, size_t* num_factories) {
  *num_factories = 0;
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (!api) {
    const OrtApi* api1 = api_base->GetApi(1);
    const std::string msg = std::string("libvnmc_ep needs onnxruntime with API version >= ") +
                            std::to_string(ORT_API_VERSION);
    return api1 ? api1->CreateStatus(ORT_FAIL, msg.c_str()) : nullptr;
  }
  Ort::InitApi(api);
  if (max_factories < 1) return api->CreateStatus(ORT_INVALID_ARGUMENT, "VnmcCUDA: no room for the factory");
  const OrtEpApi* ep_api = api->GetEpApi();
  std::unique_ptr<EpFactory> f;
  try {
    f.reset(new EpFactory(*api, *ep_api));
  } catch (const std::bad_alloc&) {
    return api->CreateStatus(ORT_FAIL, "VnmcCUDA: out of memory");
  }
  if (OrtStatus* st = f->init()) return st;
  factories[0] = f.release();
  *num_factories = 1;
  return nullptr;
}

VNMC_EP_EXPORT OrtStatus* ReleaseEpFactory(OrtEpFactory* factory) {
  delete static_cast<EpFactory*>(factory);
  return nullptr;
}

}  // extern "C"
