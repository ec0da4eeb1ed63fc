// Shared onnxruntime glue: the ORT headers (manual API init: nothing links libonnxruntime), status
// helpers, and the conversion of ORT tensors into the contract's TensorView.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <string>
#include <vector>

#include "vnmc/contract.h"

namespace vnmc {
namespace ort {

// Every provider module appends its OrtCustomOp objects (static storage) here; register.cc adds
// them all to the one `com.vnmc` domain.
void AppendCpuOps(std::vector<const OrtCustomOp*>& ops);
#if defined(VNMC_WITH_CUDA)
void AppendCudaOps(std::vector<const OrtCustomOp*>& ops);  // src/ort/cuda_op.cc (VNMC_WITH_CUDA builds)
#endif

DType from_ort(ONNXTensorElementDataType t);

inline OrtStatus* make_status(const OrtApi& api, OrtErrorCode code, const std::string& msg) {
  return api.CreateStatus(code, msg.c_str());
}

// Runs an OrtApi call; on failure returns its status from the enclosing function.
#define VNMC_ORT_RETURN_IF_ERROR(expr)   \
  do {                                   \
    OrtStatus* vnmc_st_ = (expr);        \
    if (vnmc_st_ != nullptr) return vnmc_st_; \
  } while (0)

// The node's name ("" if unavailable).
std::string node_name(const OrtApi& api, const OrtKernelInfo* info);

// Input name at index ("" for an absent optional input or an index past the node's inputs).
std::string input_name(const OrtApi& api, const OrtKernelInfo* info, size_t index);

// Reads in_features, out_features, v, m, n (all required).
OrtStatus* read_attributes(const OrtApi& api, const OrtKernelInfo* info, Attributes* out);

// Describes an OrtValue tensor (data, type, shape). value may be null (absent input).
OrtStatus* view_of(const OrtApi& api, const OrtValue* value, TensorView* out);

// Allocates output 0 with A's shape, its last dimension replaced by n_out, and returns its data in
// *data (null when A has no tokens: nothing to compute).
OrtStatus* output_like(const OrtApi& api, OrtKernelContext* ctx, const TensorView& a, int64_t n_out, bool has_tokens, void** data);

}  // namespace ort
}  // namespace vnmc
