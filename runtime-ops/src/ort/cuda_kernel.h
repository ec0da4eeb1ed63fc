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
#pragma once

#include <memory>
#include <string>

#include "cuda/vnm_cuda.h"
#include "ort/ort_common.h"

namespace vnmc {
namespace ort {

class CudaGemmKernel {
 public:
  CudaGemmKernel(const OrtApi& api, DType act) : api_(api), act_(act) {}
  OrtStatus* Init(const OrtKernelInfo* info);
  // stream: a cudaStream_t (null: the legacy default stream).
  OrtStatus* Compute(OrtKernelContext* ctx, void* stream) noexcept;

 private:
  OrtStatus* error(OrtErrorCode code, const std::string& msg) const;
  OrtStatus* constant_host_input(const OrtKernelInfo* info, size_t index, bool required, TensorView* view,
                                 std::vector<unsigned char>* host_copy);

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
