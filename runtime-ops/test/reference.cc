#include "reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>

namespace vnmc_test {

std::string CaseSpec::describe() const {
  std::ostringstream os;
  const char* cm = cols == ColumnMode::kWindowed    ? "windowed"
                   : cols == ColumnMode::kPermuted  ? "permuted"
                   : cols == ColumnMode::kGlobalPerm ? "global-permuted"
                                                     : "random";
  os << "K=" << K << " N_out=" << N_out << " V=" << V << " M=" << M << " act=" << vnmc::dtype_name(act)
     << " val=" << vnmc::dtype_name(val) << " cols=" << cm << " row_index=" << row_index << " bias=" << bias
     << " T=" << T << " seed=" << seed;
  return os.str();
}

size_t elem_size(DType t) { return t == DType::kFloat32 || t == DType::kInt32 ? 4 : t == DType::kUInt8 ? 1 : 2; }

double decode(DType t, const void* base, int64_t i) {
  if (t == DType::kFloat32) return static_cast<const float*>(base)[i];
  const uint16_t h = static_cast<const uint16_t*>(base)[i];
  if (t == DType::kBFloat16) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  // float16: sign * (implicit 1 + mant / 1024) * 2^(exp - 15), subnormals mant * 2^-24
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 31;
  const int mant = h & 1023;
  if (exp == 31) return mant ? NAN : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(static_cast<double>(mant), -24);
  return sign * std::ldexp(static_cast<double>(1024 + mant), exp - 25);
}

namespace {

// Random value of type t, stored at dst[i]. Magnitudes around 2^-3 .. 2.
void put_random(DType t, std::vector<uint8_t>& buf, int64_t i, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  if (t == DType::kFloat32) {
    const float f = u(rng);
    std::memcpy(buf.data() + 4 * i, &f, 4);
  } else if (t == DType::kBFloat16) {
    const float f = u(rng);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    const uint16_t h = static_cast<uint16_t>(bits >> 16);  // truncation: any bf16 value will do
    std::memcpy(buf.data() + 2 * i, &h, 2);
  } else {
    const uint16_t sign = static_cast<uint16_t>(rng() & 1) << 15;
    const uint16_t exp = static_cast<uint16_t>(12 + rng() % 4);  // 2^-3 .. 2^0 (x 1.xxx)
    const uint16_t mant = static_cast<uint16_t>(rng() & 1023);
    const uint16_t h = static_cast<uint16_t>(sign | (exp << 10) | mant);
    std::memcpy(buf.data() + 2 * i, &h, 2);
  }
}

}  // namespace

vnmc::TensorView CaseData::values_view() const {
  vnmc::TensorView v;
  v.data = values.data();
  v.dtype = spec.val;
  v.shape = {R, 2 * G};
  v.present = true;
  return v;
}
vnmc::TensorView CaseData::columns_view() const {
  vnmc::TensorView v;
  v.data = columns.data();
  v.dtype = DType::kInt32;
  v.shape = {B, G, 4};
  v.present = true;
  return v;
}
vnmc::TensorView CaseData::meta_view() const {
  vnmc::TensorView v;
  v.data = meta.data();
  v.dtype = DType::kUInt8;
  v.shape = {R, meta_cols};
  v.present = true;
  return v;
}
vnmc::TensorView CaseData::row_index_view() const {
  vnmc::TensorView v;
  if (row_index.empty()) return v;
  v.data = row_index.data();
  v.dtype = DType::kInt32;
  v.shape = {R};
  v.present = true;
  return v;
}
vnmc::TensorView CaseData::bias_view() const {
  vnmc::TensorView v;
  if (bias.empty()) return v;
  v.data = bias.data();
  v.dtype = spec.act;
  v.shape = {spec.N_out};
  v.present = true;
  return v;
}

CaseData make_case(const CaseSpec& s) {
  std::mt19937_64 rng(s.seed);
  CaseData c;
  c.spec = s;
  c.attrs.in_features = s.K;
  c.attrs.out_features = s.N_out;
  c.attrs.v = s.V;
  c.attrs.m = s.M;
  c.attrs.n = 2;
  c.B = (s.N_out + s.V - 1) / s.V;
  c.R = c.B * s.V;
  c.G = (s.K + s.M - 1) / s.M;
  c.meta_cols = (c.G + 1) / 2;

  // columns
  std::vector<int32_t> perm(static_cast<size_t>(s.K));
  std::iota(perm.begin(), perm.end(), 0);
  c.columns.resize(static_cast<size_t>(c.B * c.G * 4));
  for (int64_t b = 0; b < c.B; ++b) {
    if (s.cols == ColumnMode::kPermuted || (s.cols == ColumnMode::kGlobalPerm && b == 0))
      std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t g = 0; g < c.G; ++g) {
      int32_t* dst = &c.columns[(b * c.G + g) * 4];
      if (s.cols == ColumnMode::kRandom) {
        for (int j = 0; j < 4; ++j) dst[j] = static_cast<int32_t>(rng() % s.K);
        continue;
      }
      // The group's candidate channels: window [g*M, g*M+M) (or its image under the block's
      // permutation), clipped to K. Take 4 distinct ones in increasing order; repeat when fewer.
      std::vector<int32_t> cand;
      for (int64_t k = g * s.M; k < std::min<int64_t>(g * s.M + s.M, s.K); ++k)
        cand.push_back(s.cols == ColumnMode::kPermuted || s.cols == ColumnMode::kGlobalPerm ? perm[k]
                                                                                          : static_cast<int32_t>(k));
      std::shuffle(cand.begin(), cand.end(), rng);
      for (int j = 0; j < 4; ++j) dst[j] = cand[j % cand.size()];
      if (cand.size() >= 4) std::sort(dst, dst + 4);
    }
  }

  // meta: random valid codes; unused high nibble 0
  static const uint8_t kCodes[6] = {0x4, 0x8, 0xc, 0x9, 0xd, 0xe};  // (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
  c.meta.assign(static_cast<size_t>(c.R * c.meta_cols), 0);
  for (int64_t r = 0; r < c.R; ++r)
    for (int64_t g = 0; g < c.G; ++g) {
      const uint8_t code = kCodes[rng() % 6];
      c.meta[r * c.meta_cols + g / 2] |= (g & 1) ? static_cast<uint8_t>(code << 4) : code;
    }

  // values: random everywhere, padding rows included (they must not reach any output)
  c.values.assign(static_cast<size_t>(c.R * 2 * c.G) * elem_size(s.val), 0);
  for (int64_t i = 0; i < c.R * 2 * c.G; ++i) put_random(s.val, c.values, i, rng);

  if (s.row_index) {
    std::vector<int32_t> ri(static_cast<size_t>(c.R));
    for (int64_t r = 0; r < c.R; ++r) ri[r] = r < s.N_out ? static_cast<int32_t>(r) : -1;
    std::shuffle(ri.begin(), ri.end(), rng);
    c.row_index = ri;
  }
  if (s.bias) {
    c.bias.assign(static_cast<size_t>(s.N_out) * elem_size(s.act), 0);
    for (int64_t i = 0; i < s.N_out; ++i) put_random(s.act, c.bias, i, rng);
  }
  c.A.assign(static_cast<size_t>(s.T * s.K) * elem_size(s.act), 0);
  for (int64_t i = 0; i < s.T * s.K; ++i) put_random(s.act, c.A, i, rng);
  return c;
}

void reference(const CaseData& c, std::vector<double>* y, std::vector<double>* scale) {
  const CaseSpec& s = c.spec;
  // Each output channel's weights from the packed arrays, per the contract (repeated channels summed),
  // as a sparse row: a dense T x N x K loop that decodes A per multiply made the GPU suite's big cases
  // take minutes of host time.
  struct Entry {
    int64_t col;
    double v, abs;
  };
  std::vector<std::vector<Entry>> rows(static_cast<size_t>(s.N_out));
  for (int64_t r = 0; r < c.R; ++r) {
    const int64_t o = c.row_index.empty() ? (r < s.N_out ? r : -1) : c.row_index[r];
    if (o < 0) continue;
    const int64_t b = r / s.V;
    std::vector<Entry>& row = rows[static_cast<size_t>(o)];
    for (int64_t g = 0; g < c.G; ++g) {
      const uint8_t byte = c.meta[r * c.meta_cols + g / 2];
      const int code = (g % 2) ? (byte >> 4) : (byte & 15);
      const int p[2] = {code & 3, (code >> 2) & 3};
      for (int k = 0; k < 2; ++k) {
        const double v = decode(s.val, c.values.data(), r * 2 * c.G + 2 * g + k);
        row.push_back({c.columns[(b * c.G + g) * 4 + p[k]], v, std::fabs(v)});
      }
    }
  }
  for (auto& row : rows) {
    std::sort(row.begin(), row.end(), [](const Entry& x, const Entry& z) { return x.col < z.col; });
    size_t n = 0;
    for (size_t i = 0; i < row.size(); ++i) {
      if (n && row[n - 1].col == row[i].col) {
        row[n - 1].v += row[i].v;
        row[n - 1].abs += row[i].abs;
      } else {
        row[n++] = row[i];
      }
    }
    row.resize(n);
  }
  std::vector<double> A(static_cast<size_t>(s.T * s.K));
  for (int64_t i = 0; i < s.T * s.K; ++i) A[static_cast<size_t>(i)] = decode(s.act, c.A.data(), i);
  y->assign(static_cast<size_t>(s.T * s.N_out), 0.0);
  scale->assign(y->size(), 0.0);
  for (int64_t t = 0; t < s.T; ++t) {
    const double* a = &A[static_cast<size_t>(t * s.K)];
    for (int64_t o = 0; o < s.N_out; ++o) {
      double acc = c.bias.empty() ? 0.0 : decode(s.act, c.bias.data(), o);
      double sc = std::fabs(acc);
      for (const Entry& e : rows[static_cast<size_t>(o)]) {
        acc += a[e.col] * e.v;
        sc += std::fabs(a[e.col]) * e.abs;
      }
      (*y)[t * s.N_out + o] = acc;
      (*scale)[t * s.N_out + o] = sc;
    }
  }
}

std::string compare(const CaseData& c, const void* out, const std::vector<double>& y, const std::vector<double>& scale) {
  const CaseSpec& s = c.spec;
  // fp32 accumulation error relative to sum |terms|, plus the output type's rounding.
  const double out_rel = s.act == DType::kFloat32 ? 0.0 : s.act == DType::kFloat16 ? 1.0 / 1024 : 1.0 / 128;
  for (int64_t i = 0; i < s.T * s.N_out; ++i) {
    const double got = decode(s.act, out, i);
    const double tol = 2e-5 * scale[i] + out_rel * std::fabs(y[i]) + 1e-6;
    if (!(std::fabs(got - y[i]) <= tol)) {
      std::ostringstream os;
      os << "mismatch at t=" << i / s.N_out << " o=" << i % s.N_out << ": got " << got << ", want " << y[i]
         << " (tol " << tol << ")";
      return os.str();
    }
  }
  return {};
}

}  // namespace vnmc_test
