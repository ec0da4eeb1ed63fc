// CPU benchmark: the VNMSparseGemm kernel vs a straightforward blocked dense fp32 GEMV/GEMM of our
// own, on the same machine and thread pool. This is NOT a comparison with onnxruntime's MatMul
// (that one is run from Node later); it shows what the sparse format buys over a dense loop of
// similar engineering effort.
//
// Usage: vnmc_cpu_bench [--quick] [--tune] [--threads N] [--min-ms X]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cpu/packed_gemm.h"
#include "cpu/thread_pool.h"
#include "vnmc/contract.h"

using namespace vnmc;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <typename F>
double time_ms(F&& f, double min_ms) {
  f();  // warm-up
  std::vector<double> ts;
  const double start = now_ms();
  do {
    const double t0 = now_ms();
    f();
    ts.push_back(now_ms() - t0);
  } while ((now_ms() - start < min_ms && ts.size() < 200) || ts.size() < 3);
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

// ---- dense baseline -------------------------------------------------------------------------------
// W row-major [N][K] for the GEMV; W packed in panels of 16 outputs x Kc for the GEMM.
constexpr int64_t kPanel = 16, kKc = 256, kTb = 6;

struct Dense {
  int64_t N, K;
  std::vector<float> W;       // [N][K]
  std::vector<float> panels;  // [N/16][K/Kc][Kc][16] (zero padded)
  int64_t np = 0, nk = 0;
  bool avx2 = false;
};

void pack_panels(Dense& d) {
  d.np = (d.N + kPanel - 1) / kPanel;
  d.nk = (d.K + kKc - 1) / kKc;
  d.panels.assign(static_cast<size_t>(d.np * d.nk * kKc * kPanel), 0.0f);
  for (int64_t p = 0; p < d.np; ++p)
    for (int64_t kb = 0; kb < d.nk; ++kb)
      for (int64_t kk = 0; kk < kKc; ++kk) {
        const int64_t k = kb * kKc + kk;
        if (k >= d.K) break;
        for (int64_t j = 0; j < kPanel; ++j) {
          const int64_t o = p * kPanel + j;
          if (o < d.N) d.panels[((p * d.nk + kb) * kKc + kk) * kPanel + j] = d.W[o * d.K + k];
        }
      }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void gemv_rows_avx2(const Dense& d, const float* A, int64_t T, float* Y,
                                                         int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) {
    const float* w = d.W.data() + o * d.K;
    for (int64_t t = 0; t < T; ++t) {
      const float* a = A + t * d.K;
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      int64_t k = 0;
      for (; k + 32 <= d.K; k += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(a + k), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), _mm256_loadu_ps(a + k + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 16), _mm256_loadu_ps(a + k + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 24), _mm256_loadu_ps(a + k + 24), s3);
      }
      __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, s);
      float r = tmp[0] + tmp[1] + tmp[2] + tmp[3] + tmp[4] + tmp[5] + tmp[6] + tmp[7];
      for (; k < d.K; ++k) r += w[k] * a[k];
      Y[t * d.N + o] = r;
    }
  }
}

// Y[t0..t0+6][panel p] += A[t][kb block] * panel
__attribute__((target("avx2,fma"))) void gemm_panel_avx2(const Dense& d, const float* A, int64_t T, float* Y, int64_t p) {
  for (int64_t t0 = 0; t0 < T; t0 += kTb) {
    const int64_t tn = std::min<int64_t>(kTb, T - t0);
    __m256 acc[kTb][2];
    for (int i = 0; i < kTb; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t kb = 0; kb < d.nk; ++kb) {
      const float* pw = d.panels.data() + (p * d.nk + kb) * kKc * kPanel;
      const int64_t kn = std::min<int64_t>(kKc, d.K - kb * kKc);
      const float* a0 = A + t0 * d.K + kb * kKc;
      if (tn == kTb) {
        for (int64_t kk = 0; kk < kn; ++kk) {
          const __m256 w0 = _mm256_loadu_ps(pw + kk * kPanel), w1 = _mm256_loadu_ps(pw + kk * kPanel + 8);
          for (int i = 0; i < kTb; ++i) {
            const __m256 a = _mm256_broadcast_ss(a0 + i * d.K + kk);
            acc[i][0] = _mm256_fmadd_ps(a, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, w1, acc[i][1]);
          }
        }
      } else {
        for (int64_t kk = 0; kk < kn; ++kk) {
          const __m256 w0 = _mm256_loadu_ps(pw + kk * kPanel), w1 = _mm256_loadu_ps(pw + kk * kPanel + 8);
          for (int i = 0; i < tn; ++i) {
            const __m256 a = _mm256_broadcast_ss(a0 + i * d.K + kk);
            acc[i][0] = _mm256_fmadd_ps(a, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, w1, acc[i][1]);
          }
        }
      }
    }
    for (int i = 0; i < tn; ++i) {
      alignas(32) float tmp[16];
      _mm256_store_ps(tmp, acc[i][0]);
      _mm256_store_ps(tmp + 8, acc[i][1]);
      for (int j = 0; j < kPanel; ++j) {
        const int64_t o = p * kPanel + j;
        if (o < d.N) Y[(t0 + i) * d.N + o] = tmp[j];
      }
    }
  }
}
#endif

void gemv_rows_portable(const Dense& d, const float* A, int64_t T, float* Y, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t t = 0; t < T; ++t) {
      float r = 0;
      for (int64_t k = 0; k < d.K; ++k) r += d.W[o * d.K + k] * A[t * d.K + k];
      Y[t * d.N + o] = r;
    }
}

struct DenseCtx {
  const Dense* d;
  const float* A;
  int64_t T;
  float* Y;
  int64_t rows_per_item;
};

void dense_item(void* p, size_t i) {
  const DenseCtx& c = *static_cast<const DenseCtx*>(p);
  const Dense& d = *c.d;
  if (c.T <= 4) {
    const int64_t o0 = static_cast<int64_t>(i) * c.rows_per_item, o1 = std::min(d.N, o0 + c.rows_per_item);
#if defined(__x86_64__)
    if (d.avx2) return gemv_rows_avx2(d, c.A, c.T, c.Y, o0, o1);
#endif
    return gemv_rows_portable(d, c.A, c.T, c.Y, o0, o1);
  }
#if defined(__x86_64__)
  if (d.avx2) return gemm_panel_avx2(d, c.A, c.T, c.Y, static_cast<int64_t>(i));
#endif
  const int64_t o0 = static_cast<int64_t>(i) * kPanel, o1 = std::min(d.N, o0 + kPanel);
  gemv_rows_portable(d, c.A, c.T, c.Y, o0, o1);
}

void dense_run(const Dense& d, const float* A, int64_t T, float* Y, cpu::Parallel& par) {
  DenseCtx c{&d, A, T, Y, 64};
  const size_t items = T <= 4 ? static_cast<size_t>((d.N + 63) / 64) : static_cast<size_t>(d.np);
  par.for_each(items, dense_item, &c);
}

// ---- sparse weights -------------------------------------------------------------------------------
struct Sparse {
  Attributes attrs;
  std::vector<uint8_t> values;
  std::vector<int32_t> columns;
  std::vector<uint8_t> meta;
  DType vdt = DType::kFloat32;
};

Sparse make_sparse(int64_t N, int64_t K, int64_t V, int64_t M, DType vdt, std::mt19937& rng) {
  Sparse s;
  s.attrs = {K, N, V, M, 2};
  s.vdt = vdt;
  Dims d;
  validate_attributes(s.attrs, &d);
  const size_t esz = dtype_size(vdt);
  s.values.resize(static_cast<size_t>(d.R * 2 * d.G) * esz);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t i = 0; i < d.R * 2 * d.G; ++i) {
    const float f = u(rng);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if (esz == 4) std::memcpy(&s.values[4 * i], &f, 4);
    else {
      const uint16_t h = vdt == DType::kBFloat16 ? static_cast<uint16_t>(bits >> 16)
                                                 : static_cast<uint16_t>(0x3000 | (rng() & 0x3ff));
      std::memcpy(&s.values[2 * i], &h, 2);
    }
  }
  s.columns.resize(static_cast<size_t>(d.B * d.G * 4));
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t g = 0; g < d.G; ++g) {
      // windowed: 4 sorted distinct channels of the group's window (clipped to K)
      std::vector<int32_t> cand;
      for (int64_t k = g * M; k < std::min(g * M + M, K); ++k) cand.push_back(static_cast<int32_t>(k));
      std::shuffle(cand.begin(), cand.end(), rng);
      int32_t* dst = &s.columns[(b * d.G + g) * 4];
      for (int j = 0; j < 4; ++j) dst[j] = cand[j % cand.size()];
      std::sort(dst, dst + 4);
    }
  static const uint8_t kCodes[6] = {0x4, 0x8, 0xc, 0x9, 0xd, 0xe};
  s.meta.assign(static_cast<size_t>(d.R * d.meta_cols), 0);
  for (int64_t r = 0; r < d.R; ++r)
    for (int64_t g = 0; g < d.G; ++g)
      s.meta[r * d.meta_cols + g / 2] |= static_cast<uint8_t>(kCodes[rng() % 6] << ((g & 1) * 4));
  return s;
}

std::unique_ptr<cpu::PackedGemm> prepare(const Sparse& s, const cpu::PrepareOptions& opt) {
  Dims d;
  validate_attributes(s.attrs, &d);
  TensorView v{s.values.data(), s.vdt, {d.R, 2 * d.G}, true};
  TensorView c{s.columns.data(), DType::kInt32, {d.B, d.G, 4}, true};
  TensorView m{s.meta.data(), DType::kUInt8, {d.R, d.meta_cols}, true};
  TensorView ri;
  PackedWeights pw;
  const std::string err = validate_packed_weights(s.attrs, DType::kFloat32, v, c, m, ri, &pw);
  if (!err.empty()) {
    std::fprintf(stderr, "invalid: %s\n", err.c_str());
    std::exit(1);
  }
  std::string e2;
  auto g = cpu::PackedGemm::create(pw, opt, &e2);
  if (!g) {
    std::fprintf(stderr, "create: %s\n", e2.c_str());
    std::exit(1);
  }
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, tune = false;
  int threads = 0;
  double min_ms = 300;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--tune") tune = true;
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--min-ms" && i + 1 < argc) min_ms = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--tune] [--threads N] [--min-ms X]\n", argv[0]);
      return 2;
    }
  }
  cpu::ThreadPool pool(threads);
  const cpu::Isa isa = cpu::best_isa();
  bool avx2 = false;
#if defined(__x86_64__)
  avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  std::printf("vnmc cpu_bench: %d threads, sparse kernel ISA %s, dense baseline %s, fp32 activations\n",
              pool.num_threads(), cpu::isa_name(isa), avx2 ? "avx2+fma" : "portable");
  std::printf("ratio = dense time / sparse time (> 1: sparse faster); dense is our own blocked loop, not onnxruntime\n\n");
  std::mt19937 rng(1);

  struct Shape {
    int64_t N, K;
  };
  std::vector<Shape> shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {768, 3072}, {3072, 768}};
  if (quick) shapes = {{4096, 4096}, {768, 3072}};
  const int64_t Ts[] = {1, 16, 256};
  const int64_t patterns[][2] = {{64, 8}, {64, 5}};

  std::printf("%-12s %5s | %10s | %10s %7s | %10s %7s\n", "N x K", "T", "dense ms", "64:2:8 ms", "ratio", "64:2:5 ms",
              "ratio");
  for (const Shape& sh : shapes) {
    Dense d;
    d.N = sh.N;
    d.K = sh.K;
    d.avx2 = avx2;
    d.W.resize(static_cast<size_t>(d.N * d.K));
    std::uniform_real_distribution<float> u(-1, 1);
    for (auto& w : d.W) w = u(rng);
    pack_panels(d);
    std::unique_ptr<cpu::PackedGemm> sp[2];
    for (int p = 0; p < 2; ++p) {
      const Sparse s = make_sparse(sh.N, sh.K, patterns[p][0], patterns[p][1], DType::kFloat32, rng);
      cpu::PrepareOptions opt;
      opt.isa = isa;
      sp[p] = prepare(s, opt);
    }
    for (int64_t T : Ts) {
      std::vector<float> A(static_cast<size_t>(T * sh.K));
      for (auto& a : A) a = u(rng);
      std::vector<float> Y(static_cast<size_t>(T * sh.N));
      const double td = time_ms([&] { dense_run(d, A.data(), T, Y.data(), pool); }, min_ms);
      double ts[2];
      for (int p = 0; p < 2; ++p)
        ts[p] = time_ms([&] { sp[p]->run(A.data(), T, nullptr, Y.data(), pool); }, min_ms);
      char name[32];
      std::snprintf(name, sizeof name, "%lldx%lld", static_cast<long long>(sh.N), static_cast<long long>(sh.K));
      std::printf("%-12s %5lld | %10.3f | %10.3f %6.2fx | %10.3f %6.2fx\n", name, static_cast<long long>(T), td, ts[0],
                  td / ts[0], ts[1], td / ts[1]);
      std::fflush(stdout);
    }
  }

  // Value storage for reduced-precision weights at decode: keep 16-bit (convert in registers) or
  // convert to fp32 once at creation.
  std::printf("\nfloat16 / bfloat16 values, T = 1 (64:2:8): keep 16-bit vs convert to fp32 at creation\n");
  std::printf("%-12s %-9s | %10s | %10s\n", "N x K", "values", "keep ms", "fp32 ms");
  for (const Shape& sh : std::vector<Shape>{{4096, 4096}, {11008, 4096}}) {
    for (DType vdt : {DType::kFloat16, DType::kBFloat16}) {
      const Sparse s = make_sparse(sh.N, sh.K, 64, 8, vdt, rng);
      cpu::PrepareOptions keep, conv;
      keep.isa = conv.isa = isa;
      keep.keep_half_values = 1;
      conv.keep_half_values = 0;
      auto gk = prepare(s, keep), gc = prepare(s, conv);
      std::vector<float> A(static_cast<size_t>(sh.K), 0.5f), Y(static_cast<size_t>(sh.N));
      const double tk = time_ms([&] { gk->run(A.data(), 1, nullptr, Y.data(), pool); }, min_ms);
      const double tc = time_ms([&] { gc->run(A.data(), 1, nullptr, Y.data(), pool); }, min_ms);
      char name[32];
      std::snprintf(name, sizeof name, "%lldx%lld", static_cast<long long>(sh.N), static_cast<long long>(sh.K));
      std::printf("%-12s %-9s | %10.3f | %10.3f\n", name, dtype_name(vdt), tk, tc);
    }
  }

  if (tune) {
    // Row path (rows vectorised) vs token path (tokens vectorised) by token count.
    std::printf("\nrow path vs token path, 4096x4096 64:2:8 fp32\n%5s | %10s | %10s\n", "T", "row ms", "token ms");
    const Sparse s = make_sparse(4096, 4096, 64, 8, DType::kFloat32, rng);
    cpu::PrepareOptions ro, to;
    ro.isa = to.isa = isa;
    ro.row_path_max_tokens = 1 << 20;
    to.row_path_max_tokens = 0;
    auto gr = prepare(s, ro), gt = prepare(s, to);
    for (int64_t T : {1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32}) {
      std::vector<float> A(static_cast<size_t>(T * 4096), 0.25f), Y(static_cast<size_t>(T * 4096));
      const double tr = time_ms([&] { gr->run(A.data(), T, nullptr, Y.data(), pool); }, min_ms);
      const double tt = time_ms([&] { gt->run(A.data(), T, nullptr, Y.data(), pool); }, min_ms);
      std::printf("%5lld | %10.3f | %10.3f\n", static_cast<long long>(T), tr, tt);
    }
  }
  return 0;
}
