// Tests of the contract validation and the CPU kernel core (no onnxruntime needed).
// Usage: vnmc_core_tests [contract|dtype|correctness|corrupt|threads|all]
// Prints one line per failure and ends with "N passed, N failed".
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cpu/half.h"
#include "cpu/kernel_data.h"
#include "cpu/packed_gemm.h"
#include "cpu/thread_pool.h"
#include "reference.h"
#include "vnmc/contract.h"

using namespace vnmc;
using namespace vnmc_test;

namespace {

int g_pass = 0, g_fail = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_pass;
  } else {
    ++g_fail;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

std::vector<cpu::Isa> isas() {
  std::vector<cpu::Isa> v = {cpu::Isa::kPortable};
  if (cpu::isa_supported(cpu::Isa::kAvx2)) v.push_back(cpu::Isa::kAvx2);
  if (cpu::isa_supported(cpu::Isa::kAvx512)) v.push_back(cpu::Isa::kAvx512);
  return v;
}

// Runs the kernel for one case with the given options; returns "" or the failure.
std::string run_case(const CaseData& c, const cpu::PrepareOptions& opt, cpu::Parallel& par, std::vector<uint8_t>* out_bytes) {
  PackedWeights pw;
  std::string err = validate_packed_weights(c.attrs, c.spec.act, c.values_view(), c.columns_view(), c.meta_view(),
                                            c.row_index_view(), &pw);
  if (!err.empty()) return "validation rejected a valid case: " + err;
  Dims d;
  validate_attributes(c.attrs, &d);
  err = validate_bias(d, c.spec.act, c.bias_view());
  if (!err.empty()) return "bias rejected: " + err;
  TensorView a;
  a.data = c.A.data();
  a.dtype = c.spec.act;
  a.shape = c.spec.a_shape.empty() ? std::vector<int64_t>{c.spec.T, c.spec.K} : c.spec.a_shape;
  a.present = true;
  int64_t T = -1;
  err = validate_activations(d, c.spec.act, a, &T);
  if (!err.empty()) return "activations rejected: " + err;
  if (T != c.spec.T) return "token count mismatch";

  auto g = cpu::PackedGemm::create(pw, opt, &err);
  if (!g) return "create failed: " + err;
  std::vector<float> bias;
  if (!c.bias.empty()) bias = cpu::to_f32(c.bias.data(), c.spec.act, c.spec.N_out);
  // Output buffer with a guard: poison it so unwritten outputs show up.
  const size_t esz = elem_size(c.spec.act);
  std::vector<uint8_t> out(static_cast<size_t>(T * c.spec.N_out) * esz, 0xff);
  err = g->run(c.A.data(), T, bias.empty() ? nullptr : bias.data(), out.data(), par);
  if (!err.empty()) return "run failed: " + err;
  if (out_bytes) *out_bytes = out;
  std::vector<double> y, scale;
  reference(c, &y, &scale);
  return compare(c, out.data(), y, scale);
}

// ---------------------------------------------------------------------------------------------------
void suite_contract() {
  Attributes a{4096, 11008, 64, 8, 2};
  Dims d;
  check(validate_attributes(a, &d).empty(), "valid attributes accepted");
  check(d.R == 11008 && d.B == 172 && d.G == 512 && d.meta_cols == 256, "dims of 11008x4096 64:2:8");
  a = {100, 70, 16, 5, 2};
  check(validate_attributes(a, &d).empty() && d.R == 80 && d.B == 5 && d.G == 20 && d.meta_cols == 10, "dims of 70x100 16:2:5");
  a = {7, 3, 128, 32, 2};
  check(validate_attributes(a, &d).empty() && d.R == 128 && d.G == 1 && d.meta_cols == 1, "dims of 3x7 128:2:32");
  check(meta_code_valid(0x4) && meta_code_valid(0xe) && !meta_code_valid(0x0) && !meta_code_valid(0x5) &&
            !meta_code_valid(0x3) && !meta_code_valid(0xf),
        "meta code validity");
  int valid = 0;
  for (unsigned c = 0; c < 16; ++c) valid += meta_code_valid(c);
  check(valid == 6, "exactly six valid meta codes");
  check(dtype_pair_allowed(DType::kFloat32, DType::kFloat16) && dtype_pair_allowed(DType::kFloat32, DType::kBFloat16) &&
            dtype_pair_allowed(DType::kFloat16, DType::kFloat16) && !dtype_pair_allowed(DType::kFloat16, DType::kFloat32) &&
            !dtype_pair_allowed(DType::kBFloat16, DType::kFloat16) && !dtype_pair_allowed(DType::kFloat32, DType::kInt32),
        "dtype pairs");
  // windowed detection
  for (ColumnMode m : {ColumnMode::kWindowed, ColumnMode::kPermuted}) {
    CaseSpec s;
    s.K = 64;
    s.N_out = 32;
    s.cols = m;
    CaseData c = make_case(s);
    PackedWeights pw;
    check(validate_packed_weights(c.attrs, s.act, c.values_view(), c.columns_view(), c.meta_view(), c.row_index_view(), &pw)
              .empty(),
          "valid case accepted");
    check(pw.windowed == (m == ColumnMode::kWindowed), "windowed detection");
  }
}

// ---------------------------------------------------------------------------------------------------
void suite_dtype() {
  // Library scalar conversions vs the test's independent decoder, all 65536 patterns.
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t x = static_cast<uint16_t>(h);
    const double want = decode(DType::kFloat16, &x, 0);
    const float got = cpu::f16_to_f32(x);
    if (std::isnan(want) ? !std::isnan(got) : static_cast<double>(got) != want) ++bad;
    if (!std::isnan(want) && cpu::f32_to_f16(got) != x) ++bad;  // exact round trip
    const double wb = decode(DType::kBFloat16, &x, 0);
    const float gb = cpu::bf16_to_f32(x);
    if (std::isnan(wb) ? !std::isnan(gb) : static_cast<double>(gb) != wb) ++bad;
    if (!std::isnan(wb) && cpu::f32_to_bf16(gb) != x) ++bad;
  }
  check(bad == 0, "fp16/bf16 scalar conversions: " + std::to_string(bad) + " wrong");
  // Rounding: midpoints between consecutive positive fp16 values round to even.
  bad = 0;
  for (uint16_t h = 0; h < 0x7bff; ++h) {
    const uint16_t h1 = static_cast<uint16_t>(h + 1);
    const double lo = decode(DType::kFloat16, &h, 0), hi = decode(DType::kFloat16, &h1, 0);
    const float mid = static_cast<float>((lo + hi) / 2);  // exact in fp32
    const uint16_t want = (h & 1) ? h1 : h;
    if (cpu::f32_to_f16(mid) != want) ++bad;
    if (cpu::f32_to_f16(std::nextafter(mid, 0.0f)) != h) ++bad;
    if (cpu::f32_to_f16(std::nextafter(mid, 1e9f)) != h1) ++bad;
  }
  check(bad == 0, "fp16 round-to-nearest-even: " + std::to_string(bad) + " wrong");
  check(cpu::f32_to_f16(70000.0f) == 0x7c00 && cpu::f32_to_f16(-1e-10f) == 0x8000, "fp16 overflow/underflow");
  check(cpu::f32_to_bf16(1.00390625f) == 0x3f80 && cpu::f32_to_bf16(1.01171875f) == 0x3f82, "bf16 rounding to even");

  // Vector conversions of every ISA agree with the scalar ones (NaNs: NaN-ness only).
  std::mt19937 rng(7);
  std::vector<uint16_t> hs(65536 + 7);
  for (size_t i = 0; i < hs.size(); ++i) hs[i] = static_cast<uint16_t>(i);
  std::vector<float> fs(100003);
  for (auto& f : fs) {
    uint32_t u = rng();
    std::memcpy(&f, &u, 4);
  }
  for (size_t i = 0; i < 1000; ++i) fs[i] = std::ldexp(static_cast<float>(rng() % 4096) / 4096.0f, static_cast<int>(rng() % 40) - 30);
  const cpu::IsaKernels* ks[3] = {&cpu::portable::kKernels, nullptr, nullptr};
#if defined(VNMC_HAVE_AVX2_KERNELS)
  if (cpu::isa_supported(cpu::Isa::kAvx2)) ks[1] = &cpu::avx2::kKernels;
#endif
#if defined(VNMC_HAVE_AVX512_KERNELS)
  if (cpu::isa_supported(cpu::Isa::kAvx512)) ks[2] = &cpu::avx512::kKernels;
#endif
  for (const cpu::IsaKernels* k : ks) {
    if (!k) continue;
    std::vector<float> f(hs.size());
    std::vector<uint16_t> h(fs.size());
    int bad2 = 0;
    k->f16_to_f32(hs.data(), f.data(), hs.size());
    for (size_t i = 0; i < hs.size(); ++i) {
      const float w = cpu::f16_to_f32(hs[i]);
      if (std::isnan(w) ? !std::isnan(f[i]) : f[i] != w) ++bad2;
    }
    k->bf16_to_f32(hs.data(), f.data(), hs.size());
    for (size_t i = 0; i < hs.size(); ++i) {
      const float w = cpu::bf16_to_f32(hs[i]);
      if (std::isnan(w) ? !std::isnan(f[i]) : f[i] != w) ++bad2;
    }
    k->f32_to_f16(fs.data(), h.data(), fs.size());
    for (size_t i = 0; i < fs.size(); ++i) {
      const uint16_t w = cpu::f32_to_f16(fs[i]);
      if (std::isnan(fs[i]) ? (h[i] & 0x7c00) != 0x7c00 || !(h[i] & 0x3ff) : h[i] != w) ++bad2;
    }
    k->f32_to_bf16(fs.data(), h.data(), fs.size());
    for (size_t i = 0; i < fs.size(); ++i) {
      const uint16_t w = cpu::f32_to_bf16(fs[i]);
      if (std::isnan(fs[i]) ? (h[i] & 0x7f80) != 0x7f80 || !(h[i] & 0x7f) : h[i] != w) ++bad2;
    }
    check(bad2 == 0, std::string("vector conversions (") + k->name + "): " + std::to_string(bad2) + " wrong");
  }
}

// ---------------------------------------------------------------------------------------------------
void suite_correctness() {
  std::mt19937_64 rng(20261126);
  const int64_t Vs[] = {8, 16, 32, 64, 128};
  const int64_t Ms[] = {4, 5, 6, 8, 16};
  const int64_t Ts[] = {1, 3, 17, 64};
  const DType pairs[][2] = {{DType::kFloat32, DType::kFloat32},
                            {DType::kFloat32, DType::kFloat16},
                            {DType::kFloat32, DType::kBFloat16},
                            {DType::kFloat16, DType::kFloat16},
                            {DType::kBFloat16, DType::kBFloat16}};
  cpu::ThreadPool pool(2);
  int cases = 0;
  for (int i = 0; i < 120; ++i) {
    CaseSpec s;
    s.V = Vs[i % 5];
    s.M = Ms[(i / 5) % 5];
    s.T = Ts[(i / 25 + i) % 4];
    const auto& p = pairs[(i / 3) % 5];
    s.act = p[0];
    s.val = p[1];
    s.cols = static_cast<ColumnMode>(rng() % 3);
    s.row_index = (rng() % 2) == 0;
    s.bias = (rng() % 2) == 0;
    // sizes: small enough for the dense reference, not multiples of M or V
    s.K = 1 + static_cast<int64_t>(rng() % (s.T >= 17 ? 160 : 300));
    s.N_out = 1 + static_cast<int64_t>(rng() % (s.T >= 17 ? 200 : 330));
    if (i % 7 == 0) s.a_shape = {1, s.T, s.K};  // batch dims
    s.seed = rng();
    const CaseData c = make_case(s);
    ++cases;
    for (cpu::Isa isa : isas()) {
      // auto path, forced row path, forced token path; values kept 16-bit or converted
      for (int variant = 0; variant < 4; ++variant) {
        cpu::PrepareOptions opt;
        opt.isa = isa;
        opt.row_path_max_tokens = variant == 1 ? 1 << 20 : variant == 2 ? 0 : -1;
        opt.keep_half_values = variant == 3 ? 0 : 1;
        const std::string err = run_case(c, opt, pool, nullptr);
        check(err.empty(), std::string(cpu::isa_name(isa)) + " variant " + std::to_string(variant) + " " + s.describe() +
                               ": " + err);
      }
    }
  }
  // A few larger shapes (V = 64, K and N_out a few hundred) through both paths.
  for (int64_t T : {1, 2, 5, 64, 100}) {
    CaseSpec s;
    s.K = 515;
    s.N_out = 333;
    s.V = 64;
    s.M = 5;
    s.T = T;
    s.cols = ColumnMode::kPermuted;
    s.row_index = true;
    s.bias = true;
    s.val = DType::kFloat16;
    s.seed = 99 + T;
    const CaseData c = make_case(s);
    for (cpu::Isa isa : isas()) {
      cpu::PrepareOptions opt;
      opt.isa = isa;
      check(run_case(c, opt, pool, nullptr).empty(), std::string("large ") + cpu::isa_name(isa) + " " + s.describe());
    }
  }
  // Every token count 1..19 (all remainders of the row path's token tiles: 4 on portable/AVX2, 8 on
  // AVX-512), windowed (the AVX-512 gather's 4-group window permute when M <= 8, K >= 32) and
  // permuted columns (its 16-lane gather), K with a partial last quad of groups, several chunk counts.
  for (int64_t T = 1; T <= 19; ++T) {
    for (ColumnMode cm : {ColumnMode::kWindowed, ColumnMode::kPermuted}) {
      CaseSpec s;
      s.K = 37 + 13 * T;  // G = ceil(K / M): various G % 4
      s.N_out = 8 + 17 * T;
      s.V = T % 3 == 0 ? 8 : T % 3 == 1 ? 32 : 128;
      s.M = 4 + T % 5;
      s.T = T;
      s.cols = cm;
      s.row_index = T % 2 == 0;
      s.bias = T % 4 < 2;
      s.val = T % 3 == 0 ? DType::kBFloat16 : T % 3 == 1 ? DType::kFloat16 : DType::kFloat32;
      if (T % 5 == 0) s.a_shape = {1, T, s.K};
      s.seed = 1000 + T;
      const CaseData c = make_case(s);
      for (cpu::Isa isa : isas())
        for (int variant = 0; variant < 2; ++variant) {
          cpu::PrepareOptions opt;
          opt.isa = isa;
          opt.row_path_max_tokens = variant == 0 ? -1 : 1 << 20;
          check(run_case(c, opt, pool, nullptr).empty(),
                std::string("token tiles ") + cpu::isa_name(isa) + " variant " + std::to_string(variant) + " " + s.describe());
        }
    }
  }
  std::printf("correctness: %d random cases x %zu ISA(s) x 4 variants\n", cases, isas().size());
}

// ---------------------------------------------------------------------------------------------------
struct Corruption {
  const char* name;
  std::function<void(CaseData&, TensorView&, TensorView&, TensorView&, TensorView&)> apply;
};

void suite_corrupt() {
  CaseSpec s;
  s.K = 37;  // G = 5 with M = 8: odd, so the high-nibble rule applies
  s.N_out = 40;
  s.V = 16;
  s.M = 8;
  s.row_index = true;
  s.bias = true;
  s.seed = 5;
  const CaseData base = make_case(s);
  const int64_t G = base.G, R = base.R, B = base.B;

  std::vector<Corruption> cs = {
      {"bad meta nibble (p0 == p1)", [](CaseData& c, TensorView&, TensorView&, TensorView& m, TensorView&) {
         c.meta[3] = static_cast<uint8_t>((c.meta[3] & 0xf0) | 0x5);
         m.data = c.meta.data();
       }},
      {"bad meta nibble (p0 > p1)", [](CaseData& c, TensorView&, TensorView&, TensorView& m, TensorView&) {
         c.meta[c.meta.size() - 2] = static_cast<uint8_t>((c.meta[c.meta.size() - 2] & 0x0f) | 0x60);
         m.data = c.meta.data();
       }},
      {"meta code 0", [](CaseData& c, TensorView&, TensorView&, TensorView& m, TensorView&) {
         c.meta[0] &= 0xf0;
         m.data = c.meta.data();
       }},
      {"unused high nibble not 0", [G](CaseData& c, TensorView&, TensorView&, TensorView& m, TensorView&) {
         c.meta[(G + 1) / 2 - 1] |= 0x40;
         m.data = c.meta.data();
       }},
      {"column == K", [](CaseData& c, TensorView&, TensorView& col, TensorView&, TensorView&) {
         c.columns[7] = static_cast<int32_t>(c.spec.K);
         col.data = c.columns.data();
       }},
      {"column negative", [](CaseData& c, TensorView&, TensorView& col, TensorView&, TensorView&) {
         c.columns.back() = -1;
         col.data = c.columns.data();
       }},
      {"row_index duplicate", [](CaseData& c, TensorView&, TensorView&, TensorView&, TensorView& ri) {
         for (size_t r = 1; r < c.row_index.size(); ++r)
           if (c.row_index[r] >= 0 && c.row_index[r] != c.row_index[0] && c.row_index[0] >= 0) {
             c.row_index[r] = c.row_index[0];
             break;
           }
         if (c.row_index[0] < 0) {
           for (size_t r = 1; r < c.row_index.size(); ++r)
             if (c.row_index[r] >= 0) {
               c.row_index[0] = c.row_index[r];
               break;
             }
         }
         ri.data = c.row_index.data();
       }},
      {"row_index misses an output", [](CaseData& c, TensorView&, TensorView&, TensorView&, TensorView& ri) {
         for (auto& o : c.row_index)
           if (o >= 0) {
             o = -1;
             break;
           }
         ri.data = c.row_index.data();
       }},
      {"row_index >= N_out", [](CaseData& c, TensorView&, TensorView&, TensorView&, TensorView& ri) {
         for (auto& o : c.row_index)
           if (o < 0) {
             o = static_cast<int32_t>(c.spec.N_out);
             break;
           }
         ri.data = c.row_index.data();
       }},
      {"row_index < -1", [](CaseData& c, TensorView&, TensorView&, TensorView&, TensorView& ri) {
         c.row_index[2] = -2;
         ri.data = c.row_index.data();
       }},
      {"values shape [R, 2G+1]", [R, G](CaseData& c, TensorView& v, TensorView&, TensorView&, TensorView&) {
         c.values.resize(static_cast<size_t>(R * (2 * G + 1)) * 4);
         v.data = c.values.data();
         v.shape = {R, 2 * G + 1};
       }},
      {"values shape [R-1, 2G]", [R, G](CaseData& c, TensorView& v, TensorView&, TensorView&, TensorView&) {
         c.values.resize(static_cast<size_t>((R - 1) * 2 * G) * 4);
         v.data = c.values.data();
         v.shape = {R - 1, 2 * G};
       }},
      {"values rank 1", [R, G](CaseData& c, TensorView& v, TensorView&, TensorView&, TensorView&) {
         v.shape = {R * 2 * G};
       }},
      {"values dtype int32", [](CaseData&, TensorView& v, TensorView&, TensorView&, TensorView&) { v.dtype = DType::kInt32; }},
      {"columns shape [B, G, 3]", [B, G](CaseData& c, TensorView&, TensorView& col, TensorView&, TensorView&) {
         c.columns.resize(static_cast<size_t>(B * G * 3));
         col.data = c.columns.data();
         col.shape = {B, G, 3};
       }},
      {"columns shape [B+1, G, 4]", [B, G](CaseData& c, TensorView&, TensorView& col, TensorView&, TensorView&) {
         c.columns.resize(static_cast<size_t>((B + 1) * G * 4));
         col.data = c.columns.data();
         col.shape = {B + 1, G, 4};
       }},
      {"columns dtype uint8", [](CaseData&, TensorView&, TensorView& col, TensorView&, TensorView&) {
         col.dtype = DType::kUInt8;
       }},
      {"meta shape [R, G]", [R, G](CaseData& c, TensorView&, TensorView&, TensorView& m, TensorView&) {
         c.meta.resize(static_cast<size_t>(R * G), 0x44);
         m.data = c.meta.data();
         m.shape = {R, G};
       }},
      {"meta shape [R, ceil(G/2) - 1]", [R, G](CaseData& c, TensorView&, TensorView&, TensorView& m, TensorView&) {
         c.meta.resize(static_cast<size_t>(R * ((G + 1) / 2 - 1)));
         m.data = c.meta.data();
         m.shape = {R, (G + 1) / 2 - 1};
       }},
      {"row_index shape [R-1]", [R](CaseData& c, TensorView&, TensorView&, TensorView&, TensorView& ri) {
         c.row_index.resize(static_cast<size_t>(R - 1));
         ri.data = c.row_index.data();
         ri.shape = {R - 1};
       }},
      {"row_index dtype float", [](CaseData&, TensorView&, TensorView&, TensorView&, TensorView& ri) {
         ri.dtype = DType::kFloat32;
       }},
      {"negative dimension", [R, G](CaseData&, TensorView& v, TensorView&, TensorView&, TensorView&) {
         v.shape = {-R, -2 * G};
       }},
      {"null data", [](CaseData&, TensorView& v, TensorView&, TensorView&, TensorView&) { v.data = nullptr; }},
      {"values missing", [](CaseData&, TensorView& v, TensorView&, TensorView&, TensorView&) { v.present = false; }},
  };
  for (auto& cc : cs) {
    CaseData c = base;
    TensorView v = c.values_view(), col = c.columns_view(), m = c.meta_view(), ri = c.row_index_view();
    cc.apply(c, v, col, m, ri);
    PackedWeights pw;
    const std::string err = validate_packed_weights(c.attrs, s.act, v, col, m, ri, &pw);
    check(!err.empty(), std::string("corrupt input rejected: ") + cc.name);
    if (std::getenv("VNMC_TEST_VERBOSE")) std::printf("  %-32s -> %s\n", cc.name, err.c_str());
  }

  // Attributes.
  struct {
    const char* name;
    Attributes a;
  } attrs[] = {{"V = 0", {37, 40, 0, 8, 2}},        {"V < 0", {37, 40, -16, 8, 2}},
               {"V > 4096", {37, 40, 8192, 8, 2}},  {"M = 3", {37, 40, 16, 3, 2}},
               {"M = 33", {37, 40, 16, 33, 2}},     {"M = 0", {37, 40, 16, 0, 2}},
               {"N = 3", {37, 40, 16, 8, 3}},       {"N = 1", {37, 40, 16, 8, 1}},
               {"K = 0", {0, 40, 16, 8, 2}},        {"N_out = 0", {37, 0, 16, 8, 2}},
               {"K = 2^31", {int64_t{1} << 31, 40, 16, 8, 2}}, {"N_out = 2^40", {37, int64_t{1} << 40, 16, 8, 2}}};
  for (auto& x : attrs) {
    Dims d;
    check(!validate_attributes(x.a, &d).empty(), std::string("bad attribute rejected: ") + x.name);
    PackedWeights pw;
    check(!validate_packed_weights(x.a, s.act, base.values_view(), base.columns_view(), base.meta_view(),
                                   base.row_index_view(), &pw)
               .empty(),
          std::string("bad attribute rejected by weight validation: ") + x.name);
  }
  // Attribute/weight mismatch: the tensors are right for K = 37 but the node says K = 45.
  {
    Attributes a = base.attrs;
    a.in_features = 45;  // G = 6 -> shapes differ
    PackedWeights pw;
    check(!validate_packed_weights(a, s.act, base.values_view(), base.columns_view(), base.meta_view(),
                                   base.row_index_view(), &pw)
               .empty(),
          "in_features inconsistent with tensor shapes rejected");
    a = base.attrs;
    a.in_features = 33;  // same G = 5, but some column indices >= 33
    std::string e = validate_packed_weights(a, s.act, base.values_view(), base.columns_view(), base.meta_view(),
                                            base.row_index_view(), &pw);
    check(!e.empty(), "columns beyond a smaller in_features rejected");
  }
  // dtype pairs
  {
    PackedWeights pw;
    check(!validate_packed_weights(base.attrs, DType::kFloat16, base.values_view(), base.columns_view(),
                                   base.meta_view(), base.row_index_view(), &pw)
               .empty(),
          "float values with float16 activations rejected");
  }
  // bias and activations
  Dims d;
  validate_attributes(base.attrs, &d);
  {
    TensorView b = base.bias_view();
    b.shape = {d.N_out + 1};
    check(!validate_bias(d, s.act, b).empty(), "bias of wrong shape rejected");
    b = base.bias_view();
    b.dtype = DType::kFloat16;
    check(!validate_bias(d, s.act, b).empty(), "bias of wrong type rejected");
    b = base.bias_view();
    b.shape = {1, d.N_out};
    check(!validate_bias(d, s.act, b).empty(), "bias of rank 2 rejected");
    check(validate_bias(d, s.act, TensorView()).empty(), "absent bias accepted");
  }
  {
    TensorView a;
    a.data = base.A.data();
    a.dtype = s.act;
    a.present = true;
    int64_t T = 0;
    a.shape = {1, d.K + 1};
    check(!validate_activations(d, s.act, a, &T).empty(), "A with last dim != K rejected");
    a.shape = {};
    check(!validate_activations(d, s.act, a, &T).empty(), "scalar A rejected");
    a.shape = {2, d.K};
    a.dtype = DType::kFloat16;
    check(!validate_activations(d, s.act, a, &T).empty(), "A of wrong type rejected");
    a.dtype = s.act;
    a.shape = {0, 3, d.K};
    check(validate_activations(d, s.act, a, &T).empty() && T == 0, "empty A accepted with T = 0");
    a.shape = {d.K};
    check(validate_activations(d, s.act, a, &T).empty() && T == 1, "rank-1 A is one token");
  }
}

// ---------------------------------------------------------------------------------------------------
void suite_threads() {
  // The same case with 1, 2 and 3 threads gives bit-identical outputs (each output element is
  // computed by exactly one work item, in a fixed order).
  for (int64_t T : {1, 4, 33, 130}) {
    CaseSpec s;
    s.K = 300;
    s.N_out = 260;
    s.V = 32;
    s.M = 6;
    s.T = T;
    s.cols = ColumnMode::kPermuted;
    s.row_index = true;
    s.bias = true;
    s.seed = 11 + T;
    const CaseData c = make_case(s);
    for (cpu::Isa isa : isas()) {
      cpu::PrepareOptions opt;
      opt.isa = isa;
      std::vector<uint8_t> o1, o2, o3;
      cpu::SerialParallel serial;
      cpu::ThreadPool p2(2), p3(3);
      const std::string e1 = run_case(c, opt, serial, &o1);
      const std::string e2 = run_case(c, opt, p2, &o2);
      const std::string e3 = run_case(c, opt, p3, &o3);
      check(e1.empty() && e2.empty() && e3.empty(), "threaded runs correct: " + e1 + e2 + e3);
      check(o1 == o2 && o1 == o3, std::string("threaded runs bit-identical (") + cpu::isa_name(isa) + ", T=" + std::to_string(T) + ")");
    }
  }
  // Concurrent runs of one PackedGemm from several threads (ORT may run a session concurrently).
  CaseSpec s;
  s.K = 200;
  s.N_out = 100;
  s.V = 16;
  s.M = 4;
  s.T = 20;
  s.seed = 3;
  const CaseData c = make_case(s);
  PackedWeights pw;
  validate_packed_weights(c.attrs, s.act, c.values_view(), c.columns_view(), c.meta_view(), c.row_index_view(), &pw);
  std::string err;
  auto g = cpu::PackedGemm::create(pw, cpu::PrepareOptions(), &err);
  std::vector<double> y, scale;
  reference(c, &y, &scale);
  std::vector<std::string> errs(4);
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&, i] {
      cpu::ThreadPool pool(2);
      for (int rep = 0; rep < 5 && errs[i].empty(); ++rep) {
        std::vector<float> out(static_cast<size_t>(s.T * s.N_out));
        errs[i] = g->run(c.A.data(), s.T, nullptr, out.data(), pool);
        if (errs[i].empty()) errs[i] = compare(c, out.data(), y, scale);
      }
    });
  for (auto& t : ts) t.join();
  for (auto& e : errs) check(e.empty(), "concurrent runs: " + e);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "all";
  std::printf("vnmc core tests (%s); ISAs:", which.c_str());
  for (cpu::Isa i : isas()) std::printf(" %s", cpu::isa_name(i));
  std::printf("\n");
  bool any = false;
  if (which == "all" || which == "contract") any = true, suite_contract();
  if (which == "all" || which == "dtype") any = true, suite_dtype();
  if (which == "all" || which == "correctness") any = true, suite_correctness();
  if (which == "all" || which == "corrupt") any = true, suite_corrupt();
  if (which == "all" || which == "threads") any = true, suite_threads();
  if (!any) {
    std::printf("unknown suite '%s'\n", which.c_str());
    return 2;
  }
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}
