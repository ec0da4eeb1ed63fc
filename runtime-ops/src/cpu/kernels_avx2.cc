// AVX2 + FMA + F16C inner loops. This file alone is compiled with -mavx2 -mfma -mf16c; it runs only
// after packed_gemm.cc checked the CPU at run time. Keep it free of standard-library templates and
// of any inline function with external linkage (see kernel_data.h).
#include <immintrin.h>

#include "cpu/half.h"
#include "cpu/kernel_data.h"

namespace vnmc {
namespace cpu {
namespace avx2 {
namespace {

// --- value loads: 8 rows' values as fp32 ------------------------------------------------------
template <int S>
inline __m256 load8(const void* base, int64_t i) {
  if (S == kStoreF32) return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
  if (S == kStoreF16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// --- row path ---------------------------------------------------------------------------------
// Gathers the 4 kept activations of every group of block b for nt tokens into a4[t][g][4].
void gather_block(const KernelData& d, int64_t b, const float* A, int64_t t0, int nt, float* a4) {
  const int64_t G = d.G, K = d.K, M = d.M;
  const int32_t* cols = d.cols + b * G * 4;
  // Windowed fast path: one load of the group's window and a lane permute instead of 4 loads.
  int64_t gw = 0;  // groups [0, gw) can read 8 floats from g*M
  if (d.windowed && M <= 8) {
    gw = K >= 8 ? (K - 8) / M + 1 : 0;
    if (gw > G) gw = G;
  }
  const uint32_t* wofs = d.wofs ? d.wofs + b * G : nullptr;
  for (int t = 0; t < nt; ++t) {
    const float* At = A + (t0 + t) * K;
    float* dst = a4 + t * G * 4;
    int64_t g = 0;
    for (; g < gw; ++g) {
      const __m256 win = _mm256_loadu_ps(At + g * M);
      const __m256i idx = _mm256_cvtepu8_epi32(_mm_cvtsi32_si128(static_cast<int>(wofs[g])));
      _mm_storeu_ps(dst + g * 4, _mm256_castps256_ps128(_mm256_permutevar8x32_ps(win, idx)));
    }
    for (; g < G; ++g) {
      const __m128i ci = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cols + g * 4));
      _mm_storeu_ps(dst + g * 4, _mm_i32gather_ps(At, ci, 4));
    }
  }
}

inline void store_rows(const KernelData& d, int64_t c, __m256 v, const float* bias, float* Yt) {
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, v);
  const int32_t* oi = d.out_idx + c * kChunkRows;
  for (int l = 0; l < kChunkRows; ++l) {
    const int32_t o = oi[l];
    if (o >= 0) Yt[o] = tmp[l] + (bias ? bias[o] : 0.0f);
  }
}

// NC chunks x NT tokens; two accumulators per (chunk, token) keep enough FMA chains in flight.
template <int S, int NT, int NC>
void row_chunks(const KernelData& d, int64_t c, const float* a4, const float* bias, float* Y, int64_t t0) {
  const int64_t G = d.G;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  __m256 acc0[NC][NT], acc1[NC][NT];
  for (int k = 0; k < NC; ++k)
    for (int t = 0; t < NT; ++t) acc0[k][t] = acc1[k][t] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m256 x[NT];
    for (int t = 0; t < NT; ++t) x[t] = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(a4 + (t * G + g) * 4));
    for (int k = 0; k < NC; ++k) {
      const int64_t cg = (c + k) * G + g;
      // Lane l holds the code of row l in its low nibble; permutevar8x32 reads 3 index bits, and
      // x has lanes 4..7 = lanes 0..3, so the stray bit above each 2-bit position is harmless.
      const __m256i i0 = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(d.meta[cg])), shifts);
      const __m256i i1 = _mm256_srli_epi32(i0, 2);
      const __m256 v0 = load8<S>(d.vals, cg * 16);
      const __m256 v1 = load8<S>(d.vals, cg * 16 + 8);
      for (int t = 0; t < NT; ++t) {
        acc0[k][t] = _mm256_fmadd_ps(v0, _mm256_permutevar8x32_ps(x[t], i0), acc0[k][t]);
        acc1[k][t] = _mm256_fmadd_ps(v1, _mm256_permutevar8x32_ps(x[t], i1), acc1[k][t]);
      }
    }
  }
  for (int k = 0; k < NC; ++k)
    for (int t = 0; t < NT; ++t)
      store_rows(d, c + k, _mm256_add_ps(acc0[k][t], acc1[k][t]), bias, Y + (t0 + t) * d.N_out);
}

template <int S, int NT>
void row_tile(const RowArgs& a, const float* a4, int64_t t0) {
  const KernelData& d = *a.d;
  int64_t c = a.c0;
  if (NT == 1) {
    for (; c + 4 <= a.c1; c += 4) row_chunks<S, NT, 4>(d, c, a4, a.bias, a.Y, t0);
  } else if (NT == 2) {
    for (; c + 2 <= a.c1; c += 2) row_chunks<S, NT, 2>(d, c, a4, a.bias, a.Y, t0);
  }
  for (; c < a.c1; ++c) {
    if (d.chunk_active[c]) row_chunks<S, NT, 1>(d, c, a4, a.bias, a.Y, t0);
  }
}

template <int S>
void row_path_t(const RowArgs& a) {
  const KernelData& d = *a.d;
  const int64_t b = a.c0 / d.cpb;
  for (int64_t t0 = 0; t0 < a.T; t0 += kRowTokens) {
    const int nt = static_cast<int>(min64(kRowTokens, a.T - t0));
    gather_block(d, b, a.A, t0, nt, a.scratch);
    switch (nt) {
      case 1: row_tile<S, 1>(a, a.scratch, t0); break;
      case 2: row_tile<S, 2>(a, a.scratch, t0); break;
      case 3: row_tile<S, 3>(a, a.scratch, t0); break;
      default: row_tile<S, 4>(a, a.scratch, t0); break;
    }
  }
}

// --- token path -------------------------------------------------------------------------------
template <int NV>
inline void token_row(float* ac, const float* At, const float* uw, const int32_t* uo, int64_t gn, int l) {
  if (NV <= 4) {
    __m256 s0[NV], s1[NV];
    for (int v = 0; v < NV; ++v) {
      s0[v] = _mm256_loadu_ps(ac + 8 * v);
      s1[v] = _mm256_setzero_ps();
    }
    for (int64_t g = 0; g < gn; ++g) {
      const __m256 w0 = _mm256_broadcast_ss(uw + (g * 2 + 0) * kChunkRows + l);
      const __m256 w1 = _mm256_broadcast_ss(uw + (g * 2 + 1) * kChunkRows + l);
      const float* x0 = At + uo[(g * 2 + 0) * kChunkRows + l];
      const float* x1 = At + uo[(g * 2 + 1) * kChunkRows + l];
      for (int v = 0; v < NV; ++v) {
        s0[v] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0 + 8 * v), s0[v]);
        s1[v] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x1 + 8 * v), s1[v]);
      }
    }
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(ac + 8 * v, _mm256_add_ps(s0[v], s1[v]));
  } else {
    __m256 s[NV];
    for (int v = 0; v < NV; ++v) s[v] = _mm256_loadu_ps(ac + 8 * v);
    for (int64_t g = 0; g < gn; ++g) {
      const __m256 w0 = _mm256_broadcast_ss(uw + (g * 2 + 0) * kChunkRows + l);
      const __m256 w1 = _mm256_broadcast_ss(uw + (g * 2 + 1) * kChunkRows + l);
      const float* x0 = At + uo[(g * 2 + 0) * kChunkRows + l];
      const float* x1 = At + uo[(g * 2 + 1) * kChunkRows + l];
      for (int v = 0; v < NV; ++v) {
        s[v] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0 + 8 * v), s[v]);
        s[v] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x1 + 8 * v), s[v]);
      }
    }
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(ac + 8 * v, s[v]);
  }
}

template <int S, int NV>
void token_path_t(const TokenArgs& a) {
  const KernelData& d = *a.d;
  const int64_t G = d.G, N_out = d.N_out;
  constexpr int64_t TT = 8 * NV;
  const int64_t b = a.c0 / d.cpb;
  const int32_t* cols = d.cols + b * G * 4;
  const int64_t rows = (a.c1 - a.c0) * kChunkRows;
  float* acc = a.scratch;
  float* uw = acc + rows * TT;
  int32_t* uo = reinterpret_cast<int32_t*>(uw + kGroupChunk * 2 * kChunkRows);
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t i = 0; i < rows * TT; i += 8) _mm256_storeu_ps(acc + i, zero);

  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i three = _mm256_set1_epi32(3);
  const __m256i tt = _mm256_set1_epi32(static_cast<int>(TT));
  for (int64_t gc0 = 0; gc0 < G; gc0 += kGroupChunk) {
    const int64_t gn = min64(kGroupChunk, G - gc0);
    for (int64_t c = a.c0; c < a.c1; ++c) {
      if (!d.chunk_active[c]) continue;
      // Unpack this chunk's 8 rows x gn groups: fp32 values and element offsets into At.
      for (int64_t g = 0; g < gn; ++g) {
        const int64_t cg = c * G + gc0 + g;
        const __m256i w = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(d.meta[cg])), shifts);
        const __m256i i0 = _mm256_and_si256(w, three);
        const __m256i i1 = _mm256_and_si256(_mm256_srli_epi32(w, 2), three);
        const __m256i cv = _mm256_broadcastsi128_si256(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(cols + (gc0 + g) * 4)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(uo + (g * 2 + 0) * kChunkRows),
                            _mm256_mullo_epi32(_mm256_permutevar8x32_epi32(cv, i0), tt));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(uo + (g * 2 + 1) * kChunkRows),
                            _mm256_mullo_epi32(_mm256_permutevar8x32_epi32(cv, i1), tt));
        _mm256_storeu_ps(uw + (g * 2 + 0) * kChunkRows, load8<S>(d.vals, cg * 16));
        _mm256_storeu_ps(uw + (g * 2 + 1) * kChunkRows, load8<S>(d.vals, cg * 16 + 8));
      }
      for (int l = 0; l < kChunkRows; ++l) {
        if (d.out_idx[c * kChunkRows + l] < 0) continue;
        token_row<NV>(acc + ((c - a.c0) * kChunkRows + l) * TT, a.At, uw, uo, gn, l);
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

template <int S>
void token_path_s(const TokenArgs& a) {
  switch (a.nv) {
    case 1: return token_path_t<S, 1>(a);
    case 2: return token_path_t<S, 2>(a);
    case 3: return token_path_t<S, 3>(a);
    case 4: return token_path_t<S, 4>(a);
    case 5: return token_path_t<S, 5>(a);
    case 6: return token_path_t<S, 6>(a);
    case 7: return token_path_t<S, 7>(a);
    default: return token_path_t<S, 8>(a);
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
    case kStoreF16: return token_path_s<kStoreF16>(a);
    case kStoreBF16: return token_path_s<kStoreBF16>(a);
    default: return token_path_s<kStoreF32>(a);
  }
}

// --- conversions ------------------------------------------------------------------------------
void cvt_f16_f32(const uint16_t* s, float* d, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = f16_to_f32(s[i]);
}

void cvt_bf16_f32(const uint16_t* s, float* d, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    _mm256_storeu_ps(d + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
  }
  for (; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}

void cvt_f32_f16(const float* s, uint16_t* d, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) d[i] = f32_to_f16(s[i]);
}

void cvt_f32_bf16(const float* s, uint16_t* d, size_t n) {
  size_t i = 0;
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i bias = _mm256_set1_epi32(0x7fff);
  const __m256i qnan = _mm256_set1_epi32(0x40);
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(s + i);
    const __m256i u = _mm256_castps_si256(x);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
    const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), qnan);
    const __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    const __m256i r = _mm256_blendv_epi8(rounded, nan, isnan);
    // pack 8 x u32 (each <= 0xffff) to 8 x u16 in order
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm256_castsi256_si128(p));
  }
  for (; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}

}  // namespace

const IsaKernels kKernels = {"avx2", kRowTokens, row_path, token_path, cvt_f16_f32, cvt_bf16_f32, cvt_f32_f16, cvt_f32_bf16};

}  // namespace avx2
}  // namespace cpu
}  // namespace vnmc
