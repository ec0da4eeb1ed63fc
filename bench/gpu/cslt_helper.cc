// cuSPARSELt 2:4 baseline for bench/gpu/kernel_bench.py, through the C API with the descriptors, the
// algorithm selection and the plan built ONCE per (shape, T) (torch._cslt_sparse_mm rebuilds them on
// every call: shared/design/gpu-notes.md section 3). Built on the GPU machine against the header and
// library that ship inside PyTorch's environment (nvidia/cusparselt), loaded with ctypes.
//
// Y[T][N] = X[T][K] * W^T:  A = W (structured, N x K row-major), B = X (T x K row-major, used
// transposed), C = D = Y as an N x T column-major matrix (= T x N row-major).
#include <cuda_runtime.h>
#include <cusparseLt.h>

#include <cstdio>
#include <cstring>

#define VNMC_CAPI extern "C" __attribute__((visibility("default")))
#define CK(x)                                                             \
  do {                                                                    \
    int s_ = static_cast<int>(x);                                         \
    if (s_ != 0) {                                                        \
      std::fprintf(stderr, "cslt_helper: %s -> %d (line %d)\n", #x, s_, __LINE__); \
      return -1;                                                          \
    }                                                                     \
  } while (0)

namespace {
alignas(256) cusparseLtHandle_t g_handle;
bool g_init = false;
}  // namespace

// The opaque cuSPARSELt structs are kept 256-byte aligned (as in shared/reference/cslt_api.cu).
struct alignas(256) CsltState {
  cusparseLtMatDescriptor_t A, B, C;
  cusparseLtMatmulDescriptor_t mm;
  cusparseLtMatmulAlgSelection_t sel;
  // One plan per config id, never re-initialised (re-initialising a plan crashed cuSPARSELt 0.8.0 here).
  static constexpr int kMaxPlans = 16;
  cusparseLtMatmulPlan_t plans[kMaxPlans];
  int nplans = 0;
  float alpha = 1.f, beta = 0.f;
};

VNMC_CAPI int cslt_version() {
  if (!g_init) {
    if (cusparseLtInit(&g_handle) != CUSPARSE_STATUS_SUCCESS) return -1;
    g_init = true;
  }
  int v = 0;
  cusparseLtGetVersion(&g_handle, &v);
  return v;
}

// Returns the state (or null); *max_alg gets CUSPARSELT_MATMUL_ALG_CONFIG_MAX_ID.
VNMC_CAPI void* cslt_setup(int N, int K, int T, int* max_alg) {
  if (!g_init && cslt_version() < 0) return nullptr;
  CsltState* s = new CsltState();
  auto fail = [&]() -> void* {
    delete s;
    return nullptr;
  };
  if (cusparseLtStructuredDescriptorInit(&g_handle, &s->A, N, K, K, 16, CUDA_R_16F, CUSPARSE_ORDER_ROW,
                                         CUSPARSELT_SPARSITY_50_PERCENT) != CUSPARSE_STATUS_SUCCESS)
    return fail();
  if (cusparseLtDenseDescriptorInit(&g_handle, &s->B, T, K, K, 16, CUDA_R_16F, CUSPARSE_ORDER_ROW) !=
      CUSPARSE_STATUS_SUCCESS)
    return fail();
  if (cusparseLtDenseDescriptorInit(&g_handle, &s->C, N, T, N, 16, CUDA_R_16F, CUSPARSE_ORDER_COL) !=
      CUSPARSE_STATUS_SUCCESS)
    return fail();
  if (cusparseLtMatmulDescriptorInit(&g_handle, &s->mm, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_TRANSPOSE,
                                     &s->A, &s->B, &s->C, &s->C, CUSPARSE_COMPUTE_32F) != CUSPARSE_STATUS_SUCCESS)
    return fail();
  if (cusparseLtMatmulAlgSelectionInit(&g_handle, &s->sel, &s->mm, CUSPARSELT_MATMUL_ALG_DEFAULT) !=
      CUSPARSE_STATUS_SUCCESS)
    return fail();
  int mx = -1;
  cusparseLtMatmulAlgGetAttribute(&g_handle, &s->sel, CUSPARSELT_MATMUL_ALG_CONFIG_MAX_ID, &mx, sizeof(mx));
  if (max_alg) *max_alg = mx;
  return s;
}

// Builds a plan for config id `alg`; returns its id (>= 0) or -1.
VNMC_CAPI int cslt_plan(void* h, int alg) {
  CsltState* s = static_cast<CsltState*>(h);
  if (s->nplans >= CsltState::kMaxPlans) return -1;
  CK(cusparseLtMatmulAlgSetAttribute(&g_handle, &s->sel, CUSPARSELT_MATMUL_ALG_CONFIG_ID, &alg, sizeof(alg)));
  CK(cusparseLtMatmulPlanInit(&g_handle, &s->plans[s->nplans], &s->mm, &s->sel));
  return s->nplans++;
}

VNMC_CAPI long long cslt_workspace(void* h, int plan) {
  CsltState* s = static_cast<CsltState*>(h);
  size_t ws = 0;
  CK(cusparseLtMatmulGetWorkspace(&g_handle, &s->plans[plan], &ws));
  return static_cast<long long>(ws);
}

VNMC_CAPI long long cslt_compressed_size(void* h, int plan, long long* buffer_size) {
  CsltState* s = static_cast<CsltState*>(h);
  size_t cs = 0, cbs = 0;
  CK(cusparseLtSpMMACompressedSize(&g_handle, &s->plans[plan], &cs, &cbs));
  if (buffer_size) *buffer_size = static_cast<long long>(cbs);
  return static_cast<long long>(cs);
}

// W (dense, already 2:4-pruned, device) -> Wc (device, cslt_compressed_size bytes).
VNMC_CAPI int cslt_compress(void* h, int plan, const void* W, void* Wc, void* buf, void* stream) {
  CsltState* s = static_cast<CsltState*>(h);
  CK(cusparseLtSpMMACompress(&g_handle, &s->plans[plan], W, Wc, buf, static_cast<cudaStream_t>(stream)));
  return 0;
}

VNMC_CAPI int cslt_matmul(void* h, int plan, const void* Wc, const void* X, void* Y, void* ws, void* stream) {
  CsltState* s = static_cast<CsltState*>(h);
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  CK(cusparseLtMatmul(&g_handle, &s->plans[plan], &s->alpha, Wc, X, &s->beta, Y, Y, ws, &st, 1));
  return 0;
}

VNMC_CAPI void cslt_destroy(void* h) {
  CsltState* s = static_cast<CsltState*>(h);
  for (int i = 0; i < s->nplans; ++i) cusparseLtMatmulPlanDestroy(&s->plans[i]);
  cusparseLtMatmulAlgSelectionDestroy(&s->sel);
  cusparseLtMatDescriptorDestroy(&s->A);
  cusparseLtMatDescriptorDestroy(&s->B);
  cusparseLtMatDescriptorDestroy(&s->C);
  delete s;
}
