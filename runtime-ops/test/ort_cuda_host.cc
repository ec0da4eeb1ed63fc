// GPU host test of the custom-op library's CUDAExecutionProvider kernel (issue 5, item 2a).
//
//   vnmc_ort_cuda_host <libonnxruntime.so> <libvnmc_ort.so> [--tokens 1,7,300] MODEL.onnx...
//                      [--expect-fail MODEL.onnx]... [--wgmma-switch MODEL.onnx]...
//
// dlopen()s an onnxruntime with its CUDA provider (shared/tools/ort-cuda-bundle.sh: onnxruntime 1.29)
// and, per model, builds three sessions: CUDA provider + libvnmc_ort (every node must get a CUDA
// kernel: session.disable_cpu_ep_fallback), CPU provider + libvnmc_ort (the CPU kernel), and CPU
// without the library (onnxruntime inlines the model's fallback function). Each model runs at every
// token count with fresh random inputs (every dynamic dim = that count, others as declared); the CUDA
// outputs are compared with both CPU results (relative Frobenius error, max error relative to the
// largest reference magnitude, NaN/Inf never passes). --expect-fail models must fail to load on the
// CUDA provider (malformed packed weights) with the kernel's message.
// --wgmma-switch models test the switch of the wgmma.sp prefill (src/ort/cuda_kernel.h): sessions with
// the session config entry vnmc.prefill_wgmma = "1" and "0" (and none, where VNMC_PREFILL_WGMMA as this
// process got it, or the default, applies) read each kernel's INFO line through a custom logger: "0"
// must give every node prefill_wgmma=0, a prefill path other than wgmma.sp and fewer device weight
// bytes than "1", whose nodes must include wgmma.sp ones (the model must have a 2:4 weight; sm_90);
// outputs of "0" must match "1" at every token count; "maybe" must fail the load naming the key.
// Exit: 0 all passed, 1 a failure, 77 no CUDA provider / no GPU (skip).
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <onnxruntime_c_api.h>

namespace {

const OrtApi* g_api = nullptr;
OrtEnv* g_env = nullptr;
int g_pass = 0, g_fail = 0;

// The environment's logger: errors to stderr (as CreateEnv at ERROR level did), and the kernels'
// "(CUDA): prefill_wgmma=" INFO lines kept for --wgmma-switch.
std::mutex g_log_mu;
std::vector<std::string> g_kernel_log;
void ORT_API_CALL log_sink(void*, OrtLoggingLevel severity, const char* category, const char*, const char*,
                           const char* message) {
  const std::string m = message ? message : "";
  std::lock_guard<std::mutex> lk(g_log_mu);
  if (m.find("(CUDA): prefill_wgmma=") != std::string::npos) g_kernel_log.push_back(m);
  if (severity >= ORT_LOGGING_LEVEL_ERROR) std::fprintf(stderr, "[onnxruntime %s] %s\n", category, m.c_str());
}

std::string take(OrtStatus* st) {
  if (!st) return {};
  std::string m = g_api->GetErrorMessage(st);
  g_api->ReleaseStatus(st);
  return m.empty() ? "error" : m;
}
#define TRY(x)                          \
  do {                                  \
    std::string e_ = take(x);           \
    if (!e_.empty()) return e_;         \
  } while (0)

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  int32_t e = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t m = x & 0x7fffffu;
  if (e <= 0) return static_cast<uint16_t>(sign);  // inputs here are never that small except 0
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  uint32_t h = sign | (static_cast<uint32_t>(e) << 10) | (m >> 13);
  const uint32_t rest = m & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(h);
}
float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu;
  float f;
  if (e == 0) {
    f = std::ldexp(static_cast<float>(m), -24);
    if (sign) f = -f;
    return f;
  }
  uint32_t x = e == 31 ? (sign | 0x7f800000u | (m << 13)) : (sign | ((e + 112) << 23) | (m << 13));
  std::memcpy(&f, &x, 4);
  return f;
}
uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}
float bf16_to_f32(uint16_t h) {
  uint32_t x = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

size_t elem_size(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return 4;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return 2;
    default: return 0;
  }
}
double get(ONNXTensorElementDataType t, const void* p, size_t i) {
  if (t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) return static_cast<const float*>(p)[i];
  if (t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

struct Tensor {
  std::string name;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;
  std::vector<unsigned char> data;
  size_t count() const {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  }
};

enum class Kind { kCuda, kCpuKernel, kFallback };

// prefill_wgmma: the value of the session config entry vnmc.prefill_wgmma (null: no entry); the session
// then logs at INFO severity, so that each kernel's line reaches log_sink.
std::string make_session(const std::string& model, const std::string& lib, Kind kind, OrtSession** out,
                         const char* prefill_wgmma = nullptr, bool info_log = false) {
  OrtSessionOptions* so = nullptr;
  TRY(g_api->CreateSessionOptions(&so));
  std::string err;
  if (prefill_wgmma) err = take(g_api->AddSessionConfigEntry(so, "vnmc.prefill_wgmma", prefill_wgmma));
  if (err.empty() && info_log) err = take(g_api->SetSessionLogSeverityLevel(so, ORT_LOGGING_LEVEL_INFO));
  if (err.empty() && kind != Kind::kFallback) err = take(g_api->RegisterCustomOpsLibrary_V2(so, lib.c_str()));
  if (err.empty() && kind == Kind::kCuda) {
    // The V1 options struct: the bundle's onnxruntime 1.29 answers the V2 entry point with "CUDA
    // execution provider is not enabled in this build" (its core is the CPU package's).
    OrtCUDAProviderOptions co;
    co.device_id = 0;
    err = take(g_api->SessionOptionsAppendExecutionProvider_CUDA(so, &co));
    // Every node must get a CUDA kernel: proves VNMSparseGemm runs on the GPU, not on the CPU kernel.
    if (err.empty()) err = take(g_api->AddSessionConfigEntry(so, "session.disable_cpu_ep_fallback", "1"));
  }
  if (err.empty()) err = take(g_api->CreateSession(g_env, model.c_str(), so, out));
  g_api->ReleaseSessionOptions(so);
  return err;
}

std::string inputs_for(OrtSession* s, int64_t tokens, std::mt19937_64& rng, std::vector<Tensor>* ins,
                       std::vector<std::string>* out_names) {
  OrtAllocator* alloc = nullptr;
  TRY(g_api->GetAllocatorWithDefaultOptions(&alloc));
  size_t n = 0;
  TRY(g_api->SessionGetInputCount(s, &n));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (size_t i = 0; i < n; ++i) {
    Tensor t;
    char* name = nullptr;
    TRY(g_api->SessionGetInputName(s, i, alloc, &name));
    t.name = name;
    alloc->Free(alloc, name);
    OrtTypeInfo* ti = nullptr;
    TRY(g_api->SessionGetInputTypeInfo(s, i, &ti));
    const OrtTensorTypeAndShapeInfo* tsi = nullptr;
    size_t rank = 0;
    std::string e = take(g_api->CastTypeInfoToTensorInfo(ti, &tsi));
    if (e.empty()) e = take(g_api->GetTensorElementType(tsi, &t.type));
    if (e.empty()) e = take(g_api->GetDimensionsCount(tsi, &rank));
    t.shape.resize(rank);
    if (e.empty()) e = take(g_api->GetDimensions(tsi, t.shape.data(), rank));
    g_api->ReleaseTypeInfo(ti);
    if (!e.empty()) return e;
    if (elem_size(t.type) == 0) return "input '" + t.name + "' is not float/float16/bfloat16";
    for (int64_t& d : t.shape)
      if (d < 0) d = tokens;
    const size_t cnt = t.count(), es = elem_size(t.type);
    t.data.resize(cnt * es);
    for (size_t k = 0; k < cnt; ++k) {
      const float v = u(rng);
      if (es == 4) {
        std::memcpy(&t.data[k * 4], &v, 4);
      } else {
        const uint16_t h = t.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? f32_to_f16(v) : f32_to_bf16(v);
        std::memcpy(&t.data[k * 2], &h, 2);
      }
    }
    ins->push_back(std::move(t));
  }
  TRY(g_api->SessionGetOutputCount(s, &n));
  for (size_t i = 0; i < n; ++i) {
    char* name = nullptr;
    TRY(g_api->SessionGetOutputName(s, i, alloc, &name));
    out_names->push_back(name);
    alloc->Free(alloc, name);
  }
  return {};
}

std::string run(OrtSession* s, std::vector<Tensor>& ins, const std::vector<std::string>& out_names,
                std::vector<Tensor>* outs) {
  OrtMemoryInfo* mi = nullptr;
  TRY(g_api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mi));
  std::vector<OrtValue*> iv;
  std::vector<const char*> in_names, on;
  std::string err;
  for (Tensor& t : ins) {
    OrtValue* v = nullptr;
    err = take(g_api->CreateTensorWithDataAsOrtValue(mi, t.data.data(), t.data.size(), t.shape.data(), t.shape.size(),
                                                     t.type, &v));
    if (!err.empty()) break;
    iv.push_back(v);
    in_names.push_back(t.name.c_str());
  }
  for (const std::string& n : out_names) on.push_back(n.c_str());
  std::vector<OrtValue*> ov(on.size(), nullptr);
  if (err.empty())
    err = take(g_api->Run(s, nullptr, in_names.data(), iv.data(), iv.size(), on.data(), on.size(), ov.data()));
  for (size_t i = 0; err.empty() && i < ov.size(); ++i) {
    Tensor t;
    t.name = out_names[i];
    OrtTensorTypeAndShapeInfo* tsi = nullptr;
    err = take(g_api->GetTensorTypeAndShape(ov[i], &tsi));
    size_t rank = 0;
    if (err.empty()) err = take(g_api->GetTensorElementType(tsi, &t.type));
    if (err.empty()) err = take(g_api->GetDimensionsCount(tsi, &rank));
    t.shape.resize(rank);
    if (err.empty()) err = take(g_api->GetDimensions(tsi, t.shape.data(), rank));
    if (tsi) g_api->ReleaseTensorTypeAndShapeInfo(tsi);
    void* p = nullptr;
    if (err.empty()) err = take(g_api->GetTensorMutableData(ov[i], &p));
    if (err.empty()) {
      const size_t bytes = t.count() * elem_size(t.type);
      t.data.assign(static_cast<unsigned char*>(p), static_cast<unsigned char*>(p) + bytes);
      outs->push_back(std::move(t));
    }
  }
  for (OrtValue* v : iv) g_api->ReleaseValue(v);
  for (OrtValue* v : ov)
    if (v) g_api->ReleaseValue(v);
  g_api->ReleaseMemoryInfo(mi);
  return err;
}

// rel = ||got - ref|| / ||ref||; maxrel = max|got - ref| / max|ref|. NaN/Inf in got fail.
bool compare(const Tensor& got, const Tensor& ref, double tol, double* rel, double* maxrel, std::string* why) {
  if (got.shape != ref.shape || got.type != ref.type) {
    *why = "shape or type differs";
    return false;
  }
  double num = 0, den = 0, md = 0, mr = 0;
  for (size_t i = 0; i < got.count(); ++i) {
    const double g = get(got.type, got.data.data(), i), r = get(ref.type, ref.data.data(), i);
    if (!std::isfinite(g)) {
      *why = "non-finite output at " + std::to_string(i);
      return false;
    }
    num += (g - r) * (g - r);
    den += r * r;
    md = std::max(md, std::fabs(g - r));
    mr = std::max(mr, std::fabs(r));
  }
  *rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  *maxrel = mr > 0 ? md / mr : md;
  return *rel <= tol && *maxrel <= 4 * tol;
}

void check(bool ok, const std::string& what) {
  (ok ? g_pass : g_fail)++;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

std::string base(const std::string& p) {
  const size_t s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

void test_model(const std::string& model, const std::string& lib, const std::vector<int64_t>& tokens) {
  OrtSession* sc = nullptr;
  OrtSession* sk = nullptr;
  OrtSession* sf = nullptr;
  std::string e = make_session(model, lib, Kind::kCuda, &sc);
  if (!e.empty()) {
    check(false, base(model) + ": CUDA session: " + e);
    return;
  }
  e = make_session(model, lib, Kind::kCpuKernel, &sk);
  if (e.empty()) e = make_session(model, lib, Kind::kFallback, &sf);
  if (!e.empty()) check(false, base(model) + ": CPU session: " + e);
  std::mt19937_64 rng(std::hash<std::string>()(model));
  for (int64_t T : tokens) {
    if (!e.empty()) break;
    std::vector<Tensor> ins, oc, ok, of;
    std::vector<std::string> names;
    std::string r = inputs_for(sc, T, rng, &ins, &names);
    if (r.empty()) r = run(sc, ins, names, &oc);
    if (r.empty()) r = run(sk, ins, names, &ok);
    if (r.empty()) r = run(sf, ins, names, &of);
    if (!r.empty()) {
      check(false, base(model) + " T=" + std::to_string(T) + ": " + r);
      continue;
    }
    for (size_t i = 0; i < oc.size(); ++i) {
      // Half outputs after several half layers: both sides round differently at every layer.
      const double tol = oc[i].type == ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16 ? 3e-2 : 1e-2;
      double r1 = 0, m1 = 0, r2 = 0, m2 = 0;
      std::string w1, w2;
      const bool a = compare(oc[i], ok[i], tol, &r1, &m1, &w1);
      const bool b = compare(oc[i], of[i], tol, &r2, &m2, &w2);
      char buf[400];
      std::snprintf(buf, sizeof buf,
                    "%s T=%lld out '%s' %s: CUDA vs CPU kernel rel %.2e max %.2e%s%s | vs fallback rel %.2e max %.2e%s%s",
                    base(model).c_str(), static_cast<long long>(T), oc[i].name.c_str(),
                    oc[i].type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? "fp32" : "half", r1, m1,
                    w1.empty() ? "" : " ", w1.c_str(), r2, m2, w2.empty() ? "" : " ", w2.c_str());
      check(a && b, buf);
    }
  }
  if (sc) g_api->ReleaseSession(sc);
  if (sk) g_api->ReleaseSession(sk);
  if (sf) g_api->ReleaseSession(sf);
}

void expect_fail(const std::string& model, const std::string& lib) {
  OrtSession* s = nullptr;
  const std::string e = make_session(model, lib, Kind::kCuda, &s);
  if (s) g_api->ReleaseSession(s);
  const bool ok = !e.empty() && e.find("VNMSparseGemm") != std::string::npos;
  check(ok, base(model) + ": malformed model rejected at load: " + (e.empty() ? "(loaded!)" : e));
}

// What the kernels of one session logged (cuda_kernel.cc, CudaGemmKernel::log_choice).
struct KernelLines {
  int nodes = 0, on = 0, wgmma = 0;  // lines, with prefill_wgmma=1, with a wgmma.sp prefill
  long long bytes = 0;               // device weight bytes, all nodes
  std::vector<std::string> from;     // where each node's setting came from
};
KernelLines kernel_lines() {
  KernelLines k;
  std::lock_guard<std::mutex> lk(g_log_mu);
  for (const std::string& m : g_kernel_log) {
    ++k.nodes;
    const size_t p = m.find("prefill_wgmma=");
    if (m.compare(p + 14, 1, "1") == 0) ++k.on;
    const size_t f = m.find(" (", p), fe = m.find("), device weights ", p);
    if (f != std::string::npos && fe != std::string::npos) k.from.push_back(m.substr(f + 2, fe - f - 2));
    if (fe != std::string::npos) k.bytes += std::atoll(m.c_str() + fe + 18);
    if (m.find("wgmma.sp", p) != std::string::npos) ++k.wgmma;
  }
  g_kernel_log.clear();
  return k;
}
bool all_from(const KernelLines& k, const std::string& what) {
  if (k.from.size() != static_cast<size_t>(k.nodes)) return false;
  for (const std::string& f : k.from)
    if (f.find(what) == std::string::npos) return false;
  return true;
}
std::string describe(const KernelLines& k) {
  return std::to_string(k.nodes) + " nodes, " + std::to_string(k.on) + " with prefill_wgmma=1, " +
         std::to_string(k.wgmma) + " on wgmma.sp, " + std::to_string(k.bytes) + " device weight bytes" +
         (k.from.empty() ? "" : ", from " + k.from[0]);
}

void test_wgmma_switch(const std::string& model, const std::string& lib, const std::vector<int64_t>& tokens) {
  const std::string b = base(model) + " prefill_wgmma: ";
  { std::lock_guard<std::mutex> lk(g_log_mu); g_kernel_log.clear(); }
  OrtSession* s1 = nullptr;
  OrtSession* s0 = nullptr;
  std::string e = make_session(model, lib, Kind::kCuda, &s1, "1", true);
  const KernelLines k1 = kernel_lines();
  if (e.empty()) e = make_session(model, lib, Kind::kCuda, &s0, "0", true);
  const KernelLines k0 = kernel_lines();
  if (!e.empty()) {
    check(false, b + "CUDA session: " + e);
  } else {
    check(k1.nodes > 0 && k1.on == k1.nodes && k1.wgmma > 0 && all_from(k1, "session config entry"),
          b + "\"1\": " + describe(k1) + " (needs wgmma.sp nodes: sm_90 and a 2:4 weight)");
    check(k0.nodes == k1.nodes && k0.on == 0 && k0.wgmma == 0 && k0.bytes < k1.bytes &&
              all_from(k0, "session config entry"),
          b + "\"0\": " + describe(k0) + "; saves " + std::to_string(k1.bytes - k0.bytes) + " bytes");
    std::mt19937_64 rng(std::hash<std::string>()(model) + 1);
    for (int64_t T : tokens) {
      std::vector<Tensor> ins, o1, o0;
      std::vector<std::string> names;
      std::string r = inputs_for(s1, T, rng, &ins, &names);
      if (r.empty()) r = run(s1, ins, names, &o1);
      if (r.empty()) r = run(s0, ins, names, &o0);
      if (!r.empty()) {
        check(false, b + "T=" + std::to_string(T) + ": " + r);
        continue;
      }
      for (size_t i = 0; i < o0.size() && i < o1.size(); ++i) {
        // Different prefill kernels (accumulation order, rounding of partial sums), same weights.
        const double tol = o0[i].type == ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16 ? 3e-2 : 1e-2;
        double rel = 0, mx = 0;
        std::string why;
        const bool ok = compare(o0[i], o1[i], tol, &rel, &mx, &why);
        char buf[300];
        std::snprintf(buf, sizeof buf, "T=%lld out '%s': \"0\" vs \"1\" rel %.2e max %.2e%s%s",
                      static_cast<long long>(T), o0[i].name.c_str(), rel, mx, why.empty() ? "" : " ", why.c_str());
        check(ok, b + buf);
      }
    }
  }
  if (s1) g_api->ReleaseSession(s1);
  if (s0) g_api->ReleaseSession(s0);

  // A bad entry fails the load, naming the key; the entry is read before the environment.
  OrtSession* s = nullptr;
  e = make_session(model, lib, Kind::kCuda, &s, "maybe");
  if (s) g_api->ReleaseSession(s);
  check(e.find("vnmc.prefill_wgmma") != std::string::npos && e.find("accepted values") != std::string::npos,
        b + "\"maybe\" rejected at load: " + (e.empty() ? "(loaded!)" : e));

  // No entry: VNMC_PREFILL_WGMMA as this process got it (read once), else the default (on).
  const char* env = std::getenv("VNMC_PREFILL_WGMMA");
  const std::string ev = env ? env : "";
  s = nullptr;
  e = make_session(model, lib, Kind::kCuda, &s, nullptr, true);
  const KernelLines kd = kernel_lines();
  if (s) g_api->ReleaseSession(s);
  if (!ev.empty() && ev != "0" && ev != "1") {
    check(e.find("VNMC_PREFILL_WGMMA") != std::string::npos && e.find("accepted values") != std::string::npos,
          b + "VNMC_PREFILL_WGMMA=" + ev + " rejected at load: " + (e.empty() ? "(loaded!)" : e));
  } else {
    const bool want_on = ev != "0";
    check(e.empty() && kd.nodes > 0 && kd.on == (want_on ? kd.nodes : 0) && (want_on || kd.wgmma == 0) &&
              all_from(kd, ev.empty() ? "default" : "environment variable VNMC_PREFILL_WGMMA"),
          b + "no entry, VNMC_PREFILL_WGMMA=" + (ev.empty() ? "(unset)" : ev) + ": " +
              (e.empty() ? describe(kd) : e));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <libonnxruntime.so> <libvnmc_ort.so> [--tokens a,b] MODEL... [--expect-fail MODEL]...\n",
                 argv[0]);
    return 2;
  }
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    std::printf("SKIP: cannot load %s: %s\n", argv[1], dlerror());
    return 77;
  }
  using GetApiBase = const OrtApiBase* (*)();
  auto gab = reinterpret_cast<GetApiBase>(dlsym(h, "OrtGetApiBase"));
  if (!gab) return 2;
  g_api = gab()->GetApi(ORT_API_VERSION);
  if (!g_api) {
    std::printf("FAIL: onnxruntime too old for API %d\n", ORT_API_VERSION);
    return 1;
  }
  std::printf("onnxruntime %s\n", gab()->GetVersionString());
  // Sessions log at ERROR unless make_session asks for INFO (SetSessionLogSeverityLevel).
  if (!take(g_api->CreateEnvWithCustomLogger(log_sink, nullptr, ORT_LOGGING_LEVEL_ERROR, "vnmc_cuda_host", &g_env))
           .empty())
    return 1;
  const std::string lib = argv[2];
  std::vector<int64_t> tokens = {1, 7, 16, 300};
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tokens" && i + 1 < argc) {
      tokens.clear();
      std::string s = argv[++i];
      for (size_t p = 0; p < s.size();) {
        const size_t q = s.find(',', p);
        tokens.push_back(std::stoll(s.substr(p, q - p)));
        p = q == std::string::npos ? s.size() : q + 1;
      }
    } else if (a == "--expect-fail" && i + 1 < argc) {
      expect_fail(argv[++i], lib);
    } else if (a == "--wgmma-switch" && i + 1 < argc) {
      test_wgmma_switch(argv[++i], lib, tokens);
    } else {
      test_model(a, lib, tokens);
    }
  }
  g_api->ReleaseEnv(g_env);
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
