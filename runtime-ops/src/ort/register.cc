// The library's single entry point: RegisterCustomOps(OrtSessionOptions*, const OrtApiBase*).
// It adds one `com.vnmc` domain holding every provider's VNMSparseGemm kernels (CPU today; a CUDA
// module appends its ops in the same place). An execution-provider plugin (EP ABI) would add its
// factory entry points next to this one, in this library (see cmake/exports.map).
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ort/ort_common.h"

#if defined(_WIN32)
#define VNMC_EXPORT __declspec(dllexport)
#else
#define VNMC_EXPORT __attribute__((visibility("default")))
#endif

namespace {

struct DomainDeleter {
  void operator()(OrtCustomOpDomain* d) const {
    if (d) Ort::GetApi().ReleaseCustomOpDomain(d);
  }
};

// Domains must outlive every session that uses them; they are released when the library unloads.
std::vector<std::unique_ptr<OrtCustomOpDomain, DomainDeleter>>& domains() {
  static std::vector<std::unique_ptr<OrtCustomOpDomain, DomainDeleter>> v;
  return v;
}
std::mutex& domains_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

extern "C" VNMC_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                  const OrtApiBase* api_base) {
  if (api_base == nullptr) return nullptr;  // nothing to report with
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // An older runtime: report with the oldest API, whose CreateStatus every runtime has.
    const OrtApi* api1 = api_base->GetApi(1);
    if (api1 == nullptr) return nullptr;
    const std::string msg = std::string("libvnmc_ort needs onnxruntime with API version >= ") +
                            std::to_string(ORT_API_VERSION) + " (onnxruntime 1.29+); this runtime is " +
                            (api_base->GetVersionString ? api_base->GetVersionString() : "older");
    return api1->CreateStatus(ORT_FAIL, msg.c_str());
  }
  Ort::InitApi(api);
  try {
    std::vector<const OrtCustomOp*> ops;
    vnmc::ort::AppendCpuOps(ops);
#if defined(VNMC_WITH_CUDA)
    vnmc::ort::AppendCudaOps(ops);
#endif
    OrtCustomOpDomain* raw = nullptr;
    VNMC_ORT_RETURN_IF_ERROR(api->CreateCustomOpDomain(vnmc::kOpDomain, &raw));
    std::unique_ptr<OrtCustomOpDomain, DomainDeleter> domain(raw);
    for (const OrtCustomOp* op : ops) VNMC_ORT_RETURN_IF_ERROR(api->CustomOpDomain_Add(domain.get(), op));
    std::lock_guard<std::mutex> lk(domains_mutex());
    domains().reserve(domains().size() + 1);  // cannot throw after the domain is handed over
    VNMC_ORT_RETURN_IF_ERROR(api->AddCustomOpDomain(options, domain.get()));
    domains().push_back(std::move(domain));
    return nullptr;
  } catch (const std::exception& e) {
    return api->CreateStatus(ORT_FAIL, e.what());
  }
}
