// Prefill on Hopper's wgmma.mma_async.sp (sm_90a) for weights that are 2:4 along their whole K
// ("v9"). Included by vnm_cuda.cu only, after kernels.cuh.
//
// Why this form: on an H100 the V:N:M gather of activations per block of V rows is what held the
// mma.sp prefill kernels to 20-25 % of the tensor-core floor (L2 traffic of per-block gathers, or
// bank conflicts and barriers of a shared-memory gather; bench/gpu/NOTES.md v2-v8). A V:N:M weight
// whose groups are aligned to 4 columns (windowed indices and M a multiple of 4: 64:2:4, 64:2:8,
// 128:2:8, 64:2:16, ...) keeps at most 2 weights in every 4 consecutive input channels, so it is
// also 2:4 along K: the activations then enter the tensor cores as a plain dense tile (no gather),
// and wgmma.sp runs at up to 1.5-1.9 PFLOP/s dense-equivalent where mma.sp stops near 0.95
// (shared/design/gpu-notes.md section 2). The cost is 2:4's work (K/2 per row) instead of V:N:M's
// (4K/M): prefill speedups cap near 2:4's, whatever M.
//
// Layout (host, vnm_cuda.cu): rows in tiles of 128 (two warpgroups of 64), K in steps of 64
// (two wgmma k32 steps j = 0, 1):
//   vals24 [Rt][S64][2 wg][2 j][128 threads] uint4: the RS A fragment of wgmma.sp m64nNk32, per warp
//          the mma.sp m16n8k32 A fragment (kernels.cuh header; a 4-column chunk plays the group);
//   meta24 [Rt][S64][2 wg][128 threads] uint32: the metadata word of lane (gid, tid): selector
//          sel = tid >> 1 is step j = sel, h = tid & 1 picks chunks 4h..4h+3 of the step.
// Activations X[T][K] (K % 8 == 0, 16-byte aligned) are copied per step as BN token rows of 128
// bytes with the 128-byte swizzle (16-byte chunk c of row r at chunk c ^ (r & 7)), the K-major
// B operand of wgmma (no transpose kernel). v9 (wg24_prefill_kernel): all threads copy with cp.async and
// meet at a barrier per step; v10 (wg24_ws_kernel, the default): a TMA producer warpgroup and mbarriers.
// v11: a weight that is 2:4 along K only in the order of one input permutation runs on the same kernels
// after a per-call channel gather has put X into that order (vnm_cuda.cu decides; v12: the gather goes
// through shared memory, gather_channels_smem_kernel / launch_gather_channels at the end of this file).
// v14 (wg24_ws_persistent_kernel, Options::wgmma_persistent): v10 as a persistent tile loop, one wave of
// CTAs, the producer prefetching the next tile during the epilogue.
#pragma once

#include <cuda.h>  // CUtensorMap (the type only; the driver is reached through the runtime)

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace vnmc {
namespace cuda {
namespace dev {

// Epilogue staging stride: [BN tokens][128 rows + 8] halves (the +8 spreads the rows over the banks).
constexpr int kWg24CStride = 128 + 8;

struct Wg24Params {
  const uint4* vals;     // vals24 above
  const uint32_t* meta;  // meta24 above
  const int32_t* rowmap; // [Rt * 128] output feature of each row (-1: padding)
  const float* bias;     // [Rt * 128] or null
  int64_t K;
  int64_t N_out;
  int32_t S64;           // k64 steps
  int32_t identity;      // rowmap[p] == p for p < N_out (16-byte stores allowed)
  int32_t rows_fast;     // grid x = row tiles (1) or token tiles (0)
  // Split-K of the warp-specialised kernel (v18): 0 = none; else CTA z of gridDim.z (one cluster of
  // gridDim.z CTAs per tile) takes k64 steps [z * kchunk, ...), and the cluster adds its partial sums
  // through distributed shared memory before writing Y.
  int32_t kchunk;
};

template <int BN, int STAGES>
struct Wg24Cfg {
  static constexpr int kThreads = 256;
  static constexpr int kBBytes = BN * 128;
  static constexpr int kABytes = 2 * 2 * 128 * 16;
  static constexpr int kMBytes = 2 * 128 * 4;
  static constexpr int kStageBytes = kBBytes + kABytes + kMBytes;
  static constexpr int kCBytes = BN * kWg24CStride * 2;
  static constexpr int kPipeBytes = STAGES * kStageBytes;
  // + 1 KB: the stages are aligned to 1024 bytes by hand (the swizzle pattern repeats every 1 KB).
  static constexpr int kSmemBytes = (kPipeBytes > kCBytes ? kPipeBytes : kCBytes) + 1024;
  static_assert(kStageBytes % 1024 == 0, "stage bases stay 1024-byte aligned");
};

template <bool BF16, int N>
struct WgmmaSp;

// wgmma.mma_async.sp.m64nNk32, A (sparse, 2:4) from registers, B from shared memory (descriptor),
// fp32 accumulators, selector SEL; scale_d = 0 overwrites d.
#include "cuda/wgmma_sp_wrappers.inc"

// Shared-memory matrix descriptor of a K-major tile with the 128-byte swizzle: rows of 128 bytes,
// 8-row groups 1024 bytes apart (SBO), leading byte offset unused by this mode (1).
__device__ __forceinline__ uint64_t wg_desc_sw128(uint32_t saddr) {
  return static_cast<uint64_t>((saddr & 0x3FFFF) >> 4) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}

// Epilogue of both kernels, by the 256 consumer threads (named barrier 1): bias, round, stage as
// [token][row] halves in cs (BN x 136 halves, free shared memory), then 16-byte rows of Y (the layout
// of kernels.cuh's prefill epilogue). Accumulators: warp w of warpgroup wg holds rows
// 64 wg + 16 w + gid (+8), tokens 8 j + 2 tid (+1) in d[4 j ..].
template <bool BF16, int BN>
__device__ __forceinline__ void wg24_epilogue(const Wg24Params& p, const float (&d)[BN / 2], uint16_t* cs, int tid,
                                              int64_t t0, int64_t rt, int T, uint16_t* __restrict__ Y) {
  constexpr int kCStride = kWg24CStride;
  const int wg = tid >> 7, t128 = tid & 127;
  const int lane = t128 & 31, w = t128 >> 5, gid = lane >> 2, tq = lane & 3;
  const int rl0 = wg * 64 + 16 * w + gid;
  const int64_t row0 = rt * 128;
  const float b0 = p.bias ? p.bias[row0 + rl0] : 0.f;
  const float b1 = p.bias ? p.bias[row0 + rl0 + 8] : 0.f;
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const int tl = 8 * j + 2 * tq;
    cs[tl * kCStride + rl0] = f32_to_out<BF16>(d[4 * j + 0] + b0);
    cs[(tl + 1) * kCStride + rl0] = f32_to_out<BF16>(d[4 * j + 1] + b0);
    cs[tl * kCStride + rl0 + 8] = f32_to_out<BF16>(d[4 * j + 2] + b1);
    cs[(tl + 1) * kCStride + rl0 + 8] = f32_to_out<BF16>(d[4 * j + 3] + b1);
  }
  asm volatile("bar.sync 1, 256;\n" ::: "memory");
  for (int x = tid; x < BN * 16; x += 256) {
    const int tl = x >> 4, r8 = x & 15;
    const int64_t t = t0 + tl;
    if (t >= T) continue;
    store_rows8(Y + t * p.N_out, cs + tl * kCStride + 8 * r8, row0 + 8 * r8, p.N_out, p.identity, p.rowmap);
  }
}

template <bool BF16, int BN, int STAGES>
__global__ void __launch_bounds__(256, 1)
    wg24_prefill_kernel(Wg24Params p, const uint16_t* __restrict__ X, int T, uint16_t* __restrict__ Y) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = Wg24Cfg<BN, STAGES>;
  constexpr int D = STAGES - 2;  // steps in flight ahead of the one computed
  static_assert(D >= 1, "stages");
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sbase = (raw + 1023u) & ~1023u;
  uint8_t* sgen = smem_raw + (sbase - raw);

  const int tid = threadIdx.x, wg = tid >> 7, t128 = tid & 127;
  // rows_fast: the CTAs resident at one time share a few token tiles (read once from memory) and
  // sweep the weight, which stays in L2 (T = 8192: X is 64 MB, larger than L2).
  const int64_t t0 = static_cast<int64_t>(p.rows_fast ? blockIdx.y : blockIdx.x) * BN;
  const int64_t rt = p.rows_fast ? blockIdx.x : blockIdx.y;
  const int S = p.S64;
  const uint4* vsrc = p.vals + rt * S * 512;
  const uint32_t* msrc = p.meta + rt * S * 256;

  auto issue = [&](int s) {
    const uint32_t st = sbase + (s % STAGES) * C::kStageBytes;
    const int64_t k0 = static_cast<int64_t>(s) * 64;
#pragma unroll
    for (int u = 0; u < BN * 8 / 256; ++u) {
      const int c = tid + 256 * u;
      const int r = c >> 3, ch = c & 7;
      const int64_t t = t0 + r, k = k0 + ch * 8;
      const bool ok = t < T && k < p.K;  // K % 8 == 0: a 16-byte chunk is wholly inside or outside
      cp_async16_zfill(st + r * 128 + ((ch ^ (r & 7)) << 4), ok ? X + t * p.K + k : X, ok ? 16 : 0);
    }
    const uint4* va = vsrc + static_cast<int64_t>(s) * 512;
    cp_async16(st + C::kBBytes + tid * 16, va + tid);
    cp_async16(st + C::kBBytes + (tid + 256) * 16, va + tid + 256);
    if (tid < 64) cp_async16(st + C::kBBytes + C::kABytes + tid * 16, msrc + static_cast<int64_t>(s) * 256 + tid * 4);
  };

  float d[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) d[i] = 0.f;

#pragma unroll
  for (int s = 0; s < D; ++s) {
    if (s < S) issue(s);
    cp_async_commit();
  }
  // This thread's A fragments and metadata, read from shared memory at the start of each step into
  // one of two register sets: wgmma reads its register operands asynchronously, so the set of step s
  // is the one of step s - 2, whose group has completed (wait_group 1 in step s - 1). (Reading them
  // one step ahead instead needs a shallower cp.async wait: measured 1.3x slower, NOTES v9c.)
  uint4 ra[2][2];
  uint32_t re[2];
  auto step = [&](int s, uint4 (&a)[2], uint32_t& e) {
    cp_async_wait<D - 1>();  // step s has landed
    // cp.async writes are generic-proxy writes; wgmma reads shared memory through the async proxy.
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    // Buffer of step s + D = buffer of step s - 2, whose wgmma group every warpgroup has waited for
    // (wait_group 1 in step s - 1, before the barrier above).
    if (s + D < S) issue(s + D);
    cp_async_commit();
    const uint8_t* sg = sgen + (s % STAGES) * C::kStageBytes;
    a[0] = *reinterpret_cast<const uint4*>(sg + C::kBBytes + ((wg * 2 + 0) * 128 + t128) * 16);
    a[1] = *reinterpret_cast<const uint4*>(sg + C::kBBytes + ((wg * 2 + 1) * 128 + t128) * 16);
    e = *reinterpret_cast<const uint32_t*>(sg + C::kBBytes + C::kABytes + (wg * 128 + t128) * 4);
    const uint32_t st = sbase + (s % STAGES) * C::kStageBytes;
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    WgmmaSp<BF16, BN>::template mma<0>(d, a[0], wg_desc_sw128(st), e, 1);
    WgmmaSp<BF16, BN>::template mma<1>(d, a[1], wg_desc_sw128(st + 64), e, 1);
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");  // step s - 1 done
  };
  for (int s = 0; s < S; s += 2) {
    step(s, ra[0], re[0]);
    if (s + 1 < S) step(s + 1, ra[1], re[1]);
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  cp_async_wait<0>();
  __syncthreads();

  wg24_epilogue<BF16, BN>(p, d, reinterpret_cast<uint16_t*>(sgen), tid, t0, rt, T, Y);
#else
  // Compiled for an architecture without wgmma.sp: the host never launches this (sm_90 only).
  __trap();
#endif
}

// ---- v10: warp-specialised version -----------------------------------------------------------------
// A producer warpgroup (one lane issues; the group gives its registers to the consumers with
// setmaxnreg, without which ptxas serialises the 256-token wgmma for want of registers) issues, per
// k64 step, a TMA copy of the activation tile (tensor map of X with the 128-byte swizzle; zeros past T
// and K) and two bulk copies of the weight fragments, all completing on the stage's "full" mbarrier; the two consumer warpgroups wait on it, run their wgmma.sp and, once
// a step's wgmma group has completed, arrive on its "empty" mbarrier. No __syncthreads in the loop.

template <int BN>
struct Wg24WsCfg : Wg24Cfg<BN, BN == 256 ? 5 : 8> {
  using Base = Wg24Cfg<BN, BN == 256 ? 5 : 8>;
  static constexpr int kStages = BN == 256 ? 5 : 8;
  // The full and empty mbarriers sit after the pipeline (or the epilogue staging, if larger).
  static constexpr int kBarOffset = Base::kPipeBytes > Base::kCBytes ? Base::kPipeBytes : Base::kCBytes;
  static constexpr int kSmemBytes = kBarOffset + 2 * kStages * 8 + 1024;
};

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_arrive_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ bool mbar_try_wait(uint32_t bar, uint32_t parity) {
  uint32_t ok;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(ok)
      : "r"(bar), "r"(parity)
      : "memory");
  return ok != 0;
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  while (!mbar_try_wait(bar, parity)) {
  }
}
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const void* tmap, int c0, int c1, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          dst),
      "l"(tmap), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

// ---- pieces shared by the warp-specialised kernels (v10, v14) --------------------------------------
// Stage layout C (Wg24Cfg-derived): B tile (kBBytes, 128-byte swizzle), A fragments (kABytes),
// metadata (kMBytes); mbarriers full[ST] (1 arrival + tx bytes) and empty[ST] (256 consumer threads).
__device__ __forceinline__ void wg24_init_barriers(uint32_t full0, uint32_t empty0, int stages) {
  if (threadIdx.x == 0) {
    for (int i = 0; i < stages; ++i) {
      mbar_init(full0 + 8 * i, 1);
      mbar_init(empty0 + 8 * i, 256);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
}

// Producer, one k64 step s of row tile (vsrc, msrc) and token tile t0 into stage buffer st: the
// activation tile by TMA, the weight fragments and metadata by bulk copies, all onto mbarrier full.
template <class C>
__device__ __forceinline__ void wg24_issue_step(uint32_t st, uint32_t full, const CUtensorMap* tmap, int s, int t0,
                                                const uint4* vsrc, const uint32_t* msrc) {
  mbar_arrive_tx(full, C::kStageBytes);
  tma_load_2d(st, tmap, s * 64, t0, full);
  bulk_load(st + C::kBBytes, vsrc + static_cast<int64_t>(s) * 512, C::kABytes, full);
  bulk_load(st + C::kBBytes + C::kABytes, msrc + static_cast<int64_t>(s) * 256, C::kMBytes, full);
}

// Consumer warpgroup wg, one k64 step from the stage at sg (generic) / st (shared address), already
// waited for: its A registers and metadata into a / e, two wgmma.sp k32 into d, then wait until at most
// this step's group is in flight (so the register set of the step before may be refilled).
template <bool BF16, int BN, class C>
__device__ __forceinline__ void wg24_consume_step(float (&d)[BN / 2], uint4 (&a)[2], uint32_t& e, const uint8_t* sg,
                                                  uint32_t st, int wg, int t128) {
  a[0] = *reinterpret_cast<const uint4*>(sg + C::kBBytes + ((wg * 2 + 0) * 128 + t128) * 16);
  a[1] = *reinterpret_cast<const uint4*>(sg + C::kBBytes + ((wg * 2 + 1) * 128 + t128) * 16);
  e = *reinterpret_cast<const uint32_t*>(sg + C::kBBytes + C::kABytes + (wg * 128 + t128) * 4);
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
  WgmmaSp<BF16, BN>::template mma<0>(d, a[0], wg_desc_sw128(st), e, 1);
  WgmmaSp<BF16, BN>::template mma<1>(d, a[1], wg_desc_sw128(st + 64), e, 1);
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
  asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
}

// Split-K (v18), by all 384 threads of each CTA of the cluster: once every CTA has its partial sums at
// sbase ([BN tokens][128 rows] fp32), CTA z adds slice z of the tile over all the cluster's CTAs (loads
// from distributed shared memory), adds the bias and writes Y; the second cluster barrier keeps every
// CTA's shared memory alive until all have read it.
template <bool BF16, int BN>
__device__ __forceinline__ void wg24_split_reduce(const Wg24Params& p, uint32_t sbase, int tid, int64_t t0,
                                                  int64_t rt, int T, uint16_t* __restrict__ Y) {
  cluster_sync_all();
  const uint32_t ks = gridDim.z, z = cluster_rank();
  constexpr int E = BN * 128;
  const int per = (E + static_cast<int>(ks) - 1) / static_cast<int>(ks);
  const int lo = static_cast<int>(z) * per, hi = min(E, lo + per);
  for (int x = lo + tid; x < hi; x += 384) {
    const int64_t t = t0 + (x >> 7);
    const int64_t row = rt * 128 + (x & 127);
    const int o = p.identity ? (row < p.N_out ? static_cast<int>(row) : -1) : p.rowmap[row];
    if (t >= T || o < 0) continue;
    float v = p.bias ? p.bias[row] : 0.f;
    for (uint32_t r = 0; r < ks; ++r) v += ld_cluster_f32(sbase + 4u * static_cast<uint32_t>(x), r);
    Y[t * p.N_out + o] = f32_to_out<BF16>(v);
  }
  cluster_sync_all();
}

// tmap: X[T][K] as a 2-D tensor (K innermost), box 64 x BN, 128-byte swizzle (vnm_cuda.cu).
template <bool BF16, int BN>
__global__ void __launch_bounds__(384, 1)
    wg24_ws_kernel(Wg24Params p, const __grid_constant__ CUtensorMap tmap, int T, uint16_t* __restrict__ Y) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = Wg24WsCfg<BN>;
  constexpr int ST = C::kStages;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sbase = (raw + 1023u) & ~1023u;
  uint8_t* sgen = smem_raw + (sbase - raw);
  const uint32_t full0 = sbase + C::kBarOffset, empty0 = full0 + ST * 8;

  const int tid = threadIdx.x;
  const int64_t t0 = static_cast<int64_t>(p.rows_fast ? blockIdx.y : blockIdx.x) * BN;
  const int64_t rt = p.rows_fast ? blockIdx.x : blockIdx.y;
  // This CTA's k64 steps [s0, s0 + S) (all of them without split-K; a split is never empty: host).
  const bool split = p.kchunk > 0;
  const int s0 = split ? static_cast<int>(blockIdx.z) * p.kchunk : 0;
  const int S = split ? min(p.kchunk, p.S64 - s0) : p.S64;
  wg24_init_barriers(full0, empty0, ST);

  if (tid >= 256) {  // producer warpgroup: one lane issues everything, with few registers
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (tid == 256) {
      const uint4* vsrc = p.vals + rt * p.S64 * 512;
      const uint32_t* msrc = p.meta + rt * p.S64 * 256;
      for (int s = 0; s < S; ++s) {
        const int b = s % ST;
        mbar_wait(empty0 + 8 * b, ((s / ST) & 1) ^ 1);
        wg24_issue_step<C>(sbase + b * C::kStageBytes, full0 + 8 * b, &tmap, s0 + s, static_cast<int>(t0), vsrc,
                           msrc);
      }
    }
    if (!split) return;
    wg24_split_reduce<BF16, BN>(p, sbase, tid, t0, rt, T, Y);  // its threads help with the sums
    return;
  }

  // Consumers take the registers the producer gave back (128 x 40 + 256 x 232 <= 64 K).
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const int wg = tid >> 7, t128 = tid & 127;
  float d[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) d[i] = 0.f;
  uint4 ra[2][2];
  uint32_t re[2];
  // Register sets alternate by step: the set of step s is the one of step s - 2, whose wgmma group
  // has completed (wait_group 1 in step s - 1).
  auto step = [&](int s, uint4 (&a)[2], uint32_t& e) {
    const int b = s % ST;
    mbar_wait(full0 + 8 * b, (s / ST) & 1);
    wg24_consume_step<BF16, BN, C>(d, a, e, sgen + b * C::kStageBytes, sbase + b * C::kStageBytes, wg, t128);
    if (s > 0) mbar_arrive(empty0 + 8 * ((s - 1) % ST));  // step s - 1's buffer is free
  };
  for (int s = 0; s < S; s += 2) {
    step(s, ra[0], re[0]);
    if (s + 1 < S) step(s + 1, ra[1], re[1]);
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  // Both consumer warpgroups are done with the stage buffers before the epilogue reuses them (all
  // copies have completed: each was waited for).
  asm volatile("bar.sync 1, 256;\n" ::: "memory");
  if (split) {  // partial sums into our stage memory as [token][128 rows] fp32, then the cluster adds them
    float* ps = reinterpret_cast<float*>(sgen);
    const int lane = t128 & 31, w = t128 >> 5, gid = lane >> 2, tq = lane & 3;
    const int rl0 = wg * 64 + 16 * w + gid;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const int tl = 8 * j + 2 * tq;
      ps[tl * 128 + rl0] = d[4 * j + 0];
      ps[(tl + 1) * 128 + rl0] = d[4 * j + 1];
      ps[tl * 128 + rl0 + 8] = d[4 * j + 2];
      ps[(tl + 1) * 128 + rl0 + 8] = d[4 * j + 3];
    }
    wg24_split_reduce<BF16, BN>(p, sbase, tid, t0, rt, T, Y);
    return;
  }
  wg24_epilogue<BF16, BN>(p, d, reinterpret_cast<uint16_t*>(sgen), tid, t0, rt, T, Y);
#else
  __trap();
#endif
}

// ---- v14: persistent version of v10 -----------------------------------------------------------------
// Grid = min(tiles, SMs x resident CTAs); CTA b takes tiles b, b + gridDim.x, ... in the order of the
// v10 grid (rows_fast: row tiles fastest). The producer runs on into the next tile's steps while the
// consumers finish the current one: stage index and mbarrier phase are running counters over all the
// CTA's steps (every tile has the same S64 steps), and the empty mbarriers keep protecting the stages.
//
// Epilogue: it must not touch a stage the producer may be refilling, so it stages through a region of
// its own, in chunks of 64 tokens (64 x 136 halves = 17 KB; write, bar.sync 1, 16-byte rows of Y, bar.sync
// 1). Why not the whole BN x 128 tile (the v10 epilogue): at BN = 256 that is 68 KB and leaves room for 3
// stages instead of 5 (and 7 instead of 8 at BN = 128) within the 227 KB opt-in limit; with 64-token chunks
// all stage counts stay as in v10 (BN = 256: 5 x 41 KB + 17 KB + barriers = 223 KB), for 2 x BN/64 named
// barriers per tile instead of 1. Why not stores straight from the accumulators: a thread holds rows gid
// and gid + 8 of two tokens, so the 8 consecutive outputs of a token are spread over 8 lanes; that is BN/2
// scalar 2-byte stores per thread (8x the store instructions of the staged epilogue, each warp store
// touching 4 Y rows with half-filled 32-byte sectors), and a rowmap that is not the identity needs the
// same scalar path anyway. Shared-memory staging keeps v10's 16-byte coalesced rows of Y (store_rows8).

constexpr int kWg24Chunk = 64;  // tokens per epilogue chunk of the persistent kernel

template <int BN>
struct Wg24PsCfg {
  using W = Wg24WsCfg<BN>;
  static constexpr int kStages = W::kStages;
  static constexpr int kBBytes = W::kBBytes;
  static constexpr int kABytes = W::kABytes;
  static constexpr int kMBytes = W::kMBytes;
  static constexpr int kStageBytes = W::kStageBytes;
  static constexpr int kOutOffset = kStages * kStageBytes;  // a multiple of 1024: 16-byte rows stay aligned
  static constexpr int kOutBytes = kWg24Chunk * kWg24CStride * 2;
  static constexpr int kBarOffset = kOutOffset + kOutBytes;
  static constexpr int kSmemBytes = kBarOffset + 2 * kStages * 8 + 1024;  // + 1 KB: alignment by hand
  static_assert(kStageBytes % 1024 == 0, "stage bases stay 1024-byte aligned");
  static_assert(BN % kWg24Chunk == 0, "whole chunks");
  static_assert(kSmemBytes <= 227 * 1024, "sm_90 opt-in limit of dynamic shared memory per block");
};

// Epilogue of the persistent kernel, by the 256 consumer threads: wg24_epilogue (bias, round, 16-byte
// rows of Y through rowmap or the identity, tokens < T) in chunks of kWg24Chunk tokens through cs
// (kWg24Chunk x kWg24CStride halves). The second barrier of each chunk keeps a warpgroup from writing the
// next chunk (or the next tile's first) while the other still reads this one.
template <bool BF16, int BN>
__device__ __forceinline__ void wg24_epilogue_chunks(const Wg24Params& p, const float (&d)[BN / 2], uint16_t* cs,
                                                     int tid, int64_t t0, int64_t rt, int T, uint16_t* __restrict__ Y) {
  constexpr int kCStride = kWg24CStride, CH = kWg24Chunk;
  const int wg = tid >> 7, t128 = tid & 127;
  const int lane = t128 & 31, w = t128 >> 5, gid = lane >> 2, tq = lane & 3;
  const int rl0 = wg * 64 + 16 * w + gid;
  const int64_t row0 = rt * 128;
  const float b0 = p.bias ? p.bias[row0 + rl0] : 0.f;
  const float b1 = p.bias ? p.bias[row0 + rl0 + 8] : 0.f;
#pragma unroll
  for (int c = 0; c < BN / CH; ++c) {
    const int64_t tc = t0 + c * CH;
    if (tc >= T) break;  // the same for all 256 threads: the barrier counts match
#pragma unroll
    for (int jj = 0; jj < CH / 8; ++jj) {
      const int j = c * (CH / 8) + jj;
      const int tl = 8 * jj + 2 * tq;
      cs[tl * kCStride + rl0] = f32_to_out<BF16>(d[4 * j + 0] + b0);
      cs[(tl + 1) * kCStride + rl0] = f32_to_out<BF16>(d[4 * j + 1] + b0);
      cs[tl * kCStride + rl0 + 8] = f32_to_out<BF16>(d[4 * j + 2] + b1);
      cs[(tl + 1) * kCStride + rl0 + 8] = f32_to_out<BF16>(d[4 * j + 3] + b1);
    }
    asm volatile("bar.sync 1, 256;\n" ::: "memory");
#pragma unroll
    for (int u = 0; u < CH * 16 / 256; ++u) {
      const int x = tid + 256 * u;
      const int tl = x >> 4, r8 = x & 15;
      const int64_t t = tc + tl;
      if (t < T)
        store_rows8(Y + t * p.N_out, cs + tl * kCStride + 8 * r8, row0 + 8 * r8, p.N_out, p.identity, p.rowmap);
    }
    asm volatile("bar.sync 1, 256;\n" ::: "memory");
  }
}

// Tile number -> (token tile, row tile), in the order of the v10 grid (x fastest).
__device__ __forceinline__ void wg24_tile(uint32_t tile, int rows_fast, uint32_t nr, uint32_t nt, uint32_t& tt,
                                          uint32_t& rt) {
  if (rows_fast) {
    rt = tile % nr;
    tt = tile / nr;
  } else {
    tt = tile % nt;
    rt = tile / nt;
  }
}

// tmap as for wg24_ws_kernel. nr row tiles x nt token tiles (nt = ceil(T / BN)), nr * nt < 2^31 (host);
// gridDim.x <= nr * nt, so every CTA has a tile (with none, both loops would simply not run).
template <bool BF16, int BN>
__global__ void __launch_bounds__(384, 1)
    wg24_ws_persistent_kernel(Wg24Params p, const __grid_constant__ CUtensorMap tmap, int T, uint16_t* __restrict__ Y,
                              uint32_t nr, uint32_t nt) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = Wg24PsCfg<BN>;
  constexpr int ST = C::kStages;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sbase = (raw + 1023u) & ~1023u;
  uint8_t* sgen = smem_raw + (sbase - raw);
  const uint32_t full0 = sbase + C::kBarOffset, empty0 = full0 + ST * 8;

  const int tid = threadIdx.x;
  const int S = p.S64;
  const uint32_t ntiles = nr * nt;
  wg24_init_barriers(full0, empty0, ST);

  if (tid >= 256) {  // producer warpgroup: one lane issues everything, with few registers
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (tid == 256) {
      int b = 0;        // stage of the next step (over all the CTA's tiles)
      uint32_t ph = 0;  // phase of that stage's mbarriers
      for (uint32_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
        uint32_t tt, rt;
        wg24_tile(tile, p.rows_fast, nr, nt, tt, rt);
        const int t0 = static_cast<int>(tt) * BN;  // < T < 2^31
        const uint4* vsrc = p.vals + static_cast<int64_t>(rt) * S * 512;
        const uint32_t* msrc = p.meta + static_cast<int64_t>(rt) * S * 256;
        for (int s = 0; s < S; ++s) {
          mbar_wait(empty0 + 8 * b, ph ^ 1);  // the consumers are done with this stage's previous step
          wg24_issue_step<C>(sbase + b * C::kStageBytes, full0 + 8 * b, &tmap, s, t0, vsrc, msrc);
          if (++b == ST) {
            b = 0;
            ph ^= 1;
          }
        }
      }
    }
    return;
  }

  // Consumers take the registers the producer gave back (128 x 40 + 256 x 232 <= 64 K).
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const int wg = tid >> 7, t128 = tid & 127;
  uint16_t* cs = reinterpret_cast<uint16_t*>(sgen + C::kOutOffset);
  float d[BN / 2];
  uint4 ra[2][2];
  uint32_t re[2];
  int b = 0, pb = 0;  // stage of the next step and of the previous one
  uint32_t ph = 0;    // phase of stage b's mbarriers
  for (uint32_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    uint32_t tt, rt;
    wg24_tile(tile, p.rows_fast, nr, nt, tt, rt);
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) d[i] = 0.f;
    // As in v10: register sets alternate by step within the tile, the set of step s is the one of step
    // s - 2, whose wgmma group has completed (wait_group 1 in step s - 1); across tiles every group has
    // completed (wait_group 0 before the epilogue).
    auto step = [&](int s, uint4 (&a)[2], uint32_t& e) {
      mbar_wait(full0 + 8 * b, ph);
      wg24_consume_step<BF16, BN, C>(d, a, e, sgen + b * C::kStageBytes, sbase + b * C::kStageBytes, wg, t128);
      if (s > 0) mbar_arrive(empty0 + 8 * pb);  // step s - 1's stage is free
      pb = b;
      if (++b == ST) {
        b = 0;
        ph ^= 1;
      }
    };
    for (int s = 0; s < S; s += 2) {
      step(s, ra[0], re[0]);
      if (s + 1 < S) step(s + 1, ra[1], re[1]);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    mbar_arrive(empty0 + 8 * pb);  // the tile's last stage is free: the producer may refill it
    wg24_epilogue_chunks<BF16, BN>(p, d, cs, tid, static_cast<int64_t>(tt) * BN, rt, T, Y);
  }
#else
  __trap();
#endif
}

// ---- v12: channel gather through shared memory ----------------------------------------------------
// Xg[t][p] = X[t][src[p]] (0 where src[p] is not in [0, K)): the activations in the channel order of a
// weight that is 2:4 along K only after its input permutation (v11). A memory-bound pass (read X once,
// write Xg once). A CTA takes `rows` token rows: it copies each row X[t][0, K) into shared memory with
// 16-byte cp.async (a scalar head and tail where the row does not start on 16 bytes: K % 8 != 0 or an
// unaligned X), then writes Xg 8 positions (one 16-byte store) per thread and row, reading the 8 channel
// numbers once (two int4 loads, L1/L2-resident) for all its rows and the values with LDS.U16.
// Shared memory row r holds element k of its token row at sX[off[r] + k], off[r] = r * S + a_r, where
// a_r in [0, 8) is the row's misalignment in elements (so the 16-byte chunks land on 16-byte smem
// addresses); S = round_up(K, 8) + 8 elements per row.
constexpr int kGatherThreads = 256;
constexpr int kGatherMaxRows = 16;
// Target of dynamic shared memory per CTA: 5 CTAs (1,280 threads) per SM with 228 KB, and under the
// 48 KB a launch may use without the opt-in (rows of more than 48 KB, K > 24,568, set it).
constexpr int kGatherSmemTarget = 46 * 1024;

// 8 gathered values from the shared-memory row s (id: channel numbers, clamped to 0 where the bit of
// ok is clear; those positions read 0).
__device__ __forceinline__ uint4 gather8_smem(const uint16_t* s, const int (&id)[8], unsigned ok) {
  uint32_t w[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const uint32_t lo = s[id[2 * q]], hi = s[id[2 * q + 1]];
    w[q] = ((ok >> (2 * q)) & 1u ? lo : 0u) | ((ok >> (2 * q + 1)) & 1u ? hi << 16 : 0u);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// Channel numbers of positions 8c .. 8c+7 (src 16-byte aligned), clamped to 0 outside [0, K).
__device__ __forceinline__ unsigned gather8_ids(const int32_t* __restrict__ src, int c, uint32_t K, int (&id)[8]) {
  const int4 q0 = __ldg(reinterpret_cast<const int4*>(src) + 2 * c);
  const int4 q1 = __ldg(reinterpret_cast<const int4*>(src) + 2 * c + 1);
  id[0] = q0.x; id[1] = q0.y; id[2] = q0.z; id[3] = q0.w;
  id[4] = q1.x; id[5] = q1.y; id[6] = q1.z; id[7] = q1.w;
  unsigned ok = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const bool in = static_cast<uint32_t>(id[j]) < K;  // negative values wrap to >= K
    ok |= static_cast<unsigned>(in) << j;
    id[j] = in ? id[j] : 0;
  }
  return ok;
}

// Grid: ceil(T / rows) CTAs of kGatherThreads; dynamic shared memory rows * S * 2 bytes. K <= 2^24,
// Kw <= 2^24 (the host checks; rows * S fits the shared memory). vec_out: Kw % 8 == 0 and Xg, src
// 16-byte aligned (else one element per thread and step). X, Xg 2-byte aligned.
__global__ void __launch_bounds__(kGatherThreads)
    gather_channels_smem_kernel(const uint16_t* __restrict__ X, int64_t T, int K, const int32_t* __restrict__ src,
                                int Kw, int rows_per_cta, int S, int vec_out, uint16_t* __restrict__ Xg) {
  extern __shared__ uint4 gather_smem[];
  __shared__ int off[kGatherMaxRows];
  uint16_t* sX = reinterpret_cast<uint16_t*>(gather_smem);
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * rows_per_cta;
  const int rows = static_cast<int>(T - t0 < rows_per_cta ? T - t0 : rows_per_cta);
  const int xa = static_cast<int>((reinterpret_cast<uintptr_t>(X) >> 1) & 7);  // X's misalignment, elements

  // 1. Token rows into shared memory: 16-byte chunks by cp.async (all in flight at once), then the
  //    scalar heads and tails (<= 7 + 7 elements per row), one load per thread for rows <= 16.
  for (int r = 0; r < rows; ++r) {
    const int64_t e0 = (t0 + r) * K;  // element offset of the row in X
    const int a = static_cast<int>((xa + (e0 & 7)) & 7);
    const int h = min((8 - a) & 7, K);  // head elements before the first 16-byte boundary
    const int nb = (K - h) >> 3;
    if (tid == 0) off[r] = r * S + a;
    const uint16_t* g = X + e0 + h;
    const uint32_t sb = smem_u32(sX + r * S + a + h);  // 16-byte aligned: a + h is 0 or 8
    for (int j = tid; j < nb; j += nt) cp_async16(sb + 16u * static_cast<uint32_t>(j), g + 8 * j);
  }
  cp_async_commit();
  for (int i = tid; i < rows * 16; i += nt) {
    const int r = i >> 4, j = i & 15;
    const int64_t e0 = (t0 + r) * K;
    const int a = static_cast<int>((xa + (e0 & 7)) & 7);
    const int h = min((8 - a) & 7, K);
    const int tail0 = h + ((K - h) & ~7);
    const int k = j < h ? j : tail0 + (j - h);  // head elements [0, h), then the tail [tail0, K)
    if (j < h + (K - tail0)) sX[r * S + a + k] = X[e0 + k];
  }
  cp_async_wait<0>();
  __syncthreads();

  // 2. Xg rows, 8 positions per thread and step.
  const uint32_t Ku = static_cast<uint32_t>(K);
  if (vec_out) {
    const int nch = Kw >> 3;
    if (nch >= nt) {  // channel numbers read once for all rows of the CTA
      for (int c = tid; c < nch; c += nt) {
        int id[8];
        const unsigned ok = gather8_ids(src, c, Ku, id);
        for (int r = 0; r < rows; ++r)
          *reinterpret_cast<uint4*>(Xg + (t0 + r) * Kw + 8 * c) = gather8_smem(sX + off[r], id, ok);
      }
    } else {  // short rows (Kw < 2048: src < 8 KB, L1-resident): all threads busy over rows x chunks
      for (int i = tid; i < rows * nch; i += nt) {
        const int r = i / nch, c = i - r * nch;
        int id[8];
        const unsigned ok = gather8_ids(src, c, Ku, id);
        *reinterpret_cast<uint4*>(Xg + (t0 + r) * Kw + 8 * c) = gather8_smem(sX + off[r], id, ok);
      }
    }
  } else {
    for (int i = tid; i < rows * Kw; i += nt) {
      const int r = i / Kw, p = i - r * Kw;
      const int32_t c = src[p];
      Xg[(t0 + r) * Kw + p] = static_cast<uint32_t>(c) < Ku ? sX[off[r] + c] : static_cast<uint16_t>(0);
    }
  }
}

// Fallback for rows too long for shared memory (one element per thread; v11's kernel).
__global__ void gather_channels_kernel(const uint16_t* __restrict__ X, int64_t K, const int32_t* __restrict__ src,
                                       int64_t Kw, int64_t n, uint16_t* __restrict__ Xg) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / Kw, p = i - t * Kw;
    const int32_t c = src[p];
    Xg[i] = c >= 0 && c < K ? X[t * K + c] : static_cast<uint16_t>(0);
  }
}

}  // namespace dev

// Xg[T][Kw] = X[T][K] gathered by src[Kw] (above). X and Xg must be 2-byte aligned, src 4-byte aligned;
// no other alignment, K or Kw is assumed (16-byte paths where they allow). sms: multiprocessors of the
// device (rows per CTA are lowered until there are >= 4 CTAs per SM, where T allows).
inline cudaError_t launch_gather_channels(const uint16_t* X, int64_t T, int64_t K, const int32_t* src, int64_t Kw,
                                          uint16_t* Xg, int sms, cudaStream_t st) {
  if (T <= 0 || Kw <= 0) return cudaSuccess;
  if (!X || !src || !Xg || K <= 0) return cudaErrorInvalidValue;
  if (((reinterpret_cast<uintptr_t>(X) | reinterpret_cast<uintptr_t>(Xg)) & 1) || (reinterpret_cast<uintptr_t>(src) & 3))
    return cudaErrorMisalignedAddress;
  const int64_t S = (K + 7) / 8 * 8 + 8;  // shared-memory row, elements
  const int64_t row_bytes = 2 * S;
  bool fits = K <= (int64_t{1} << 24) && Kw <= (int64_t{1} << 24) && row_bytes <= 48 * 1024;
  if (!fits && K <= (int64_t{1} << 24) && Kw <= (int64_t{1} << 24)) {
    // One row needs more than 48 KB: the opt-in maximum, set to the same value on every such call
    // (idempotent for concurrent callers; per device, as the attribute is).
    int device = 0, optin = 0;
    cudaError_t e = cudaGetDevice(&device);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (e != cudaSuccess) return e;
    // The dynamic limit is the opt-in maximum less the kernel's static shared memory (off[]): asking for
    // the whole opt-in maximum is cudaErrorInvalidValue (H100, 2026-11-26).
    cudaFuncAttributes fa{};
    e = cudaFuncGetAttributes(&fa, dev::gather_channels_smem_kernel);
    if (e != cudaSuccess) return e;
    const int dyn_max = optin - static_cast<int>(fa.sharedSizeBytes);
    if (row_bytes <= dyn_max) {
      e = cudaFuncSetAttribute(dev::gather_channels_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dyn_max);
      if (e != cudaSuccess) return e;
      fits = true;
    }
  }
  if (!fits) {
    const int64_t n = T * Kw;
    const int64_t blocks = std::min<int64_t>((n + 255) / 256, int64_t{1} << 20);
    dev::gather_channels_kernel<<<static_cast<unsigned>(blocks), 256, 0, st>>>(X, K, src, Kw, n, Xg);
    return cudaGetLastError();
  }
  int64_t rows = std::max<int64_t>(1, std::min<int64_t>(dev::kGatherMaxRows, dev::kGatherSmemTarget / row_bytes));
  rows = std::min<int64_t>(rows, std::max<int64_t>(1, T / (4 * static_cast<int64_t>(std::max(sms, 1)))));
  const int64_t grid = (T + rows - 1) / rows;  // T < 2^31 (checked by the caller): fits grid x
  if (grid > 0x7fffffff) return cudaErrorInvalidValue;
  const int vec = Kw % 8 == 0 && reinterpret_cast<uintptr_t>(Xg) % 16 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0;
  dev::gather_channels_smem_kernel<<<static_cast<unsigned>(grid), dev::kGatherThreads,
                                     static_cast<size_t>(rows * row_bytes), st>>>(
      X, T, static_cast<int>(K), src, static_cast<int>(Kw), static_cast<int>(rows), static_cast<int>(S), vec, Xg);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace vnmc
