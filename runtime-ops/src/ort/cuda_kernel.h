// The GPU kernel of com.vnmc::VNMSparseGemm as onnxruntime sees it, shared by both integrations:
// the custom op registered for CUDAExecutionProvider (src/ort/cuda_op.cc) and the execution-provider
// plugin (ep/vnmc_ep.cc). Both create it from an OrtKernelInfo and run it from an OrtKernelContext;
// they differ only in where the CUDA stream comes from.
//
// Creation (session load): attributes read; inputs 1, 2, 3 (values, columns, meta), 5 (row_index) and
// 4 (bias) must be constant initializers, which both integrations ask for in host memory; they are
// validated with the contract's validate_* functions (a malformed model is a load error), re-laid
// out into the mma.sp fragment order and uploaded once (src/cuda/vnm_cuda.cu).
// Compute: A checked (type, last dim == K), Y allocated by onnxruntime on the device, one launch
// sequence on the given stream. VNMC_CUDA_SYNC_CHECK=1 (read at creation) synchronises after each
// launch and reports a kernel fault as this node's error (debugging).
//
// The wgmma.sp prefill (cuda::Options::prefill_wgmma) keeps, on sm_90, a second device copy of each
// weight that is 2:4 along K: half the dense bytes of that layer. Users who need the memory more than
// the prefill speed turn it off with "0" ("1", the default, keeps it), read at creation; the first of
// these that is set wins:
//   1. the EP plugin's provider option `prefill_wgmma` (ep/vnmc_ep.cc passes it to Init);
//   2. the session config entry `vnmc.prefill_wgmma` (KernelInfo_GetConfigEntries, onnxruntime >= 1.24);
//   3. the environment variable VNMC_PREFILL_WGMMA (read once per process; empty = unset).
// Any other value is a session-creation error naming where it came from. Each kernel then logs its
// choice, the device weight bytes and its prefill path at INFO severity (tests check these lines).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "cuda/vnm_cuda.h"
#include "ort/ort_common.h"

namespace vnmc {
namespace ort {

constexpr const char* kPrefillWgmmaConfigKey = "vnmc.prefill_wgmma";
constexpr const char* kPrefillWgmmaEnv = "VNMC_PREFILL_WGMMA";

// A "0" / "1" switch: "" and *out set, or the error naming `what` (where the value came from) and the
// accepted values.
std::string parse_prefill_wgmma(const std::string& value, const std::string& what, bool* out);

class CudaGemmKernel {
 public:
  CudaGemmKernel(const OrtApi& api, DType act) : api_(api), act_(act) {}
  // prefill_wgmma: the EP plugin's provider option when given (it wins over the session config entry
  // and the environment).
  OrtStatus* Init(const OrtKernelInfo* info, std::optional<bool> prefill_wgmma = std::nullopt);
  // stream: a cudaStream_t (null: the legacy default stream).
  OrtStatus* Compute(OrtKernelContext* ctx, void* stream) noexcept;

 private:
  OrtStatus* error(OrtErrorCode code, const std::string& msg) const;
  OrtStatus* constant_host_input(const OrtKernelInfo* info, size_t index, bool required, TensorView* view,
                                 std::vector<unsigned char>* host_copy);
  // *on and *from (where the setting came from) for prefill_wgmma, as described at the top.
  OrtStatus* prefill_wgmma_setting(const OrtKernelInfo* info, std::optional<bool> imposed, bool* on,
                                   std::string* from);
  void log_choice(const OrtKernelInfo* info, bool prefill_wgmma, const std::string& from) const;

  const OrtApi& api_;
  const DType act_;
  std::string node_;
  Attributes attrs_;
  Dims dims_;
  std::unique_ptr<cuda::OrderedRunner> runner_;
  bool sync_check_ = false;
  bool staged_warned_ = false;  // VNMC_CUDA_SYNC_CHECK=1: synchronise after each launch, report errors here
};

// Activation type of the node a kernel is created for (input 0), or kUndefined.
DType node_activation_type(const OrtApi& api, const OrtKernelInfo* info);

}  // namespace ort
}  // namespace vnmc
