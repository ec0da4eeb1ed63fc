// AVX-512 (F, BW, DQ, VL) inner loops. This file alone is compiled with -mavx512f -mavx512bw
// -mavx512dq -mavx512vl -mavx2 -mfma -mf16c; it runs only after packed_gemm.cc checked the CPU at run
// time. Keep it free of standard-library templates and of any inline function with external linkage
// (see kernel_data.h).
//
// Row path, all token counts: the relaid values of one chunk (8 rows) and one group are stored as
// [v0 of rows 0..7 | v1 of rows 0..7] (64 bytes), so one zmm load, one vpermps (lane l < 8 picks the
// activation at p0 of row l, lane 8 + l the one at p1) and one FMA do 16 useful multiply-adds. Tiles
// of NC chunks x NT tokens keep NC * NT accumulators in registers; the gathered activations of a
// block are shared by all chunks of the work item.
#include <immintrin.h>

#include "cpu/half.h"
#include "cpu/kernel_data.h"

namespace vnmc {
namespace cpu {
namespace avx512 {
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// --- value loads: one chunk-group's 16 values as fp32 --------------------------------------------
template <int S>
inline __m512 load16(const void* base, int64_t i) {
  if (S == kStoreF32) return _mm512_loadu_ps(static_cast<const float*>(base) + i);
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + i));
  if (S == kStoreF16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Prefetches value i (may lie beyond the buffer: a prefetch never faults; the address is formed as an
// integer so that no out-of-range pointer is ever computed).
template <int S>
inline void prefetch_vals(const void* base, int64_t i) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>(i) * (S == kStoreF32 ? 4 : 2);
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
}

// --- activation gather --------------------------------------------------------------------------
// Gathers the 4 kept activations of every group of block b for tokens [t0, t0 + nt) into
// a4[g / 4][t][16] (group g's 4 values at lanes 4 * (g % 4) ..; the tail of a partial last quad of
// groups is left unwritten and never read). Layout stride: a token is 16 floats, a quad 16 * nts.
void gather_block(const KernelData& d, int64_t b, const float* A, int64_t t0, int nt, float* a4, int nts) {
  const int64_t G = d.G, K = d.K, M = d.M;
  const int32_t* cols = d.cols + b * G * 4;
  const uint32_t* wofs = d.wofs ? d.wofs + b * G : nullptr;
  const int64_t qs = 16 * static_cast<int64_t>(nts);  // quad stride in a4
  // Windowed, M <= 8: four groups at a time from the 32 floats starting at g * M (two zmm loads and
  // one two-source permute); groups [0, gw4) can do so without reading beyond K.
  int64_t gw4 = 0;
  if (wofs && M <= 8 && K >= 32) {
    gw4 = (K - 32) / M + 1;  // g * M + 32 <= K
    if (gw4 > G) gw4 = G;
    gw4 &= ~int64_t{3};
  }
  const __m512i base = _mm512_mullo_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                          _mm512_set1_epi32(static_cast<int>(M)));
  // Token by token: each token's row of A is one sequential stream for the hardware prefetchers.
  for (int t = 0; t < nt; ++t) {
    const float* src = A + (t0 + t) * K;
    float* dst = a4 + 16 * t;
    int64_t g = 0;
    for (; g < gw4; g += 4) {
      const __m512i idx = _mm512_add_epi32(
          base, _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wofs + g))));
      _mm512_storeu_ps(dst + (g >> 2) * qs,
                       _mm512_permutex2var_ps(_mm512_loadu_ps(src + g * M), idx, _mm512_loadu_ps(src + g * M + 16)));
    }
    for (; g + 4 <= G; g += 4)
      _mm512_storeu_ps(dst + (g >> 2) * qs, _mm512_i32gather_ps(_mm512_loadu_si512(cols + g * 4), src, 4));
    if (g < G)
      for (int64_t j = 0; j < (G - g) * 4; ++j) dst[(g >> 2) * qs + j] = src[cols[g * 4 + j]];
  }
}

inline void store_rows(const KernelData& d, int64_t c, __m512 acc, const float* bias, float* Yt) {
  const __m256 r = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
  const int32_t* oi = d.out_idx + c * kChunkRows;
  if (d.chunk_contig[c]) {  // outputs oi[0] .. oi[0] + 7, all valid (checked at creation)
    const int32_t o = oi[0];
    _mm256_storeu_ps(Yt + o, bias ? _mm256_add_ps(r, _mm256_loadu_ps(bias + o)) : r);
    return;
  }
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, r);
  for (int l = 0; l < kChunkRows; ++l) {
    const int32_t o = oi[l];
    if (o >= 0) Yt[o] = tmp[l] + (bias ? bias[o] : 0.0f);
  }
}

// Lane l < 8: row l's p0 (bits 4l..4l+1 of the chunk's meta word), lane 8 + l: its p1 (bits
// 4l+2..4l+3). vpermps reads 4 index bits; x holds the group's 4 activations in every 128-bit lane,
// so the stray bits above each 2-bit code select the same value.
inline __m512i meta_index(uint32_t w) {
  const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 2, 6, 10, 14, 18, 22, 26, 30);
  return _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(w)), shifts);
}

// NC chunks (consecutive, from c) x NT tokens (a4 rows 0..NT-1, output tokens t0..).
template <int S, int NT, int NC>
void row_chunks(const KernelData& d, int64_t c, const float* a4, int nts, const float* bias, float* Y, int64_t t0) {
  const int64_t G = d.G;
  const int64_t qs = 16 * static_cast<int64_t>(nts);
  __m512 acc[NC][NT];
  for (int k = 0; k < NC; ++k)
    for (int t = 0; t < NT; ++t) acc[k][t] = _mm512_setzero_ps();
  const uint32_t* meta = d.meta + c * G;
  // Software prefetch of the value stream. With 1-2 tokens the hardware prefetchers keep up and 8
  // groups ahead is best (48 and more made 3072x768 T = 1 slower). With more tokens (slower per group)
  // the weights' first pass from DRAM is not hidden without help: prefetch the same group of the next
  // NC chunks, i.e. one row tile ahead, which also covers short rows (K = 768: 96 groups = 6 KB per
  // chunk). Kernel alone, weights from DRAM, T = 16: 64 groups ahead was ~15 % faster than none;
  // next-chunks ~3-9 % faster than 64 groups ahead (docs/performance.md, steps 5 and 8).
  for (int64_t g = 0; g < G; ++g) {
    __m512 x[NT];
    const float* xg = a4 + (g >> 2) * qs + 4 * (g & 3);
    for (int t = 0; t < NT; ++t) x[t] = _mm512_broadcast_f32x4(_mm_loadu_ps(xg + 16 * t));
    for (int k = 0; k < NC; ++k) {
      const int64_t cg = (c + k) * G + g;
      prefetch_vals<S>(d.vals, (NT <= 2 ? cg + 8 : cg + NC * G) * 16);
      const __m512i idx = meta_index(meta[k * G + g]);
      const __m512 v = load16<S>(d.vals, cg * 16);
      for (int t = 0; t < NT; ++t) acc[k][t] = _mm512_fmadd_ps(v, _mm512_permutexvar_ps(idx, x[t]), acc[k][t]);
    }
  }
  for (int k = 0; k < NC; ++k)
    for (int t = 0; t < NT; ++t) store_rows(d, c + k, acc[k][t], bias, Y + (t0 + t) * d.N_out);
}

// Chunks [c0, c1) for the NT tokens of a4.
template <int S, int NT>
void row_tile(const RowArgs& a, int64_t c0, int64_t c1, const float* a4, int nts, int64_t t0) {
  const KernelData& d = *a.d;
  constexpr int NCMAX = NT == 1 ? 8 : NT == 2 ? 6 : NT <= 4 ? 4 : NT <= 6 ? 3 : 2;
  int64_t c = c0;
  for (; c + NCMAX <= c1; c += NCMAX) row_chunks<S, NT, NCMAX>(d, c, a4, nts, a.bias, a.Y, t0);
  if (NCMAX > 4 && c + 4 <= c1) {
    row_chunks<S, NT, 4>(d, c, a4, nts, a.bias, a.Y, t0);
    c += 4;
  }
  if (NCMAX > 2 && c + 2 <= c1) {
    row_chunks<S, NT, 2>(d, c, a4, nts, a.bias, a.Y, t0);
    c += 2;
  }
  for (; c < c1; ++c)
    if (d.chunk_active[c]) row_chunks<S, NT, 1>(d, c, a4, nts, a.bias, a.Y, t0);
}

template <int S>
void row_tile_n(const RowArgs& a, int64_t c0, int64_t c1, const float* a4, int nt, int64_t t0) {
  switch (nt) {
    case 1: return row_tile<S, 1>(a, c0, c1, a4, nt, t0);
    case 2: return row_tile<S, 2>(a, c0, c1, a4, nt, t0);
    case 3: return row_tile<S, 3>(a, c0, c1, a4, nt, t0);
    case 4: return row_tile<S, 4>(a, c0, c1, a4, nt, t0);
    case 5: return row_tile<S, 5>(a, c0, c1, a4, nt, t0);
    case 6: return row_tile<S, 6>(a, c0, c1, a4, nt, t0);
    case 7: return row_tile<S, 7>(a, c0, c1, a4, nt, t0);
    default: return row_tile<S, 8>(a, c0, c1, a4, nt, t0);
  }
}

constexpr int kTok = kRowTokensAvx512;

// Tokens are taken in super-tiles of up to kRowSuperTilesAvx512 tiles of kTok tokens: the
// activations of the whole super-tile are gathered first (tile s at a4 + s * kTok * 4 * G4), then
// every pair of chunks runs all the tiles back to back, so that the item's weights are streamed once
// per super-tile (from DRAM at most once) instead of once per tile. The number of tiles per
// super-tile keeps the gathered activations within kRowSuperTileFloats (256 KB, L2; the scratch
// holds one tile or that much, kernel_data.h).
template <int S>
void row_path_t(const RowArgs& a) {
  const KernelData& d = *a.d;
  const int64_t b = a.c0 / d.cpb;
  const int64_t G4 = (d.G + 3) / 4 * 4;
  const int64_t tile_floats = static_cast<int64_t>(kTok) * 4 * G4;
  int64_t tiles = kRowSuperTileFloats / tile_floats;  // >= 2 only when they fit kRowSuperTileFloats
  tiles = tiles < 1 ? 1 : tiles > kRowSuperTilesAvx512 ? kRowSuperTilesAvx512 : tiles;
  for (int64_t t0 = 0; t0 < a.T; t0 += tiles * kTok) {
    const int64_t ns = min64(tiles, (a.T - t0 + kTok - 1) / kTok);  // tiles in this super-tile
    for (int64_t s = 0; s < ns; ++s) {
      const int nt = static_cast<int>(min64(kTok, a.T - t0 - s * kTok));
      gather_block(d, b, a.A, t0 + s * kTok, nt, a.scratch + s * tile_floats, nt);
    }
    if (ns == 1) {
      row_tile_n<S>(a, a.c0, a.c1, a.scratch, static_cast<int>(min64(kTok, a.T - t0)), t0);
      continue;
    }
    for (int64_t c = a.c0; c < a.c1; c += 2) {
      const int64_t ce = min64(c + 2, a.c1);
      for (int64_t s = 0; s < ns; ++s) {
        const int nt = static_cast<int>(min64(kTok, a.T - t0 - s * kTok));
        row_tile_n<S>(a, c, ce, a.scratch + s * tile_floats, nt, t0 + s * kTok);
      }
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

// --- conversions ------------------------------------------------------------------------------
void cvt_f16_f32(const uint16_t* s, float* d, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(d + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
  for (; i < n; ++i) d[i] = f16_to_f32(s[i]);
}

void cvt_bf16_f32(const uint16_t* s, float* d, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
  for (; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}

void cvt_f32_f16(const float* s, uint16_t* d, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) d[i] = f32_to_f16(s[i]);
}

void cvt_f32_bf16(const float* s, uint16_t* d, size_t n) {
  size_t i = 0;
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i bias = _mm512_set1_epi32(0x7fff);
  const __m512i qnan = _mm512_set1_epi32(0x40);
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(s + i);
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, lsb)), 16);
    const __m512i nan = _mm512_or_si512(_mm512_srli_epi32(u, 16), qnan);
    const __mmask16 isnan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __m512i r = _mm512_mask_mov_epi32(rounded, isnan, nan);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}

}  // namespace

// No token path: the row path serves every token count on this ISA.
const IsaKernels kKernels = {"avx512", kRowTokensAvx512, row_path, nullptr,
                             cvt_f16_f32, cvt_bf16_f32, cvt_f32_f16, cvt_f32_bf16};

}  // namespace avx512
}  // namespace cpu
}  // namespace vnmc
