// Portable inner loops (any C++17 target: baseline x86-64, aarch64, ...). The token path's inner
// loop is written so that compilers vectorise it for the baseline ISA (SSE2 / NEON).
#include "cpu/half.h"
#include "cpu/kernel_data.h"

namespace vnmc {
namespace cpu {
namespace portable {
namespace {

template <int S>
inline float load_value(const void* base, int64_t i) {
  if (S == kStoreF32) return static_cast<const float*>(base)[i];
  if (S == kStoreF16) return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
  return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
}

template <int S>
void row_path_t(const RowArgs& a) {
  const KernelData& d = *a.d;
  const int64_t G = d.G, K = d.K, N_out = d.N_out;
  const int64_t b = a.c0 / d.cpb;
  const int32_t* cols = d.cols + b * G * 4;
  float* a4 = a.scratch;  // [kRowTokens][G][4]
  for (int64_t t0 = 0; t0 < a.T; t0 += kRowTokens) {
    const int nt = static_cast<int>(a.T - t0 < kRowTokens ? a.T - t0 : kRowTokens);
    for (int t = 0; t < nt; ++t) {
      const float* At = a.A + (t0 + t) * K;
      float* dst = a4 + t * G * 4;
      for (int64_t i = 0; i < G * 4; ++i) dst[i] = At[cols[i]];
    }
    for (int64_t c = a.c0; c < a.c1; ++c) {
      if (!d.chunk_active[c]) continue;
      float acc[kRowTokens][kChunkRows] = {};
      for (int64_t g = 0; g < G; ++g) {
        const uint32_t w = d.meta[c * G + g];
        const int64_t vi = (c * G + g) * 2 * kChunkRows;
        for (int l = 0; l < kChunkRows; ++l) {
          const unsigned code = (w >> (4 * l)) & 15u;
          const unsigned p0 = code & 3u, p1 = code >> 2;
          const float v0 = load_value<S>(d.vals, vi + l);
          const float v1 = load_value<S>(d.vals, vi + kChunkRows + l);
          for (int t = 0; t < nt; ++t) {
            const float* x = a4 + (t * G + g) * 4;
            acc[t][l] += v0 * x[p0] + v1 * x[p1];
          }
        }
      }
      for (int l = 0; l < kChunkRows; ++l) {
        const int32_t o = d.out_idx[c * kChunkRows + l];
        if (o < 0) continue;
        const float bb = a.bias ? a.bias[o] : 0.0f;
        for (int t = 0; t < nt; ++t) a.Y[(t0 + t) * N_out + o] = acc[t][l] + bb;
      }
    }
  }
}

template <int S>
void token_path_t(const TokenArgs& a) {
  const KernelData& d = *a.d;
  const int64_t G = d.G, N_out = d.N_out;
  const int64_t TT = 8 * static_cast<int64_t>(a.nv);
  const int64_t b = a.c0 / d.cpb;
  const int32_t* cols = d.cols + b * G * 4;
  const int64_t rows = (a.c1 - a.c0) * kChunkRows;
  float* acc = a.scratch;                                                 // [rows][TT]
  float* uw = acc + rows * TT;                                            // [kGroupChunk][2][8]
  int32_t* uo = reinterpret_cast<int32_t*>(uw + kGroupChunk * 2 * kChunkRows);  // [kGroupChunk][2][8]
  for (int64_t i = 0; i < rows * TT; ++i) acc[i] = 0.0f;

  for (int64_t gc0 = 0; gc0 < G; gc0 += kGroupChunk) {
    const int64_t gn = G - gc0 < kGroupChunk ? G - gc0 : kGroupChunk;
    for (int64_t c = a.c0; c < a.c1; ++c) {
      if (!d.chunk_active[c]) continue;
      for (int64_t g = 0; g < gn; ++g) {
        const uint32_t w = d.meta[c * G + gc0 + g];
        const int32_t* cg = cols + (gc0 + g) * 4;
        const int64_t vi = (c * G + gc0 + g) * 2 * kChunkRows;
        for (int l = 0; l < kChunkRows; ++l) {
          const unsigned code = (w >> (4 * l)) & 15u;
          uo[(g * 2 + 0) * kChunkRows + l] = static_cast<int32_t>(cg[code & 3u] * TT);
          uo[(g * 2 + 1) * kChunkRows + l] = static_cast<int32_t>(cg[code >> 2] * TT);
          uw[(g * 2 + 0) * kChunkRows + l] = load_value<S>(d.vals, vi + l);
          uw[(g * 2 + 1) * kChunkRows + l] = load_value<S>(d.vals, vi + kChunkRows + l);
        }
      }
      for (int l = 0; l < kChunkRows; ++l) {
        if (d.out_idx[c * kChunkRows + l] < 0) continue;
        float* __restrict ac = acc + ((c - a.c0) * kChunkRows + l) * TT;
        for (int64_t g = 0; g < gn; ++g) {
          const float w0 = uw[(g * 2 + 0) * kChunkRows + l];
          const float w1 = uw[(g * 2 + 1) * kChunkRows + l];
          const float* __restrict x0 = a.At + uo[(g * 2 + 0) * kChunkRows + l];
          const float* __restrict x1 = a.At + uo[(g * 2 + 1) * kChunkRows + l];
          for (int64_t t = 0; t < TT; ++t) ac[t] += w0 * x0[t] + w1 * x1[t];
        }
      }
    }
  }
  for (int64_t c = a.c0; c < a.c1; ++c) {
    for (int l = 0; l < kChunkRows; ++l) {
      const int32_t o = d.out_idx[c * kChunkRows + l];
      if (o < 0) continue;
      const float* ac = acc + ((c - a.c0) * kChunkRows + l) * TT;
      const float bb = a.bias ? a.bias[o] : 0.0f;
      for (int64_t t = 0; t < a.nt; ++t) a.Y[(a.t0 + t) * N_out + o] = ac[t] + bb;
    }
  }
}

void row_path(const RowArgs& a) {
  switch (a.d->store) {
    case kStoreF16: return row_path_t<kStoreF16>(a);
    case kStoreBF16: return row_path_t<kStoreBF16>(a);
    default: return row_path_t<kStoreF32>(a);
  }
}

void token_path(const TokenArgs& a) {
  switch (a.d->store) {
    case kStoreF16: return token_path_t<kStoreF16>(a);
    case kStoreBF16: return token_path_t<kStoreBF16>(a);
    default: return token_path_t<kStoreF32>(a);
  }
}

void cvt_f16_f32(const uint16_t* s, float* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]);
}
void cvt_bf16_f32(const uint16_t* s, float* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}
void cvt_f32_f16(const float* s, uint16_t* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(s[i]);
}
void cvt_f32_bf16(const float* s, uint16_t* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}

}  // namespace

const IsaKernels kKernels = {"portable", kRowTokens, row_path, token_path, cvt_f16_f32, cvt_bf16_f32, cvt_f32_f16, cvt_f32_bf16};

}  // namespace portable
}  // namespace cpu
}  // namespace vnmc
