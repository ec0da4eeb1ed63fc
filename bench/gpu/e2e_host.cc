// End-to-end timing host for issue 5 item 6: models in onnxruntime's CUDA provider (onnxruntime 1.29
// from shared/tools/ort-cuda-bundle.sh), the compiled ones with libvnmc_ort.so's CUDA kernel (custom-op
// library, path (a)), inputs and outputs bound on the GPU with IOBinding.
//
//   e2e_host <libonnxruntime.so> <libvnmc_ort.so> --dims batch=1,seq=1,past=511 [--warmup 10] [--iters 100]
//            [--compare] [--label L] MODEL.onnx...
//
// Every input gets fresh random values in [-1, 1] (fp16), one set shared by all models of the call,
// copied to the GPU once; every symbolic dim takes its value from --dims. Outputs are bound to the CUDA
// device (onnxruntime allocates them). Each model: warm-up runs, then --iters timed RunWithBinding calls
// (host clock around the call + cudaDeviceSynchronize: the latency a user sees), median / p10 / p90.
// Models whose file name contains ".vnm" or "_64-2-" (compiled) get the custom-op library registered.
// --compare: outputs of model 2i+1 are compared with model 2i (rel. Frobenius error, max error over max
// |ref|), e.g. compiled vs pruned dense.
// One JSON line per model on stdout (prefix "RESULT ").
#include <cuda_fp16.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <onnxruntime_c_api.h>

namespace {
const OrtApi* g = nullptr;
OrtEnv* env = nullptr;

void chk(OrtStatus* st, const char* what) {
  if (!st) return;
  std::fprintf(stderr, "FAIL %s: %s\n", what, g->GetErrorMessage(st));
  std::exit(1);
}
void cchk(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "FAIL %s: %s\n", what, cudaGetErrorString(e));
  std::exit(1);
}
uint16_t f2h(float f) {
  __half h = __float2half(f);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}
float h2f(uint16_t u) {
  __half h;
  std::memcpy(&h, &u, 2);
  return __half2float(h);
}

struct In {
  std::string name;
  ONNXTensorElementDataType type;
  std::vector<int64_t> shape;
  void* dev = nullptr;
  size_t bytes = 0;
};
std::map<std::string, In> g_inputs;  // by name+shape, shared across models of one call
std::mt19937_64 rng(12345);
bool g_cpu = false;
bool g_profile = false;  // --profile-run: one more run between cudaProfilerStart/Stop (ncu --profile-from-start off)  // --cpu: CPU provider, host buffers (checks the host and the models without a GPU)
int g_opt = 99;      // --opt N: graph optimization level (0, 1, 2, 99)

std::string base(const std::string& p) {
  const size_t s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

OrtSession* make_session(const std::string& model, const std::string& lib, bool custom, std::string* note) {
  for (int strict = 1; strict >= 0; --strict) {
    OrtSessionOptions* so = nullptr;
    chk(g->CreateSessionOptions(&so), "options");
    if (custom) chk(g->RegisterCustomOpsLibrary_V2(so, lib.c_str()), "custom op library");
    chk(g->SetSessionGraphOptimizationLevel(so, static_cast<GraphOptimizationLevel>(g_opt)), "opt level");
    if (!g_cpu) {
      OrtCUDAProviderOptions co;
      co.device_id = 0;
      chk(g->SessionOptionsAppendExecutionProvider_CUDA(so, &co), "CUDA provider");
    }
    if (strict && !g_cpu) chk(g->AddSessionConfigEntry(so, "session.disable_cpu_ep_fallback", "1"), "config");
    OrtSession* s = nullptr;
    OrtStatus* st = g->CreateSession(env, model.c_str(), so, &s);
    g->ReleaseSessionOptions(so);
    if (!st) {
      *note = g_cpu ? "CPU provider" : strict ? "all nodes on CUDA" : "cpu fallback allowed";
      return s;
    }
    std::fprintf(stderr, "note: %s with disable_cpu_ep_fallback=%d: %s\n", base(model).c_str(), strict,
                 g->GetErrorMessage(st));
    g->ReleaseStatus(st);
  }
  std::fprintf(stderr, "FAIL session %s\n", model.c_str());
  std::exit(1);
}

struct Out {
  std::string name;
  std::vector<float> host;
};

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: e2e_host ORT_LIB VNMC_LIB --dims a=1,b=2 [--warmup N] [--iters N] [--compare] MODEL...\n");
    return 2;
  }
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    std::printf("SKIP: %s\n", dlerror());
    return 77;
  }
  auto gab = reinterpret_cast<const OrtApiBase* (*)()>(dlsym(h, "OrtGetApiBase"));
  g = gab()->GetApi(ORT_API_VERSION);
  chk(g->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "e2e", &env), "env");
  const std::string lib = argv[2];
  std::map<std::string, int64_t> dims;
  int warmup = 10, iters = 100;
  bool compare = false;
  std::string label;
  std::vector<std::string> models;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dims") {
      std::string s = argv[++i];
      for (size_t p = 0; p < s.size();) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        const std::string kv = s.substr(p, q - p);
        const size_t e = kv.find('=');
        dims[kv.substr(0, e)] = std::stoll(kv.substr(e + 1));
        p = q + 1;
      }
    } else if (a == "--warmup") {
      warmup = std::atoi(argv[++i]);
    } else if (a == "--iters") {
      iters = std::atoi(argv[++i]);
    } else if (a == "--profile-run") {
      g_profile = true;
    } else if (a == "--cpu") {
      g_cpu = true;
    } else if (a == "--opt") {
      g_opt = std::atoi(argv[++i]);
    } else if (a == "--compare") {
      compare = true;
    } else if (a == "--label") {
      label = argv[++i];
    } else {
      models.push_back(a);
    }
  }
  std::string dimstr;
  for (auto& [k, v] : dims) dimstr += (dimstr.empty() ? "" : ",") + k + "=" + std::to_string(v);
  OrtMemoryInfo* cuda_mi = nullptr;
  if (g_cpu)
    chk(g->CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &cuda_mi), "mem info");
  else
    chk(g->CreateMemoryInfo("Cuda", OrtDeviceAllocator, 0, OrtMemTypeDefault, &cuda_mi), "mem info");
  OrtAllocator* alloc = nullptr;
  chk(g->GetAllocatorWithDefaultOptions(&alloc), "allocator");
  std::vector<std::vector<Out>> all_outs;
  struct Sess {
    std::string b, note;
    OrtSession* s;
    OrtIoBinding* io;
    std::vector<OrtValue*> vals;
    std::vector<std::string> onames;
    double load_ms;
    std::vector<double> t;
  };
  std::vector<Sess> ss;
  for (const std::string& model : models) {
    const std::string b = base(model);
    const bool custom = b.find(".vnm") != std::string::npos || b.find("-2-") != std::string::npos;
    const bool pruned = b.find("pruned") != std::string::npos;
    std::string note;
    std::fprintf(stderr, "[%s] session\n", b.c_str());
    const double t_load = now_ms();
    OrtSession* s = make_session(model, lib, custom && !pruned, &note);
    const double load_ms = now_ms() - t_load;
    OrtIoBinding* io = nullptr;
    chk(g->CreateIoBinding(s, &io), "binding");
    size_t n = 0;
    chk(g->SessionGetInputCount(s, &n), "inputs");
    std::vector<OrtValue*> vals;
    for (size_t i = 0; i < n; ++i) {
      char* nm = nullptr;
      chk(g->SessionGetInputName(s, i, alloc, &nm), "name");
      In in;
      in.name = nm;
      alloc->Free(alloc, nm);
      OrtTypeInfo* ti = nullptr;
      chk(g->SessionGetInputTypeInfo(s, i, &ti), "type");
      const OrtTensorTypeAndShapeInfo* tsi = nullptr;
      chk(g->CastTypeInfoToTensorInfo(ti, &tsi), "cast");
      size_t rank = 0;
      chk(g->GetTensorElementType(tsi, &in.type), "elem");
      chk(g->GetDimensionsCount(tsi, &rank), "rank");
      in.shape.resize(rank);
      chk(g->GetDimensions(tsi, in.shape.data(), rank), "dims");
      std::vector<const char*> sym(rank);
      chk(g->GetSymbolicDimensions(tsi, sym.data(), rank), "sym");
      for (size_t d = 0; d < rank; ++d)
        if (in.shape[d] < 0) {
          auto it = dims.find(sym[d] ? sym[d] : "");
          if (it == dims.end()) {
            std::fprintf(stderr, "FAIL %s: no --dims value for '%s'\n", b.c_str(), sym[d]);
            return 1;
          }
          in.shape[d] = it->second;
        }
      g->ReleaseTypeInfo(ti);
      const bool i64 = in.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
      if (in.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 && !i64) {
        std::fprintf(stderr, "FAIL %s: input %s is neither fp16 nor int64\n", b.c_str(), in.name.c_str());
        return 1;
      }
      std::string key = in.name;
      for (int64_t d : in.shape) key += "x" + std::to_string(d);
      auto it = g_inputs.find(key);
      if (it == g_inputs.end()) {
        size_t cnt = 1;
        for (int64_t d : in.shape) cnt *= static_cast<size_t>(d);
        in.bytes = cnt * (i64 ? 8 : 2);
        std::vector<unsigned char> host(in.bytes);
        if (i64) {
          // positions: past + index along the last dim (position_ids)
          const int64_t past = dims.count("past") ? dims["past"] : 0, last = in.shape.empty() ? 1 : in.shape.back();
          for (size_t k = 0; k < cnt; ++k) {
            const int64_t v = past + static_cast<int64_t>(k) % last;
            std::memcpy(&host[k * 8], &v, 8);
          }
        } else {
          std::uniform_real_distribution<float> u(-1.f, 1.f);
          for (size_t k = 0; k < cnt; ++k) {
            const uint16_t h = f2h(u(rng));
            std::memcpy(&host[k * 2], &h, 2);
          }
        }
        if (g_cpu) {
          in.dev = std::malloc(std::max<size_t>(in.bytes, 256));
          std::memcpy(in.dev, host.data(), in.bytes);
        } else {
          cchk(cudaMalloc(&in.dev, std::max<size_t>(in.bytes, 256)), "cudaMalloc");
          cchk(cudaMemcpy(in.dev, host.data(), in.bytes, cudaMemcpyHostToDevice), "copy in");
        }
        it = g_inputs.emplace(key, in).first;
      }
      OrtValue* v = nullptr;
      chk(g->CreateTensorWithDataAsOrtValue(cuda_mi, it->second.dev, it->second.bytes, it->second.shape.data(),
                                            it->second.shape.size(), in.type, &v),
          "input value");
      vals.push_back(v);
      chk(g->BindInput(io, it->second.name.c_str(), v), "bind input");
    }
    chk(g->SessionGetOutputCount(s, &n), "outputs");
    std::vector<std::string> onames;
    for (size_t i = 0; i < n; ++i) {
      char* nm = nullptr;
      chk(g->SessionGetOutputName(s, i, alloc, &nm), "out name");
      onames.push_back(nm);
      alloc->Free(alloc, nm);
      chk(g->BindOutputToDevice(io, onames.back().c_str(), cuda_mi), "bind output");
    }
    std::fprintf(stderr, "[%s] warm-up\n", b.c_str());
    for (int it = 0; it < warmup; ++it) {
      chk(g->RunWithBinding(s, nullptr, io), "run");
      if (!g_cpu) cchk(cudaDeviceSynchronize(), "sync");
    }
    if (g_profile) {
      cchk(cudaDeviceSynchronize(), "sync");
      cchk(cudaProfilerStart(), "profiler start");
      chk(g->RunWithBinding(s, nullptr, io), "run");
      cchk(cudaDeviceSynchronize(), "sync");
      cchk(cudaProfilerStop(), "profiler stop");
    }
    ss.push_back(Sess{b, note, s, io, vals, onames, load_ms, {}});
  }
  // Timed runs interleaved: rounds of iters/10 runs of each model in turn, so that drift of the card or
  // the host (clocks, other load) spreads over all models alike.
  const int rounds = std::min(10, iters);
  for (int r = 0; r < rounds; ++r)
    for (Sess& x : ss)
      for (int it = 0; it < iters / rounds; ++it) {
        const double t0 = now_ms();
        chk(g->RunWithBinding(x.s, nullptr, x.io), "run");
        if (!g_cpu) cchk(cudaDeviceSynchronize(), "sync");
        x.t.push_back(now_ms() - t0);
      }
  for (Sess& x : ss) {
    const std::string& b = x.b;
    OrtSession* s = x.s;
    OrtIoBinding* io = x.io;
    const std::vector<std::string>& onames = x.onames;
    const double load_ms = x.load_ms;
    const std::string& note = x.note;
    std::vector<double>& t = x.t;
    std::sort(t.begin(), t.end());
    const double med = t[t.size() / 2], p10 = t[t.size() / 10], p90 = t[(t.size() * 9) / 10];
    std::fprintf(stderr, "[%s] outputs\n", b.c_str());
    // Outputs to the host.
    OrtValue** ov = nullptr;
    size_t oc = 0;
    chk(g->GetBoundOutputValues(io, alloc, &ov, &oc), "bound outputs");
    std::vector<Out> outs;
    for (size_t i = 0; i < oc; ++i) {
      OrtTensorTypeAndShapeInfo* tsi = nullptr;
      chk(g->GetTensorTypeAndShape(ov[i], &tsi), "out shape");
      size_t cnt = 0;
      chk(g->GetTensorShapeElementCount(tsi, &cnt), "count");
      g->ReleaseTensorTypeAndShapeInfo(tsi);
      void* p = nullptr;
      chk(g->GetTensorMutableData(ov[i], &p), "out data");
      std::vector<uint16_t> hb(cnt);
      if (g_cpu)
        std::memcpy(hb.data(), p, cnt * 2);
      else
        cchk(cudaMemcpy(hb.data(), p, cnt * 2, cudaMemcpyDeviceToHost), "copy out");
      Out o;
      o.name = onames[i];
      o.host.resize(cnt);
      bool finite = true;
      for (size_t k = 0; k < cnt; ++k) {
        o.host[k] = h2f(hb[k]);
        finite = finite && std::isfinite(o.host[k]);
      }
      if (!finite) std::fprintf(stderr, "WARN %s: non-finite output\n", b.c_str());
      outs.push_back(std::move(o));
      g->ReleaseValue(ov[i]);
    }
    alloc->Free(alloc, ov);
    std::printf("RESULT {\"label\":\"%s\",\"model\":\"%s\",\"dims\":\"%s\",\"median_ms\":%.4f,\"p10_ms\":%.4f,"
                "\"p90_ms\":%.4f,\"iters\":%d,\"warmup\":%d,\"load_ms\":%.0f,\"placement\":\"%s\"}\n",
                label.c_str(), b.c_str(), dimstr.c_str(), med, p10, p90, static_cast<int>(t.size()), warmup, load_ms, note.c_str());
    std::fflush(stdout);
    all_outs.push_back(std::move(outs));
    for (OrtValue* v : x.vals) g->ReleaseValue(v);
    g->ReleaseIoBinding(io);
    g->ReleaseSession(s);
  }
  int rc = 0;
  if (compare) {
    for (size_t i = 0; i + 1 < all_outs.size(); i += 2) {
      const auto& ref = all_outs[i];
      const auto& got = all_outs[i + 1];
      for (size_t o = 0; o < ref.size() && o < got.size(); ++o) {
        double num = 0, den = 0, md = 0, mr = 0;
        bool fin = ref[o].host.size() == got[o].host.size();
        for (size_t k = 0; fin && k < ref[o].host.size(); ++k) {
          const double r = ref[o].host[k], x = got[o].host[k];
          fin = std::isfinite(x) && std::isfinite(r);
          num += (x - r) * (x - r);
          den += r * r;
          md = std::max(md, std::fabs(x - r));
          mr = std::max(mr, std::fabs(r));
        }
        const double rel = std::sqrt(num / std::max(den, 1e-30)), mx = md / std::max(mr, 1e-30);
        const bool ok = fin && rel < 2e-2 && mx < 8e-2;
        if (!ok) rc = 1;
        std::printf("CHECK %s %s vs %s [%s] out '%s': rel %.2e max %.2e\n", ok ? "ok  " : "FAIL",
                    base(models[i + 1]).c_str(), base(models[i]).c_str(), dimstr.c_str(), ref[o].name.c_str(), rel,
                    mx);
      }
    }
  }
  for (auto& [k, in] : g_inputs) g_cpu ? std::free(in.dev) : (void)cudaFree(in.dev);
  g->ReleaseMemoryInfo(cuda_mi);
  g->ReleaseEnv(env);
  return rc;
}
