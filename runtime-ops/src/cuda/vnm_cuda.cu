// Host side of the CUDA VNMSparseGemm kernels: validation, the one-time re-layout of the canonical
// packed weights into mma.sp fragment order (the "prepare" step), and the launches.
#include "cuda/vnm_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "cpu/half.h"
#include "cuda/kernels.cuh"
#include "cuda/wgmma_sp.cuh"
#include "cuda/decode_bulk.cuh"

namespace vnmc {
namespace cuda {

namespace {

constexpr int kPrefillStages = 4;
constexpr int kPrefillStagesSmallV = 3;
constexpr int kStageSmemCapBytes = 48 * 1024;  // dynamic shared memory per staged decode CTA
// wgmma.sp prefill (v9): stages of the 64- and 128-token tiles (4 k64 steps in flight) and of the
// 256-token tile (3 in flight: 5 x 41 KB of shared memory).
constexpr int kWg24Stages = 6;
constexpr int kWg24Stages256 = 5;
template <int BN>
constexpr int wg24_stages() { return BN == 256 ? kWg24Stages256 : kWg24Stages; }

std::string cuda_err(const char* what, cudaError_t e) {
  std::ostringstream os;
  os << "CUDA error in " << what << ": " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e) << ")";
  return os.str();
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

float half_bits_to_f32(uint16_t h, bool bf16) { return bf16 ? cpu::bf16_to_f32(h) : cpu::f16_to_f32(h); }

// Device buffer owned by the prepared object.
struct DevBuf {
  void* p = nullptr;
  size_t n = 0;
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  std::string alloc_copy(const void* src, size_t bytes, const char* what,
                         cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
    n = bytes;
    if (bytes == 0) return {};
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      p = nullptr;
      return cuda_err(what, e);
    }
    if (src) {
      e = cudaMemcpy(p, src, bytes, kind);
    } else {
      e = cudaMemset(p, 0, bytes);
    }
    return e == cudaSuccess ? std::string() : cuda_err(what, e);
  }
};

cudaError_t allow_smem_for(bool bf16, bool window, bool sb, int M);  // below, with the launchers
void decode_occupancy_for(bool bf16, bool sb, bool win, int (&bps)[2]);
int decode_stage_setup(bool bf16, bool sb);  // carveout of the staged decode kernels; CTAs per SM
void bulk_setup(VnmGemmCuda::Impl& im, const Dims& d);  // the bulk decode's split per T, on sm_90
int bulk_mode(const Options& opt);  // Options::decode_bulk, or VNMC_DECODE_BULK=0 / 1 where set
cudaError_t bulk_dispatch(bool bf16, int nt, const dev::Params& p, const void* A, int T, void* Y, int ks, int64_t R64,
                          int ldx, int xb, int smem, cudaStream_t st);

}  // namespace

struct VnmGemmCuda::Impl {
  Options opt;
  bool f32_act = false;  // float activations/outputs, converted around the half kernels
  bool bf16 = false;     // the kernels' half type (values, and activations inside the kernels)
  bool windowed = false;
  bool identity = false;
  bool shared_b = false;
  int64_t Vp = 0, Bk = 0, Rp = 0, R64 = 0, Bkp = 0, Gp = 0, S = 0, M = 0;
  int sms = 0;
  int device = 0;
  DevBuf vals, meta, cols, wofs, rowmap, bias, part, counters;
  // One input permutation for all blocks (what `vnmc compile --permute` writes): the bulk decode runs on X
  // gathered into group order (channel j of group g at g * M + j, srcd: Kd positions, -1 = a zero) with
  // window offsets into that order (wofs_perm), instead of the general decode.
  bool perm_dec = false;
  int64_t Kd = 0;
  DevBuf wofs_perm, srcd;
  // wgmma.sp prefill (v9, sm_90): the weight as 2:4 along K, when it is (wgmma_sp.cuh).
  bool has24 = false;
  bool perm24 = false;  // X is gathered into the weight's channel order (src24) before the kernel
  int64_t S64 = 0, K24 = 0;
  DevBuf vals24, meta24, src24;
  // Persistent wgmma.sp prefill (v14): CTAs of one wave (SMs x resident CTAs, occupancy API) for BN = 64,
  // 128, 256; 0 where unknown (the kernel is then not used).
  int64_t wg24p_ctas[3] = {0, 0, 0};

  dev::Params params() const {
    dev::Params p{};
    p.vals = static_cast<const uint4*>(vals.p);
    p.meta = static_cast<const uint2*>(meta.p);
    p.cols = static_cast<const int32_t*>(cols.p);
    p.wofs = windowed ? static_cast<const uint32_t*>(wofs.p) : nullptr;
    p.rowmap = static_cast<const int32_t*>(rowmap.p);
    p.bias = static_cast<const float*>(bias.p);
    p.M = 0;
    p.Vp = static_cast<int32_t>(Vp);
    p.Gp = static_cast<int32_t>(Gp);
    p.S = static_cast<int32_t>(S);
    p.R64 = static_cast<int32_t>(R64);
    return p;
  }

  int decode_bps[2] = {1, 1};  // resident decode CTAs per SM, NT = 1 / 2 (from the occupancy API)
  // Bulk decode (v13, decode_bulk.cuh) per token count T = 1..16: CTAs per row tile (= cluster size;
  // 0: not used for this T), halves per shared activation row, dynamic shared memory.
  int bulk_ks[17] = {}, bulk_ldx[17] = {}, bulk_smem[17] = {};
  bool use_bulk(int64_t T) const { return use_decode(T) && T >= 1 && T <= 16 && bulk_ks[T] > 0; }
  int stage_bps = 0;           // resident staged decode CTAs per SM (0: no staged path)

  // Staged decode (v5 experiment): windowed, K % 8 == 0 (16-byte rows), only with VNMC_DECODE_STAGE=1.
  // Off by default: measured 0.2-1.3 us slower at T = 1..8 and 2.6-7 us slower at T = 16 than v4 on an
  // H100 (bench/gpu/NOTES.md, v5).
  bool use_stage(int64_t T, int64_t K) const {
    static const bool env = [] {
      const char* v = std::getenv("VNMC_DECODE_STAGE");
      return v && v[0] == '1';
    }();
    return env && windowed && stage_bps > 0 && K % 8 == 0 && T >= 1;
  }
  int64_t stage_ld(int ks, int64_t M) const {
    return round_up(ceil_div(S, ks) * 8 * M, 64) + 8;  // halves; +8: a token row starts 4 banks on
  }
  // Split of the staged decode: CTAs of 128 rows; one wave of resident CTAs, >= 2 steps per warp,
  // then as many more splits as the shared-memory slice of T token rows needs.
  int stage_ksplit(int64_t T, int64_t M) const {
    const int64_t ctas = R64 / 2;
    int64_t ks;
    if (opt.decode_ksplit > 0) {
      ks = std::min<int64_t>(opt.decode_ksplit, std::max<int64_t>(1, S));
    } else {
      const int64_t max_split = std::max<int64_t>(1, S / 4);
      const int64_t resident = static_cast<int64_t>(sms) * stage_bps;
      ks = std::max<int64_t>(1, std::min(std::max<int64_t>(1, resident / ctas), max_split));
    }
    while (ks < S && T * stage_ld(static_cast<int>(ks), M) * 2 > kStageSmemCapBytes) ++ks;
    return static_cast<int>(ks);
  }

  bool use_decode(int64_t T) const {
    if (opt.force_path == 1) return T <= 16;
    if (opt.force_path == 2) return false;
    return T <= std::min<int64_t>(opt.decode_max_tokens, 16);
  }
  // CTAs per 64-row tile: the grid fills one wave of resident CTAs, each warp keeps >= 2 steps.
  int decode_ksplit(int64_t T) const {
    const int64_t max_split = std::max<int64_t>(1, S / (dev::kDecodeWarps * 2));
    if (opt.decode_ksplit > 0) return static_cast<int>(std::min<int64_t>(opt.decode_ksplit, std::max<int64_t>(1, S)));
    const int64_t resident = static_cast<int64_t>(sms) * decode_bps[T <= 8 ? 0 : 1];
    const int64_t want = std::max<int64_t>(1, resident / R64);
    return static_cast<int>(std::max<int64_t>(1, std::min(want, max_split)));
  }
  // Prefill tile configuration: 1 = 128 rows x 128 tokens, 2 = 64 x 128, 3 = 64 x 64 (gathered B
  // tiles); 4 = 256 x 128, 5 = 128 x 128 with the dense activation window staged once per CTA (v6:
  // windowed indices, V a multiple of 64, M <= 16).
  bool window_ok() const { return windowed && shared_b && M <= dev::PrefillCfg<1, 1, true>::kMaxWindowM; }
  int prefill_config(int64_t T) const {
    (void)T;
    // wgmma.sp does 2:4's work (K/2 per row), the mma.sp kernels V:N:M's (4K/M), yet even at M = 16
    // the former wins (v10 1.14-1.46x cuBLAS at T >= 2048 vs v2's 0.88-1.13x, bench/gpu/NOTES.md).
    if (has24 && (opt.prefill_config == 0 || opt.prefill_config == 8)) return 8;
    if (opt.prefill_config >= 1 && opt.prefill_config <= 7) {
      if (opt.prefill_config == 6 && !shared_b) return 2;
      if ((opt.prefill_config == 4 || opt.prefill_config == 5 || opt.prefill_config == 7) && !window_ok())
        return shared_b ? 1 : 2;
      if (!shared_b && opt.prefill_config == 1) return 2;
      return opt.prefill_config;
    }
    // Configurations 4-7 stay opt-in: the window ones measured 0.7-0.85x of config 1's speed on an H100
    // though they cut the L2 traffic 2.4x, config 6 within a few % of it (v6-v8, bench/gpu/NOTES.md).
    return shared_b ? 1 : 2;
  }
  static int64_t config_rows(int cfg) { return cfg == 4 || cfg == 7 ? 256 : cfg == 1 || cfg == 5 || cfg == 6 ? 128 : 64; }
  // Split-K factor of the prefill grid: enough CTAs for ~2 per SM, >= 8 steps per split.
  int prefill_ksplit(int64_t T, int cfg) const {
    const int64_t base = ceil_div(Rp, config_rows(cfg)) * ceil_div(T, config_tn(cfg));
    const int64_t target = static_cast<int64_t>(sms) * 2;
    if (base * 4 >= target * 3) return 1;
    return static_cast<int>(std::max<int64_t>(1, std::min(ceil_div(target, base), S / 8)));
  }
  size_t prefill_at_bytes(int64_t T, int cfg, int64_t K) const {
    return static_cast<size_t>(round_up(K * round_up(T, config_tn(cfg)) * 2, 256));
  }
  static int64_t config_tn(int cfg) { return cfg == 3 ? 64 : 128; }
  // Token tile of the wgmma.sp prefill: the widest of 256, 128, 64 that still gives every SM a CTA
  // (Options::wgmma_bn overrides).
  int wg24_bn(int64_t T) const {
    if (opt.wgmma_bn == 64 || opt.wgmma_bn == 128 || opt.wgmma_bn == 256) return opt.wgmma_bn;
    const int64_t rt = Rp / 128;
    if (ceil_div(T, 256) * rt >= sms) return 256;
    return ceil_div(T, 128) * rt >= sms ? 128 : 64;
  }
  // Grid of the persistent wgmma.sp prefill (v14) for T tokens in tiles of bn, or 0 where the
  // non-persistent kernel runs: not asked for (automatic = off until it is measured: bench/gpu/NOTES.md
  // v14), unknown occupancy, or 2^31 tiles or more. One wave of CTAs (at most Options::wgmma_persistent
  // where that is >= 2), never more CTAs than tiles. Only with the warp-specialised pipeline (the caller
  // checks that).
  // Split-K of the warp-specialised wgmma.sp prefill (v18): where the tiles give fewer than 3/4 of a CTA
  // per SM (one 384-thread CTA fills an SM), as many splits as fit one wave, each of >= 8 k64 steps
  // (>= 4 when forced), at most 8 (a portable cluster: the splits of a tile add their sums through
  // distributed shared memory); only with v10 (not v9, not persistent). 1 = none. Automatic only where
  // the k loop is long next to the tile count (k64 steps >= 4 x tiles): measured 1.07-1.5x faster there
  // (4096x11008, 768x3072 at T = 32-64) and 1.15-1.35x slower on 4096x4096 at T = 32-64 and 768x3072 at
  // T = 256, not yet explained (NOTES.md v17, v18).
  int wg24_ksplit(int64_t T, int bn, bool ws, int64_t persist) const {
    if (!ws || persist > 0 || opt.wgmma_ksplit == 1) return 1;
    const int64_t tiles = (Rp / 128) * ceil_div(T, bn);
    if (tiles * 4 >= static_cast<int64_t>(sms) * 3) return 1;
    if (opt.wgmma_ksplit == 0 && S64 < 4 * tiles) return 1;
    const int64_t min_steps = opt.wgmma_ksplit >= 2 ? 4 : 8;
    int64_t ks = std::min<int64_t>({sms / tiles, S64 / min_steps, int64_t{8}});
    if (opt.wgmma_ksplit >= 2) ks = std::min<int64_t>(ks, opt.wgmma_ksplit);
    if (ks <= 1) return 1;
    return static_cast<int>(ceil_div(S64, ceil_div(S64, ks)));  // no empty split
  }
  int64_t wg24_persistent_grid(int64_t T, int bn) const {
    if (opt.wgmma_persistent < 1) return 0;
    const int64_t ctas = wg24p_ctas[bn == 256 ? 2 : bn == 128 ? 1 : 0];
    const int64_t tiles = ceil_div(T, bn) * (Rp / 128);
    if (ctas <= 0 || tiles <= 0 || tiles > 0x7fffffff) return 0;
    int64_t g = std::min(ctas, tiles);
    if (opt.wgmma_persistent >= 2) g = std::min<int64_t>(g, opt.wgmma_persistent);
    return g;
  }
  dev::Wg24Params wg24_params() const {
    dev::Wg24Params q{};
    q.vals = static_cast<const uint4*>(vals24.p);
    q.meta = static_cast<const uint32_t*>(meta24.p);
    q.rowmap = static_cast<const int32_t*>(rowmap.p);
    q.bias = static_cast<const float*>(bias.p);
    q.S64 = static_cast<int32_t>(S64);
    return q;
  }
};

bool device_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why) *why = e != cudaSuccess ? cuda_err("cudaGetDeviceCount", e) : "no CUDA device";
    cudaGetLastError();
    return false;
  }
  return true;
}

std::unique_ptr<VnmGemmCuda> VnmGemmCuda::create(const Attributes& attrs, DType act_dtype, const TensorView& values,
                                                 const TensorView& columns, const TensorView& meta,
                                                 const TensorView& row_index, const TensorView& bias,
                                                 const Options& opt, std::string* err) {
  PackedWeights w;
  std::string e = validate_packed_weights(attrs, act_dtype, values, columns, meta, row_index, &w);
  if (!e.empty()) {
    *err = e;
    return nullptr;
  }
  e = validate_bias(w.dims, act_dtype, bias);
  if (!e.empty()) {
    *err = e;
    return nullptr;
  }
  std::vector<float> bias_f32;
  if (bias.present) {
    bias_f32.resize(static_cast<size_t>(w.dims.N_out));
    for (int64_t i = 0; i < w.dims.N_out; ++i) {
      if (act_dtype == DType::kFloat32) {
        bias_f32[i] = static_cast<const float*>(bias.data)[i];
      } else {
        bias_f32[i] = half_bits_to_f32(static_cast<const uint16_t*>(bias.data)[i], act_dtype == DType::kBFloat16);
      }
    }
  }
  return create(w, bias.present ? bias_f32.data() : nullptr, opt, err);
}

namespace {

template <int BN>
void wg24_allow_smem() {
  constexpr int st = wg24_stages<BN>();
  for (auto f : {dev::wg24_prefill_kernel<false, BN, st>, dev::wg24_prefill_kernel<true, BN, st>})
    cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, dev::Wg24Cfg<BN, st>::kSmemBytes);
  for (auto f : {dev::wg24_ws_kernel<false, BN>, dev::wg24_ws_kernel<true, BN>})
    cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, dev::Wg24WsCfg<BN>::kSmemBytes);
  for (auto f : {dev::wg24_ws_persistent_kernel<false, BN>, dev::wg24_ws_persistent_kernel<true, BN>})
    cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, dev::Wg24PsCfg<BN>::kSmemBytes);
}

// CTAs of one wave of the persistent kernel (v14) on `sms` multiprocessors; 0 if the occupancy API fails.
template <int BN>
int64_t wg24_persistent_ctas(bool bf16, int sms) {
  int n = 0;
  const cudaError_t e =
      bf16 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, dev::wg24_ws_persistent_kernel<true, BN>, 384,
                                                           dev::Wg24PsCfg<BN>::kSmemBytes)
           : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, dev::wg24_ws_persistent_kernel<false, BN>, 384,
                                                           dev::Wg24PsCfg<BN>::kSmemBytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return static_cast<int64_t>(n) * sms;
}

// cuTensorMapEncodeTiled through the runtime (no link against libcuda); null where unavailable.
using TensorMapEncoder = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                      const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                      CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
TensorMapEncoder tensor_map_encoder() {
  static const TensorMapEncoder fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return static_cast<TensorMapEncoder>(nullptr);
    }
    return reinterpret_cast<TensorMapEncoder>(f);
  }();
  return fn;
}

// X[T][K] (half type) as the TMA source of the v10 kernel: box of 64 channels x BN tokens, 128-byte
// swizzle, zeros past T and K. False where the driver cannot encode it (the v9 kernel runs instead).
bool encode_activation_map(CUtensorMap* m, const void* A, int64_t T, int64_t K, bool bf16, int bn) {
  const TensorMapEncoder enc = tensor_map_encoder();
  if (!enc) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(K), static_cast<cuuint64_t>(T)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(K) * 2};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(bn)};
  const cuuint32_t elem[2] = {1, 1};
  return enc(m, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void*>(A), dims,
             strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// ws: the warp-specialised kernel (v10) with the tensor map tmap; else v9. persist > 0 (with ws): the
// persistent kernel (v14) on that many CTAs (<= the tile count).
template <int BN>
void wg24_launch(bool bf16, bool ws, int64_t persist, const CUtensorMap& tmap, const dev::Wg24Params& q,
                 const uint16_t* A, int T, uint16_t* Y, int64_t Rt, int ksplit, cudaStream_t st) {
  constexpr int stages = wg24_stages<BN>();
  const unsigned nt = static_cast<unsigned>(ceil_div(T, BN)), nr = static_cast<unsigned>(Rt);
  if (ws && persist > 0) {
    constexpr int smem = dev::Wg24PsCfg<BN>::kSmemBytes;
    const unsigned g = static_cast<unsigned>(persist);
    if (bf16) dev::wg24_ws_persistent_kernel<true, BN><<<g, 384, smem, st>>>(q, tmap, T, Y, nr, nt);
    else dev::wg24_ws_persistent_kernel<false, BN><<<g, 384, smem, st>>>(q, tmap, T, Y, nr, nt);
    return;
  }
  const dim3 grid(q.rows_fast ? nr : nt, q.rows_fast ? nt : nr, static_cast<unsigned>(ksplit));
  if (ws && ksplit > 1) {  // clusters of the ksplit CTAs of a tile (v18)
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(384, 1, 1);
    cfg.dynamicSmemBytes = dev::Wg24WsCfg<BN>::kSmemBytes;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = 1;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = static_cast<unsigned>(ksplit);
    cfg.attrs = at;
    cfg.numAttrs = 1;
    if (bf16) cudaLaunchKernelEx(&cfg, dev::wg24_ws_kernel<true, BN>, q, tmap, T, Y);
    else cudaLaunchKernelEx(&cfg, dev::wg24_ws_kernel<false, BN>, q, tmap, T, Y);
    return;
  }
  if (ws) {
    constexpr int smem = dev::Wg24WsCfg<BN>::kSmemBytes;
    if (bf16) dev::wg24_ws_kernel<true, BN><<<grid, 384, smem, st>>>(q, tmap, T, Y);
    else dev::wg24_ws_kernel<false, BN><<<grid, 384, smem, st>>>(q, tmap, T, Y);
    return;
  }
  constexpr int smem = dev::Wg24Cfg<BN, stages>::kSmemBytes;
  if (bf16) dev::wg24_prefill_kernel<true, BN, stages><<<grid, 256, smem, st>>>(q, A, T, Y);
  else dev::wg24_prefill_kernel<false, BN, stages><<<grid, 256, smem, st>>>(q, A, T, Y);
}

// The weight as 2:4 along K for the wgmma.sp prefill (wgmma_sp.cuh), in an order of the input channels
// where every 4 consecutive positions of every row hold at most 2 non-zero weights: K itself (windowed
// indices with M % 4 == 0), or a zero-padded order X is gathered into per call (any M, windowed or one
// permutation for all blocks). Sets im.has24 and uploads vals24 / meta24 (and src24 for a gathered
// order); leaves has24 false (no error) otherwise.
// The channels of each group over all blocks, sorted, where they form one input permutation for all
// blocks: no channel in two groups, at most M per group (windowed indices, or what `vnmc compile
// --permute` writes). visit(f) calls f(group, channel) for each index that counts. Empty otherwise.
template <class Visit>
std::vector<std::vector<int32_t>> group_channels(const Dims& d, Visit&& visit) {
  std::vector<int32_t> group_of(static_cast<size_t>(d.K), -1);
  std::vector<std::vector<int32_t>> members(static_cast<size_t>(d.G));
  bool ok = true;
  visit([&](int64_t g, int32_t c) {
    int32_t& go = group_of[static_cast<size_t>(c)];
    if (go == -1) {
      go = static_cast<int32_t>(g);
      members[static_cast<size_t>(g)].push_back(c);
    } else if (go != g) {
      ok = false;  // a channel in two groups
    }
  });
  for (auto& m : members) {
    ok = ok && static_cast<int64_t>(m.size()) <= d.M;
    std::sort(m.begin(), m.end());
  }
  if (!ok) members.clear();
  return members;
}

std::string prepare_24(const PackedWeights& w, const std::vector<int64_t>& canon, VnmGemmCuda::Impl& im) {
  const Dims& d = w.dims;
  if (!im.opt.prefill_wgmma) return {};
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, im.device) != cudaSuccess || prop.major != 9 || prop.minor != 0) {
    cudaGetLastError();
    return {};
  }
  if (cudaFuncSetAttribute(dev::wg24_prefill_kernel<false, 128, kWg24Stages>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                           dev::Wg24Cfg<128, kWg24Stages>::kSmemBytes) != cudaSuccess) {
    cudaGetLastError();  // no sm_90a code in this build: keep the mma.sp prefill
    return {};
  }
  const uint16_t* vsrc = static_cast<const uint16_t*>(w.values);
  // Calls f(row p, group g, value, channel) for every non-zero weight.
  auto for_each_weight = [&](auto&& f) {
    for (int64_t p = 0; p < im.Rp; ++p) {
      const int64_t r = canon[p];
      if (r < 0) continue;
      const int64_t b = r / d.V;
      for (int64_t g = 0; g < d.G; ++g) {
        const unsigned code = meta_code(w.meta, d.meta_cols, r, g);
        for (int k = 0; k < 2; ++k) {
          const uint16_t v = vsrc[r * 2 * d.G + 2 * g + k];
          if (v & 0x7fff) f(p, g, v, w.columns[(b * d.G + g) * 4 + ((code >> (2 * k)) & 3)]);
        }
      }
    }
  };
  // The kernel's K order: pos_of[channel]. Tried first as is (no gather; K % 8 == 0 for the 16-byte
  // rows of X); else, where each group's channels over all blocks are at most M and in no other group
  // (windowed indices, or what `vnmc compile --permute` writes), in an order of whole groups, X being
  // gathered into it per call (Kw >= K positions, -1 = a zero).
  std::vector<int32_t> pos_of(static_cast<size_t>(d.K)), pos2_of(static_cast<size_t>(d.K), -1);
  std::vector<int32_t> src;  // gathered position -> channel (-1: zero), permuted order only
  int64_t Kw = d.K;
  int64_t Kp = 0, nch = 0;
  std::vector<uint16_t> cv;
  std::vector<uint8_t> cc;
  // Per prepared row and 4-position chunk: the 2 kept values and their code (p0 | p1 << 2, p0 < p1);
  // false where a chunk holds 3 or 4 weights (or two weights share a channel).
  auto build = [&]() -> bool {
    Kp = round_up(Kw, 64);
    nch = Kp / 4;
    cv.assign(static_cast<size_t>(im.Rp * nch * 2), 0);
    cc.assign(static_cast<size_t>(im.Rp * nch), 0);
    std::vector<uint8_t> cnt(static_cast<size_t>(im.Rp * nch), 0);
    bool ok = true;
    for_each_weight([&](int64_t p, int64_t, uint16_t v, int32_t col) {
      if (!ok) return;
      // A channel of a partial group has a second position (pos2_of): the format lets its repeated
      // indices carry two weights of one row.
      for (const int32_t x : {pos_of[col], pos2_of[col]}) {
        if (x < 0) break;
        const int64_t i = p * nch + x / 4;
        const int q = x % 4;
        const uint8_t n = cnt[static_cast<size_t>(i)];
        if (n == 2 || (n == 1 && (cc[static_cast<size_t>(i)] & 3) == q)) continue;
        cv[static_cast<size_t>(2 * i + n)] = v;
        cc[static_cast<size_t>(i)] |= static_cast<uint8_t>(q << (2 * n));
        cnt[static_cast<size_t>(i)] = static_cast<uint8_t>(n + 1);
        return;
      }
      ok = false;
    });
    if (!ok) return false;
    // Order each chunk's pair by position and fill chunks with fewer than 2 weights with zeros at
    // valid distinct positions.
    for (size_t i = 0; i < cc.size(); ++i) {
      int p0 = cc[i] & 3, p1 = (cc[i] >> 2) & 3;
      if (cnt[i] == 0) {
        p0 = 0;
        p1 = 1;
      } else if (cnt[i] == 1 && p0 == 3) {  // the weight is the pair's second: (2, 3)
        p0 = 2;
        p1 = 3;
        cv[2 * i + 1] = cv[2 * i];
        cv[2 * i] = 0;
      } else if (cnt[i] == 1) {  // (q, q + 1), the second a zero
        p1 = p0 + 1;
      } else if (p0 > p1) {
        std::swap(p0, p1);
        std::swap(cv[2 * i], cv[2 * i + 1]);
      }
      cc[i] = static_cast<uint8_t>(p0 | p1 << 2);
    }
    return true;
  };
  bool ok = false;
  if (d.K % 8 == 0) {
    for (int64_t k = 0; k < d.K; ++k) pos_of[static_cast<size_t>(k)] = static_cast<int32_t>(k);
    ok = build();
  }
  if (!ok) {
    // the channels that carry weights (zeros may sit at any valid index)
    auto members = group_channels(d, [&](auto&& f) {
      for_each_weight([&](int64_t, int64_t g, uint16_t, int32_t col) { f(g, col); });
    });
    if (members.empty()) return {};
    // Every row holds at most 2 weights per group, so any 4 channels of one group make a valid 2:4
    // chunk, and so does one channel from each of two groups. Each group's channels fill whole chunks;
    // a remainder of 2 or 3 gets a chunk of its own (zero-padded), single remainders share a chunk in
    // pairs (M = 5: 6 positions per 5 channels instead of 8). M % 4 == 0 keeps its plain order.
    src.clear();
    int32_t single = -1;  // a remainder of one channel still waiting for its pair
    auto place = [&](int32_t ch) {
      pos_of[static_cast<size_t>(ch)] = static_cast<int32_t>(src.size());
      src.push_back(ch);
    };
    auto pad_chunk = [&]() {
      while (src.size() % 4) src.push_back(-1);
    };
    for (int64_t g = 0; g < d.G; ++g) {
      const auto& m = members[static_cast<size_t>(g)];
      if (m.size() < 4) {  // a partial group: its channels twice, for rows with two weights on one
        for (const int32_t c : m) place(c);
        pad_chunk();
        for (const int32_t c : m) {
          pos2_of[static_cast<size_t>(c)] = static_cast<int32_t>(src.size());
          src.push_back(c);
        }
        pad_chunk();
        continue;
      }
      const size_t full = m.size() / 4 * 4;
      for (size_t j = 0; j < full; ++j) place(m[j]);
      if (m.size() - full == 1) {
        if (single < 0) {
          single = m[full];
        } else {
          place(single);
          place(m[full]);
          pad_chunk();
          single = -1;
        }
      } else if (m.size() > full) {
        for (size_t j = full; j < m.size(); ++j) place(m[j]);
        pad_chunk();
      }
    }
    if (single >= 0) {
      place(single);
      pad_chunk();
    }
    Kw = round_up(static_cast<int64_t>(src.size()), 8);
    src.resize(static_cast<size_t>(Kw), -1);
    if (!build()) return {};
  }
  const int64_t S64 = Kp / 64, Rt = im.Rp / 128;
  // Fragment order (wgmma_sp.cuh): [Rt][S64][wg][j][128 threads] uint4 and [Rt][S64][wg][128] words.
  std::vector<uint16_t> hv(static_cast<size_t>(Rt * S64 * 512 * 8));
  std::vector<uint32_t> hm(static_cast<size_t>(Rt * S64 * 256));
  for (int64_t q = 0; q < Rt; ++q)
    for (int64_t s = 0; s < S64; ++s)
      for (int wg = 0; wg < 2; ++wg)
        for (int t = 0; t < 128; ++t) {
          const int wp = t >> 5, lane = t & 31, gid = lane >> 2, tq = lane & 3;
          const int64_t r0 = q * 128 + wg * 64 + 16 * wp + gid, r1 = r0 + 8;
          for (int j = 0; j < 2; ++j) {
            const int64_t cb = s * 16 + j * 8;
            uint16_t* dst = &hv[static_cast<size_t>((((q * S64 + s) * 2 + wg) * 2 + j) * 128 + t) * 8];
            const int64_t src[4][2] = {{r0, cb + tq}, {r1, cb + tq}, {r0, cb + 4 + tq}, {r1, cb + 4 + tq}};
            for (int x = 0; x < 4; ++x) {
              const size_t i = static_cast<size_t>(src[x][0] * nch + src[x][1]);
              dst[2 * x] = cv[2 * i];
              dst[2 * x + 1] = cv[2 * i + 1];
            }
          }
          const int sel = tq >> 1, h = tq & 1;
          const int64_t cb = s * 16 + sel * 8 + 4 * h;
          uint32_t e = 0;
          for (int c = 0; c < 4; ++c) {
            e |= static_cast<uint32_t>(cc[static_cast<size_t>(r0 * nch + cb + c)]) << (4 * c);
            e |= static_cast<uint32_t>(cc[static_cast<size_t>(r1 * nch + cb + c)]) << (16 + 4 * c);
          }
          hm[static_cast<size_t>(((q * S64 + s) * 2 + wg) * 128 + t)] = e;
        }
  std::string e = im.vals24.alloc_copy(hv.data(), hv.size() * 2, "upload 2:4 values");
  if (e.empty()) e = im.meta24.alloc_copy(hm.data(), hm.size() * 4, "upload 2:4 meta");
  if (e.empty() && !src.empty()) e = im.src24.alloc_copy(src.data(), src.size() * 4, "upload 2:4 channel order");
  if (!e.empty()) return e;
  wg24_allow_smem<64>();
  wg24_allow_smem<128>();
  wg24_allow_smem<256>();
  const cudaError_t ce = cudaGetLastError();
  if (ce != cudaSuccess) return cuda_err("cudaFuncSetAttribute (wgmma.sp prefill)", ce);
  im.wg24p_ctas[0] = wg24_persistent_ctas<64>(im.bf16, im.sms);
  im.wg24p_ctas[1] = wg24_persistent_ctas<128>(im.bf16, im.sms);
  im.wg24p_ctas[2] = wg24_persistent_ctas<256>(im.bf16, im.sms);
  im.S64 = S64;
  im.K24 = Kw;
  im.perm24 = !src.empty();
  im.has24 = true;
  return {};
}

}  // namespace

std::unique_ptr<VnmGemmCuda> VnmGemmCuda::create(const PackedWeights& w, const float* bias_f32, const Options& opt,
                                                 std::string* err) {
  const bool f32_act = w.act_dtype == DType::kFloat32;
  if (f32_act ? (w.value_dtype != DType::kFloat16 && w.value_dtype != DType::kBFloat16)
              : (w.act_dtype != DType::kFloat16 && w.act_dtype != DType::kBFloat16)) {
    *err = std::string("VNMSparseGemm CUDA kernel: activations ") + dtype_name(w.act_dtype) + " with values " +
           dtype_name(w.value_dtype) +
           " are not supported on the GPU (float16/float16, bfloat16/bfloat16, float/float16, float/bfloat16)";
    return nullptr;
  }
  if (!f32_act && w.value_dtype != w.act_dtype) {
    *err = "VNMSparseGemm CUDA kernel: values must have the activation type";
    return nullptr;
  }
  std::string why;
  if (!device_available(&why)) {
    *err = "VNMSparseGemm CUDA kernel: " + why;
    return nullptr;
  }

  std::unique_ptr<VnmGemmCuda> g(new VnmGemmCuda());
  g->dims_ = w.dims;
  g->act_ = w.act_dtype;
  g->impl_.reset(new Impl());
  Impl& im = *g->impl_;
  im.opt = opt;
  im.f32_act = f32_act;
  im.bf16 = w.value_dtype == DType::kBFloat16;
  const Dims& d = w.dims;

  cudaError_t ce = cudaGetDevice(&im.device);
  if (ce != cudaSuccess) {
    *err = cuda_err("cudaGetDevice", ce);
    return nullptr;
  }
  ce = cudaDeviceGetAttribute(&im.sms, cudaDevAttrMultiProcessorCount, im.device);
  if (ce != cudaSuccess) {
    *err = cuda_err("cudaDeviceGetAttribute", ce);
    return nullptr;
  }

  // ---- geometry of the prepared layout ----
  im.Vp = round_up(d.V, 16);
  im.Bk = d.B;
  im.Rp = round_up(im.Bk * im.Vp, 128);
  im.R64 = im.Rp / 64;
  im.Bkp = ceil_div(im.Rp, im.Vp);
  im.Gp = round_up(d.G, 8);
  im.S = im.Gp / 8;
  im.shared_b = im.Vp % 64 == 0;
  im.windowed = w.windowed && opt.allow_windowed;
  im.M = d.M;
  if (im.Rp > (int64_t{1} << 31) / 2 || im.Gp * 4 > (int64_t{1} << 31) || d.K > 0x7fffffff ||
      im.Bkp * im.Gp * 4 >= (int64_t{1} << 31)) {
    *err = "VNMSparseGemm CUDA kernel: weight too large";
    return nullptr;
  }

  // Prepared row p -> canonical packed row (or -1 for padding).
  std::vector<int64_t> canon(static_cast<size_t>(im.Rp), -1);
  std::vector<int32_t> rowmap(static_cast<size_t>(im.Rp), -1);
  for (int64_t p = 0; p < im.Rp; ++p) {
    const int64_t b = p / im.Vp, j = p % im.Vp;
    if (b < im.Bk && j < d.V) {
      const int64_t r = b * d.V + j;
      canon[p] = r;
      rowmap[p] = static_cast<int32_t>(w.output_of_row(r));
    }
  }
  im.identity = true;
  for (int64_t p = 0; p < im.Rp && im.identity; ++p) {
    const int32_t want = p < d.N_out ? static_cast<int32_t>(p) : -1;
    if (rowmap[p] != want) im.identity = false;
  }

  const uint16_t* vsrc = static_cast<const uint16_t*>(w.values);
  const int64_t vstride = 2 * d.G;
  auto value = [&](int64_t p, int64_t g, int k) -> uint16_t {
    const int64_t r = canon[p];
    if (r < 0 || g >= d.G) return 0;
    return vsrc[r * vstride + 2 * g + k];
  };
  auto code = [&](int64_t p, int64_t g) -> uint32_t {
    const int64_t r = canon[p];
    if (r < 0 || g >= d.G) return 0x4u;  // p0 = 0, p1 = 1 (values are zero)
    return meta_code(w.meta, d.meta_cols, r, g);
  };

  // ---- values in A-fragment order: [R64][S][4 m-tiles][32 lanes] x 8 halves ----
  std::vector<uint16_t> hv;
  std::vector<uint32_t> hm;
  try {
    hv.assign(static_cast<size_t>(im.R64 * im.S * 4 * 32 * 8), 0);
    hm.assign(static_cast<size_t>(im.R64 * im.S * 32 * 2), 0);
  } catch (const std::bad_alloc&) {
    *err = "VNMSparseGemm CUDA kernel: out of host memory while preparing the weights";
    return nullptr;
  }
  for (int64_t q = 0; q < im.R64; ++q) {
    for (int64_t s = 0; s < im.S; ++s) {
      const int64_t unit = q * im.S + s;
      for (int i = 0; i < 4; ++i) {
        for (int lane = 0; lane < 32; ++lane) {
          const int gid = lane >> 2, tid = lane & 3;
          const int64_t p0 = q * 64 + 16 * i + gid, p1 = p0 + 8;
          const int64_t glo = 8 * s + tid, ghi = 8 * s + 4 + tid;
          uint16_t* dst = &hv[static_cast<size_t>(((unit * 4 + i) * 32 + lane) * 8)];
          dst[0] = value(p0, glo, 0);
          dst[1] = value(p0, glo, 1);
          dst[2] = value(p1, glo, 0);
          dst[3] = value(p1, glo, 1);
          dst[4] = value(p0, ghi, 0);
          dst[5] = value(p0, ghi, 1);
          dst[6] = value(p1, ghi, 0);
          dst[7] = value(p1, ghi, 1);
        }
      }
      // metadata: lane (gid, tid), sel = tid >> 1, h = tid & 1; word pr covers m-tile 2*pr + sel.
      for (int lane = 0; lane < 32; ++lane) {
        const int gid = lane >> 2, tid = lane & 3, sel = tid >> 1, h = tid & 1;
        for (int pr = 0; pr < 2; ++pr) {
          const int64_t r0 = q * 64 + 16 * (2 * pr + sel) + gid;
          uint32_t e = 0;
          for (int c = 0; c < 4; ++c) {
            const int64_t g = 8 * s + 4 * h + c;
            e |= code(r0, g) << (4 * c);
            e |= code(r0 + 8, g) << (16 + 4 * c);
          }
          hm[static_cast<size_t>((unit * 32 + lane) * 2 + pr)] = e;
        }
      }
    }
  }

  // ---- column indices per (prepared block, group) ----
  std::vector<int32_t> hc(static_cast<size_t>(im.Bkp * im.Gp * 4), 0);
  std::vector<uint32_t> hw;
  if (im.windowed) hw.assign(static_cast<size_t>(im.Bkp * im.Gp), 0);
  for (int64_t b = 0; b < std::min(im.Bkp, im.Bk); ++b) {
    for (int64_t g = 0; g < d.G; ++g) {
      for (int k = 0; k < 4; ++k) {
        const int32_t c = w.columns[(b * d.G + g) * 4 + k];
        hc[static_cast<size_t>((b * im.Gp + g) * 4 + k)] = c;
        if (im.windowed) {
          const int64_t off = c - g * d.M;  // in [0, M) for windowed indices (M <= 32)
          hw[static_cast<size_t>(b * im.Gp + g)] |= static_cast<uint32_t>(off) << (8 * k);
        }
      }
    }
  }

  // One permutation for all blocks: every index of group g (padding included) in a set of at most M
  // channels that no other group uses. Then X in group order makes the indices windowed. Only for the
  // opt-in gathered bulk decode (v16), the one user of it.
  std::vector<uint32_t> hwp;
  std::vector<int32_t> hsd;
  if (!im.windowed && im.shared_b && d.M <= 32 && bulk_mode(opt) == 1) {
    // every index, padding included: the kernel reads X at each of them
    const auto members = group_channels(d, [&](auto&& f) {
      for (int64_t b = 0; b < d.B; ++b)
        for (int64_t g = 0; g < d.G; ++g)
          for (int k = 0; k < 4; ++k) f(g, w.columns[(b * d.G + g) * 4 + k]);
    });
    if (!members.empty()) {
      std::vector<int32_t> rank(static_cast<size_t>(d.K), -1);
      im.Kd = round_up(d.G * d.M, 8);
      hsd.assign(static_cast<size_t>(im.Kd), -1);
      for (int64_t g = 0; g < d.G; ++g) {
        const auto& m = members[static_cast<size_t>(g)];
        for (size_t j = 0; j < m.size(); ++j) {
          rank[static_cast<size_t>(m[j])] = static_cast<int32_t>(j);
          hsd[static_cast<size_t>(g * d.M) + j] = m[j];
        }
      }
      hwp.assign(static_cast<size_t>(im.Bkp * im.Gp), 0);
      for (int64_t b = 0; b < std::min(im.Bkp, im.Bk); ++b)
        for (int64_t g = 0; g < d.G; ++g)
          for (int k = 0; k < 4; ++k) {
            const int32_t c = w.columns[(b * d.G + g) * 4 + k];
            hwp[static_cast<size_t>(b * im.Gp + g)] |= static_cast<uint32_t>(rank[static_cast<size_t>(c)]) << (8 * k);
          }
    }
  }

  std::vector<float> hb;
  if (bias_f32) {
    hb.assign(static_cast<size_t>(im.Rp), 0.f);
    for (int64_t p = 0; p < im.Rp; ++p)
      if (rowmap[p] >= 0) hb[p] = bias_f32[rowmap[p]];
  }

  std::string e = prepare_24(w, canon, im);
  if (e.empty()) e = im.vals.alloc_copy(hv.data(), hv.size() * 2, "upload values");
  if (e.empty()) e = im.meta.alloc_copy(hm.data(), hm.size() * 4, "upload meta");
  if (e.empty()) e = im.cols.alloc_copy(hc.data(), hc.size() * 4, "upload columns");
  if (e.empty() && im.windowed) e = im.wofs.alloc_copy(hw.data(), hw.size() * 4, "upload window offsets");
  if (e.empty() && !hwp.empty()) e = im.wofs_perm.alloc_copy(hwp.data(), hwp.size() * 4, "upload group offsets");
  if (e.empty() && !hsd.empty()) e = im.srcd.alloc_copy(hsd.data(), hsd.size() * 4, "upload group order");
  if (e.empty()) e = im.rowmap.alloc_copy(rowmap.data(), rowmap.size() * 4, "upload row map");
  if (e.empty() && bias_f32) e = im.bias.alloc_copy(hb.data(), hb.size() * 4, "upload bias");
  if (e.empty()) e = im.part.alloc_copy(nullptr, static_cast<size_t>(im.R64) * 16 * 64 * 4, "split-K scratch");
  if (e.empty()) e = im.counters.alloc_copy(nullptr, static_cast<size_t>(im.R64) * 4, "split-K counters");
  if (e.empty()) {
    const cudaError_t ae = allow_smem_for(im.bf16, im.window_ok(), im.shared_b, static_cast<int>(im.M));
    if (ae != cudaSuccess) e = cuda_err("cudaFuncSetAttribute", ae);
    decode_occupancy_for(im.bf16, im.shared_b, im.windowed, im.decode_bps);
    if (im.windowed) im.stage_bps = decode_stage_setup(im.bf16, im.shared_b);
    bulk_setup(im, d);
  }
  if (!e.empty()) {
    *err = "VNMSparseGemm CUDA kernel: " + e;
    return nullptr;
  }
  return g;
}

VnmGemmCuda::~VnmGemmCuda() = default;

std::unique_ptr<VnmGemmCuda> VnmGemmCuda::clone(std::string* err) const {
  std::unique_ptr<VnmGemmCuda> g(new VnmGemmCuda());
  g->dims_ = dims_;
  g->act_ = act_;
  g->impl_.reset(new Impl());
  const Impl& a = *impl_;
  Impl& b = *g->impl_;
  b.opt = a.opt;
  b.f32_act = a.f32_act;
  b.bf16 = a.bf16;
  b.windowed = a.windowed;
  b.identity = a.identity;
  b.shared_b = a.shared_b;
  b.Vp = a.Vp;
  b.Bk = a.Bk;
  b.Rp = a.Rp;
  b.R64 = a.R64;
  b.Bkp = a.Bkp;
  b.Gp = a.Gp;
  b.S = a.S;
  b.M = a.M;
  b.sms = a.sms;
  b.device = a.device;
  b.decode_bps[0] = a.decode_bps[0];
  b.decode_bps[1] = a.decode_bps[1];
  b.stage_bps = a.stage_bps;
  std::copy(std::begin(a.bulk_ks), std::end(a.bulk_ks), std::begin(b.bulk_ks));
  std::copy(std::begin(a.bulk_ldx), std::end(a.bulk_ldx), std::begin(b.bulk_ldx));
  std::copy(std::begin(a.bulk_smem), std::end(a.bulk_smem), std::begin(b.bulk_smem));
  b.perm_dec = a.perm_dec;
  b.Kd = a.Kd;
  b.has24 = a.has24;
  b.perm24 = a.perm24;
  b.S64 = a.S64;
  b.K24 = a.K24;
  std::copy(std::begin(a.wg24p_ctas), std::end(a.wg24p_ctas), std::begin(b.wg24p_ctas));
  const auto d2d = cudaMemcpyDeviceToDevice;
  std::string e;
  if (e.empty()) e = b.vals.alloc_copy(a.vals.p, a.vals.n, "clone values", d2d);
  if (e.empty()) e = b.meta.alloc_copy(a.meta.p, a.meta.n, "clone meta", d2d);
  if (e.empty()) e = b.cols.alloc_copy(a.cols.p, a.cols.n, "clone columns", d2d);
  if (e.empty() && a.wofs.p) e = b.wofs.alloc_copy(a.wofs.p, a.wofs.n, "clone offsets", d2d);
  if (e.empty()) e = b.rowmap.alloc_copy(a.rowmap.p, a.rowmap.n, "clone row map", d2d);
  if (e.empty() && a.bias.p) e = b.bias.alloc_copy(a.bias.p, a.bias.n, "clone bias", d2d);
  if (e.empty()) e = b.part.alloc_copy(nullptr, a.part.n, "split-K scratch");
  if (e.empty()) e = b.counters.alloc_copy(nullptr, a.counters.n, "split-K counters");
  if (e.empty() && a.has24) e = b.vals24.alloc_copy(a.vals24.p, a.vals24.n, "clone 2:4 values", d2d);
  if (e.empty() && a.has24) e = b.meta24.alloc_copy(a.meta24.p, a.meta24.n, "clone 2:4 meta", d2d);
  if (e.empty() && a.perm24) e = b.src24.alloc_copy(a.src24.p, a.src24.n, "clone 2:4 channel order", d2d);
  if (e.empty() && a.perm_dec) e = b.wofs_perm.alloc_copy(a.wofs_perm.p, a.wofs_perm.n, "clone group offsets", d2d);
  if (e.empty() && a.perm_dec) e = b.srcd.alloc_copy(a.srcd.p, a.srcd.n, "clone group order", d2d);
  if (!e.empty()) {
    *err = "VNMSparseGemm CUDA kernel: " + e;
    return nullptr;
  }
  return g;
}

bool VnmGemmCuda::windowed() const { return impl_->windowed; }

size_t VnmGemmCuda::device_weight_bytes() const {
  const Impl& im = *impl_;
  return im.vals.n + im.meta.n + (im.windowed ? im.wofs.n : im.cols.n) + im.rowmap.n + im.bias.n + im.vals24.n +
         im.meta24.n + im.src24.n;
}

int VnmGemmCuda::device() const { return impl_->device; }

size_t VnmGemmCuda::workspace_bytes(int64_t T) const {
  size_t n = half_workspace_bytes(T);
  if (impl_->f32_act && T > 0)  // A and Y in the half type, after the kernels' own scratch
    n = static_cast<size_t>(round_up(static_cast<int64_t>(n), 256) + round_up(T * dims_.K * 2, 256) +
                            round_up(T * dims_.N_out * 2, 256));
  return n;
}

size_t VnmGemmCuda::half_workspace_bytes(int64_t T) const {
  const Impl& im = *impl_;
  if (T <= 0) return 0;
  if (im.use_bulk(T)) return im.perm_dec ? static_cast<size_t>(round_up(T * im.Kd * 2, 256)) : 0;  // X in group order
  if (im.use_decode(T)) return T >= 2 ? static_cast<size_t>(dims_.K * 32) : 0;  // At2 pairs
  const int cfg = im.prefill_config(T);
  if (cfg == 8)  // reads A in place, or a copy gathered into the weight's channel order
    return im.perm24 ? static_cast<size_t>(round_up(T * im.K24 * 2, 256)) : 0;
  size_t n = im.prefill_at_bytes(T, cfg, dims_.K);
  if (im.prefill_ksplit(T, cfg) > 1) n += static_cast<size_t>(T * im.Rp * 4);  // fp32 split-K sums
  return n;
}

// Plain string building (no iostreams): kernel_bench.py calls this through ctypes inside a PyTorch
// process, where the ostringstream version crashed (H100 and H200, 2026-11-26; cause not isolated).
std::string VnmGemmCuda::describe_launch(int64_t T) const {
  const Impl& im = *impl_;
  std::string s;
  if (im.use_decode(T)) {
    const std::string nt = T <= 8 ? "1" : "2";
    if (im.use_bulk(T) && !im.use_stage(T, dims_.K))
      return "decode bulk NT=" + nt + " ksplit=" + std::to_string(im.bulk_ks[T]) +
             (im.perm_dec ? " gathered" : im.windowed ? " windowed" : " general");
    if (im.use_stage(T, dims_.K))
      return "decode staged NT=" + nt + " ksplit=" + std::to_string(im.stage_ksplit(T, dims_.M)) + " rows=128" +
             (im.shared_b ? "" : " per-tile-B");
    s = "decode NT=" + nt + " ksplit=" + std::to_string(im.decode_ksplit(T)) + (im.shared_b ? "" : " per-tile-B") +
        (im.windowed ? " windowed" : " general") + (T >= 5 ? " pairs" : "");
  } else {
    const int cfg = im.prefill_config(T);
    if (cfg == 8) {
      const bool ws = im.opt.wgmma_ws != 2 && tensor_map_encoder();
      const int bn = im.wg24_bn(T);
      const int64_t persist = ws ? im.wg24_persistent_grid(T, bn) : 0;
      const int ks = im.wg24_ksplit(T, bn, ws, persist);
      return "prefill wgmma.sp 2:4 128x" + std::to_string(bn) + (ws ? " ws" : "") + (persist > 0 ? " persistent" : "") +
             (ks > 1 ? " ksplit=" + std::to_string(ks) : "") + (im.perm24 ? " gathered" : "");
    }
    static const char* const names[] = {"", "128x128", "64x128", "64x64", "256x128 window", "128x128 window",
                                        "128x128 w32", "256x128 window w32"};
    s = std::string("prefill ") + names[cfg] + " ksplit=" + std::to_string(im.prefill_ksplit(T, cfg)) +
        (im.shared_b ? "" : " per-tile-B");
  }
  return s;
}

namespace {

template <bool BF16, int NT, bool SB, bool WIN, bool PAIRS, bool STAGE = false>
cudaError_t launch_decode(const dev::Params& p, const void* A, const uint32_t* At2, int T, void* Y, float* part,
                          unsigned* counters, int ksplit, int64_t R64, cudaStream_t st, int stage_ld = 0) {
  const size_t smem = STAGE ? static_cast<size_t>(T) * stage_ld * 2 : 0;
  dev::decode_kernel<BF16, NT, SB, WIN, PAIRS, STAGE>
      <<<static_cast<unsigned>((STAGE ? R64 / 2 : R64) * ksplit), dev::kDecodeWarps * 32, smem, st>>>(
          p, static_cast<const uint16_t*>(A), At2, T, static_cast<uint16_t*>(Y), part, counters, ksplit, stage_ld);
  return cudaGetLastError();
}

// Staged decode (windowed only): NT = 1 for T <= 8, NT = 2 up to 16.
template <bool BF16, bool SB>
cudaError_t decode_stage_dispatch(int T, const dev::Params& p, const void* A, void* Y, float* part,
                                  unsigned* counters, int ksplit, int64_t R64, cudaStream_t st, int stage_ld) {
  if (T <= 8) return launch_decode<BF16, 1, SB, true, false, true>(p, A, nullptr, T, Y, part, counters, ksplit, R64, st, stage_ld);
  return launch_decode<BF16, 2, SB, true, false, true>(p, A, nullptr, T, Y, part, counters, ksplit, R64, st, stage_ld);
}

template <bool BF16, bool SB>
int decode_stage_setup_t() {
  // Shared memory first (3 CTAs x (16 KB reduction + <= 48 KB slice)); the L1 is not needed for A here.
  // Static (reduction) + dynamic shared memory exceed the default 48 KB: raise the dynamic limit.
  const int cap = kStageSmemCapBytes;
  cudaFuncSetAttribute(dev::decode_kernel<BF16, 1, SB, true, false, true>,
                       cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
  cudaFuncSetAttribute(dev::decode_kernel<BF16, 2, SB, true, false, true>,
                       cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
  cudaFuncSetAttribute(dev::decode_kernel<BF16, 1, SB, true, false, true>,
                       cudaFuncAttributeMaxDynamicSharedMemorySize, cap);
  cudaFuncSetAttribute(dev::decode_kernel<BF16, 2, SB, true, false, true>,
                       cudaFuncAttributeMaxDynamicSharedMemorySize, cap);
  int b = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, dev::decode_kernel<BF16, 2, SB, true, false, true>,
                                                    dev::kDecodeWarps * 32, 32 * 1024) != cudaSuccess)
    b = 0;
  cudaGetLastError();
  if (std::getenv("VNMC_DEBUG")) std::fprintf(stderr, "vnmc: staged decode, %d CTAs per SM\n", b);
  return b;
}
template <bool BF16, int NT, bool WIN>
cudaError_t launch_bulk(const dev::Params& p, const void* A, int T, void* Y, int ks, int64_t R64, int ldx, int xb,
                        int smem, cudaStream_t st) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(ks), static_cast<unsigned>(R64), 1);
  cfg.blockDim = dim3(dev::kBulkWarps * 32, 1, 1);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cfg.stream = st;
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeClusterDimension;  // the CTAs of one row tile reduce through DSMEM
  at[0].val.clusterDim.x = static_cast<unsigned>(ks);
  at[0].val.clusterDim.y = 1;
  at[0].val.clusterDim.z = 1;
  cfg.attrs = at;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, dev::decode_bulk_kernel<BF16, NT, WIN>, p, static_cast<const uint16_t*>(A), T,
                            static_cast<uint16_t*>(Y), ldx, xb);
}

// Windowed indices only: with permuted ones every CTA must stage all K columns, measured 1.1-1.5x slower
// than v4 at T = 1 on the Llama shapes (H100, bench/gpu/NOTES.md, v13), so the WIN = false kernels are
// not instantiated.
cudaError_t bulk_dispatch(bool bf16, int nt, const dev::Params& p, const void* A, int T, void* Y, int ks, int64_t R64,
                          int ldx, int xb, int smem, cudaStream_t st) {
  if (bf16) return nt == 1 ? launch_bulk<true, 1, true>(p, A, T, Y, ks, R64, ldx, xb, smem, st)
                           : launch_bulk<true, 2, true>(p, A, T, Y, ks, R64, ldx, xb, smem, st);
  return nt == 1 ? launch_bulk<false, 1, true>(p, A, T, Y, ks, R64, ldx, xb, smem, st)
                 : launch_bulk<false, 2, true>(p, A, T, Y, ks, R64, ldx, xb, smem, st);
}

// Resident CTAs per SM of one bulk decode instantiation with smem bytes of dynamic shared memory; its
// limit is raised to the device's opt-in maximum once (a lower per-object value would break others).
// The bulk decode kernels of one dtype may use the device's opt-in shared memory, with the largest
// carveout (the driver's default left room for too few CTAs per SM: v3, bench/gpu/NOTES.md). The same
// values for every object, so concurrent objects cannot disagree. False: no such kernel (no sm_90 code).
template <bool BF16>
bool bulk_allow_smem(int optin) {
  for (auto k : {dev::decode_bulk_kernel<BF16, 1, true>, dev::decode_bulk_kernel<BF16, 2, true>})
    if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) != cudaSuccess ||
        cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared) !=
            cudaSuccess) {
      cudaGetLastError();
      return false;
    }
  return true;
}

// Occupancy of one bulk decode instantiation with smem bytes of dynamic shared memory: resident CTAs
// per SM, and (want_clusters) resident clusters of ks CTAs for a grid of ks x R64 (GPC packing
// included). 0 on error.
template <bool BF16, int NT>
void bulk_fit(int ks, int64_t R64, int smem, bool want_clusters, int* bps, int* clusters) {
  auto k = dev::decode_bulk_kernel<BF16, NT, true>;
  *bps = *clusters = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(bps, k, dev::kBulkWarps * 32, static_cast<size_t>(smem)) !=
      cudaSuccess) {
    cudaGetLastError();
    *bps = 0;
    return;
  }
  if (!want_clusters || *bps == 0) return;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(ks), static_cast<unsigned>(R64), 1);
  cfg.blockDim = dim3(dev::kBulkWarps * 32, 1, 1);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeClusterDimension;
  at[0].val.clusterDim.x = static_cast<unsigned>(ks);
  at[0].val.clusterDim.y = 1;
  at[0].val.clusterDim.z = 1;
  cfg.attrs = at;
  cfg.numAttrs = 1;
  if (cudaOccupancyMaxActiveClusters(clusters, k, &cfg) != cudaSuccess) {
    cudaGetLastError();
    *clusters = 0;
  }
}

// Per T: the largest split (cluster size <= 8) whose R64 clusters of ks CTAs are all resident at once
// (more CTAs = more bytes in flight; one wave = no tail: the first measurement sized the grid by CTAs
// per SM alone and some splits ran a second wave of clusters), or Options::decode_ksplit when set.
// No split fits one wave: the v4 kernels (their grid is sized for one wave as well).
int bulk_mode(const Options& opt) {
  static const int env = [] {
    const char* v = std::getenv("VNMC_DECODE_BULK");
    return v && (v[0] == '0' || v[0] == '1') ? v[0] - '0' : -1;
  }();
  return env < 0 ? opt.decode_bulk : env == 1 ? 1 : -1;  // VNMC_DECODE_BULK=0 / 1 wins
}

void bulk_setup(VnmGemmCuda::Impl& im, const Dims& d) {
  const int mode = bulk_mode(im.opt);
  if (mode < 0) return;
  const bool gathered = !im.windowed && im.srcd.p;  // X gathered into group order first (perm_dec)
  if (!im.shared_b || (!im.windowed && !gathered) || im.R64 > 65535) return;
  const int64_t K = gathered ? im.Kd : d.K;
  im.perm_dec = gathered;
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, im.device) != cudaSuccess || prop.major != 9) {
    cudaGetLastError();
    return;
  }
  const int optin = static_cast<int>(prop.sharedMemPerBlockOptin);
  if (!(im.bf16 ? bulk_allow_smem<true>(optin) : bulk_allow_smem<false>(optin))) return;
  const int64_t ks_max = std::min<int64_t>(dev::kBulkMaxCluster, im.S);
  for (int T = 1; T <= 16; ++T) {
    // T <= 4 with M < 16: v4's direct gathers stay 3-12 % faster (H100, Llama shapes, NOTES.md v13);
    // from T = 5 v4 needs its pairs launch, and at M = 16 (half the bytes per column) v13 wins at every T.
    // The gathered route (v16) is opt-in: its gather launch made it slower than v4's general path on
    // most Llama shapes at T = 5-16 (H100, NOTES.md v16).
    if (mode == 0 && (gathered || (T <= 4 && im.M < 16))) continue;
    const int nt = T <= 8 ? 1 : 2;
    int64_t lo = 1, hi = ks_max;
    if (im.opt.decode_ksplit > 0) lo = hi = std::min<int64_t>(im.opt.decode_ksplit, ks_max);
    for (int64_t ks = hi; ks >= lo; --ks) {
      const int64_t ldx = round_up(std::min<int64_t>(ceil_div(im.S, ks) * 8 * im.M, K), 8);
      const int64_t smem64 = dev::bulk_smem_bytes(true, nt, T, ldx);
      if (smem64 > optin) continue;
      const int smem = static_cast<int>(smem64);
      const bool forced = im.opt.decode_ksplit > 0;
      int bps = 0, clusters = 0;
      auto fit = im.bf16 ? (nt == 1 ? bulk_fit<true, 1> : bulk_fit<true, 2>)
                         : (nt == 1 ? bulk_fit<false, 1> : bulk_fit<false, 2>);
      fit(static_cast<int>(ks), im.R64, smem, !forced, &bps, &clusters);
      if (bps == 0) continue;
      if (forced || clusters >= im.R64) {
        im.bulk_ks[T] = static_cast<int>(ks);
        im.bulk_ldx[T] = static_cast<int>(ldx);
        im.bulk_smem[T] = smem;
        break;
      }
    }
  }
}

int decode_stage_setup(bool bf16, bool sb) {
  if (bf16) return sb ? decode_stage_setup_t<true, true>() : decode_stage_setup_t<true, false>();
  return sb ? decode_stage_setup_t<false, true>() : decode_stage_setup_t<false, false>();
}

// variant: 0 = direct NT = 1 (T <= 8), 1 = pairs NT = 1, 2 = pairs NT = 2, 3 = direct NT = 2
template <bool BF16, bool SB, bool WIN>
cudaError_t decode_dispatch(int variant, const dev::Params& p, const void* A, const uint32_t* At2, int T, void* Y,
                            float* part, unsigned* counters, int ksplit, int64_t R64, cudaStream_t st) {
  if (variant == 0) return launch_decode<BF16, 1, SB, WIN, false>(p, A, At2, T, Y, part, counters, ksplit, R64, st);
  if (variant == 1) return launch_decode<BF16, 1, SB, WIN, true>(p, A, At2, T, Y, part, counters, ksplit, R64, st);
  if (variant == 3) return launch_decode<BF16, 2, SB, WIN, false>(p, A, At2, T, Y, part, counters, ksplit, R64, st);
  return launch_decode<BF16, 2, SB, WIN, true>(p, A, At2, T, Y, part, counters, ksplit, R64, st);
}

template <bool BF16, bool SB, bool WIN>
void decode_occupancy(int (&bps)[2]) {
  int a = 1, b = 1;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&a, dev::decode_kernel<BF16, 1, SB, WIN, true>, dev::kDecodeWarps * 32, 0);
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, dev::decode_kernel<BF16, 2, SB, WIN, true>, dev::kDecodeWarps * 32, 0);
  cudaGetLastError();
  bps[0] = std::max(1, a);
  bps[1] = std::max(1, b);
}
void decode_occupancy_for(bool bf16, bool sb, bool win, int (&bps)[2]) {
  if (bf16) {
    if (sb) win ? decode_occupancy<true, true, true>(bps) : decode_occupancy<true, true, false>(bps);
    else win ? decode_occupancy<true, false, true>(bps) : decode_occupancy<true, false, false>(bps);
  } else {
    if (sb) win ? decode_occupancy<false, true, true>(bps) : decode_occupancy<false, true, false>(bps);
    else win ? decode_occupancy<false, false, true>(bps) : decode_occupancy<false, false, false>(bps);
  }
}

template <bool BF16, int WR, int WN, bool SB, int STAGES, bool WINDOW = false, int WT = 64>
cudaError_t launch_prefill(const dev::Params& p, const void* At, int64_t Tp, int T, void* Y, float* yacc, int ksplit,
                           int64_t Rp, cudaStream_t st) {
  using C = dev::PrefillCfg<WR, WN, SB, WT>;
  const int smem = dev::prefill_smem_bytes<STAGES, WR, WN, SB, WINDOW, WT>(p.M);
  const int64_t gy = ceil_div(Rp, static_cast<int64_t>(C::kRows));
  if (gy > 65535) return cudaErrorInvalidConfiguration;
  dim3 grid(static_cast<unsigned>(Tp / C::kTN), static_cast<unsigned>(gy), static_cast<unsigned>(ksplit));
  dev::prefill_kernel<BF16, WR, WN, SB, STAGES, WINDOW, WT><<<grid, C::kThreads, smem, st>>>(
      p, static_cast<const uint16_t*>(At), Tp, T, static_cast<uint16_t*>(Y), yacc, Rp);
  return cudaGetLastError();
}

// Raises the dynamic shared-memory limit of the prefill kernels one object may launch (at creation:
// not a stream operation, so it stays out of run(), which may be captured in a CUDA graph).
template <bool BF16, int WR, int WN, bool SB, int STAGES, bool WINDOW = false, int WT = 64>
cudaError_t allow_smem(int M = 0) {
  const int smem = dev::prefill_smem_bytes<STAGES, WR, WN, SB, WINDOW, WT>(M);
  return cudaFuncSetAttribute(dev::prefill_kernel<BF16, WR, WN, SB, STAGES, WINDOW, WT>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
}
template <bool BF16>
cudaError_t allow_smem_all(bool sb, bool window, int M) {
  cudaError_t e;
  if (window) {
    if ((e = allow_smem<BF16, 4, 4, true, kPrefillStages, true, 32>(M)) != cudaSuccess) return e;
    if ((e = allow_smem<BF16, 4, 2, true, kPrefillStages, true>(M)) != cudaSuccess) return e;
    if ((e = allow_smem<BF16, 2, 2, true, kPrefillStages, true>(M)) != cudaSuccess) return e;
  }
  if (sb) {
    if ((e = allow_smem<BF16, 2, 4, true, kPrefillStages, false, 32>()) != cudaSuccess) return e;
    if ((e = allow_smem<BF16, 2, 2, true, kPrefillStages>()) != cudaSuccess) return e;
    if ((e = allow_smem<BF16, 1, 2, true, kPrefillStages>()) != cudaSuccess) return e;
    return allow_smem<BF16, 1, 1, true, kPrefillStages>();
  }
  if ((e = allow_smem<BF16, 1, 2, false, kPrefillStagesSmallV>()) != cudaSuccess) return e;
  return allow_smem<BF16, 1, 1, false, kPrefillStagesSmallV>();
}
cudaError_t allow_smem_for(bool bf16, bool window, bool sb, int M) {
  return bf16 ? allow_smem_all<true>(sb, window, M) : allow_smem_all<false>(sb, window, M);
}

template <bool BF16>
cudaError_t prefill_dispatch(int cfg, bool sb, const dev::Params& p, const void* At, int64_t Tp, int T, void* Y,
                             float* yacc, int ksplit, int64_t Rp, cudaStream_t st) {
  if (cfg == 4) return launch_prefill<BF16, 4, 2, true, kPrefillStages, true>(p, At, Tp, T, Y, yacc, ksplit, Rp, st);
  if (cfg == 5) return launch_prefill<BF16, 2, 2, true, kPrefillStages, true>(p, At, Tp, T, Y, yacc, ksplit, Rp, st);
  if (cfg == 7)
    return launch_prefill<BF16, 4, 4, true, kPrefillStages, true, 32>(p, At, Tp, T, Y, yacc, ksplit, Rp, st);
  if (sb) {
    if (cfg == 6)
      return launch_prefill<BF16, 2, 4, true, kPrefillStages, false, 32>(p, At, Tp, T, Y, yacc, ksplit, Rp, st);
    if (cfg == 1) return launch_prefill<BF16, 2, 2, true, kPrefillStages>(p, At, Tp, T, Y, yacc, ksplit, Rp, st);
    if (cfg == 2) return launch_prefill<BF16, 1, 2, true, kPrefillStages>(p, At, Tp, T, Y, yacc, ksplit, Rp, st);
    return launch_prefill<BF16, 1, 1, true, kPrefillStages>(p, At, Tp, T, Y, yacc, ksplit, Rp, st);
  }
  if (cfg == 3) return launch_prefill<BF16, 1, 1, false, kPrefillStagesSmallV>(p, At, Tp, T, Y, yacc, ksplit, Rp, st);
  return launch_prefill<BF16, 1, 2, false, kPrefillStagesSmallV>(p, At, Tp, T, Y, yacc, ksplit, Rp, st);
}

}  // namespace

std::string VnmGemmCuda::run(const void* A, int64_t T, void* Y, void* workspace, size_t workspace_size,
                             void* stream) const {
  const Impl& im = *impl_;
  if (!im.f32_act) return run_half(A, T, Y, workspace, workspace_size, stream);
  if (T < 0 || T > 0x7fffffff) return "VNMSparseGemm CUDA kernel: token count out of range";
  if (T == 0) return {};
  if (!A || !Y) return "VNMSparseGemm CUDA kernel: null activation or output pointer";
  const size_t need = workspace_bytes(T);
  if (!workspace || workspace_size < need) {
    std::ostringstream os;
    os << "VNMSparseGemm CUDA kernel: workspace of " << need << " bytes needed for T=" << T << ", got "
       << workspace_size;
    return os.str();
  }
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const size_t inner = static_cast<size_t>(round_up(static_cast<int64_t>(half_workspace_bytes(T)), 256));
  unsigned char* base = static_cast<unsigned char*>(workspace);
  uint16_t* Ah = reinterpret_cast<uint16_t*>(base + inner);
  uint16_t* Yh = reinterpret_cast<uint16_t*>(base + inner + round_up(T * dims_.K * 2, 256));
  const int64_t na = T * dims_.K, ny = T * dims_.N_out;
  const unsigned ba = static_cast<unsigned>(std::min<int64_t>(ceil_div(na, 256), 65535));
  const unsigned by = static_cast<unsigned>(std::min<int64_t>(ceil_div(ny, 256), 65535));
  if (im.bf16)
    dev::f32_to_half_kernel<true><<<ba, 256, 0, st>>>(static_cast<const float*>(A), Ah, na);
  else
    dev::f32_to_half_kernel<false><<<ba, 256, 0, st>>>(static_cast<const float*>(A), Ah, na);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("convert launch", e);
  std::string r = run_half(Ah, T, Yh, inner ? workspace : nullptr, inner, stream);
  if (!r.empty()) return r;
  if (im.bf16)
    dev::half_to_f32_kernel<true><<<by, 256, 0, st>>>(Yh, static_cast<float*>(Y), ny);
  else
    dev::half_to_f32_kernel<false><<<by, 256, 0, st>>>(Yh, static_cast<float*>(Y), ny);
  e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : "VNMSparseGemm CUDA kernel: " + cuda_err("convert launch", e);
}

std::string VnmGemmCuda::run_half(const void* A, int64_t T, void* Y, void* workspace, size_t workspace_size,
                                  void* stream) const {
  const Impl& im = *impl_;
  if (T < 0 || T > 0x7fffffff) return "VNMSparseGemm CUDA kernel: token count out of range";
  if (T == 0) return {};
  if (!A || !Y) return "VNMSparseGemm CUDA kernel: null activation or output pointer";
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  dev::Params p = im.params();
  p.K = dims_.K;
  p.N_out = dims_.N_out;
  p.M = static_cast<int32_t>(dims_.M);
  p.identity = im.identity && dims_.N_out % 8 == 0 && (reinterpret_cast<uintptr_t>(Y) % 16 == 0);
  const int Ti = static_cast<int>(T);
  cudaError_t e;
  if (im.use_decode(T) && im.use_stage(T, dims_.K) && reinterpret_cast<uintptr_t>(A) % 16 == 0) {
    const int ks = im.stage_ksplit(T, dims_.M);
    const int ld = static_cast<int>(im.stage_ld(ks, dims_.M));
    float* part = static_cast<float*>(im.part.p);
    unsigned* cnt = static_cast<unsigned*>(im.counters.p);
    if (im.bf16)
      e = im.shared_b ? decode_stage_dispatch<true, true>(Ti, p, A, Y, part, cnt, ks, im.R64, st, ld)
                      : decode_stage_dispatch<true, false>(Ti, p, A, Y, part, cnt, ks, im.R64, st, ld);
    else
      e = im.shared_b ? decode_stage_dispatch<false, true>(Ti, p, A, Y, part, cnt, ks, im.R64, st, ld)
                      : decode_stage_dispatch<false, false>(Ti, p, A, Y, part, cnt, ks, im.R64, st, ld);
    return e == cudaSuccess ? std::string() : "VNMSparseGemm CUDA kernel: " + cuda_err("decode (staged) launch", e);
  }
  if (im.use_bulk(T)) {
    int xb = dims_.K % 8 == 0 && reinterpret_cast<uintptr_t>(A) % 16 == 0;
    if (im.perm_dec) {  // X into group order, then the windowed kernel on it
      const size_t need = half_workspace_bytes(T);
      if (!workspace || workspace_size < need)
        return "VNMSparseGemm CUDA kernel: workspace of " + std::to_string(need) + " bytes needed for T=" +
               std::to_string(T) + ", got " + std::to_string(workspace_size);
      uint16_t* Xw = static_cast<uint16_t*>(workspace);
      e = launch_gather_channels(static_cast<const uint16_t*>(A), T, dims_.K, static_cast<const int32_t*>(im.srcd.p),
                                 im.Kd, Xw, im.sms, st);
      if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("gather launch", e);
      A = Xw;
      p.K = im.Kd;
      p.wofs = static_cast<const uint32_t*>(im.wofs_perm.p);
      xb = 1;
    }
    e = bulk_dispatch(im.bf16, T <= 8 ? 1 : 2, p, A, Ti, Y, im.bulk_ks[T], im.R64, im.bulk_ldx[T], xb, im.bulk_smem[T],
                      st);
    return e == cudaSuccess ? std::string() : "VNMSparseGemm CUDA kernel: " + cuda_err("decode (bulk) launch", e);
  }
  if (im.use_decode(T)) {
    // Activations of T = 2..4 are gathered straight from A (v4: one launch less, measured 1.05-1.15x
    // faster on an H100); from T = 5 the pair-packed copy At2 wins (direct gathers at T = 16 were up to
    // 2.5x slower with permuted indices). VNMC_DECODE_DIRECT=0 / 1 forces pairs / direct for T >= 2.
    static const int direct_env = [] {
      const char* v = std::getenv("VNMC_DECODE_DIRECT");
      return v && (v[0] == '0' || v[0] == '1') ? v[0] - '0' : -1;
    }();
    const bool direct = direct_env < 0 ? T <= 4 : direct_env == 1;
    const int variant = T == 1 ? 0 : direct ? (T <= 8 ? 0 : 3) : T <= 8 ? 1 : 2;
    const int ks = im.decode_ksplit(T);
    float* part = static_cast<float*>(im.part.p);
    unsigned* cnt = static_cast<unsigned*>(im.counters.p);
    uint32_t* At2 = nullptr;
    if (T >= 2 && !direct) {
      const size_t need = static_cast<size_t>(dims_.K * 32);
      if (!workspace || workspace_size < need) {
        std::ostringstream os;
        os << "VNMSparseGemm CUDA kernel: workspace of " << need << " bytes needed for T=" << T << ", got "
           << workspace_size;
        return os.str();
      }
      At2 = static_cast<uint32_t*>(workspace);
      dev::pairs_kernel<<<static_cast<unsigned>(ceil_div(dims_.K, 32)), dim3(32, 8), 0, st>>>(
          static_cast<const uint16_t*>(A), At2, Ti, dims_.K);
      e = cudaGetLastError();
      if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("pairs launch", e);
    }
    if (im.bf16) {
      if (im.shared_b)
        e = im.windowed ? decode_dispatch<true, true, true>(variant, p, A, At2, Ti, Y, part, cnt, ks, im.R64, st)
                        : decode_dispatch<true, true, false>(variant, p, A, At2, Ti, Y, part, cnt, ks, im.R64, st);
      else
        e = im.windowed ? decode_dispatch<true, false, true>(variant, p, A, At2, Ti, Y, part, cnt, ks, im.R64, st)
                        : decode_dispatch<true, false, false>(variant, p, A, At2, Ti, Y, part, cnt, ks, im.R64, st);
    } else {
      if (im.shared_b)
        e = im.windowed ? decode_dispatch<false, true, true>(variant, p, A, At2, Ti, Y, part, cnt, ks, im.R64, st)
                        : decode_dispatch<false, true, false>(variant, p, A, At2, Ti, Y, part, cnt, ks, im.R64, st);
      else
        e = im.windowed ? decode_dispatch<false, false, true>(variant, p, A, At2, Ti, Y, part, cnt, ks, im.R64, st)
                        : decode_dispatch<false, false, false>(variant, p, A, At2, Ti, Y, part, cnt, ks, im.R64, st);
    }
    return e == cudaSuccess ? std::string() : "VNMSparseGemm CUDA kernel: " + cuda_err("decode launch", e);
  }

  int cfg = im.prefill_config(T);
  if (cfg == 8) {
    const uint16_t* Ah = static_cast<const uint16_t*>(A);
    int64_t Kk = dims_.K;
    if (im.perm24) {
      const size_t need = half_workspace_bytes(T);
      if (!workspace || workspace_size < need)
        return "VNMSparseGemm CUDA kernel: workspace of " + std::to_string(need) + " bytes needed for T=" +
               std::to_string(T) + ", got " + std::to_string(workspace_size);
      uint16_t* Xg = static_cast<uint16_t*>(workspace);
      e = launch_gather_channels(Ah, T, dims_.K, static_cast<const int32_t*>(im.src24.p), im.K24, Xg, im.sms, st);
      if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("gather launch", e);
      Ah = Xg;
      Kk = im.K24;
    } else if (reinterpret_cast<uintptr_t>(A) % 16 != 0) {
      return "VNMSparseGemm CUDA kernel: the activations must be 16-byte aligned for the wgmma.sp prefill "
             "(Options::prefill_wgmma = false avoids it)";
    }
    dev::Wg24Params q = im.wg24_params();
    q.K = Kk;
    q.N_out = dims_.N_out;
    q.identity = p.identity;
    const int bn = im.wg24_bn(T);
    q.rows_fast = im.opt.wgmma_raster != 2;
    uint16_t* Yh = static_cast<uint16_t*>(Y);
    const int64_t Rt = im.Rp / 128;
    CUtensorMap tmap;
    std::memset(&tmap, 0, sizeof tmap);
    const bool ws = im.opt.wgmma_ws != 2 && encode_activation_map(&tmap, Ah, T, Kk, im.bf16, bn);
    const int64_t persist = ws ? im.wg24_persistent_grid(T, bn) : 0;  // 1-D grid: no 65535 limit
    if (persist == 0 && (q.rows_fast ? ceil_div(T, bn) : Rt) > 65535)
      return "VNMSparseGemm CUDA kernel: too many tokens or rows for one launch";
    const int ks = im.wg24_ksplit(T, bn, ws, persist);
    if (ks > 1) q.kchunk = static_cast<int32_t>(ceil_div(im.S64, ks));
    if (bn == 256) wg24_launch<256>(im.bf16, ws, persist, tmap, q, Ah, Ti, Yh, Rt, ks, st);
    else if (bn == 128) wg24_launch<128>(im.bf16, ws, persist, tmap, q, Ah, Ti, Yh, Rt, ks, st);
    else wg24_launch<64>(im.bf16, ws, persist, tmap, q, Ah, Ti, Yh, Rt, ks, st);
    e = cudaGetLastError();
    if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("wgmma.sp prefill launch", e);
    return {};
  }
  const int64_t Tp = round_up(T, Impl::config_tn(cfg));
  const int ks = im.prefill_ksplit(T, cfg);
  const size_t at_bytes = im.prefill_at_bytes(T, cfg, dims_.K);
  const size_t need = half_workspace_bytes(T);
  if (!workspace || workspace_size < need) {
    std::ostringstream os;
    os << "VNMSparseGemm CUDA kernel: workspace of " << need << " bytes needed for T=" << T << ", got "
       << workspace_size;
    return os.str();
  }
  uint16_t* At = static_cast<uint16_t*>(workspace);
  float* yacc = nullptr;
  if (ks > 1) {
    yacc = reinterpret_cast<float*>(static_cast<unsigned char*>(workspace) + at_bytes);
    e = cudaMemsetAsync(yacc, 0, static_cast<size_t>(T * im.Rp * 4), st);
    if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("memset", e);
  }
  {
    dim3 grid(static_cast<unsigned>(ceil_div(dims_.K, 32)), static_cast<unsigned>(Tp / 32));
    if (grid.y > 65535) return "VNMSparseGemm CUDA kernel: too many tokens for one launch";
    dev::transpose_kernel<<<grid, dim3(32, 8), 0, st>>>(static_cast<const uint16_t*>(A), At, T, dims_.K, Tp);
    e = cudaGetLastError();
    if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("transpose launch", e);
  }
  e = im.bf16 ? prefill_dispatch<true>(cfg, im.shared_b, p, At, Tp, Ti, Y, yacc, ks, im.Rp, st)
              : prefill_dispatch<false>(cfg, im.shared_b, p, At, Tp, Ti, Y, yacc, ks, im.Rp, st);
  if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("prefill launch", e);
  if (ks > 1) {
    const int64_t n = T * im.Rp;
    const unsigned blocks = static_cast<unsigned>(ceil_div(n, 256));
    if (im.bf16)
      dev::finalize_kernel<true><<<blocks, 256, 0, st>>>(p, yacc, im.Rp, Ti, static_cast<uint16_t*>(Y));
    else
      dev::finalize_kernel<false><<<blocks, 256, 0, st>>>(p, yacc, im.Rp, Ti, static_cast<uint16_t*>(Y));
    e = cudaGetLastError();
    if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("finalize launch", e);
  }
  return {};
}

std::string check_device_pointer(const void* p, const char* what) {
  cudaPointerAttributes a;
  const cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string(what) + " is not CUDA memory (" + cudaGetErrorName(e) + ")";
  }
  if (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) return {};
  std::ostringstream os;
  os << what << " at " << p << " is " << (a.type == cudaMemoryTypeHost ? "pinned host" : "unregistered host")
     << " memory, not device memory";
  return os.str();
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes a;
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

std::string sync_check(void* stream) {
  cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  if (e == cudaSuccess) e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : cuda_err("kernel (sync check)", e);
}

std::string copy_to_host(void* dst, const void* src, size_t n) {
  if (n == 0) return {};
  const cudaError_t e = cudaMemcpy(dst, src, n, cudaMemcpyDefault);
  return e == cudaSuccess ? std::string() : cuda_err("cudaMemcpy to host", e);
}

std::unique_ptr<OrderedRunner> OrderedRunner::create(std::unique_ptr<VnmGemmCuda> gemm, std::string* err) {
  if (!gemm) {
    *err = "VNMSparseGemm CUDA kernel: no kernel";
    return nullptr;
  }
  std::unique_ptr<OrderedRunner> r(new OrderedRunner());
  cudaEvent_t ev = nullptr;
  const cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  if (e != cudaSuccess) {
    *err = "VNMSparseGemm CUDA kernel: " + cuda_err("cudaEventCreate", e);
    return nullptr;
  }
  r->event_ = ev;
  r->gemm_ = std::move(gemm);
  return r;
}

OrderedRunner::~OrderedRunner() {
  if (event_) {
    if (launched_) cudaEventSynchronize(static_cast<cudaEvent_t>(event_));
    cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  }
  if (workspace_) cudaFree(workspace_);
  if (stage_) cudaFree(stage_);
}

std::string OrderedRunner::ensure_workspace(size_t need) {
  if (need <= workspace_size_) return {};
  cudaError_t e;
  if (launched_ && (e = cudaEventSynchronize(static_cast<cudaEvent_t>(event_))) != cudaSuccess)
    return "VNMSparseGemm CUDA kernel: " + cuda_err("cudaEventSynchronize", e);
  if (workspace_) cudaFree(workspace_);
  workspace_ = nullptr;
  workspace_size_ = 0;
  const size_t n = std::max(need, static_cast<size_t>(1) << 20);
  if ((e = cudaMalloc(&workspace_, n)) != cudaSuccess) {
    workspace_ = nullptr;
    return "VNMSparseGemm CUDA kernel: " + cuda_err("workspace cudaMalloc", e);
  }
  workspace_size_ = n;
  return {};
}

std::string OrderedRunner::run_staged(const void* A, bool a_host, int64_t T, void* Y, bool y_host, void* stream) {
  if (!a_host && !y_host) return run(A, T, Y, stream);
  if (T <= 0) return run(A, T, Y, stream);
  std::lock_guard<std::mutex> lk(stage_mu_);
  const size_t es = dtype_size(gemm_->act_dtype());
  const size_t a_bytes = static_cast<size_t>(T * gemm_->dims().K) * es;
  const size_t y_bytes = static_cast<size_t>(T * gemm_->dims().N_out) * es;
  const size_t need = static_cast<size_t>(round_up(static_cast<int64_t>(a_bytes), 256)) + y_bytes;
  if (need > stage_size_) {
    if (stage_) cudaFree(stage_);
    stage_ = nullptr;
    stage_size_ = 0;
    const cudaError_t e = cudaMalloc(&stage_, need);
    if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("staging cudaMalloc", e);
    stage_size_ = need;
  }
  unsigned char* dA = static_cast<unsigned char*>(stage_);
  unsigned char* dY = dA + round_up(static_cast<int64_t>(a_bytes), 256);
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  cudaError_t e;
  if (a_host && (e = cudaMemcpyAsync(dA, A, a_bytes, cudaMemcpyHostToDevice, st)) != cudaSuccess)
    return "VNMSparseGemm CUDA kernel: " + cuda_err("staging A", e);
  std::string r = run(a_host ? dA : A, T, y_host ? static_cast<void*>(dY) : Y, stream);
  if (!r.empty()) return r;
  if (y_host && (e = cudaMemcpyAsync(Y, dY, y_bytes, cudaMemcpyDeviceToHost, st)) != cudaSuccess)
    return "VNMSparseGemm CUDA kernel: " + cuda_err("staging Y", e);
  if ((e = cudaStreamSynchronize(st)) != cudaSuccess)
    return "VNMSparseGemm CUDA kernel: " + cuda_err("staging sync", e);
  return {};
}

std::string OrderedRunner::run(const void* A, int64_t T, void* Y, void* stream) {
  std::lock_guard<std::mutex> lk(mu_);
  int cur = -1;
  cudaError_t e = cudaGetDevice(&cur);
  if (e != cudaSuccess) return "VNMSparseGemm CUDA kernel: " + cuda_err("cudaGetDevice", e);
  const int dev = gemm_->device();
  if (cur != dev && (e = cudaSetDevice(dev)) != cudaSuccess)
    return "VNMSparseGemm CUDA kernel: " + cuda_err("cudaSetDevice", e);
  struct Restore {
    int cur, dev;
    ~Restore() {
      if (cur != dev && cur >= 0) cudaSetDevice(cur);
    }
  } restore{cur, dev};
  cudaEvent_t ev = static_cast<cudaEvent_t>(event_);
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  std::string werr = ensure_workspace(gemm_->workspace_bytes(T));
  if (!werr.empty()) return werr;
  if (launched_ && st != static_cast<cudaStream_t>(last_stream_) && (e = cudaStreamWaitEvent(st, ev, 0)) != cudaSuccess)
    return "VNMSparseGemm CUDA kernel: " + cuda_err("cudaStreamWaitEvent", e);
  const std::string r = gemm_->run(A, T, Y, workspace_, workspace_size_, stream);
  if (!r.empty()) return r;
  if ((e = cudaEventRecord(ev, st)) != cudaSuccess)
    return "VNMSparseGemm CUDA kernel: " + cuda_err("cudaEventRecord", e);
  launched_ = true;
  last_stream_ = stream;
  return {};
}

}  // namespace cuda
}  // namespace vnmc
