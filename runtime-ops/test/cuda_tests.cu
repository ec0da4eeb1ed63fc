// GPU correctness tests of the CUDA VNMSparseGemm kernels against the test-side dense reference
// (test/reference.{h,cc}: data generator and float64 reference written from the contract,
// independent of every kernel).
//
// Usage: vnmc_cuda_tests [--quick] [--verbose]
//   --quick    a reduced set (for compute-sanitizer --tool memcheck)
// Exit codes: 0 all passed, 1 a failure, 77 no usable CUDA device (ctest reports "skipped").
//
// Every case draws fresh random data (its own seed), poisons the output with NaN before the launch,
// checks every output element against |y - ref| <= out_ulp * |ref| + 1e-4 * sum|terms| and reports the
// relative Frobenius error.
#include <cuda_runtime.h>

#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cuda/vnm_cuda.h"
#include "reference.h"
#include "vnmc/contract.h"

using namespace vnmc;
using namespace vnmc_test;

namespace {

int g_pass = 0, g_fail = 0;
bool g_verbose = false;
double g_worst_rel[4] = {0, 0, 0, 0};  // fp16, bf16, fp32 act with fp16 / bf16 values

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) return std::string(#x " failed: ") + cudaGetErrorString(e_);       \
  } while (0)

struct DevMem {
  void* p = nullptr;
  ~DevMem() {
    if (p) cudaFree(p);
  }
};

std::string check_output(const CaseData& c, const std::vector<uint8_t>& out, double* rel_fro) {
  std::vector<double> y, scale;
  reference(c, &y, &scale);
  const CaseSpec& s = c.spec;
  // Half activations: the output is rounded once (ulp) and the fp32 sums add ~1e-4 of sum|terms|.
  // Float activations with half values: A is also rounded to the value type, up to ulp of sum|terms|.
  const bool f32_act = s.act == DType::kFloat32;
  const double ulp = (f32_act ? s.val : s.act) == DType::kFloat16 ? 1.0 / 1024 : 1.0 / 128;
  const double term_tol = f32_act ? ulp : 1e-4;
  double num = 0, den = 0;
  std::string first;
  int64_t bad = 0;
  for (int64_t i = 0; i < s.T * s.N_out; ++i) {
    const double got = decode(s.act, out.data(), i);
    const double tol = ulp * std::fabs(y[i]) + term_tol * scale[i] + 1e-6;
    const double diff = std::fabs(got - y[i]);
    num += (got - y[i]) * (got - y[i]);
    den += y[i] * y[i];
    if (!(diff <= tol)) {
      if (bad++ == 0) {
        std::ostringstream os;
        os << "mismatch at t=" << i / s.N_out << " o=" << i % s.N_out << ": got " << got << ", want " << y[i]
           << " (tol " << tol << ")";
        first = os.str();
      }
    }
  }
  *rel_fro = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (bad) {
    std::ostringstream os;
    os << first << "; " << bad << " of " << s.T * s.N_out << " elements wrong, rel. error " << *rel_fro;
    return os.str();
  }
  return {};
}

size_t g_a_offset = 0;  // bytes between the allocation and A (2, 6, ...: activations not 16-byte aligned)

// Creates the kernel object (host validation + prepare), runs `runs` times, checks each result.
std::string run_case(const CaseData& c, const cuda::Options& opt, int runs, std::string* launch) {
  const CaseSpec& s = c.spec;
  std::string err;
  auto g = cuda::VnmGemmCuda::create(c.attrs, s.act, c.values_view(), c.columns_view(), c.meta_view(),
                                     c.row_index_view(), c.bias_view(), opt, &err);
  if (!g) return "create failed: " + err;
  // Flatten any batch dims the way an operator does: validate A's shape, T = product of leading dims.
  TensorView a;
  a.data = c.A.data();
  a.dtype = s.act;
  a.shape = s.a_shape.empty() ? std::vector<int64_t>{s.T, s.K} : s.a_shape;
  a.present = true;
  int64_t T = -1;
  err = validate_activations(g->dims(), s.act, a, &T);
  if (!err.empty()) return "activations rejected: " + err;
  if (T != s.T) return "token count mismatch";
  *launch = g->describe_launch(T);

  const size_t a_bytes = c.A.size(), y_bytes = static_cast<size_t>(T * s.N_out) * dtype_size(s.act);
  const size_t ws_bytes = g->workspace_bytes(T);
  DevMem dA, dY, dW;
  CK(cudaMalloc(&dA.p, a_bytes + g_a_offset));
  void* dAp = static_cast<unsigned char*>(dA.p) + g_a_offset;
  CK(cudaMalloc(&dY.p, y_bytes));
  if (ws_bytes) CK(cudaMalloc(&dW.p, ws_bytes));
  CK(cudaMemcpy(dAp, c.A.data(), a_bytes, cudaMemcpyHostToDevice));
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  std::string result;
  for (int r = 0; r < runs && result.empty(); ++r) {
    CK(cudaMemset(dY.p, 0xff, y_bytes));  // NaN in fp32, fp16 and bf16: every element must be written
    if (ws_bytes) CK(cudaMemset(dW.p, 0xff, ws_bytes));
    err = g->run(dAp, T, dY.p, dW.p, ws_bytes, st);
    if (!err.empty()) {
      result = "run failed: " + err;
      break;
    }
    cudaError_t e = cudaStreamSynchronize(st);
    if (e != cudaSuccess) {
      result = std::string("kernel failed: ") + cudaGetErrorString(e);
      break;
    }
    std::vector<uint8_t> out(y_bytes);
    CK(cudaMemcpy(out.data(), dY.p, y_bytes, cudaMemcpyDeviceToHost));
    double rel = 0;
    result = check_output(c, out, &rel);
    double& worst = g_worst_rel[(s.act == DType::kFloat32 ? 2 : 0) + (s.val == DType::kBFloat16 ? 1 : 0)];
    if (rel > worst) worst = rel;
    if (!result.empty() && runs > 1) result = "run " + std::to_string(r) + ": " + result;
  }
  cudaStreamDestroy(st);
  return result;
}

bool g_sm90 = false;  // wgmma.sp prefill available (sm_90 device)

// want_launch: on an sm_90 device, the launch description must contain it (or, with a leading '!',
// must not), so that a test of a path cannot pass on another path.
const char* g_only = nullptr;  // --only SUBSTR: run just the cases whose label contains it

void check_case(const CaseSpec& spec, const cuda::Options& opt, const char* label, int runs = 1,
                const char* want_launch = nullptr) {
  if (g_only && !std::strstr(label, g_only)) return;
  const CaseData c = make_case(spec);
  std::string launch;
  std::string r = run_case(c, opt, runs, &launch);
  if (r.empty() && want_launch && g_sm90) {
    const bool neg = want_launch[0] == '!';
    const bool has = launch.find(want_launch + (neg ? 1 : 0)) != std::string::npos;
    if (has == neg) r = std::string("launch is not ") + want_launch;
  }
  if (r.empty()) {
    ++g_pass;
    if (g_verbose) std::printf("ok   [%s] %s | %s\n", label, spec.describe().c_str(), launch.c_str());
  } else {
    ++g_fail;
    std::printf("FAIL [%s] %s | %s: %s\n", label, spec.describe().c_str(), launch.c_str(), r.c_str());
  }
}

// check_case with A placed a_offset bytes past its (256-byte aligned) allocation.
void check_case_at(size_t a_offset, const CaseSpec& spec, const cuda::Options& opt, const char* label, int runs = 1,
                   const char* want_launch = nullptr) {
  g_a_offset = a_offset;
  check_case(spec, opt, label, runs, want_launch);
  g_a_offset = 0;
}

uint64_t g_seed = 1000;

CaseSpec spec(int64_t K, int64_t N, int64_t V, int64_t M, DType dt, ColumnMode cm, bool ri, bool bias, int64_t T) {
  CaseSpec s;
  s.K = K;
  s.N_out = N;
  s.V = V;
  s.M = M;
  s.act = s.val = dt;
  s.cols = cm;
  s.row_index = ri;
  s.bias = bias;
  s.T = T;
  s.seed = ++g_seed;
  return s;
}

// Float activations with half values (reduced-precision weights).
CaseSpec spec_f32(int64_t K, int64_t N, int64_t V, int64_t M, DType val, ColumnMode cm, bool ri, bool bias, int64_t T) {
  CaseSpec s = spec(K, N, V, M, val, cm, ri, bias, T);
  s.act = DType::kFloat32;
  return s;
}

cuda::Options opts(int path = 0, int ksplit = 0, int cfg = 0, bool win = true) {
  cuda::Options o;
  o.force_path = path;
  o.decode_ksplit = ksplit;
  o.prefill_config = cfg;
  o.allow_windowed = win;
  return o;
}

// Every V x M x dtype x index kind, small shapes (K, N_out not multiples of 64 or of M), decode and
// prefill, every tile configuration, both index paths, split-K.
void sweep() {
  const int64_t Vs[] = {16, 32, 64, 128};
  const int64_t Ms[] = {4, 5, 6, 8, 16};
  const int64_t Ks[] = {100, 200, 333, 520, 130, 250};
  const int64_t Ns[] = {72, 136, 200, 264, 90, 150};
  const int64_t Tsmall[] = {1, 2, 7, 16, 9, 3};
  const int64_t Tlarge[] = {64, 257, 100, 130};
  int ci = 0;
  for (int64_t V : Vs)
    for (int64_t M : Ms)
      for (DType dt : {DType::kFloat16, DType::kBFloat16})
        for (int cmi = 0; cmi < 2; ++cmi, ++ci) {
          ColumnMode cm = cmi == 0 ? ColumnMode::kWindowed : (ci % 5 == 0 ? ColumnMode::kRandom : ColumnMode::kPermuted);
          const int64_t K = Ks[ci % 6], N = Ns[(ci / 6) % 6];
          const bool ri = ci % 3 == 0, bias = ci % 2 == 0;
          const int64_t ts = Tsmall[ci % 6], tl = Tlarge[ci % 4];
          check_case(spec(K, N, V, M, dt, cm, ri, bias, ts), opts(), "decode auto");
          check_case(spec(K, N, V, M, dt, cm, ri, bias, ts), opts(1, 2), "decode ksplit=2");
          check_case(spec(K, N, V, M, dt, cm, !ri, !bias, ts), opts(2), "prefill small T");
          check_case(spec(K, N, V, M, dt, cm, ri, bias, tl), opts(), "prefill auto");
          check_case(spec(K, N, V, M, dt, cm, !ri, bias, tl), opts(2, 0, 1 + ci % 6), "prefill cfg");
          if (cm == ColumnMode::kWindowed && V >= 64)  // the window configurations (v6), both tile heights
            check_case(spec(K, N, V, M, dt, cm, ri, !bias, tl), opts(2, 0, 4 + ci % 2), "prefill window");
          if (cm == ColumnMode::kWindowed) {
            check_case(spec(K, N, V, M, dt, cm, ri, !bias, ts), opts(0, 0, 0, false), "decode general idx");
            check_case(spec(K, N, V, M, dt, cm, ri, !bias, tl), opts(0, 0, 0, false), "prefill general idx");
          }
        }
}

// Realistic K: many k32 steps, split-K across CTAs (atomics + last-CTA finalisation), repeated runs
// on one object (the split-K scratch must be left zeroed).
void split_k() {
  check_case(spec(4096, 1024, 64, 8, DType::kFloat16, ColumnMode::kWindowed, false, true, 16), opts(), "splitK", 3);
  check_case(spec(4096, 1024, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, false, 1), opts(), "splitK", 3);
  check_case(spec(4096, 520, 64, 5, DType::kBFloat16, ColumnMode::kPermuted, true, true, 9), opts(), "splitK", 2);
  check_case(spec(3000, 384, 128, 5, DType::kFloat16, ColumnMode::kPermuted, false, true, 4), opts(), "splitK", 2);
  check_case(spec(4100, 256, 32, 8, DType::kBFloat16, ColumnMode::kWindowed, false, true, 12), opts(), "splitK", 2);
  check_case(spec(4096, 1024, 64, 8, DType::kFloat16, ColumnMode::kWindowed, false, true, 64), opts(), "prefill K=4096");
  check_case(spec(2048, 640, 128, 8, DType::kBFloat16, ColumnMode::kPermuted, true, true, 200), opts(), "prefill K=2048");
  // Window configurations with a partial 256-row tile, K past the last window (zero-filled rows),
  // split-K, many steps.
  check_case(spec(4100, 200, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 300), opts(2, 0, 4), "window K=4100", 2);
  check_case(spec(3000, 72, 128, 5, DType::kBFloat16, ColumnMode::kWindowed, false, true, 129), opts(2, 0, 4), "window split-K", 2);
  check_case(spec(2050, 384, 64, 16, DType::kFloat16, ColumnMode::kWindowed, true, false, 520), opts(2, 0, 5), "window M=16");
  check_case(spec(1000, 1024, 64, 5, DType::kBFloat16, ColumnMode::kWindowed, false, true, 1000), opts(2, 0, 4), "window M=5");
  // 32 tokens per warp (config 6), partial token tiles, split-K, permuted.
  check_case(spec(4100, 200, 64, 8, DType::kFloat16, ColumnMode::kPermuted, true, true, 300), opts(2, 0, 6), "w32 K=4100", 2);
  check_case(spec(3000, 72, 128, 5, DType::kBFloat16, ColumnMode::kWindowed, false, true, 129), opts(2, 0, 6), "w32 split-K", 2);
  check_case(spec(4100, 200, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 300), opts(2, 0, 7), "window w32 K=4100", 2);
  check_case(spec(2050, 384, 64, 16, DType::kBFloat16, ColumnMode::kWindowed, false, true, 129), opts(2, 0, 7), "window w32 M=16", 2);
  check_case(spec(1000, 1024, 64, 5, DType::kFloat16, ColumnMode::kWindowed, true, false, 1000), opts(2, 0, 7), "window w32 M=5");
}

// Float activations with fp16 / bf16 values: decode (T = 1 and pairs), prefill, split-K, batch dims.
void f32_activations() {
  for (DType val : {DType::kFloat16, DType::kBFloat16}) {
    check_case(spec_f32(200, 136, 64, 8, val, ColumnMode::kWindowed, true, true, 1), opts(), "f32 act decode T=1");
    check_case(spec_f32(333, 90, 32, 5, val, ColumnMode::kPermuted, false, true, 7), opts(), "f32 act decode");
    check_case(spec_f32(250, 150, 128, 16, val, ColumnMode::kRandom, true, false, 16), opts(1, 2), "f32 act decode");
    check_case(spec_f32(520, 200, 64, 6, val, ColumnMode::kWindowed, true, true, 130), opts(), "f32 act prefill");
    check_case(spec_f32(100, 72, 16, 4, val, ColumnMode::kPermuted, false, true, 257), opts(), "f32 act prefill");
    check_case(spec_f32(4096, 1024, 64, 8, val, ColumnMode::kWindowed, false, true, 64), opts(), "f32 act K=4096", 2);
    CaseSpec s = spec_f32(200, 136, 64, 8, val, ColumnMode::kWindowed, true, true, 6);
    s.a_shape = {2, 3, 200};
    check_case(s, opts(), "f32 act batch dims");
  }
}

// Many tokens.
void large_t() {
  check_case(spec(520, 200, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 2048), opts(), "T=2048");
  check_case(spec(333, 136, 128, 5, DType::kBFloat16, ColumnMode::kPermuted, false, true, 2048), opts(), "T=2048");
  check_case(spec(136, 136, 64, 4, DType::kFloat16, ColumnMode::kWindowed, false, true, 8192), opts(), "T=8192");
  check_case(spec(100, 72, 32, 6, DType::kBFloat16, ColumnMode::kPermuted, true, true, 8192), opts(), "T=8192");
  check_case(spec(200, 128, 16, 16, DType::kFloat16, ColumnMode::kPermuted, true, false, 8192), opts(), "T=8192");
}

void batch_dims() {
  CaseSpec s = spec(200, 136, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 6);
  s.a_shape = {2, 3, 200};
  check_case(s, opts(), "batch dims [2,3,K]");
  CaseSpec s2 = spec(200, 136, 64, 8, DType::kBFloat16, ColumnMode::kPermuted, false, true, 120);
  s2.a_shape = {4, 5, 6, 200};
  check_case(s2, opts(), "batch dims [4,5,6,K]");
}

// Malformed packed inputs must be rejected on the host, before anything reaches the device.
void validation() {
  auto expect_reject = [](const CaseData& c, const char* what) {
    std::string err;
    auto g = cuda::VnmGemmCuda::create(c.attrs, c.spec.act, c.values_view(), c.columns_view(), c.meta_view(),
                                       c.row_index_view(), c.bias_view(), cuda::Options(), &err);
    if (!g && !err.empty()) {
      ++g_pass;
      if (g_verbose) std::printf("ok   [reject %s] %s\n", what, err.c_str());
    } else {
      ++g_fail;
      std::printf("FAIL [reject %s] a malformed input was accepted\n", what);
    }
  };
  CaseData c = make_case(spec(200, 136, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 4));
  CaseData bad = c;
  bad.meta[5] = static_cast<uint8_t>((bad.meta[5] & 0xf0) | 0x5);  // p0 = 1, p1 = 1
  expect_reject(bad, "meta code");
  bad = c;
  bad.columns[7] = static_cast<int32_t>(c.spec.K);
  expect_reject(bad, "column out of range");
  bad = c;
  {  // two rows that produce outputs (padding rows, -1, may repeat)
    size_t i = 0, j;
    while (bad.row_index[i] < 0) ++i;
    for (j = i + 1; bad.row_index[j] < 0; ++j) {}
    bad.row_index[i] = bad.row_index[j];
  }
  expect_reject(bad, "row_index duplicate");
  CaseData f32 = make_case([] {
    CaseSpec s = spec(64, 64, 16, 4, DType::kFloat32, ColumnMode::kWindowed, false, false, 1);
    return s;
  }());
  expect_reject(f32, "float activations with float values (CPU only)");
}

// The wgmma.sp prefill (v9, sm_90): weights that are 2:4 along K (windowed, M % 4 == 0), K % 8 == 0;
// other windowed M and one permutation for all blocks through the gathered, zero-padded order (v15).
// Partial row tiles, K not a multiple of 64, token tiles of 64 and 128 with partial last tiles,
// row_index, bias, both dtypes, float activations; weights that are not 2:4 along K and the opt-out
// must take the mma.sp path.
void wgmma_prefill() {
  const char* wg = "wgmma.sp 2:4 128x";
  const char* ws = " ws";
  for (DType dt : {DType::kFloat16, DType::kBFloat16}) {
    check_case(spec(4096, 1024, 64, 8, dt, ColumnMode::kWindowed, false, true, 300), opts(), "wg24 K=4096", 2, wg);
    check_case(spec(1000, 300, 64, 8, dt, ColumnMode::kWindowed, true, true, 2000), opts(), "wg24 ws", 3, ws);
    check_case(spec(520, 200, 64, 8, dt, ColumnMode::kWindowed, true, true, 130), opts(), "wg24 K=520", 1, wg);
    check_case(spec(136, 136, 16, 4, dt, ColumnMode::kWindowed, true, false, 1000), opts(), "wg24 M=4", 1, wg);
    check_case(spec(2048, 640, 128, 16, dt, ColumnMode::kWindowed, false, true, 2048), opts(0, 0, 8), "wg24 M=16", 1, wg);
    check_case(spec(1032, 264, 64, 16, dt, ColumnMode::kWindowed, false, true, 1024), opts(), "M=16 T=1024", 1, wg);
    check_case(spec(200, 72, 32, 12, dt, ColumnMode::kWindowed, true, true, 17), opts(2), "wg24 T=17", 1, wg);
    // M % 4 != 0 (windowed): X gathered into a zero-padded order (two single remainders share a chunk
    // at M = 5, 9; remainders of 2 and 3 get their own), then wgmma.sp. K = 4096 at M = 5 ends with a
    // one-channel group whose repeated indices carry two weights (the channel gets a second position).
    check_case(spec(520, 200, 64, 5, dt, ColumnMode::kWindowed, true, true, 130), opts(), "M=5 windowed", 2, "gathered");
    check_case(spec(4096, 136, 64, 5, dt, ColumnMode::kWindowed, false, true, 300), opts(), "M=5 K=4096", 1, "gathered");
    check_case(spec(515, 72, 16, 5, dt, ColumnMode::kWindowed, false, false, 1000), opts(), "M=5 V=16 odd groups", 1, "gathered");
    check_case(spec(600, 264, 128, 6, dt, ColumnMode::kWindowed, true, false, 257), opts(), "M=6 windowed", 1, "gathered");
    check_case(spec(701, 136, 32, 7, dt, ColumnMode::kWindowed, false, true, 129), opts(), "M=7 windowed", 1, "gathered");
    check_case(spec(1000, 72, 64, 9, dt, ColumnMode::kWindowed, true, true, 300), opts(), "M=9 windowed", 1, "gathered");
    check_case(spec_f32(520, 136, 64, 5, dt, ColumnMode::kWindowed, true, true, 200), opts(), "M=5 f32 act", 1, "gathered");
    // repeated channels of a partial group (K = 333, M = 4) with two weights: second positions as well
    check_case(spec(333, 136, 16, 4, dt, ColumnMode::kGlobalPerm, true, false, 300), opts(), "global perm K=333", 1, "gathered");
    check_case(spec(500, 200, 64, 8, dt, ColumnMode::kWindowed, true, true, 130), opts(), "K % 8 != 0", 1, "gathered");
    // One input permutation for all blocks: X gathered into the weight's order, then wgmma.sp.
    check_case(spec(520, 200, 64, 8, dt, ColumnMode::kGlobalPerm, true, true, 130), opts(), "global perm", 2, "gathered");
    // K = 332: K % 8 != 0 with whole groups (a partial group of the generator can put two weights on one
    // channel, which is not 2:4 in any order)
    check_case(spec(332, 136, 16, 4, dt, ColumnMode::kGlobalPerm, false, true, 300), opts(), "global perm", 1, "gathered");
    check_case(spec(2048, 264, 128, 16, dt, ColumnMode::kGlobalPerm, true, false, 2048), opts(), "global perm", 1, "gathered");
    check_case(spec_f32(1000, 150, 32, 8, dt, ColumnMode::kGlobalPerm, true, true, 77), opts(), "global perm f32", 1, "gathered");
    check_case(spec(520, 200, 64, 8, dt, ColumnMode::kPermuted, true, true, 130), opts(), "per-block perm", 1, "!wgmma");
    check_case(spec(520, 200, 64, 5, dt, ColumnMode::kGlobalPerm, true, true, 130), opts(), "global perm M=5", 1, "gathered");
    check_case(spec(606, 136, 64, 6, dt, ColumnMode::kGlobalPerm, false, true, 300), opts(), "global perm M=6", 1, "gathered");
    check_case(spec(520, 200, 64, 5, dt, ColumnMode::kPermuted, true, true, 130), opts(), "per-block perm M=5", 1, "!wgmma");
    check_case(spec(520, 200, 64, 8, dt, ColumnMode::kWindowed, true, true, 130), opts(0, 0, 1), "config 1", 1, "!wgmma");
    check_case(spec_f32(520, 200, 64, 8, dt, ColumnMode::kWindowed, true, true, 130), opts(), "wg24 f32 act", 1, wg);
    // Split-K (v18: few tiles; clusters of up to 8 splits add through distributed shared memory; two runs):
    // K = 4096, partial token tiles, K % 64 != 0, the gathered orders, float activations.
    const char* ks = " ksplit=";
    check_case(spec(4096, 1024, 64, 8, dt, ColumnMode::kWindowed, true, true, 64), opts(), "wg24 ksplit", 2, ks);
    check_case(spec(4096, 520, 128, 16, dt, ColumnMode::kWindowed, false, true, 17), opts(), "wg24 ksplit T=17", 2, ks);
    cuda::Options k8 = opts();
    k8.wgmma_ksplit = 8;
    check_case(spec(1000, 264, 64, 4, dt, ColumnMode::kWindowed, true, false, 100), k8, "wg24 ksplit K=1000", 2, ks);
    check_case(spec(1000, 264, 64, 4, dt, ColumnMode::kWindowed, true, false, 100), opts(), "wg24 ksplit auto", 1,
               "!ksplit");  // 16 steps over 6 tiles: too short a loop for the automatic split (forced above)
    check_case(spec(768, 3072, 64, 8, dt, ColumnMode::kWindowed, false, true, 300), opts(), "wg24 no ksplit", 1,
               "!ksplit");  // 12 steps: no split of 8
    check_case(spec(4096, 1024, 64, 5, dt, ColumnMode::kWindowed, false, true, 33), opts(), "wg24 ksplit M=5", 2,
               "ksplit=8 gathered");
    check_case(spec(2048, 136, 32, 8, dt, ColumnMode::kGlobalPerm, true, true, 200), opts(), "wg24 ksplit perm", 1, ks);
    check_case(spec_f32(4096, 200, 64, 8, dt, ColumnMode::kWindowed, true, true, 40), opts(), "wg24 ksplit f32", 1, ks);
    cuda::Options k1 = opts(), k3 = opts();
    k1.wgmma_ksplit = 1;
    k3.wgmma_ksplit = 3;
    check_case(spec(4096, 1024, 64, 8, dt, ColumnMode::kWindowed, false, true, 64), k1, "wg24 ksplit off", 1, "!ksplit");
    check_case(spec(4096, 1024, 64, 8, dt, ColumnMode::kWindowed, false, false, 64), k3, "wg24 ksplit=3", 2, "ksplit=3");
  }
  for (int bn : {64, 128, 256}) {
    cuda::Options o = opts();
    o.wgmma_bn = bn;
    check_case(spec(1032, 264, 64, 8, DType::kBFloat16, ColumnMode::kWindowed, true, true, 700), o, "wg24 bn", 1, wg);
    check_case(spec(4096, 1024, 128, 4, DType::kFloat16, ColumnMode::kWindowed, false, true, 513), o, "wg24 bn", 1, wg);
    o.wgmma_raster = 2;
    check_case(spec(1032, 264, 64, 8, DType::kFloat16, ColumnMode::kWindowed, false, true, 700), o, "wg24 tokens fast", 1, wg);
    // v9 (all threads copy, barrier per step) as well as the default warp-specialised v10
    o.wgmma_ws = 2;
    check_case(spec(1032, 264, 64, 8, DType::kBFloat16, ColumnMode::kWindowed, true, true, 700), o, "wg24 v9", 1, "!ws");
    o.wgmma_raster = 0;
    check_case(spec(2048, 520, 32, 4, DType::kFloat16, ColumnMode::kWindowed, true, false, 300), o, "wg24 v9", 2, "!ws");
  }
  // v12 channel gather (gather_channels_smem_kernel, token rows through shared memory): rows per CTA
  // (1..16, from K and T) that do not divide T, K = 768 (short rows: all threads over rows x chunks)
  // and 11008 (channel numbers read once per CTA), K % 8 != 0 with Kw > K (rows alternately
  // misaligned), activations not 16-byte aligned (scalar heads and tails), rows > 48 KB (opt-in
  // shared memory) and rows too long for shared memory (the one-element fallback). The workspace is
  // poisoned with NaN before each run, so every position of Xg must be written; two runs where cheap.
  for (DType dt : {DType::kFloat16, DType::kBFloat16}) {
    check_case(spec(11008, 72, 64, 8, dt, ColumnMode::kGlobalPerm, true, true, 257), opts(), "gather K=11008", 1, "gathered");
    check_case(spec(11008, 72, 64, 8, dt, ColumnMode::kGlobalPerm, false, true, 1057), opts(), "gather K=11008", 1, "gathered");
    check_case(spec(768, 136, 64, 8, dt, ColumnMode::kGlobalPerm, true, true, 1000), opts(), "gather K=768", 1, "gathered");
    check_case(spec(768, 72, 64, 8, dt, ColumnMode::kGlobalPerm, false, true, 8191), opts(), "gather K=768", 1, "gathered");
    check_case(spec(4096, 72, 128, 16, dt, ColumnMode::kGlobalPerm, true, false, 2051), opts(), "gather K=4096", 1, "gathered");
    check_case(spec(4100, 72, 64, 4, dt, ColumnMode::kGlobalPerm, false, true, 1101), opts(), "gather K=4100", 2, "gathered");
    check_case_at(2, spec(1000, 150, 32, 8, dt, ColumnMode::kGlobalPerm, true, true, 300), opts(), "gather misaligned A+2", 2, "gathered");
    check_case_at(6, spec(11008, 72, 64, 8, dt, ColumnMode::kGlobalPerm, false, true, 300), opts(), "gather misaligned A+6", 1, "gathered");
    check_case_at(2, spec(332, 136, 16, 4, dt, ColumnMode::kGlobalPerm, true, true, 1101), opts(), "gather misaligned A+2 K=332", 2, "gathered");
    check_case_at(10, spec(500, 200, 64, 8, dt, ColumnMode::kWindowed, true, true, 130), opts(), "gather misaligned A+10 K=500", 1, "gathered");
  }
  check_case(spec(32768, 72, 64, 8, DType::kFloat16, ColumnMode::kGlobalPerm, true, true, 300), opts(), "gather K=32768 opt-in smem", 1, "gathered");
  check_case_at(2, spec(131072, 72, 64, 8, DType::kBFloat16, ColumnMode::kGlobalPerm, false, true, 40), opts(), "gather K=131072 fallback", 1, "gathered");

  cuda::Options off = opts();
  off.prefill_wgmma = false;
  check_case(spec(520, 200, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 130), off, "wgmma off", 1,
             "!wgmma");
}

// The persistent wgmma.sp prefill (v14, Options::wgmma_persistent; labels "persist ..."): every token
// tile (64, 128, 256) and both rasters, on a full wave of CTAs and on grids capped at a few CTAs (dozens of
// tiles per CTA: the running stage / mbarrier phase wraps many times, and the tile count is not a multiple
// of the grid); K of 1 step (fewer steps than stages: one consumer warpgroup can run a whole tile ahead of
// the other), an odd number of steps (the register double buffer ends on the first set) and 64 steps;
// partial last row and token tiles (also a last token tile of one 64-token chunk), row_index (rowmap
// stores) and the identity (16-byte stores), bias, fp16 / bf16, float activations, the gathered route,
// misaligned A on that route, repeated runs on one object. The automatic choice and -1 keep v10; without
// the warp-specialised pipeline (v9) it is not used.
void wgmma_persistent() {
  const char* pw = " persistent";
  int i = 0;
  for (int bn : {64, 128, 256})
    for (int raster : {1, 2})
      for (int cap : {1, 7}) {  // 1: one wave of CTAs; 7: at most 7 CTAs
        ++i;
        cuda::Options o = opts();
        o.wgmma_bn = bn;
        o.wgmma_raster = raster;
        o.wgmma_persistent = cap;
        const DType dt = i % 2 ? DType::kFloat16 : DType::kBFloat16;
        // 9 row tiles (the last partial) x ceil(1000 / bn) token tiles (the last partial): 144 / 72 / 36;
        // K = 136: three k64 steps, the last partial (small K keeps the host reference cheap)
        check_case(spec(136, 1032, 64, 8, dt, ColumnMode::kWindowed, i % 3 == 0, i % 4 != 1, 1000), o,
                   "persist bn/raster", 1 + i % 2, pw);
      }
  for (DType dt : {DType::kFloat16, DType::kBFloat16}) {
    cuda::Options o = opts();
    o.wgmma_persistent = 1;
    // Automatic token tile (256 here): 24 row tiles x 8 token tiles = 192 > the SMs of an H100 / H200;
    // T = 1800: the last token tile holds one 64-token chunk.
    check_case(spec(136, 3000, 64, 8, dt, ColumnMode::kWindowed, dt == DType::kFloat16, true, 1800), o,
               "persist 192 tiles", 2, pw);
    o.wgmma_bn = 256;
    check_case(spec(2048, 264, 128, 16, dt, ColumnMode::kWindowed, false, true, 600), o, "persist M=16", 1, pw);
    // K of one k64 step with dozens of tiles per CTA.
    for (int bn : {64, 128, 256}) {
      cuda::Options c = opts();
      c.wgmma_bn = bn;
      c.wgmma_persistent = 5;
      check_case(spec(56, 1032, 64, 8, dt, ColumnMode::kWindowed, bn == 128, true, 3001), c, "persist K=56", 3, pw);
      check_case(spec(200, 520, 32, 4, dt, ColumnMode::kWindowed, bn != 128, bn == 64, 1111), c, "persist K=200", 2, pw);
    }
    cuda::Options c = opts();
    c.wgmma_persistent = 3;
    c.wgmma_bn = 64;
    check_case(spec(4096, 264, 128, 4, dt, ColumnMode::kWindowed, false, true, 300), c, "persist K=4096", 2, pw);
    c.wgmma_raster = 2;
    check_case(spec(1032, 264, 64, 8, dt, ColumnMode::kWindowed, true, true, 700), c, "persist tokens fast", 2, pw);
    // Float activations (converted around the half kernel).
    cuda::Options f = opts();
    f.wgmma_persistent = 1;
    check_case(spec_f32(1032, 264, 64, 8, dt, ColumnMode::kWindowed, true, true, 700), f, "persist f32 act", 1, pw);
    f.wgmma_persistent = 4;
    check_case(spec_f32(520, 200, 64, 8, dt, ColumnMode::kWindowed, false, true, 1300), f, "persist f32 act", 2, pw);
    // Gathered route (global permutation; K % 8 != 0), then the persistent kernel.
    const char* pg = "ws persistent gathered";
    cuda::Options g = opts();
    g.wgmma_persistent = 1;
    check_case(spec(520, 200, 64, 8, dt, ColumnMode::kGlobalPerm, true, true, 1300), g, "persist gathered", 2, pg);
    check_case(spec(500, 200, 64, 8, dt, ColumnMode::kWindowed, false, true, 1300), g, "persist gathered K%8", 1, pg);
    check_case(spec_f32(1000, 150, 32, 8, dt, ColumnMode::kGlobalPerm, true, true, 777), g, "persist gathered f32", 1, pg);
    g.wgmma_persistent = 6;
    g.wgmma_raster = 2;
    check_case(spec(2048, 264, 128, 16, dt, ColumnMode::kGlobalPerm, true, false, 600), g, "persist gathered", 3, pg);
    check_case_at(2, spec(332, 136, 16, 4, dt, ColumnMode::kGlobalPerm, false, true, 1101), g, "persist gathered A+2", 2, pg);
  }
  // Not used: automatic (off until measured), -1, and v9 (no TMA producer).
  cuda::Options o = opts();
  check_case(spec(1032, 264, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 700), o, "persist auto off", 1,
             "!persistent");
  o.wgmma_persistent = -1;
  check_case(spec(1032, 264, 64, 8, DType::kBFloat16, ColumnMode::kWindowed, false, true, 700), o, "persist off", 1,
             "!persistent");
  o.wgmma_persistent = 1;
  o.wgmma_ws = 2;
  check_case(spec(1032, 264, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 700), o, "persist v9 fallback",
             1, "!persistent");
}

// The bulk decode (v13, sm_90): windowed indices, V % 64 == 0, T <= 16; clusters of 1..8 CTAs per row
// tile (forced and automatic splits), the activation slice by bulk copy (K % 8 == 0) or plain loads
// (K % 8 != 0), M = 4..16, partial last stages, row_index, bias, repeated runs on one object; the
// automatic choice; the v4 kernels for permuted indices, V = 32, and when it is switched off.
void decode_bulk() {
  const char* bulk = "decode bulk";
  cuda::Options on = opts();  // wherever it can run (the automatic choice keeps v4 at T <= 4, M < 16)
  on.decode_bulk = 1;
  cuda::Options on_ks = on;
  const int64_t Ts[] = {1, 2, 7, 8, 9, 16};
  const int64_t Ms[] = {4, 5, 8, 16};
  int i = 0;
  for (DType dt : {DType::kFloat16, DType::kBFloat16})
    for (int64_t M : Ms)
      for (int64_t T : Ts) {
        ++i;
        const int64_t V = i % 3 == 0 ? 128 : 64;
        check_case(spec(4096, 1024, V, M, dt, ColumnMode::kWindowed, i % 2 == 0, i % 4 != 1, T), on, "bulk K=4096", 2,
                   bulk);
        on_ks.force_path = 1;
        on_ks.decode_ksplit = 1 + i % 8;
        check_case(spec(1000 + 8 * i, 200 + 8 * i, V, M, dt, ColumnMode::kWindowed, i % 2 == 1, true, T), on_ks,
                   "bulk ksplit", 1, bulk);
        check_case(spec(333, 136, V, M, dt, ColumnMode::kWindowed, true, i % 2 == 0, T), on, "bulk K%8", 1, bulk);
        // The automatic choice: v4 at T <= 4 with M < 16, the bulk decode otherwise.
        check_case(spec(2048, 520, V, M, dt, ColumnMode::kWindowed, true, true, T), opts(), "bulk auto", 1,
                   T <= 4 && M < 16 ? "!decode bulk" : bulk);
        if (T * 1000 <= 16384)
          check_case(spec(1000, 264, V, M, dt, ColumnMode::kPermuted, i % 2 == 0, true, T), on, "bulk perm", 1,
                     "!decode bulk");
        // One permutation for all blocks: X gathered into group order, then the bulk decode (v16: only where
        // forced; the automatic choice keeps v4). K = 333: partial last group (repeated indices), Kd = G * M
        // rounded to 8.
        check_case(spec(1000, 264, V, M, dt, ColumnMode::kGlobalPerm, i % 2 == 0, i % 3 != 0, T), on,
                   "bulk global perm", 1, "gathered");
        check_case(spec(1000, 264, V, M, dt, ColumnMode::kGlobalPerm, i % 2 == 1, true, T), opts(),
                   "bulk global perm auto", 1, "!decode bulk");
        check_case(spec(333, 136, V, M, dt, ColumnMode::kGlobalPerm, i % 2 == 1, true, T), on, "bulk global perm K%8", 2,
                   "decode bulk NT");
      }
  check_case(spec(4096, 1024, 64, 5, DType::kFloat16, ColumnMode::kGlobalPerm, true, true, 16), on,
             "bulk global perm K=4096", 2, "gathered");
  check_case(spec(4096, 1024, 128, 8, DType::kBFloat16, ColumnMode::kGlobalPerm, false, false, 9), on,
             "bulk global perm K=4096", 1, "gathered");
  check_case(spec_f32(1000, 136, 64, 8, DType::kBFloat16, ColumnMode::kGlobalPerm, true, true, 12), on,
             "bulk global perm f32 act", 1, "gathered");
  check_case_at(2, spec(1000, 136, 64, 4, DType::kFloat16, ColumnMode::kGlobalPerm, true, true, 7), on,
                "bulk global perm misaligned A+2", 1, "gathered");
  check_case(spec(11008, 520, 64, 8, DType::kFloat16, ColumnMode::kWindowed, false, true, 16), on, "bulk K=11008", 2,
             bulk);
  check_case(spec(4096, 11008, 64, 5, DType::kBFloat16, ColumnMode::kWindowed, true, true, 3), on, "bulk N=11008", 1,
             bulk);
  cuda::Options general = on;
  general.allow_windowed = false;
  // windowed data with the windowed path off: one (identity) permutation for all blocks, the gathered route
  check_case(spec(1000, 264, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 5), general,
             "bulk general idx", 1, "gathered");
  check_case(spec(520, 200, 32, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 5), on, "bulk V=32", 1,
             "!decode bulk");
  check_case(spec_f32(1000, 136, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 4), on, "bulk f32 act", 1,
             bulk);
  cuda::Options off = opts();
  off.decode_bulk = -1;
  check_case(spec(4096, 1024, 64, 8, DType::kFloat16, ColumnMode::kWindowed, false, true, 1), off, "bulk off", 1,
             "!decode bulk");
  check_case(spec(4096, 1024, 64, 5, DType::kBFloat16, ColumnMode::kPermuted, true, true, 16), off, "bulk off", 2,
             "!decode bulk");
}

void quick() {
  check_case(spec(520, 200, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 7), opts(1, 3), "q decode");
  check_case(spec(333, 136, 32, 5, DType::kBFloat16, ColumnMode::kPermuted, true, true, 16), opts(1, 2), "q decode");
  check_case(spec(520, 200, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 130), opts(2, 0, 1), "q pf1");
  check_case(spec(333, 136, 128, 6, DType::kBFloat16, ColumnMode::kPermuted, false, true, 70), opts(2, 0, 2), "q pf2");
  check_case(spec(250, 90, 64, 16, DType::kFloat16, ColumnMode::kRandom, true, false, 65), opts(2, 0, 3), "q pf3");
  check_case(spec(520, 200, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 130), opts(2, 0, 4), "q pf4 window");
  check_case(spec(333, 136, 128, 5, DType::kBFloat16, ColumnMode::kWindowed, false, true, 70), opts(2, 0, 5), "q pf5 window");
  check_case(spec(200, 72, 16, 4, DType::kFloat16, ColumnMode::kWindowed, true, true, 100), opts(2, 0, 2), "q pf small V");
  check_case(spec(200, 72, 32, 8, DType::kBFloat16, ColumnMode::kPermuted, false, true, 33), opts(2, 0, 3), "q pf small V");
  check_case(spec_f32(200, 136, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 5), opts(), "q f32 act");
  check_case(spec_f32(333, 90, 32, 5, DType::kBFloat16, ColumnMode::kPermuted, false, true, 70), opts(), "q f32 act");
  check_case(spec(520, 200, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 130), opts(), "q wg24", 1, "wgmma");
  check_case(spec(136, 136, 16, 4, DType::kBFloat16, ColumnMode::kWindowed, false, true, 300), opts(), "q wg24", 1, "wgmma");
  check_case_at(2, spec(332, 136, 16, 4, DType::kFloat16, ColumnMode::kGlobalPerm, true, true, 1101), opts(), "q gather", 1, "gathered");
  check_case(spec(4100, 72, 64, 4, DType::kBFloat16, ColumnMode::kGlobalPerm, false, true, 1101), opts(), "q gather", 1, "gathered");
  check_case(spec(515, 72, 16, 5, DType::kFloat16, ColumnMode::kWindowed, true, true, 300), opts(), "q gather M=5", 1, "gathered");
  check_case(spec(1000, 136, 64, 5, DType::kBFloat16, ColumnMode::kWindowed, true, true, 40), opts(), "q ksplit", 2, "ksplit=");
  {
    cuda::Options o = opts();
    o.decode_bulk = 1;
    check_case(spec(333, 136, 64, 5, DType::kBFloat16, ColumnMode::kGlobalPerm, true, true, 9), o, "q bulk gathered", 1,
               "gathered");
  }
  {
    cuda::Options o = opts();
    o.wgmma_persistent = 5;
    check_case(spec(1032, 520, 64, 8, DType::kFloat16, ColumnMode::kWindowed, true, true, 700), o, "q persist", 2, " persistent");
  }
  validation();
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a timeout still leaves the lines so far in the log
  bool quick_mode = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick_mode = true;
    if (!std::strcmp(argv[i], "--verbose")) g_verbose = true;
    if (!std::strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
  }
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("SKIP: no usable CUDA device (%s)\n", why.c_str());
    return 77;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  g_sm90 = prop.major == 9 && prop.minor == 0;
  if (quick_mode) {
    quick();
  } else {
    // Each part's time, so that a timeout shows where the suite's minutes go.
    const std::pair<const char*, void (*)()> parts[] = {
        {"sweep", sweep},         {"split_k", split_k},         {"large_t", large_t},
        {"batch_dims", batch_dims}, {"f32_activations", f32_activations}, {"wgmma_prefill", wgmma_prefill},
        {"wgmma_persistent", wgmma_persistent}, {"decode_bulk", decode_bulk}, {"validation", validation}};
    for (const auto& part : parts) {
      const auto t0 = std::chrono::steady_clock::now();
      const int before = g_pass + g_fail;
      part.second();
      std::printf("part %s: %d cases, %.1f s\n", part.first, g_pass + g_fail - before,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  std::printf("worst relative error: fp16 %.3g, bf16 %.3g, fp32 act + fp16 values %.3g, + bf16 values %.3g\n",
              g_worst_rel[0], g_worst_rel[1], g_worst_rel[2], g_worst_rel[3]);
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
