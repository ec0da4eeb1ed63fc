// CPU kernel orchestration: relayout at creation, run-time ISA dispatch, work splitting.
#include "cpu/packed_gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "cpu/half.h"
#include "cpu/kernel_data.h"

namespace vnmc {
namespace cpu {

// --- ISA ----------------------------------------------------------------------------------------
const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "portable";
  }
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kPortable: return true;
    case Isa::kAvx2: {
#if defined(VNMC_HAVE_AVX2_KERNELS)
      static const bool ok = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
      }();
      return ok;
#else
      return false;
#endif
    }
    case Isa::kAvx512: {
#if defined(VNMC_HAVE_AVX512_KERNELS)
      // The AVX-512 file is compiled with -mavx512f/bw/dq/vl and -mavx2 -mfma -mf16c. (GCC's
      // __builtin_cpu_supports also checks that the OS saves the zmm state, via XGETBV.)
      static const bool ok = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
      }();
      return ok;
#else
      return false;
#endif
    }
  }
  return false;
}

Isa best_isa() {
  Isa cap = Isa::kAvx512;
  const char* env = std::getenv("VNMC_CPU_ISA");
  if (env && std::strcmp(env, "portable") == 0) cap = Isa::kPortable;
  if (env && std::strcmp(env, "avx2") == 0) cap = Isa::kAvx2;
  for (Isa i : {Isa::kAvx512, Isa::kAvx2})
    if (static_cast<int>(i) <= static_cast<int>(cap) && isa_supported(i)) return i;
  return Isa::kPortable;
}

static const IsaKernels& kernels_for(Isa isa) {
#if defined(VNMC_HAVE_AVX512_KERNELS)
  if (isa == Isa::kAvx512 && isa_supported(Isa::kAvx512)) return avx512::kKernels;
#endif
#if defined(VNMC_HAVE_AVX2_KERNELS)
  if (isa == Isa::kAvx2 && isa_supported(Isa::kAvx2)) return avx2::kKernels;
#endif
  (void)isa;
  return portable::kKernels;
}

// --- memory -------------------------------------------------------------------------------------
AlignedBuffer::AlignedBuffer(size_t bytes) {
  if (bytes == 0) return;
  const size_t rounded = (bytes + 63) / 64 * 64;
  p_ = std::aligned_alloc(64, rounded);
  if (!p_) throw std::bad_alloc();
  n_ = bytes;
}
AlignedBuffer::~AlignedBuffer() { std::free(p_); }
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

// Per-thread scratch that only grows; nullptr when out of memory (work items run on foreign
// thread pools and must not throw).
static float* thread_scratch(size_t floats) {
  thread_local AlignedBuffer buf;
  if (buf.size() < floats * sizeof(float)) {
    buf = AlignedBuffer();
    try {
      buf = AlignedBuffer(floats * sizeof(float));
    } catch (const std::bad_alloc&) {
      return nullptr;
    }
  }
  return buf.as<float>();
}

std::vector<float> to_f32(const void* src, DType dt, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (dt) {
      case DType::kFloat16: out[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]); break;
      case DType::kBFloat16: out[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]); break;
      default: out[i] = static_cast<const float*>(src)[i]; break;
    }
  }
  return out;
}

// --- relayout -----------------------------------------------------------------------------------
struct PackedGemm::Impl {
  KernelData d{};
  AlignedBuffer vals, meta, cols, wofs, out_idx, active, contig;
  const IsaKernels* k = nullptr;
};

PackedGemm::~PackedGemm() = default;

size_t PackedGemm::weight_bytes() const {
  return impl_->vals.size() + impl_->meta.size() + impl_->cols.size() + impl_->wofs.size() + impl_->out_idx.size() +
         impl_->active.size() + impl_->contig.size();
}

int PackedGemm::value_store() const { return impl_->d.store; }

std::unique_ptr<PackedGemm> PackedGemm::create(const PackedWeights& w, const PrepareOptions& opt, std::string* err) {
  try {
    std::unique_ptr<PackedGemm> p(new PackedGemm());
    p->impl_.reset(new Impl());
    Impl& im = *p->impl_;
    const Dims& dm = w.dims;
    p->dims_ = dm;
    p->act_ = w.act_dtype;
    p->isa_ = opt.isa;
    if (p->isa_ == Isa::kAvx512 && !isa_supported(p->isa_)) p->isa_ = Isa::kAvx2;
    if (!isa_supported(p->isa_)) p->isa_ = Isa::kPortable;
    p->windowed_ = w.windowed;
    p->row_max_ = opt.row_path_max_tokens >= 0 ? opt.row_path_max_tokens : kDefaultRowPathMaxTokens;
    im.k = &kernels_for(p->isa_);

    KernelData& d = im.d;
    d.K = dm.K;
    d.N_out = dm.N_out;
    d.V = dm.V;
    d.M = dm.M;
    d.G = dm.G;
    d.B = dm.B;
    d.cpb = (dm.V + kChunkRows - 1) / kChunkRows;
    d.C = d.B * d.cpb;
    d.windowed = w.windowed ? 1 : 0;

    int store = kStoreF32;
    const bool keep = opt.keep_half_values == 1 || (opt.keep_half_values < 0 && p->isa_ != Isa::kPortable);
    if (keep && w.value_dtype == DType::kFloat16) store = kStoreF16;
    if (keep && w.value_dtype == DType::kBFloat16) store = kStoreBF16;
    d.store = store;
    const size_t esz = store == kStoreF32 ? 4 : 2;

    const int64_t G = d.G, C = d.C;
    im.vals = AlignedBuffer(static_cast<size_t>(C * G * 2 * kChunkRows) * esz);
    im.meta = AlignedBuffer(static_cast<size_t>(C * G) * 4);
    im.cols = AlignedBuffer(static_cast<size_t>(d.B * G * 4) * 4);
    im.out_idx = AlignedBuffer(static_cast<size_t>(C * kChunkRows) * 4);
    im.active = AlignedBuffer(static_cast<size_t>(C));
    im.contig = AlignedBuffer(static_cast<size_t>(C));
    if (w.windowed) im.wofs = AlignedBuffer(static_cast<size_t>(d.B * G) * 4);

    std::memcpy(im.cols.data(), w.columns, static_cast<size_t>(d.B * G * 4) * 4);
    if (w.windowed) {
      uint32_t* wo = im.wofs.as<uint32_t>();
      for (int64_t b = 0; b < d.B; ++b)
        for (int64_t g = 0; g < G; ++g) {
          uint32_t packed = 0;
          for (int j = 0; j < 4; ++j)
            packed |= static_cast<uint32_t>(w.columns[(b * G + g) * 4 + j] - g * dm.M) << (8 * j);
          wo[b * G + g] = packed;
        }
    }

    uint32_t* meta = im.meta.as<uint32_t>();
    int32_t* out_idx = im.out_idx.as<int32_t>();
    uint8_t* active = im.active.as<uint8_t>();
    std::memset(im.vals.data(), 0, im.vals.size());
    std::memset(meta, 0, im.meta.size());
    const int64_t vrow = 2 * G;  // values per packed row
    for (int64_t b = 0; b < d.B; ++b) {
      for (int64_t cl = 0; cl < d.cpb; ++cl) {
        const int64_t c = b * d.cpb + cl;
        active[c] = 0;
        for (int l = 0; l < kChunkRows; ++l) {
          const int64_t rl = cl * kChunkRows + l;
          const int64_t r = rl < dm.V ? b * dm.V + rl : -1;
          const int64_t o = r >= 0 ? w.output_of_row(r) : -1;
          out_idx[c * kChunkRows + l] = static_cast<int32_t>(o);
          if (o < 0) {
            // zero row with a valid code (p0 = 0, p1 = 1): contributes nothing, never written
            for (int64_t g = 0; g < G; ++g) meta[c * G + g] |= 4u << (4 * l);
            continue;
          }
          active[c] = 1;
          for (int64_t g = 0; g < G; ++g) {
            const uint32_t code = meta_code(w.meta, dm.meta_cols, r, g);
            meta[c * G + g] |= code << (4 * l);
            const int64_t dst = (c * G + g) * 2 * kChunkRows + l;
            const int64_t src = r * vrow + 2 * g;
            for (int k = 0; k < 2; ++k) {
              const int64_t di = dst + k * kChunkRows;
              if (store == kStoreF32) {
                float v;
                if (w.value_dtype == DType::kFloat32) v = static_cast<const float*>(w.values)[src + k];
                else if (w.value_dtype == DType::kFloat16) v = f16_to_f32(static_cast<const uint16_t*>(w.values)[src + k]);
                else v = bf16_to_f32(static_cast<const uint16_t*>(w.values)[src + k]);
                im.vals.as<float>()[di] = v;
              } else {
                im.vals.as<uint16_t>()[di] = static_cast<const uint16_t*>(w.values)[src + k];
              }
            }
          }
        }
      }
    }
    d.vals = im.vals.data();
    d.meta = meta;
    d.cols = im.cols.as<int32_t>();
    d.wofs = w.windowed ? im.wofs.as<uint32_t>() : nullptr;
    d.out_idx = out_idx;
    d.chunk_active = active;
    uint8_t* contig = im.contig.as<uint8_t>();
    for (int64_t c = 0; c < C; ++c) {
      const int32_t* oi = out_idx + c * kChunkRows;
      bool ok = oi[0] >= 0;
      for (int l = 1; l < kChunkRows && ok; ++l) ok = oi[l] == oi[0] + l;
      contig[c] = ok ? 1 : 0;
    }
    d.chunk_contig = contig;
    return p;
  } catch (const std::bad_alloc&) {
    if (err) *err = "out of memory while re-laying out the weights";
    return nullptr;
  }
}

// --- run ----------------------------------------------------------------------------------------
namespace {

constexpr int64_t kMaxTokenTile = 64;

struct RunCtx {
  const KernelData* d = nullptr;
  const IsaKernels* k = nullptr;
  // row path
  const float* A = nullptr;
  int64_t T = 0;
  // token path
  const float* At = nullptr;  // [ntiles][K][TT]
  int32_t nv = 1;
  int64_t ntiles = 0, tile_tokens = 0;
  // both
  int64_t cr = 1;   // chunks per item
  int64_t ipb = 1;  // items per block
  const float* bias = nullptr;
  float* Y = nullptr;
  // activation preparation
  const void* Asrc = nullptr;
  DType adt = DType::kFloat32;
  float* At_out = nullptr;
  std::atomic<bool> failed{false};
};

void row_item(void* p, size_t i) {
  const RunCtx& x = *static_cast<const RunCtx*>(p);
  const KernelData& d = *x.d;
  const int64_t b = static_cast<int64_t>(i) / x.ipb, k = static_cast<int64_t>(i) % x.ipb;
  RowArgs a;
  a.d = x.d;
  a.A = x.A;
  a.T = x.T;
  a.c0 = b * d.cpb + k * x.cr;
  a.c1 = std::min(a.c0 + x.cr, (b + 1) * d.cpb);
  a.bias = x.bias;
  a.Y = x.Y;
  a.scratch = thread_scratch(row_path_scratch_floats(d.G, x.k->row_tokens));
  if (!a.scratch) {
    const_cast<RunCtx&>(x).failed = true;
    return;
  }
  x.k->row_path(a);
}

void token_item(void* p, size_t i) {
  const RunCtx& x = *static_cast<const RunCtx*>(p);
  const KernelData& d = *x.d;
  const int64_t per_tile = d.B * x.ipb;
  const int64_t tile = static_cast<int64_t>(i) / per_tile, rest = static_cast<int64_t>(i) % per_tile;
  const int64_t b = rest / x.ipb, k = rest % x.ipb;
  const int64_t TT = 8 * static_cast<int64_t>(x.nv);
  TokenArgs a;
  a.d = x.d;
  a.At = x.At + tile * d.K * TT;
  a.nv = x.nv;
  a.t0 = tile * x.tile_tokens;
  a.nt = std::min(x.tile_tokens, x.T - a.t0);
  a.c0 = b * d.cpb + k * x.cr;
  a.c1 = std::min(a.c0 + x.cr, (b + 1) * d.cpb);
  a.bias = x.bias;
  a.Y = x.Y;
  a.scratch = thread_scratch(token_path_scratch_floats((a.c1 - a.c0) * kChunkRows, a.nv));
  if (!a.scratch) {
    const_cast<RunCtx&>(x).failed = true;
    return;
  }
  x.k->token_path(a);
}

// Item i of the transposition: tile i / kslices, k slice i % kslices.
constexpr int64_t kTransposeSlice = 256;

void transpose_item(void* p, size_t i) {
  const RunCtx& x = *static_cast<const RunCtx*>(p);
  const int64_t K = x.d->K;
  const int64_t TT = 8 * static_cast<int64_t>(x.nv);
  const int64_t kslices = (K + kTransposeSlice - 1) / kTransposeSlice;
  const int64_t tile = static_cast<int64_t>(i) / kslices;
  const int64_t k0 = (static_cast<int64_t>(i) % kslices) * kTransposeSlice;
  const int64_t k1 = std::min(K, k0 + kTransposeSlice);
  const int64_t t0 = tile * x.tile_tokens;
  const int64_t nt = std::min(x.tile_tokens, x.T - t0);
  float* dst = x.At_out + tile * K * TT;
  float row[kTransposeSlice];
  for (int64_t t = 0; t < TT; ++t) {
    if (t >= nt) {
      for (int64_t k = k0; k < k1; ++k) dst[k * TT + t] = 0.0f;
      continue;
    }
    const float* src;
    const int64_t off = (t0 + t) * K + k0;
    switch (x.adt) {
      case DType::kFloat16:
        x.k->f16_to_f32(static_cast<const uint16_t*>(x.Asrc) + off, row, static_cast<size_t>(k1 - k0));
        src = row;
        break;
      case DType::kBFloat16:
        x.k->bf16_to_f32(static_cast<const uint16_t*>(x.Asrc) + off, row, static_cast<size_t>(k1 - k0));
        src = row;
        break;
      default: src = static_cast<const float*>(x.Asrc) + off; break;
    }
    for (int64_t k = k0; k < k1; ++k) dst[k * TT + t] = src[k - k0];
  }
}

struct CvtCtx {
  const IsaKernels* k;
  const void* src;
  void* dst;
  DType dt;
  bool to_f32;
  size_t n, per;
};

void cvt_item(void* p, size_t i) {
  const CvtCtx& c = *static_cast<const CvtCtx*>(p);
  const size_t b = i * c.per, e = std::min(c.n, b + c.per);
  if (c.to_f32) {
    const uint16_t* s = static_cast<const uint16_t*>(c.src) + b;
    float* d = static_cast<float*>(c.dst) + b;
    if (c.dt == DType::kFloat16) c.k->f16_to_f32(s, d, e - b);
    else c.k->bf16_to_f32(s, d, e - b);
  } else {
    const float* s = static_cast<const float*>(c.src) + b;
    uint16_t* d = static_cast<uint16_t*>(c.dst) + b;
    if (c.dt == DType::kFloat16) c.k->f32_to_f16(s, d, e - b);
    else c.k->f32_to_bf16(s, d, e - b);
  }
}

void convert(Parallel& par, const IsaKernels* k, const void* src, void* dst, DType dt, bool to_f32, size_t n) {
  CvtCtx c{k, src, dst, dt, to_f32, n, 1 << 16};
  par.for_each((n + c.per - 1) / c.per, cvt_item, &c);
}

}  // namespace

std::string PackedGemm::run(const void* A, int64_t T, const float* bias, void* Y, Parallel& par) const {
  if (T <= 0) return {};
  const KernelData& d = impl_->d;
  const IsaKernels* k = impl_->k;
  try {
    const int threads = std::max(1, par.num_threads());
    const size_t out_n = static_cast<size_t>(T) * static_cast<size_t>(d.N_out);
    std::vector<float> ybuf;
    float* Yf = nullptr;
    if (act_ == DType::kFloat32) {
      Yf = static_cast<float*>(Y);
    } else {
      ybuf.resize(out_n);
      Yf = ybuf.data();
    }

    RunCtx x;
    x.d = &d;
    x.k = k;
    x.T = T;
    x.bias = bias;
    x.Y = Yf;

    const bool token_path = k->token_path && T > row_max_ && d.K * kMaxTokenTile < (int64_t{1} << 31);
    if (!token_path) {
      std::vector<float> abuf;
      if (act_ == DType::kFloat32) {
        x.A = static_cast<const float*>(A);
      } else {
        abuf.resize(static_cast<size_t>(T * d.K));
        convert(par, k, A, abuf.data(), act_, true, abuf.size());
        x.A = abuf.data();
      }
      // Items: ranges of cr chunks inside one block. Enough items to balance the threads, but at
      // least min(4, cpb) chunks per item so the per-item gather of activations stays small.
      int64_t cr = (d.C + 4 * threads - 1) / (4 * threads);
      cr = std::max(cr, std::min<int64_t>(4, d.cpb));
      cr = std::min(cr, d.cpb);
      x.cr = cr;
      x.ipb = (d.cpb + cr - 1) / cr;
      par.for_each(static_cast<size_t>(d.B * x.ipb), row_item, &x);
    } else {
      const int64_t ntiles = (T + kMaxTokenTile - 1) / kMaxTokenTile;
      const int64_t per = (T + ntiles - 1) / ntiles;
      x.nv = static_cast<int32_t>((per + 7) / 8);
      x.tile_tokens = per;
      x.ntiles = ntiles;
      const int64_t TT = 8 * static_cast<int64_t>(x.nv);
      AlignedBuffer at(static_cast<size_t>(ntiles * d.K * TT) * sizeof(float));
      x.At_out = at.as<float>();
      x.Asrc = A;
      x.adt = act_;
      const int64_t kslices = (d.K + kTransposeSlice - 1) / kTransposeSlice;
      par.for_each(static_cast<size_t>(ntiles * kslices), transpose_item, &x);
      x.At = at.as<float>();
      int64_t cr = (d.C * ntiles + 4 * threads - 1) / (4 * threads);
      cr = std::max<int64_t>(1, std::min(cr, d.cpb));
      x.cr = cr;
      x.ipb = (d.cpb + cr - 1) / cr;
      par.for_each(static_cast<size_t>(ntiles * d.B * x.ipb), token_item, &x);
    }

    if (x.failed) return "out of memory (kernel scratch)";
    if (act_ != DType::kFloat32) convert(par, k, Yf, Y, act_, false, out_n);
    return {};
  } catch (const std::bad_alloc&) {
    return "out of memory";
  }
}

}  // namespace cpu
}  // namespace vnmc
