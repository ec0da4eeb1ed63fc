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

// Thread-block clusters (sm_90: the v13 decode and the v18 prefill split reduce through distributed
// shared memory).
__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
__device__ __forceinline__ void cluster_sync_all() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
// A float in the shared memory of CTA `rank` of this cluster, at the offset of `saddr` in ours.
__device__ __forceinline__ float ld_cluster_f32(uint32_t saddr, uint32_t rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(saddr), "r"(rank));
  float v;
  asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(remote) : "memory");
  return v;
}


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
// Copies src_bytes (0 or 16) and zero-fills the rest of the 16 bytes (rows past K).
__device__ __forceinline__ void cp_async16_zfill(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
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

// Eight staged output values of prepared rows pr..pr+7 into the token's output row yrow: one 16-byte
// store when the rows are the output features in order, else through rowmap (-1: padding row).
__device__ __forceinline__ void store_rows8(uint16_t* yrow, const uint16_t* src, int64_t pr, int64_t N_out,
                                            int32_t identity, const int32_t* __restrict__ rowmap) {
  if (identity && pr + 8 <= N_out) {
    *reinterpret_cast<uint4*>(yrow + pr) = *reinterpret_cast<const uint4*>(src);
  } else {
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const int o = rowmap[pr + k];
      if (o >= 0) yrow[o] = src[k];
    }
  }
}

// Float activations with half values: A rounded to the half type before the kernels, Y widened after.
template <bool BF16>
__global__ void f32_to_half_kernel(const float* __restrict__ x, uint16_t* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = f32_to_out<BF16>(x[i]);
}
template <bool BF16>
__global__ void half_to_f32_kernel(const uint16_t* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (BF16) {
      y[i] = __bfloat162float(__ushort_as_bfloat16(x[i]));
    } else {
      y[i] = __half2float(__ushort_as_half(x[i]));
    }
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
// Decode path (T <= 16). Each CTA of 4 warps owns one 64-row tile and a range of k32 steps; each warp
// streams a contiguous sub-range of steps (weights read once with 16-byte coalesced streaming loads,
// the next batch of steps loaded while the current one computes), builds the B fragments by gathering
// the 4 kept activations of each (block, group) and runs mma.sp. The grid is sized to one wave.
// Activations: T == 1 straight from A; T >= 2 from At2[K][8] (u32 = tokens j and j+8 of column k, built
// by pairs_kernel), so that one 32-byte sector holds a column's 16 tokens and a lane fetches the two
// tokens it needs with one load. Warps reduce through shared memory; CTAs of one row tile through fp32
// atomics into a scratch that the last CTA finalises and leaves zeroed.
// =====================================================================================================
constexpr int kDecodeWarps = 4;

// Accumulators of a warp over 4 m16 tiles (64 rows) and NT n8 tiles (8 NT tokens) of mma.sp.
template <int NT>
__device__ __forceinline__ void zero_acc(float (&acc)[4][NT][4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][n][c] = 0.f;
}
// ... into red[token][row] (NT * 8 x 64 floats) for the reduction over warps (C fragment layout above).
template <int NT>
__device__ __forceinline__ void acc_to_smem(const float (&acc)[4][NT][4], float* red, int lane) {
  const int gid = lane >> 2, tid = lane & 3;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) red[(8 * n + 2 * tid + (c & 1)) * 64 + 16 * i + gid + 8 * (c >> 1)] = acc[i][n][c];
}

template <bool SHARED_B, bool WIN, int P>
struct DecodeBatch {
  static constexpr int NB = SHARED_B ? 1 : 4;
  uint4 a[P][4];
  uint2 e[P];
  int col[P][NB][4][2];
};

template <bool SHARED_B, bool WIN, int P>
__device__ __forceinline__ void decode_load(const Params& p, DecodeBatch<SHARED_B, WIN, P>& w, int64_t unit0, int s0,
                                            int s_end, const int (&blk)[DecodeBatch<SHARED_B, WIN, P>::NB],
                                            int lane) {
  constexpr int NB = DecodeBatch<SHARED_B, WIN, P>::NB;
  const int tid = lane & 3, h = tid & 1;
#pragma unroll
  for (int u = 0; u < P; ++u) {
    const int s = s0 + u;
    if (s < s_end) {
      const uint4* src = p.vals + (unit0 + s) * 128 + lane;
#pragma unroll
      for (int i = 0; i < 4; ++i) w.a[u][i] = ld_stream(src + i * 32);
      w.e[u] = ld_stream(p.meta + (unit0 + s) * 32 + lane);
#pragma unroll
      for (int b = 0; b < NB; ++b)
#pragma unroll
        for (int j = 0; j < 4; ++j) column_pair<WIN>(p, blk[b], 8 * s + 2 * j + (tid >> 1), h, w.col[u][b][j][0], w.col[u][b][j][1]);
    }
  }
}

template <bool BF16, int NT, bool SHARED_B, bool WIN, bool PAIRS, bool STAGE, int P>
__device__ __forceinline__ void decode_compute(const Params& p, const DecodeBatch<SHARED_B, WIN, P>& w, int s0,
                                               int s_end, const uint16_t* __restrict__ A,
                                               const uint32_t* __restrict__ At2, int T, int lane,
                                               const uint16_t* sA, int ld, int k0, float (&acc)[4][NT][4]) {
  constexpr int NB = DecodeBatch<SHARED_B, WIN, P>::NB;
  const int gid = lane >> 2;
#pragma unroll
  for (int u = 0; u < P; ++u) {
    if (s0 + u >= s_end) break;
    uint32_t bf[NB][NT][4];
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if constexpr (STAGE) {
          // Activations staged in shared memory: sA[tok][k - k0], row stride ld halves.
#pragma unroll
          for (int n = 0; n < NT; ++n) {
            const int tok = gid + 8 * n;
            const bool ok = tok < T;
            const uint16_t* row = sA + (ok ? tok : 0) * ld - k0;
            const uint32_t lo = ok ? row[w.col[u][b][j][0]] : 0u;
            const uint32_t hi = ok ? row[w.col[u][b][j][1]] : 0u;
            bf[b][n][j] = lo | (hi << 16);
          }
        } else if constexpr (PAIRS) {
          const uint32_t w0 = __ldg(At2 + static_cast<int64_t>(w.col[u][b][j][0]) * 8 + gid);
          const uint32_t w1 = __ldg(At2 + static_cast<int64_t>(w.col[u][b][j][1]) * 8 + gid);
          bf[b][0][j] = __byte_perm(w0, w1, 0x5410);                  // tokens gid
          if constexpr (NT == 2) bf[b][NT - 1][j] = __byte_perm(w0, w1, 0x7632);  // tokens gid + 8
        } else {
          // Direct gathers from A (no re-pack launch): tokens gid and, for NT = 2, gid + 8.
#pragma unroll
          for (int n = 0; n < NT; ++n) {
            const int tok = gid + 8 * n;
            const bool ok = tok < T;
            const uint16_t* row = A + static_cast<int64_t>(ok ? tok : 0) * p.K;
            const uint32_t lo = ok ? __ldg(row + w.col[u][b][j][0]) : 0u;
            const uint32_t hi = ok ? __ldg(row + w.col[u][b][j][1]) : 0u;
            bf[b][n][j] = lo | (hi << 16);
          }
        }
      }
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      mma_sp<BF16, 0>(acc[0][n], w.a[u][0], bf[0][n], w.e[u].x);
      mma_sp<BF16, 1>(acc[1][n], w.a[u][1], bf[SHARED_B ? 0 : 1][n], w.e[u].x);
      mma_sp<BF16, 0>(acc[2][n], w.a[u][2], bf[SHARED_B ? 0 : 2][n], w.e[u].y);
      mma_sp<BF16, 1>(acc[3][n], w.a[u][3], bf[SHARED_B ? 0 : 3][n], w.e[u].y);
    }
  }
}

// STAGE (windowed indices, K % 8 == 0, T >= 1): a CTA owns RT = 2 row tiles (128 rows; warps 0-1 the
// first, 2-3 the second, each pair splitting the CTA's step range) and first copies the slice
// A[0..T)[k0 .. k0 + W) that its steps can touch (W = steps * 8 * M columns) into shared memory with
// 16-byte cp.async, while the first weight batch is in flight; every gather then reads shared memory
// (no pairs launch, no dependent L2 round trip per step), and the slice serves both row tiles.
// Opt-in only (VNMC_DECODE_STAGE=1): slower than the v4 paths on an H100 (bench/gpu/NOTES.md, v5).
template <bool BF16, int NT, bool SHARED_B, bool WIN, bool PAIRS, bool STAGE = false>
__global__ void __launch_bounds__(kDecodeWarps * 32, 3)
    decode_kernel(Params p, const uint16_t* __restrict__ A, const uint32_t* __restrict__ At2, int T,
                  uint16_t* __restrict__ Y, float* __restrict__ part, unsigned* __restrict__ counters, int ksplit,
                  int stage_ld) {
  constexpr int P = SHARED_B ? 2 : 1;  // steps per batch; two batches in flight
  using Batch = DecodeBatch<SHARED_B, WIN, P>;
  constexpr int NB = Batch::NB;
  constexpr int RT = STAGE ? 2 : 1;            // 64-row tiles per CTA
  constexpr int KW = kDecodeWarps / RT;        // warps splitting the steps of one row tile
  __shared__ float red[kDecodeWarps][NT * 8][64];
  __shared__ int s_last;
  extern __shared__ __align__(16) uint16_t sA[];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int qg = blockIdx.x / ksplit;
  const int ks = blockIdx.x - qg * ksplit;
  const int q = qg * RT + warp / KW;
  const int parts = ksplit * KW;
  const int part_id = ks * KW + warp % KW;
  const int s_begin = static_cast<int>(static_cast<int64_t>(p.S) * part_id / parts);
  const int s_end = static_cast<int>(static_cast<int64_t>(p.S) * (part_id + 1) / parts);

  int blk[NB];
#pragma unroll
  for (int b = 0; b < NB; ++b) blk[b] = (q * 64 + b * 16) / p.Vp;

  float acc[4][NT][4];
  zero_acc(acc);

  const int64_t unit0 = static_cast<int64_t>(q) * p.S;
  Batch w0, w1;
  decode_load<SHARED_B, WIN, P>(p, w0, unit0, s_begin, s_end, blk, lane);
  int k0 = 0;
  if constexpr (STAGE) {
    const int cs0 = static_cast<int>(static_cast<int64_t>(p.S) * ks / ksplit);
    const int cs1 = static_cast<int>(static_cast<int64_t>(p.S) * (ks + 1) / ksplit);
    k0 = cs0 * 8 * p.M;
    const int nch = (cs1 - cs0) * p.M;  // 16-byte chunks per token row (8 * M columns per step)
    for (int i = threadIdx.x; i < T * nch; i += blockDim.x) {
      const int t = i / nch, c = i - t * nch;
      const int64_t k = k0 + 8 * c;
      uint16_t* dst = sA + t * stage_ld + 8 * c;
      if (k < p.K) {  // K % 8 == 0: a chunk is wholly inside or wholly beyond K
        cp_async16(smem_u32(dst), A + static_cast<int64_t>(t) * p.K + k);
      } else {
        *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
      }
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
  }
  for (int s0 = s_begin; s0 < s_end; s0 += 2 * P) {
    decode_load<SHARED_B, WIN, P>(p, w1, unit0, s0 + P, s_end, blk, lane);
    decode_compute<BF16, NT, SHARED_B, WIN, PAIRS, STAGE, P>(p, w0, s0, s_end, A, At2, T, lane, sA, stage_ld, k0, acc);
    if (s0 + P >= s_end) break;
    decode_load<SHARED_B, WIN, P>(p, w0, unit0, s0 + 2 * P, s_end, blk, lane);
    decode_compute<BF16, NT, SHARED_B, WIN, PAIRS, STAGE, P>(p, w1, s0 + P, s_end, A, At2, T, lane, sA, stage_ld, k0, acc);
  }

  // Reduce the warps of each row tile of this CTA.
  acc_to_smem(acc, &red[warp][0][0], lane);
  __syncthreads();

  constexpr int kElems = NT * 8 * 64;
  auto warp_sum = [&](int rt, int tok, int r) {
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < KW; ++w) v += red[rt * KW + w][tok][r];
    return v;
  };
  if (ksplit == 1) {
    for (int x = threadIdx.x; x < RT * kElems; x += blockDim.x) {
      const int rt = x / kElems, xe = x - rt * kElems;
      const int tok = xe >> 6, r = xe & 63;
      if (tok >= T) continue;
      float v = warp_sum(rt, tok, r);
      const int64_t pr = static_cast<int64_t>(qg * RT + rt) * 64 + r;
      const int o = p.rowmap[pr];
      if (o < 0) continue;
      if (p.bias) v += p.bias[pr];
      Y[static_cast<int64_t>(tok) * p.N_out + o] = f32_to_out<BF16>(v);
    }
    return;
  }
  float* mypart = part + static_cast<int64_t>(qg * RT) * (16 * 64);
  for (int x = threadIdx.x; x < RT * kElems; x += blockDim.x) {
    const int rt = x / kElems, xe = x - rt * kElems;
    const int tok = xe >> 6, r = xe & 63;
    if (tok >= T) continue;
    atomicAdd(mypart + rt * (16 * 64) + xe, warp_sum(rt, tok, r));
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) s_last = (atomicAdd(counters + qg * RT, 1u) == static_cast<unsigned>(ksplit - 1));
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  for (int x = threadIdx.x; x < RT * kElems; x += blockDim.x) {
    const int rt = x / kElems, xe = x - rt * kElems;
    const int tok = xe >> 6, r = xe & 63;
    if (tok >= T) continue;
    float v = __ldcg(mypart + rt * (16 * 64) + xe);
    __stcg(mypart + rt * (16 * 64) + xe, 0.f);
    const int64_t pr = static_cast<int64_t>(qg * RT + rt) * 64 + r;
    const int o = p.rowmap[pr];
    if (o < 0) continue;
    if (p.bias) v += p.bias[pr];
    Y[static_cast<int64_t>(tok) * p.N_out + o] = f32_to_out<BF16>(v);
  }
  if (threadIdx.x == 0) counters[qg * RT] = 0u;
}

// At2[k][j] = A[j][k] | A[j + 8][k] << 16 (0 for tokens >= T), T <= 16. Block (32, 8): k = lane.
__global__ void pairs_kernel(const uint16_t* __restrict__ A, uint32_t* __restrict__ At2, int T, int64_t K) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int j = threadIdx.y;
  if (k >= K) return;
  const uint32_t lo = j < T ? A[static_cast<int64_t>(j) * K + k] : 0u;
  const uint32_t hi = j + 8 < T ? A[static_cast<int64_t>(j + 8) * K + k] : 0u;
  At2[k * 8 + j] = lo | (hi << 16);
}

// =====================================================================================================
// Prefill path: activations first transposed to At[K][Tp] (tokens contiguous, Tp a multiple of the
// token tile, zero padded). A CTA owns WR x 64 rows, WN x 64 tokens and a range of k32 steps (split-K
// over blockIdx.z when the tiles alone would not fill the GPU); each warp a 64 x 64 tile (4 x 8 mma.sp
// per step). Per step, a multi-stage cp.async pipeline brings into shared memory the prepared A
// fragments and metadata (contiguous 2 KB + 256 B per 64 rows) and, per block, the 32 gathered rows
// At[col][t0 .. t0+TN) (one 16-byte cp.async per 8 tokens: the gather costs nothing beyond the copy);
// B fragments are read with ldmatrix.trans from the gathered rows. Column indices are fetched one
// step before their copies are issued.
// =====================================================================================================
// WT: tokens per warp (64: 128 fp32 accumulators per thread, one CTA of 8 warps or two of 4 per SM;
// 32: half, so twice the warps fit).
template <int WR, int WN, bool SHARED_B, int WT = 64>
struct PrefillCfg {
  static constexpr int kThreads = 32 * WR * WN;
  static constexpr int kMaxWindowM = 16;                   // window staging: 8 * M rows per stage
  static constexpr int kRows = 64 * WR;
  static constexpr int kTN = WT * WN;
  static constexpr int kNT = WT / 8;                       // n8 tiles per warp
  static constexpr int kNbt = SHARED_B ? WR : 4 * WR;     // gathered B tiles per stage
  static constexpr int kBStride = kTN + 8;                 // halves per gathered row (+16 B: no bank conflicts)
  static constexpr int kABytes = WR * 2048;
  static constexpr int kMBytes = WR * 256;
  static constexpr int kBBytes = kNbt * 32 * kBStride * 2;
  static constexpr int kStageBytes = kABytes + kMBytes + kBBytes;
  static constexpr int kChunksPerRow = kTN / 8;
  static constexpr int kBChunks = kNbt * 32 * kChunksPerRow;  // 16-byte copies per stage for B
  static constexpr int kBPerThread = kBChunks / kThreads;
  static constexpr int kNCol = SHARED_B ? kBPerThread : 1;    // prefetched column indices per thread
  static constexpr int kCStride = kRows + 8;               // epilogue staging [TN][kRows + 8] halves
  static constexpr int kCBytes = kTN * kCStride * 2;
  static_assert(kBChunks % kThreads == 0, "B copies per thread");
};

// Bytes of one pipeline stage: A fragments, metadata, then either the WR (or 4 WR) gathered B tiles
// or, with WINDOW, the dense window At[8M step columns][TN tokens] that every unit gathers from.
template <int WR, int WN, bool SHARED_B, bool WINDOW, int WT = 64>
__host__ __device__ constexpr int prefill_stage_bytes(int M) {
  using C = PrefillCfg<WR, WN, SHARED_B, WT>;
  return WINDOW ? C::kABytes + C::kMBytes + 8 * M * C::kBStride * 2 : C::kStageBytes;
}

template <int STAGES, int WR, int WN, bool SHARED_B, bool WINDOW = false, int WT = 64>
__host__ __device__ constexpr int prefill_smem_bytes(int M = PrefillCfg<WR, WN, SHARED_B, WT>::kMaxWindowM) {
  using C = PrefillCfg<WR, WN, SHARED_B, WT>;
  return STAGES * prefill_stage_bytes<WR, WN, SHARED_B, WINDOW, WT>(M) > C::kCBytes
             ? STAGES * prefill_stage_bytes<WR, WN, SHARED_B, WINDOW, WT>(M)
             : C::kCBytes;
}

// Offset into p.cols (int32 units) of the column that B copy u of this thread reads at step 0; step s
// adds 32 * s. s_blk: block index of each gathered tile of the CTA.
template <int WR, int WN, bool SHARED_B, int WT>
__device__ __forceinline__ int prefill_col_offset(const Params& p, const int* s_blk, int u) {
  using C = PrefillCfg<WR, WN, SHARED_B, WT>;
  const int c = threadIdx.x + C::kThreads * u;
  const int row = c / C::kChunksPerRow;
  const int bt = row >> 5, kc = row & 31;
  return (s_blk[bt] * p.Gp + (kc >> 2)) * 4 + (kc & 3);
}

template <int WR, int WN, bool SHARED_B, int STAGES, int WT>
__device__ __forceinline__ void prefill_issue(const Params& p, const uint16_t* __restrict__ At, int64_t Tp,
                                              int64_t t0, int rt, int s, int stage, unsigned char* smem,
                                              const int* s_blk, const int (&colv)[PrefillCfg<WR, WN, SHARED_B, WT>::kNCol]) {
  using C = PrefillCfg<WR, WN, SHARED_B, WT>;
  unsigned char* st = smem + stage * C::kStageBytes;
  // A fragments + metadata of the WR 64-row units at step s (contiguous in the prepared layout).
#pragma unroll
  for (int k = 0; k < (WR * 128 + C::kThreads - 1) / C::kThreads; ++k) {
    const int c = threadIdx.x + k * C::kThreads;
    if (c < WR * 128) {
      const int w = c >> 7;
      const int64_t u = static_cast<int64_t>(rt) * WR + w;
      if (u < p.R64) cp_async16(smem_u32(st + c * 16), p.vals + (u * p.S + s) * 128 + (c & 127));
    }
  }
  if (threadIdx.x < WR * 16) {
    const int c = threadIdx.x, w = c >> 4;
    const int64_t u = static_cast<int64_t>(rt) * WR + w;
    if (u < p.R64)
      cp_async16(smem_u32(st + C::kABytes + c * 16), reinterpret_cast<const uint4*>(p.meta + (u * p.S + s) * 32) + (c & 15));
  }
  unsigned char* bs = st + C::kABytes + C::kMBytes;
  // The gathered activation rows At[col][t0 .. t0 + TN) of each B tile.
#pragma unroll
  for (int u = 0; u < C::kBPerThread; ++u) {
    const int c = threadIdx.x + C::kThreads * u;
    const int row = c / C::kChunksPerRow, ch = c % C::kChunksPerRow;
    int col;
    if constexpr (SHARED_B) {
      col = colv[u];
    } else {
      col = __ldg(p.cols + prefill_col_offset<WR, WN, SHARED_B, WT>(p, s_blk, u) + 32 * s);
    }
    cp_async16(smem_u32(bs + (row * C::kBStride + 8 * ch) * 2), At + static_cast<int64_t>(col) * Tp + t0 + 8 * ch);
  }
}

// WINDOW (windowed indices, V a multiple of 64, M <= 16): instead of one gathered B tile per 64-row
// unit, each stage holds the dense window of 8M activation columns, copied once for all WR units, and
// every lane points its ldmatrix row at the kept column it needs (lane = condensed k of the step). The
// L2 -> SM traffic for B drops from WR * 32 to 8M rows per stage; the gather itself is free.
template <bool BF16, int WR, int WN, bool SHARED_B, int STAGES, bool WINDOW = false, int WT = 64>
__global__ void __launch_bounds__(PrefillCfg<WR, WN, SHARED_B, WT>::kThreads, WT == 32 && PrefillCfg<WR, WN, SHARED_B, WT>::kThreads <= 256 ? 2 : 1)
    prefill_kernel(Params p, const uint16_t* __restrict__ At, int64_t Tp, int T, uint16_t* __restrict__ Y,
                   float* __restrict__ yacc, int64_t Rp) {
  using C = PrefillCfg<WR, WN, SHARED_B, WT>;
  static_assert(!WINDOW || SHARED_B, "the window path needs 64-row units inside one block");
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int s_blk[C::kNbt];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tid = lane & 3;
  const int wr = warp / WN, wn = warp % WN;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * C::kTN;
  const int rt = blockIdx.y;                       // row tile of kRows rows
  const int64_t row0 = static_cast<int64_t>(rt) * C::kRows;
  const bool unit_ok = static_cast<int64_t>(rt) * WR + wr < p.R64;  // warp-uniform
  const int ksplit = gridDim.z;
  const int s_lo = static_cast<int>(static_cast<int64_t>(p.S) * blockIdx.z / ksplit);
  const int s_hi = static_cast<int>(static_cast<int64_t>(p.S) * (blockIdx.z + 1) / ksplit);
  const int ns = s_hi - s_lo;
  const int stage_bytes = prefill_stage_bytes<WR, WN, SHARED_B, WINDOW, WT>(p.M);

  if (threadIdx.x < C::kNbt) {
    const int64_t r = min(row0 + (SHARED_B ? 64 : 16) * threadIdx.x, Rp - 1);
    s_blk[threadIdx.x] = static_cast<int>(r / p.Vp);
  }
  __syncthreads();

  constexpr bool kPrefetchCols = SHARED_B && !WINDOW;
  int coff[C::kNCol], colv[C::kNCol];
#pragma unroll
  for (int u = 0; u < C::kNCol; ++u) {
    coff[u] = kPrefetchCols ? prefill_col_offset<WR, WN, SHARED_B, WT>(p, s_blk, u) : 0;
    colv[u] = 0;
  }
  auto fetch_cols = [&](int j) {  // column indices of pipeline step j (global step s_lo + j)
    if constexpr (kPrefetchCols) {
      if (j < ns) {
#pragma unroll
        for (int u = 0; u < C::kNCol; ++u) colv[u] = __ldg(p.cols + coff[u] + 32 * (s_lo + j));
      }
    }
  };
  // WINDOW: this lane's kept column (condensed k = lane) as 4 u8 offsets of its group, one step ahead.
  // WINDOW: a per-thread copy plan built once (v6c). In v6/v6b the generic copy code (64-bit index
  // products, validity checks) was ~240 of the ~310 SASS instructions of a warp's step, against 32
  // mma.sp; here a step's copies are pointer increments and one 32-bit compare each.
  constexpr int kACopies = (WR * 128 + C::kThreads - 1) / C::kThreads;
  constexpr int kRowStep = C::kThreads / C::kChunksPerRow;
  constexpr int kWinIters = (8 * C::kMaxWindowM + kRowStep - 1) / kRowStep;
  const uint4* a_src[kACopies];
  uint32_t a_dst[kACopies];
  const uint4* m_src = nullptr;
  const uint16_t* w_src = nullptr;
  int w_n = 0, w_k = 0;          // window chunks of this thread; its first row's k at step s_lo
  const int64_t w_step = static_cast<int64_t>(8) * p.M * Tp;   // halves per step
  const uint32_t m_dst = C::kABytes + threadIdx.x * 16;
  const uint32_t w_dst = C::kABytes + C::kMBytes +
                         ((threadIdx.x / C::kChunksPerRow) * C::kBStride + 8 * (threadIdx.x % C::kChunksPerRow)) * 2;
  if constexpr (WINDOW) {
#pragma unroll
    for (int k = 0; k < kACopies; ++k) {
      const int c = threadIdx.x + k * C::kThreads;
      const int64_t u = static_cast<int64_t>(rt) * WR + (c >> 7);
      const bool ok = c < WR * 128 && u < p.R64;
      a_src[k] = ok ? p.vals + (u * p.S + s_lo) * 128 + (c & 127) : nullptr;
      a_dst[k] = c * 16;
    }
    if (threadIdx.x < WR * 16) {
      const int64_t u = static_cast<int64_t>(rt) * WR + (threadIdx.x >> 4);
      if (u < p.R64) m_src = reinterpret_cast<const uint4*>(p.meta + (u * p.S + s_lo) * 32) + (threadIdx.x & 15);
    }
    const int r0 = threadIdx.x / C::kChunksPerRow;
    w_n = r0 < 8 * p.M ? (8 * p.M - r0 + kRowStep - 1) / kRowStep : 0;
    w_k = s_lo * 8 * p.M + r0;
    w_src = At + static_cast<int64_t>(w_k) * Tp + t0 + 8 * (threadIdx.x % C::kChunksPerRow);
  }
  // Issues the copies of pipeline step j (global step s_lo + j) into stage `stage`.
  auto issue_window = [&](int j, int stage) {
    const uint32_t st = smem_u32(smem) + stage * stage_bytes;
#pragma unroll
    for (int k = 0; k < kACopies; ++k)
      if (a_src[k]) cp_async16(st + a_dst[k], a_src[k] + 128 * j);
    if (m_src) cp_async16(st + m_dst, m_src + 16 * j);
    const uint16_t* src = w_src + j * w_step;
    const int kk = w_k + j * 8 * p.M;
#pragma unroll
    for (int i = 0; i < kWinIters; ++i) {
      if (i < w_n) {
        const bool in = kk + i * kRowStep < p.K;
        cp_async16_zfill(st + w_dst + i * kRowStep * C::kBStride * 2, in ? src + i * kRowStep * Tp : At, in ? 16 : 0);
      }
    }
  };
  const uint32_t* wofs = WINDOW ? p.wofs + static_cast<int64_t>(s_blk[wr]) * p.Gp + (lane >> 2) : nullptr;
  uint32_t wcur = 0;
  if constexpr (WINDOW) {
    if (ns > 0) wcur = __ldg(wofs + 8 * s_lo);
  }

#pragma unroll
  for (int j = 0; j < STAGES - 1; ++j) {
    fetch_cols(j);
    if (j < ns) {
      if constexpr (WINDOW) issue_window(j, j);
      else prefill_issue<WR, WN, SHARED_B, STAGES, WT>(p, At, Tp, t0, rt, s_lo + j, j, smem, s_blk, colv);
    }
    cp_async_commit();
  }
  fetch_cols(STAGES - 1);

  constexpr int kNT = C::kNT;
  float acc[4][kNT][4];
  zero_acc(acc);

  int stage = 0, wstage = STAGES - 1;
  for (int j = 0; j < ns; ++j) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    if (j + STAGES - 1 < ns) {
      if constexpr (WINDOW) issue_window(j + STAGES - 1, wstage);
      else prefill_issue<WR, WN, SHARED_B, STAGES, WT>(p, At, Tp, t0, rt, s_lo + j + STAGES - 1, wstage, smem, s_blk, colv);
    }
    cp_async_commit();
    fetch_cols(j + STAGES);
    wstage = wstage + 1 == STAGES ? 0 : wstage + 1;
    uint32_t wnext = 0;
    if constexpr (WINDOW) {
      if (j + 1 < ns) wnext = __ldg(wofs + 8 * (s_lo + j + 1));
    }

    const unsigned char* st = smem + stage * stage_bytes;
    stage = stage + 1 == STAGES ? 0 : stage + 1;
    if (unit_ok) {
      const uint4* as = reinterpret_cast<const uint4*>(st) + wr * 128;
      const uint2 e = reinterpret_cast<const uint2*>(st + C::kABytes)[wr * 32 + lane];
      uint4 a[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = as[i * 32 + lane];
      const uint32_t bs = smem_u32(st + C::kABytes + C::kMBytes);
      const int tokoff = wn * WT;
      // Row of the B tile (or window) whose 8 tokens this lane's ldmatrix address points at.
      const int brow = WINDOW ? (lane >> 2) * p.M + static_cast<int>((wcur >> (8 * (lane & 3))) & 0xffu) : wr * 32 + lane;
      if constexpr (SHARED_B && WINDOW) {
        // All eight B fragments first: each warp's 32 mma.sp then wait on one load latency, not eight.
        uint32_t b[kNT][4];
        const uint32_t baddr = bs + (brow * C::kBStride + tokoff) * 2;
#pragma unroll
        for (int n = 0; n < kNT; ++n) ldmatrix_x4_trans(b[n], baddr + 16 * n);
#pragma unroll
        for (int n = 0; n < kNT; ++n) {
          mma_sp<BF16, 0>(acc[0][n], a[0], b[n], e.x);
          mma_sp<BF16, 1>(acc[1][n], a[1], b[n], e.x);
          mma_sp<BF16, 0>(acc[2][n], a[2], b[n], e.y);
          mma_sp<BF16, 1>(acc[3][n], a[3], b[n], e.y);
        }
      } else {
#pragma unroll
      for (int n = 0; n < kNT; ++n) {
        if constexpr (SHARED_B) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, bs + (brow * C::kBStride + tokoff + 8 * n) * 2);
          mma_sp<BF16, 0>(acc[0][n], a[0], b, e.x);
          mma_sp<BF16, 1>(acc[1][n], a[1], b, e.x);
          mma_sp<BF16, 0>(acc[2][n], a[2], b, e.y);
          mma_sp<BF16, 1>(acc[3][n], a[3], b, e.y);
        } else {
          uint32_t b0[4], b1[4], b2[4], b3[4];
          ldmatrix_x4_trans(b0, bs + (((wr * 4 + 0) * 32 + lane) * C::kBStride + tokoff + 8 * n) * 2);
          ldmatrix_x4_trans(b1, bs + (((wr * 4 + 1) * 32 + lane) * C::kBStride + tokoff + 8 * n) * 2);
          ldmatrix_x4_trans(b2, bs + (((wr * 4 + 2) * 32 + lane) * C::kBStride + tokoff + 8 * n) * 2);
          ldmatrix_x4_trans(b3, bs + (((wr * 4 + 3) * 32 + lane) * C::kBStride + tokoff + 8 * n) * 2);
          mma_sp<BF16, 0>(acc[0][n], a[0], b0, e.x);
          mma_sp<BF16, 1>(acc[1][n], a[1], b1, e.x);
          mma_sp<BF16, 0>(acc[2][n], a[2], b2, e.y);
          mma_sp<BF16, 1>(acc[3][n], a[3], b3, e.y);
        }
      }
      }
    }
    wcur = wnext;
  }
  cp_async_wait<0>();

  if (yacc) {
    // Split-K: fp32 partial sums into yacc[T][Rp] (zeroed by the host), finalize_kernel converts.
    if (!unit_ok) return;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t r = row0 + wr * 64 + 16 * i + gid;
#pragma unroll
      for (int n = 0; n < kNT; ++n) {
        const int64_t t = t0 + wn * WT + 8 * n + 2 * tid;
        if (t < T) {
          atomicAdd(yacc + t * Rp + r, acc[i][n][0]);
          atomicAdd(yacc + t * Rp + r + 8, acc[i][n][2]);
        }
        if (t + 1 < T) {
          atomicAdd(yacc + (t + 1) * Rp + r, acc[i][n][1]);
          atomicAdd(yacc + (t + 1) * Rp + r + 8, acc[i][n][3]);
        }
      }
    }
    return;
  }
  __syncthreads();

  // Epilogue: bias, round, stage as [token][row] halves, then write rows of Y (16-byte stores when
  // the output features are the prepared rows in order).
  uint16_t* cs = reinterpret_cast<uint16_t*>(smem);
  if (unit_ok) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int rl0 = wr * 64 + 16 * i + gid;
      const float b0 = p.bias ? p.bias[row0 + rl0] : 0.f;
      const float b1 = p.bias ? p.bias[row0 + rl0 + 8] : 0.f;
#pragma unroll
      for (int n = 0; n < kNT; ++n) {
        const int tl = wn * WT + 8 * n + 2 * tid;
        cs[tl * C::kCStride + rl0] = f32_to_out<BF16>(acc[i][n][0] + b0);
        cs[(tl + 1) * C::kCStride + rl0] = f32_to_out<BF16>(acc[i][n][1] + b0);
        cs[tl * C::kCStride + rl0 + 8] = f32_to_out<BF16>(acc[i][n][2] + b1);
        cs[(tl + 1) * C::kCStride + rl0 + 8] = f32_to_out<BF16>(acc[i][n][3] + b1);
      }
    }
  }
  __syncthreads();
  constexpr int kR8 = C::kRows / 8;
  for (int x = threadIdx.x; x < C::kTN * kR8; x += C::kThreads) {
    const int tl = x / kR8, r8 = x % kR8;
    const int64_t t = t0 + tl;
    const int64_t pr = row0 + 8 * r8;
    if (t >= T || pr >= Rp) continue;
    store_rows8(Y + t * p.N_out, cs + tl * C::kCStride + 8 * r8, pr, p.N_out, p.identity, p.rowmap);
  }
}

// Y[t][rowmap[p]] = yacc[t][p] + bias[p] after a split-K prefill.
template <bool BF16>
__global__ void finalize_kernel(Params p, const float* __restrict__ yacc, int64_t Rp, int T, uint16_t* __restrict__ Y) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<int64_t>(T) * Rp) return;
  const int64_t t = i / Rp, pr = i - t * Rp;
  const int o = p.rowmap[pr];
  if (o < 0) return;
  float v = yacc[i];
  if (p.bias) v += p.bias[pr];
  Y[t * p.N_out + o] = f32_to_out<BF16>(v);
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
