// Decode (T <= 16) on Hopper with the bulk copy engine and thread-block clusters ("v13"). Included by
// vnm_cuda.cu only, after kernels.cuh and wgmma_sp.cuh (mbarrier and bulk-copy helpers).
//
// Why: the v4 decode kernel (kernels.cuh) keeps each warp's next batch of weights in registers and
// gathers the activations from L1/L2 with indices that arrive with the weights, so every warp waits on
// a chain of dependent round trips (weights -> activation gathers -> split-K atomics -> counter ->
// last-CTA re-read), and on an H100 it streams its bytes at 1.0-1.6 TB/s (bench/gpu/NOTES.md, v13).
// Here one thread per CTA issues, at the start, bulk copies of the CTA's whole activation slice and of
// up to kBulkStages stages of weights (a stage = 4 k32 steps: values, metadata, column indices), all
// onto mbarriers; every gather then reads shared memory. The CTAs that split one 64-row tile along K
// form a cluster and add their partial sums through distributed shared memory: no global scratch, no
// atomics, a fixed summation order (deterministic), nothing left to zero.
//
// Applies to V a multiple of 64 (the four m16 tiles of a 64-row tile share one block, so one B
// fragment serves them) and T <= 16. Windowed indices: the slice is the CTA's own columns [k0, k1).
// The template also handles permuted indices (WIN = false: the slice is all K columns), but the host
// does not instantiate it: every CTA then reads all of X, measured slower than v4 (NOTES.md, v13). The
// activation slice comes by bulk copy when A is 16-byte aligned and K % 8 == 0, else by plain loads.
#pragma once

#include <cstdint>

namespace vnmc {
namespace cuda {
namespace dev {

constexpr int kBulkWarps = 4;          // 128 threads; warp w computes step w of every stage
constexpr int kBulkStages = 4;         // ring slots per CTA
constexpr int kBulkStepsPerStage = kBulkWarps;
constexpr int kBulkMaxCluster = 8;     // portable cluster size: at most 8 CTAs split one row tile

template <bool WIN>
struct BulkLayout {
  static constexpr int kValsBytes = 2048;           // per k32 step of a 64-row tile: 4 m-tiles x 32 lanes x 16 B
  static constexpr int kMetaBytes = 256;            // 32 lanes x uint2
  static constexpr int kIdxBytes = WIN ? 32 : 128;  // 8 groups x (4 u8 offsets | 4 int32 columns)
  static constexpr int kStepBytes = kValsBytes + kMetaBytes + kIdxBytes;
  static constexpr int kValsOff = 0;
  static constexpr int kMetaOff = kBulkStepsPerStage * kValsBytes;
  static constexpr int kIdxOff = kMetaOff + kBulkStepsPerStage * kMetaBytes;
  static constexpr int kStageBytes = kIdxOff + kBulkStepsPerStage * kIdxBytes;
  static constexpr int kRingBytes = kBulkStages * kStageBytes;
  static_assert(kStageBytes % 128 == 0, "stages stay 128-byte aligned");
};

// Dynamic shared memory of one CTA: ring, activation slice (T rows of ldx halves), the CTA's partial
// sums [NT * 8 tokens][64 rows] fp32, kBulkStages + 1 mbarriers. The warps' reduction reuses the ring.
inline int64_t bulk_smem_bytes(bool win, int nt, int64_t T, int64_t ldx) {
  return (win ? BulkLayout<true>::kRingBytes : BulkLayout<false>::kRingBytes) + (T * ldx * 2 + 15) / 16 * 16 +
         nt * 8 * 64 * 4 + (kBulkStages + 1) * 8;
}

// Grid (ksplit, R64), clusters of (ksplit, 1, 1): CTA (ks, q) computes row tile q over its step range.
// ldx: halves per activation row in shared memory (>= the slice width, a multiple of 8).
template <bool BF16, int NT, bool WIN>
__global__ void __launch_bounds__(kBulkWarps * 32, 4)
    decode_bulk_kernel(Params p, const uint16_t* __restrict__ A, int T, uint16_t* __restrict__ Y, int ldx,
                       int x_bulk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using L = BulkLayout<WIN>;
  extern __shared__ __align__(128) uint8_t smem[];
  const int ksplit = gridDim.x, ks = blockIdx.x, q = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tq = lane & 3, h = tq & 1;
  const int s_begin = static_cast<int>(static_cast<int64_t>(p.S) * ks / ksplit);
  const int s_end = static_cast<int>(static_cast<int64_t>(p.S) * (ks + 1) / ksplit);
  const int nstages = (s_end - s_begin + kBulkStepsPerStage - 1) / kBulkStepsPerStage;
  const int blk = q * 64 / p.Vp;  // V % 64 == 0: the whole tile lies in one block
  const int kmax = static_cast<int>(p.K) - 1;
  const int k0 = WIN ? s_begin * 8 * p.M : 0;
  const int k1 = WIN ? min(s_end * 8 * p.M, kmax + 1) : kmax + 1;
  const int w = k1 - k0;

  uint16_t* sX = reinterpret_cast<uint16_t*>(smem + L::kRingBytes);
  float* sp = reinterpret_cast<float*>(smem + L::kRingBytes + ((T * ldx * 2 + 15) / 16) * 16);
  const uint32_t ring = smem_u32(smem);
  const uint32_t bar0 = smem_u32(sp + NT * 8 * 64), xbar = bar0 + 8 * kBulkStages;

  const uint8_t* vsrc = reinterpret_cast<const uint8_t*>(p.vals) + static_cast<int64_t>(q) * p.S * L::kValsBytes;
  const uint8_t* msrc = reinterpret_cast<const uint8_t*>(p.meta) + static_cast<int64_t>(q) * p.S * L::kMetaBytes;
  const uint8_t* isrc = WIN ? reinterpret_cast<const uint8_t*>(p.wofs + static_cast<int64_t>(blk) * p.Gp)
                            : reinterpret_cast<const uint8_t*>(p.cols + static_cast<int64_t>(blk) * p.Gp * 4);
  // Stage i of this CTA (steps s_begin + 4i ..) into ring slot i % kBulkStages.
  auto issue = [&](int i) {
    const int s = s_begin + kBulkStepsPerStage * i, n = min(kBulkStepsPerStage, s_end - s);
    const uint32_t dst = ring + (i % kBulkStages) * L::kStageBytes, bar = bar0 + 8 * (i % kBulkStages);
    mbar_arrive_tx(bar, n * L::kStepBytes);
    bulk_load(dst + L::kValsOff, vsrc + static_cast<int64_t>(s) * L::kValsBytes, n * L::kValsBytes, bar);
    bulk_load(dst + L::kMetaOff, msrc + static_cast<int64_t>(s) * L::kMetaBytes, n * L::kMetaBytes, bar);
    bulk_load(dst + L::kIdxOff, isrc + static_cast<int64_t>(s) * L::kIdxBytes, n * L::kIdxBytes, bar);
  };
  if (tid == 0) {
    for (int i = 0; i <= kBulkStages; ++i) mbar_init(bar0 + 8 * i, 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    // The activation slice first: it comes from L2 and is needed by the first step.
    if (x_bulk) {
      mbar_arrive_tx(xbar, static_cast<uint32_t>(T * w * 2));
      for (int t = 0; t < T; ++t)
        bulk_load(smem_u32(sX + t * ldx), A + static_cast<int64_t>(t) * p.K + k0, static_cast<uint32_t>(w * 2), xbar);
    }
    for (int i = 0; i < min(nstages, kBulkStages); ++i) issue(i);
  }
  if (!x_bulk) {
    for (int i = tid; i < T * w; i += kBulkWarps * 32) {
      const int t = i / w, c = i - t * w;
      sX[t * ldx + c] = A[static_cast<int64_t>(t) * p.K + k0 + c];
    }
  }
  __syncthreads();  // mbarriers initialised; a plainly loaded slice is in place
  if (x_bulk) mbar_wait(xbar, 0);

  float acc[4][NT][4];
  zero_acc(acc);

  for (int i = 0; i < nstages; ++i) {
    const int slot = i % kBulkStages;
    mbar_wait(bar0 + 8 * slot, (i / kBulkStages) & 1);
    const int s = s_begin + kBulkStepsPerStage * i + warp;
    if (s < s_end) {
      const uint8_t* sg = smem + slot * L::kStageBytes;
      const uint4* va = reinterpret_cast<const uint4*>(sg + L::kValsOff + warp * L::kValsBytes);
      uint4 a[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) a[r] = va[r * 32 + lane];
      const uint2 e = reinterpret_cast<const uint2*>(sg + L::kMetaOff + warp * L::kMetaBytes)[lane];
      uint32_t bf[NT][4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int gl = 2 * j + (tq >> 1);  // group of the step whose kept columns 2h, 2h+1 this lane needs
        int c0, c1;
        if constexpr (WIN) {
          const uint32_t wv = reinterpret_cast<const uint32_t*>(sg + L::kIdxOff + warp * L::kIdxBytes)[gl] >> (16 * h);
          const int base = (8 * s + gl) * p.M;
          c0 = min(base + static_cast<int>(wv & 0xffu), kmax) - k0;  // padded groups hold zero values
          c1 = min(base + static_cast<int>((wv >> 8) & 0xffu), kmax) - k0;
        } else {
          const int2 cc = reinterpret_cast<const int2*>(sg + L::kIdxOff + warp * L::kIdxBytes)[2 * gl + h];
          c0 = min(max(cc.x, 0), kmax);
          c1 = min(max(cc.y, 0), kmax);
        }
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const int tok = gid + 8 * n;
          const bool ok = tok < T;
          const uint16_t* row = sX + (ok ? tok : 0) * ldx;
          const uint32_t lo = ok ? row[c0] : 0u;
          const uint32_t hi = ok ? row[c1] : 0u;
          bf[n][j] = lo | (hi << 16);
        }
      }
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        mma_sp<BF16, 0>(acc[0][n], a[0], bf[n], e.x);
        mma_sp<BF16, 1>(acc[1][n], a[1], bf[n], e.x);
        mma_sp<BF16, 0>(acc[2][n], a[2], bf[n], e.y);
        mma_sp<BF16, 1>(acc[3][n], a[3], bf[n], e.y);
      }
    }
    __syncthreads();  // every warp is done with the slot before it is refilled
    if (tid == 0 && i + kBulkStages < nstages) issue(i + kBulkStages);
  }

  // Warps of the CTA -> sp[token][row] (the ring is free: every issued copy was waited for).
  float* red = reinterpret_cast<float*>(smem);  // [kBulkWarps][NT * 8][64]
  acc_to_smem(acc, red + warp * NT * 8 * 64, lane);
  __syncthreads();
  for (int x = tid; x < T * 64; x += kBulkWarps * 32) {
    float v = 0.f;
#pragma unroll
    for (int ww = 0; ww < kBulkWarps; ++ww) v += red[ww * NT * 8 * 64 + x];
    sp[x] = v;
  }

  auto store = [&](int x, float v) {
    const int tok = x >> 6, r = x & 63;
    const int64_t pr = static_cast<int64_t>(q) * 64 + r;
    const int o = p.rowmap[pr];
    if (o < 0) return;
    if (p.bias) v += p.bias[pr];
    Y[static_cast<int64_t>(tok) * p.N_out + o] = f32_to_out<BF16>(v);
  };
  if (ksplit == 1) {
    __syncthreads();
    for (int x = tid; x < T * 64; x += kBulkWarps * 32) store(x, sp[x]);
    return;
  }
  // Cluster reduction: CTA rank r finalises outputs r*128 + tid, stride ksplit*128, adding the
  // partial sums of every rank in rank order.
  cluster_sync_all();
  const uint32_t rank = cluster_rank(), sp_addr = smem_u32(sp);
  for (int x = static_cast<int>(rank) * kBulkWarps * 32 + tid; x < T * 64; x += ksplit * kBulkWarps * 32) {
    float v = 0.f;
    for (int r = 0; r < ksplit; ++r) v += ld_cluster_f32(sp_addr + 4u * x, static_cast<uint32_t>(r));
    store(x, v);
  }
  cluster_sync_all();  // no CTA leaves while another still reads its partial sums
#else
  __trap();  // sm_90 only: the host never launches it elsewhere
#endif
}

}  // namespace dev
}  // namespace cuda
}  // namespace vnmc
