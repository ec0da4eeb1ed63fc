// Device code of the VNMSparseGemm CUDA kernels. Included by vnm_cuda.cu only.
//
// Notation: the weight rows are the sparse A operand of mma.sp.m16n8k32 (MMA "M" = output
// features), the gathered activations the B operand (MMA "N" = tokens). A k32 "step" covers 8
// groups of the V:N:M pattern (8 x 4 kept columns = 32 condensed k). Fragment and metadata layouts
// are the ones verified on H100 (shared/design/gpu-notes.md section 1):
//   lane = 4*gid + tid;  A regs a0 = row gid chunk tid, a1 = row gid+8 chunk tid, a2 = row gid
//   chunk 4+tid, a3 = row gid+8 chunk 4+tid (2 halves each: the two kept values of the chunk);
//   B reg j = {B[2tid+8j][gid], B[2tid+8j+1][gid]};  C: c0,c1 = row gid, cols 2tid,2tid+1;
//   c2,c3 = row gid+8;  metadata: the lane with tid = 2*sel + h holds, for the m16 tile used with
//   selector sel, row gid (bits 0-15) and row gid+8 (bits 16-31), chunks 4h..4h+3, 4 bits each.
//
// Prepared (host re-laid-out) weights, see vnm_cuda.cu:
//   vals  [R64][S][4 m-tiles][32 lanes] uint4   (the 4 A registers of each lane)
//   meta  [R64][S][32 lanes] uint2               (.x: m-tiles 0/1 (sel 0/1), .y: m-tiles 2/3)
//   cols  [Bkp][Gp][4] int32 absolute column indices; wofs [Bkp][Gp] 4 x u8 offsets in the group
//   window (windowed fast path); rowmap [Rp] output feature of each prepared row (-1: padding);
//   bias [Rp] fp32 (0 for padding rows).
// Each block of V rows occupies Vp = roundup(V, 16) prepared rows, so an m16 tile never spans two
// blocks; groups are padded to Gp = roundup(G, 8) with zero values.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace vnmc {
namespace cuda {
namespace dev {

struct Params {
  const uint4* vals;
  const uint2* meta;
  const int32_t* cols;
  const uint32_t* wofs;  // null unless windowed
  const int32_t* rowmap;
  const float* bias;     // null when absent
  int64_t K;
  int64_t N_out;
  int32_t M, Vp, Gp, S, R64;
  int32_t identity;      // rowmap[p] == p for p < N_out, -1 beyond (vector stores allowed)
};

// ---- small PTX helpers ------------------------------------------------------------------------------

template <bool BF16, int SEL>
__device__ __forceinline__ void mma_sp(float (&d)[4], const uint4& a, const uint32_t (&b)[4], uint32_t e) {
  static_assert(SEL == 0 || SEL == 1, "selector");
  if constexpr (!BF16) {
    if constexpr (SEL == 0)
      asm volatile(
          "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
          "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
    else
      asm volatile(
          "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
          "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x1;\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  } else {
    if constexpr (SEL == 0)
      asm volatile(
          "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
          "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
    else
      asm volatile(
          "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
          "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x1;\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  }
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Streaming loads of the weights (read once: evict first, no L1 allocation).
__device__ __forceinline__ uint4 ld_stream(const uint4* p) { return __ldcs(p); }
__device__ __forceinline__ uint2 ld_stream(const uint2* p) { return __ldcs(p); }

template <bool BF16>
__device__ __forceinline__ uint16_t f32_to_out(float v) {
  if constexpr (BF16) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  } else {
    return __half_as_ushort(__float2half_rn(v));
  }
}

// Column index of position pos (0..3) of group g of block blk.
template <bool WIN>
__device__ __forceinline__ int column_of(const Params& p, int blk, int g, int pos) {
  if constexpr (WIN) {
    const uint32_t w = __ldg(p.wofs + static_cast<int64_t>(blk) * p.Gp + g);
    const int c = g * p.M + static_cast<int>((w >> (8 * pos)) & 0xffu);
    return c < p.K ? c : static_cast<int>(p.K) - 1;  // padded groups (g >= G) have zero values
  } else {
    return __ldg(p.cols + (static_cast<int64_t>(blk) * p.Gp + g) * 4 + pos);
  }
}

// Both columns (positions 2h, 2h+1) that a lane with tid&1 == h needs for group g.
template <bool WIN>
__device__ __forceinline__ void column_pair(const Params& p, int blk, int g, int h, int& c0, int& c1) {
  if constexpr (WIN) {
    const uint32_t w = __ldg(p.wofs + static_cast<int64_t>(blk) * p.Gp + g) >> (16 * h);
    const int base = g * p.M;
    const int kmax = static_cast<int>(p.K) - 1;
    c0 = min(base + static_cast<int>(w & 0xffu), kmax);  // padded groups (g >= G) have zero values
    c1 = min(base + static_cast<int>((w >> 8) & 0xffu), kmax);
  } else {
    const int2 c = __ldg(reinterpret_cast<const int2*>(p.cols + (static_cast<int64_t>(blk) * p.Gp + g) * 4 + 2 * h));
    c0 = c.x;
    c1 = c.y;
  }
}

// =====================================================================================================
// Decode path (T <= 16): each CTA of 4 warps owns one 64-row tile and a range of k32 steps; each warp
// streams a contiguous sub-range of steps (weights read once, 16-byte coalesced streaming loads), builds
// the B fragments by gathering the 4 kept activations per (block, group) straight from A (L1/L2
// resident; windowed indices hit the same lines) and runs mma.sp. Warps reduce through shared memory;
// CTAs of one row tile reduce through fp32 atomics in a scratch that the last CTA finalises and zeroes.
// =====================================================================================================
constexpr int kDecodeWarps = 4;

template <bool BF16, int NT, bool SHARED_B, bool WIN>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    decode_kernel(Params p, const uint16_t* __restrict__ A, int T, uint16_t* __restrict__ Y,
                  float* __restrict__ part, unsigned* __restrict__ counters, int ksplit) {
  constexpr int P = SHARED_B ? 4 : 1;       // steps loaded per batch
  constexpr int NB = SHARED_B ? 1 : 4;      // distinct B operands per step (one per m16 tile if not shared)
  __shared__ float red[kDecodeWarps][NT * 8][64];
  __shared__ int s_last;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tid = lane & 3;
  const int q = blockIdx.x / ksplit;
  const int ks = blockIdx.x - q * ksplit;
  const int parts = ksplit * kDecodeWarps;
  const int part_id = ks * kDecodeWarps + warp;
  const int s_begin = static_cast<int>(static_cast<int64_t>(p.S) * part_id / parts);
  const int s_end = static_cast<int>(static_cast<int64_t>(p.S) * (part_id + 1) / parts);

  int blk[NB];
#pragma unroll
  for (int b = 0; b < NB; ++b) blk[b] = (q * 64 + b * 16) / p.Vp;

  float acc[4][NT][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][n][c] = 0.f;

  const int64_t unit0 = static_cast<int64_t>(q) * p.S;
  const int h = tid & 1;
  const uint16_t zero = 0;

  for (int s0 = s_begin; s0 < s_end; s0 += P) {
    uint4 a[P][4];
    uint2 e[P];
    int col[P][NB][4][2];
#pragma unroll
    for (int u = 0; u < P; ++u) {
      const int s = s0 + u;
      if (s < s_end) {
        const uint4* src = p.vals + (unit0 + s) * 128 + lane;
#pragma unroll
        for (int i = 0; i < 4; ++i) a[u][i] = ld_stream(src + i * 32);
        e[u] = ld_stream(p.meta + (unit0 + s) * 32 + lane);
#pragma unroll
        for (int b = 0; b < NB; ++b)
#pragma unroll
          for (int j = 0; j < 4; ++j) column_pair<WIN>(p, blk[b], 8 * s + 2 * j + (tid >> 1), h, col[u][b][j][0], col[u][b][j][1]);
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) a[u][i] = make_uint4(0, 0, 0, 0);
        e[u] = make_uint2(0x44444444u, 0x44444444u);
#pragma unroll
        for (int b = 0; b < NB; ++b)
#pragma unroll
          for (int j = 0; j < 4; ++j) col[u][b][j][0] = col[u][b][j][1] = 0;
      }
    }
    // Gather the activations: B reg j of n-tile n = {A[tok][c0], A[tok][c1]}, tok = gid + 8n.
    uint32_t bf[P][NB][NT][4];
#pragma unroll
    for (int u = 0; u < P; ++u)
#pragma unroll
      for (int b = 0; b < NB; ++b)
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const int tok = gid + 8 * n;
          const bool ok = tok < T;
          const uint16_t* row = A + static_cast<int64_t>(ok ? tok : 0) * p.K;
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const uint16_t lo = ok ? __ldg(row + col[u][b][j][0]) : zero;
            const uint16_t hi = ok ? __ldg(row + col[u][b][j][1]) : zero;
            bf[u][b][n][j] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
          }
        }
#pragma unroll
    for (int u = 0; u < P; ++u)
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        mma_sp<BF16, 0>(acc[0][n], a[u][0], bf[u][0][n], e[u].x);
        mma_sp<BF16, 1>(acc[1][n], a[u][1], bf[u][SHARED_B ? 0 : 1][n], e[u].x);
        mma_sp<BF16, 0>(acc[2][n], a[u][2], bf[u][SHARED_B ? 0 : 2][n], e[u].y);
        mma_sp<BF16, 1>(acc[3][n], a[u][3], bf[u][SHARED_B ? 0 : 3][n], e[u].y);
      }
  }

  // Reduce the warps of this CTA.
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) red[warp][8 * n + 2 * tid + (c & 1)][16 * i + gid + 8 * (c >> 1)] = acc[i][n][c];
  __syncthreads();

  constexpr int kElems = NT * 8 * 64;
  if (ksplit == 1) {
    for (int x = threadIdx.x; x < kElems; x += blockDim.x) {
      const int tok = x >> 6, r = x & 63;
      if (tok >= T) continue;
      float v = red[0][tok][r] + red[1][tok][r] + red[2][tok][r] + red[3][tok][r];
      const int64_t pr = static_cast<int64_t>(q) * 64 + r;
      const int o = p.rowmap[pr];
      if (o < 0) continue;
      if (p.bias) v += p.bias[pr];
      Y[static_cast<int64_t>(tok) * p.N_out + o] = f32_to_out<BF16>(v);
    }
    return;
  }
  float* mypart = part + static_cast<int64_t>(q) * (16 * 64);
  for (int x = threadIdx.x; x < kElems; x += blockDim.x) {
    const int tok = x >> 6, r = x & 63;
    if (tok >= T) continue;
    atomicAdd(mypart + x, red[0][tok][r] + red[1][tok][r] + red[2][tok][r] + red[3][tok][r]);
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) s_last = (atomicAdd(counters + q, 1u) == static_cast<unsigned>(ksplit - 1));
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  for (int x = threadIdx.x; x < kElems; x += blockDim.x) {
    const int tok = x >> 6, r = x & 63;
    if (tok >= T) continue;
    float v = __ldcg(mypart + x);
    __stcg(mypart + x, 0.f);
    const int64_t pr = static_cast<int64_t>(q) * 64 + r;
    const int o = p.rowmap[pr];
    if (o < 0) continue;
    if (p.bias) v += p.bias[pr];
    Y[static_cast<int64_t>(tok) * p.N_out + o] = f32_to_out<BF16>(v);
  }
  if (threadIdx.x == 0) counters[q] = 0u;
}

// =====================================================================================================
// Prefill path: activations first transposed to At[K][Tp] (tokens contiguous, Tp a multiple of the
// token tile, zero padded). A CTA owns WR x 64 rows and WN x 64 tokens; each warp a 64 x 64 tile
// (4 x 8 mma.sp per k32 step). Per step, a multi-stage cp.async pipeline brings into shared memory
// the prepared A fragments and metadata (contiguous 2 KB + 256 B per 64 rows) and, per block, the 32
// gathered rows At[col][t0 .. t0+TN) (one 16-byte cp.async per 8 tokens: the gather costs nothing
// beyond the copy); B fragments are read with ldmatrix.trans from the gathered rows.
// =====================================================================================================
template <int WR, int WN, bool SHARED_B>
struct PrefillCfg {
  static constexpr int kThreads = 32 * WR * WN;
  static constexpr int kRows = 64 * WR;
  static constexpr int kTN = 64 * WN;
  static constexpr int kNbt = SHARED_B ? WR : 4 * WR;     // gathered B tiles per stage
  static constexpr int kBStride = kTN + 8;                 // halves per gathered row (+16 B: no bank conflicts)
  static constexpr int kABytes = WR * 2048;
  static constexpr int kMBytes = WR * 256;
  static constexpr int kBBytes = kNbt * 32 * kBStride * 2;
  static constexpr int kStageBytes = kABytes + kMBytes + kBBytes;
  static constexpr int kBChunks = kNbt * 32 * (kTN / 8);  // 16-byte copies per stage for B
  static constexpr int kBPerThread = kBChunks / kThreads;
  static constexpr int kCStride = kRows + 8;               // epilogue staging [TN][kRows + 8] halves
  static constexpr int kCBytes = kTN * kCStride * 2;
  static_assert(kBChunks % kThreads == 0, "B copies per thread");
};

template <int STAGES, int WR, int WN, bool SHARED_B>
constexpr int prefill_smem_bytes() {
  using C = PrefillCfg<WR, WN, SHARED_B>;
  return STAGES * C::kStageBytes > C::kCBytes ? STAGES * C::kStageBytes : C::kCBytes;
}

// Block index of gathered B tile bt of the CTA whose first row is row0.
template <int WR, int WN, bool SHARED_B>
__device__ __forceinline__ int prefill_b_block(const Params& p, int64_t row0, int bt) {
  const int64_t r = SHARED_B ? row0 + 64 * bt : row0 + 16 * bt;
  return static_cast<int>(r / p.Vp);
}

// Column indices of the gathered rows that this thread copies at step s.
template <int WR, int WN, bool SHARED_B, bool WIN, int NCOL>
__device__ __forceinline__ void prefill_load_cols(const Params& p, int64_t row0, int s, int (&colv)[NCOL]) {
  static_assert(NCOL == PrefillCfg<WR, WN, SHARED_B>::kBPerThread, "colv size");
  using C = PrefillCfg<WR, WN, SHARED_B>;
  constexpr int kChunksPerRow = C::kTN / 8;
#pragma unroll
  for (int u = 0; u < C::kBPerThread; ++u) {
    const int c = threadIdx.x + C::kThreads * u;
    const int row = c / kChunksPerRow;
    const int bt = row >> 5, kc = row & 31;
    colv[u] = (s < p.S) ? column_of<WIN>(p, prefill_b_block<WR, WN, SHARED_B>(p, row0, bt), 8 * s + (kc >> 2), kc & 3)
                        : 0;
  }
}

// Issues the cp.async copies of step s into its stage (and always commits a group).
// With SHARED_B the column indices come prefetched in colv; otherwise (4x as many gathered rows, no
// registers to spare) they are loaded here.
template <int WR, int WN, bool SHARED_B, bool WIN, int STAGES, int NCOL>
__device__ __forceinline__ void prefill_issue(const Params& p, const uint16_t* __restrict__ At, int64_t Tp,
                                              int64_t t0, int64_t row0, int rt, int s, unsigned char* smem,
                                              const int (&colv)[NCOL]) {
  using C = PrefillCfg<WR, WN, SHARED_B>;
  constexpr int kChunksPerRow = C::kTN / 8;
  if (s < p.S) {
    unsigned char* st = smem + (s % STAGES) * C::kStageBytes;
    // A fragments + metadata of the WR 64-row units at step s (contiguous in the prepared layout).
    for (int c = threadIdx.x; c < WR * 128; c += C::kThreads) {
      const int w = c >> 7, k = c & 127;
      const int64_t unit = (static_cast<int64_t>(rt) * WR + w) * p.S + s;
      cp_async16(smem_u32(st + c * 16), p.vals + unit * 128 + k);
    }
    for (int c = threadIdx.x; c < WR * 16; c += C::kThreads) {
      const int w = c >> 4, k = c & 15;
      const int64_t unit = (static_cast<int64_t>(rt) * WR + w) * p.S + s;
      cp_async16(smem_u32(st + C::kABytes + c * 16), reinterpret_cast<const uint4*>(p.meta + unit * 32) + k);
    }
    // The gathered activation rows At[col][t0 .. t0 + TN) of each B tile.
    unsigned char* bs = st + C::kABytes + C::kMBytes;
#pragma unroll
    for (int u = 0; u < C::kBPerThread; ++u) {
      const int c = threadIdx.x + C::kThreads * u;
      const int row = c / kChunksPerRow, ch = c % kChunksPerRow;
      int col;
      if constexpr (SHARED_B) {
        col = colv[u];
      } else {
        col = column_of<WIN>(p, prefill_b_block<WR, WN, SHARED_B>(p, row0, row >> 5), 8 * s + ((row & 31) >> 2),
                             row & 3);
      }
      const uint16_t* src = At + static_cast<int64_t>(col) * Tp + t0 + 8 * ch;
      cp_async16(smem_u32(bs + (row * C::kBStride + 8 * ch) * 2), src);
    }
  }
  cp_async_commit();
}

template <bool BF16, int WR, int WN, bool SHARED_B, bool WIN, int STAGES>
__global__ void __launch_bounds__(PrefillCfg<WR, WN, SHARED_B>::kThreads)
    prefill_kernel(Params p, const uint16_t* __restrict__ At, int64_t Tp, int T, uint16_t* __restrict__ Y) {
  using C = PrefillCfg<WR, WN, SHARED_B>;
  extern __shared__ __align__(128) unsigned char smem[];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tid = lane & 3;
  const int wr = warp / WN, wn = warp % WN;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * C::kTN;
  const int rt = blockIdx.y;                       // row tile of kRows rows
  const int64_t row0 = static_cast<int64_t>(rt) * C::kRows;
  const int S = p.S;

  // Column indices are loaded one iteration before their copies are issued (their latency hides
  // behind a step of mma work).
  constexpr int NCOL = SHARED_B ? C::kBPerThread : 1;
  int colv[NCOL];
  colv[0] = 0;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if constexpr (SHARED_B) prefill_load_cols<WR, WN, SHARED_B, WIN>(p, row0, s, colv);
    prefill_issue<WR, WN, SHARED_B, WIN, STAGES, NCOL>(p, At, Tp, t0, row0, rt, s, smem, colv);
  }
  if constexpr (SHARED_B) prefill_load_cols<WR, WN, SHARED_B, WIN>(p, row0, STAGES - 1, colv);

  float acc[4][8][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][n][c] = 0.f;

  for (int s = 0; s < S; ++s) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    prefill_issue<WR, WN, SHARED_B, WIN, STAGES, NCOL>(p, At, Tp, t0, row0, rt, s + STAGES - 1, smem, colv);
    if constexpr (SHARED_B) prefill_load_cols<WR, WN, SHARED_B, WIN>(p, row0, s + STAGES, colv);

    const unsigned char* st = smem + (s % STAGES) * C::kStageBytes;
    const uint4* as = reinterpret_cast<const uint4*>(st) + wr * 128;
    const uint2 e = reinterpret_cast<const uint2*>(st + C::kABytes)[wr * 32 + lane];
    uint4 a[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = as[i * 32 + lane];
    const unsigned char* bs = st + C::kABytes + C::kMBytes;
    const int tokoff = wn * 64;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      if constexpr (SHARED_B) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, smem_u32(bs + ((wr * 32 + lane) * C::kBStride + tokoff + 8 * n) * 2));
        mma_sp<BF16, 0>(acc[0][n], a[0], b, e.x);
        mma_sp<BF16, 1>(acc[1][n], a[1], b, e.x);
        mma_sp<BF16, 0>(acc[2][n], a[2], b, e.y);
        mma_sp<BF16, 1>(acc[3][n], a[3], b, e.y);
      } else {
        uint32_t b0[4], b1[4], b2[4], b3[4];
        ldmatrix_x4_trans(b0, smem_u32(bs + (((wr * 4 + 0) * 32 + lane) * C::kBStride + tokoff + 8 * n) * 2));
        ldmatrix_x4_trans(b1, smem_u32(bs + (((wr * 4 + 1) * 32 + lane) * C::kBStride + tokoff + 8 * n) * 2));
        ldmatrix_x4_trans(b2, smem_u32(bs + (((wr * 4 + 2) * 32 + lane) * C::kBStride + tokoff + 8 * n) * 2));
        ldmatrix_x4_trans(b3, smem_u32(bs + (((wr * 4 + 3) * 32 + lane) * C::kBStride + tokoff + 8 * n) * 2));
        mma_sp<BF16, 0>(acc[0][n], a[0], b0, e.x);
        mma_sp<BF16, 1>(acc[1][n], a[1], b1, e.x);
        mma_sp<BF16, 0>(acc[2][n], a[2], b2, e.y);
        mma_sp<BF16, 1>(acc[3][n], a[3], b3, e.y);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  // Epilogue: bias, round, stage as [token][row] halves, then write rows of Y (16-byte stores when
  // the output features are the prepared rows in order).
  uint16_t* cs = reinterpret_cast<uint16_t*>(smem);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int rl0 = wr * 64 + 16 * i + gid;
    const float b0 = p.bias ? p.bias[row0 + rl0] : 0.f;
    const float b1 = p.bias ? p.bias[row0 + rl0 + 8] : 0.f;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      const int tl = wn * 64 + 8 * n + 2 * tid;
      cs[tl * C::kCStride + rl0] = f32_to_out<BF16>(acc[i][n][0] + b0);
      cs[(tl + 1) * C::kCStride + rl0] = f32_to_out<BF16>(acc[i][n][1] + b0);
      cs[tl * C::kCStride + rl0 + 8] = f32_to_out<BF16>(acc[i][n][2] + b1);
      cs[(tl + 1) * C::kCStride + rl0 + 8] = f32_to_out<BF16>(acc[i][n][3] + b1);
    }
  }
  __syncthreads();
  constexpr int kR8 = C::kRows / 8;
  for (int x = threadIdx.x; x < C::kTN * kR8; x += C::kThreads) {
    const int tl = x / kR8, r8 = x % kR8;
    const int64_t t = t0 + tl;
    if (t >= T) continue;
    const int64_t pr = row0 + 8 * r8;
    const uint16_t* src = cs + tl * C::kCStride + 8 * r8;
    uint16_t* yrow = Y + t * p.N_out;
    if (p.identity && pr + 8 <= p.N_out) {
      *reinterpret_cast<uint4*>(yrow + pr) = *reinterpret_cast<const uint4*>(src);
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int o = p.rowmap[pr + k];
        if (o >= 0) yrow[o] = src[k];
      }
    }
  }
}

// At[k][t] = A[t][k] for t < T, 0 for T <= t < Tp.
__global__ void transpose_kernel(const uint16_t* __restrict__ A, uint16_t* __restrict__ At, int64_t T, int64_t K,
                                 int64_t Tp) {
  __shared__ uint16_t tile[32][33];
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * 32, t0 = static_cast<int64_t>(blockIdx.y) * 32;
  for (int y = threadIdx.y; y < 32; y += blockDim.y) {
    const int64_t t = t0 + y, k = k0 + threadIdx.x;
    tile[y][threadIdx.x] = (t < T && k < K) ? A[t * K + k] : static_cast<uint16_t>(0);
  }
  __syncthreads();
  for (int y = threadIdx.y; y < 32; y += blockDim.y) {
    const int64_t k = k0 + y, t = t0 + threadIdx.x;
    if (k < K && t < Tp) At[k * Tp + t] = tile[threadIdx.x][y];
  }
}

}  // namespace dev
}  // namespace cuda
}  // namespace vnmc
