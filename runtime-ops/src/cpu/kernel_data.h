// Plain-data interface between the CPU kernel's orchestrator (packed_gemm.cc) and its per-ISA
// inner loops (kernels_portable.cc, kernels_avx2.cc, kernels_avx512.cc).
//
// This header must stay free of templates and inline functions with external linkage: the AVX2
// translation unit is compiled with -mavx2 -mfma -mf16c, and any inline function or template it
// shared with the portable code could be emitted there with AVX2 instructions and picked by the
// linker for the portable path (an illegal instruction on older CPUs). test: weak_symbols.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vnmc {
namespace cpu {

// Rows are processed in chunks of 8 consecutive packed rows of one block (the last chunk of a
// block is padded with zero rows when V is not a multiple of 8).
constexpr int kChunkRows = 8;

// How values are stored after relayout.
enum ValueStore : int32_t { kStoreF32 = 0, kStoreF16 = 1, kStoreBF16 = 2 };

// The relaid weights (owned by PackedGemm; this is a view).
struct KernelData {
  int64_t K, N_out, V, M, G, B;
  int64_t cpb;  // chunks per block = ceil(V / 8)
  int64_t C;    // chunks = B * cpb
  int32_t store;  // ValueStore
  int32_t windowed;  // all column indices of group g in [g*M, g*M+M)
  // [C][G][2][8]: for chunk c, group g: the 8 rows' first kept values, then their second kept values.
  const void* vals;
  // [C][G]: the 8 rows' meta nibbles (row i of the chunk in bits 4i..4i+3).
  const uint32_t* meta;
  // [B][G][4]: the 4 kept input channels of (block, group).
  const int32_t* cols;
  // [B][G]: when windowed, the 4 offsets columns[b,g,j] - g*M as bytes (j in byte j).
  const uint32_t* wofs;
  // [C][8]: output channel of each chunk row, -1 for padding.
  const int32_t* out_idx;
  // [C]: 1 if any row of the chunk produces an output.
  const uint8_t* chunk_active;
  // [C]: 1 if the chunk's 8 rows produce the consecutive outputs out_idx[c*8] + 0..7 (all active).
  const uint8_t* chunk_contig;
};

// Row path (small T; every T on AVX-512): rows vectorised 8 at a time, tokens in tiles of up to
// IsaKernels::row_tokens.
//   A: [T][K] fp32; Y: [T][N_out] fp32 (only produced channels are written); bias: [N_out] or null.
//   Computes chunks [c0, c1), which must lie in one block.
//   scratch: at least row_path_scratch_floats(G, row_tokens) floats, 32-byte aligned.
struct RowArgs {
  const KernelData* d;
  const float* A;
  int64_t T;
  int64_t c0, c1;
  const float* bias;
  float* Y;
  float* scratch;
};

// Token path (larger T): tokens vectorised, TT = 8 * nv tokens per tile, rows one at a time.
//   At: [K][TT] fp32, the tile's activations transposed (tokens t0 .. t0 + TT, zero beyond T).
//   Computes chunks [c0, c1) of one block for tokens [t0, t0 + nt), nt <= TT.
//   scratch: at least token_path_scratch_floats(...) floats, 32-byte aligned.
struct TokenArgs {
  const KernelData* d;
  const float* At;
  int32_t nv;  // 1..8
  int64_t t0, nt;
  int64_t c0, c1;
  const float* bias;
  float* Y;
  float* scratch;
};

constexpr int kRowTokens = 4;        // tokens per row-path tile (portable, AVX2)
constexpr int kRowTokensAvx512 = 8;  // tokens per row-path tile (AVX-512)
constexpr int kRowSuperTilesAvx512 = 8;  // at most 8 tiles per super-tile (AVX-512 row path)
constexpr int64_t kRowSuperTileFloats = 65536;  // 256 KB: a super-tile of more than one tile fits this
constexpr int64_t kGroupChunk = 16;  // groups per token-path group chunk

static constexpr size_t row_path_scratch_floats(int64_t G, int row_tokens) {
  // one tile (G rounded up to quads), or a super-tile of several tiles within kRowSuperTileFloats
  return static_cast<size_t>(row_tokens * 4 * ((G + 3) / 4 * 4) + kRowSuperTileFloats + 64);
}
static constexpr size_t token_path_scratch_floats(int64_t rows, int32_t nv) {
  // accumulators rows x TT, unpacked values 8 x kGroupChunk x 2, offsets 8 x kGroupChunk x 2
  return static_cast<size_t>(rows * 8 * nv + 4 * kChunkRows * kGroupChunk + 64);
}

// The per-ISA entry points. Each ISA provides the same set (see kernels_*.cc).
struct IsaKernels {
  const char* name;
  int32_t row_tokens;  // tokens per row-path tile (sizes the row path's scratch)
  void (*row_path)(const RowArgs&);
  void (*token_path)(const TokenArgs&);  // null: the row path serves every token count
  // Activation and output conversions (n elements).
  void (*f16_to_f32)(const uint16_t* src, float* dst, size_t n);
  void (*bf16_to_f32)(const uint16_t* src, float* dst, size_t n);
  void (*f32_to_f16)(const float* src, uint16_t* dst, size_t n);
  void (*f32_to_bf16)(const float* src, uint16_t* dst, size_t n);
};

namespace portable {
extern const IsaKernels kKernels;
}
#if defined(VNMC_HAVE_AVX2_KERNELS)
namespace avx2 {
extern const IsaKernels kKernels;
}
#endif
#if defined(VNMC_HAVE_AVX512_KERNELS)
namespace avx512 {
extern const IsaKernels kKernels;
}
#endif

}  // namespace cpu
}  // namespace vnmc
