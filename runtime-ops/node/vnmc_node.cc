// vnmc_node.node: a small N-API addon that runs ONNX models in onnxruntime with libvnmc_ort.so
// registered. onnxruntime-node cannot load custom-op libraries, so this addon creates its own
// sessions, in the same process and on the same libonnxruntime.so.1 that onnxruntime-node ships:
// nothing links libonnxruntime; `loadRuntime(path)` dlopen()s the file onnxruntime-node loads (the
// dynamic loader then keeps one copy: it matches the file and the soname), and `loadCustomOps(path)`
// dlopen()s libvnmc_ort.so once and keeps it loaded; each session that asks for the custom ops gets
// `RegisterCustomOps(options, OrtGetApiBase())` called on its options.
//
// Plain node_api.h (N-API 8), no node-addon-api. Every onnxruntime call that can fail is wrapped:
// failures become rejected promises / thrown JS errors, never aborts. Session creation and Run are
// async (libuv worker threads); the JS wrapper is compiler/runtime/native-session.ts.
//
// JS surface (internal; the TypeScript wrapper is the public API):
//   loadRuntime(libonnxruntimePath) -> { version }            idempotent for the same path
//   loadCustomOps(libvnmcOrtPath) -> undefined                idempotent for the same path
//   createSession(pathOrUint8Array, options) -> Promise<{ handle, inputNames, outputNames,
//                                                        inputTypes, outputTypes }>
//   run(handle, names[], elemTypes[], dims[][], data[TypedArray], outputNames[], sync?)
//       -> Promise<[{ type, dims, data: ArrayBuffer }]>
//   release(handle) -> undefined
//   readBandwidth(mebibytes, threads, reps) -> GB/s   (benchmarks only: best streaming-read rate)
#define NAPI_VERSION 8
#include <node_api.h>

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

// ---- process-wide state ------------------------------------------------------------------------
struct Runtime {
  std::mutex mu;
  std::string ort_path;
  void* ort_handle = nullptr;
  const OrtApiBase* api_base = nullptr;
  std::unique_ptr<Ort::Env> env;
  std::string ops_path;
  void* ops_handle = nullptr;
  using RegisterFn = OrtStatus* (*)(OrtSessionOptions*, const OrtApiBase*);
  RegisterFn register_ops = nullptr;
};
Runtime& rt() {
  static Runtime* r = new Runtime();  // never destroyed: sessions may outlive static destruction
  return *r;
}

// ---- N-API helpers ---------------------------------------------------------------------------------
struct JsError {
  std::string msg;
};

#define NAPI_OK(env, call)                                                  \
  do {                                                                      \
    if ((call) != napi_ok) throw JsError{std::string("N-API call failed: ") + #call}; \
  } while (0)

void throw_js(napi_env env, const std::string& msg) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, "VNMC_NATIVE", msg.c_str());
}

napi_value make_error(napi_env env, const std::string& msg) {
  napi_value m, code, err;
  napi_create_string_utf8(env, msg.c_str(), msg.size(), &m);
  napi_create_string_utf8(env, "VNMC_NATIVE", NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, m, &err);
  return err;
}

std::string get_string(napi_env env, napi_value v, const char* what) {
  napi_valuetype t;
  NAPI_OK(env, napi_typeof(env, v, &t));
  if (t != napi_string) throw JsError{std::string(what) + " must be a string"};
  size_t len = 0;
  NAPI_OK(env, napi_get_value_string_utf8(env, v, nullptr, 0, &len));
  std::string s(len, '\0');
  NAPI_OK(env, napi_get_value_string_utf8(env, v, &s[0], len + 1, &len));
  return s;
}

napi_value str(napi_env env, const std::string& s) {
  napi_value v;
  NAPI_OK(env, napi_create_string_utf8(env, s.c_str(), s.size(), &v));
  return v;
}

napi_value num(napi_env env, double d) {
  napi_value v;
  NAPI_OK(env, napi_create_double(env, d, &v));
  return v;
}

napi_value string_array(napi_env env, const std::vector<std::string>& xs) {
  napi_value arr;
  NAPI_OK(env, napi_create_array_with_length(env, xs.size(), &arr));
  for (size_t i = 0; i < xs.size(); ++i) NAPI_OK(env, napi_set_element(env, arr, static_cast<uint32_t>(i), str(env, xs[i])));
  return arr;
}

napi_value int_array(napi_env env, const std::vector<int>& xs) {
  napi_value arr;
  NAPI_OK(env, napi_create_array_with_length(env, xs.size(), &arr));
  for (size_t i = 0; i < xs.size(); ++i) NAPI_OK(env, napi_set_element(env, arr, static_cast<uint32_t>(i), num(env, xs[i])));
  return arr;
}

bool get_prop(napi_env env, napi_value obj, const char* key, napi_value* out) {
  bool has = false;
  NAPI_OK(env, napi_has_named_property(env, obj, key, &has));
  if (!has) return false;
  NAPI_OK(env, napi_get_named_property(env, obj, key, out));
  napi_valuetype t;
  NAPI_OK(env, napi_typeof(env, *out, &t));
  return t != napi_undefined && t != napi_null;
}

int64_t get_int(napi_env env, napi_value v, const char* what) {
  napi_valuetype t;
  NAPI_OK(env, napi_typeof(env, v, &t));
  if (t != napi_number) throw JsError{std::string(what) + " must be a number"};
  double d;
  NAPI_OK(env, napi_get_value_double(env, v, &d));
  if (!(d >= -9007199254740991.0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw JsError{std::string(what) + " must be an integer"};
  return static_cast<int64_t>(d);
}

uint32_t array_length(napi_env env, napi_value v, const char* what) {
  bool is = false;
  NAPI_OK(env, napi_is_array(env, v, &is));
  if (!is) throw JsError{std::string(what) + " must be an array"};
  uint32_t n;
  NAPI_OK(env, napi_get_array_length(env, v, &n));
  return n;
}

napi_value element(napi_env env, napi_value arr, uint32_t i) {
  napi_value v;
  NAPI_OK(env, napi_get_element(env, arr, i, &v));
  return v;
}

// ---- element types ---------------------------------------------------------------------------------
size_t elem_size(int t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return 1;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      return 2;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32:
      return 4;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64:
      return 8;
    default:
      return 0;  // unsupported here (string, complex, 4-bit, float8)
  }
}

// ---- sessions --------------------------------------------------------------------------------------
struct SessionState {
  Ort::Session session{nullptr};
  std::vector<std::string> inputs, outputs;
  std::vector<int> input_types, output_types;  // ONNX element type, 0 when not a tensor
};
// The JS handle owns one reference; every run in flight holds another, so release() during a run
// defers destroying the session until the run completes.
struct Handle {
  std::shared_ptr<SessionState> state;
};

void finalize_handle(napi_env, void* data, void*) { delete static_cast<Handle*>(data); }

Handle* get_handle(napi_env env, napi_value v) {
  napi_valuetype t;
  NAPI_OK(env, napi_typeof(env, v, &t));
  if (t != napi_external) throw JsError{"not a session handle"};
  void* p = nullptr;
  NAPI_OK(env, napi_get_value_external(env, v, &p));
  return static_cast<Handle*>(p);
}

int type_of(const Ort::TypeInfo& info) {
  if (info.GetONNXType() != ONNX_TYPE_TENSOR) return 0;
  return static_cast<int>(info.GetTensorTypeAndShapeInfo().GetElementType());
}

// ---- loadRuntime / loadCustomOps -------------------------------------------------------------------
napi_value LoadRuntime(napi_env env, napi_callback_info info) {
  try {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
    if (argc < 1) throw JsError{"loadRuntime(path) needs the path of libonnxruntime"};
    const std::string path = get_string(env, argv[0], "path");
    Runtime& r = rt();
    std::lock_guard<std::mutex> lk(r.mu);
    if (!r.api_base) {
      void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) throw JsError{std::string("cannot load onnxruntime from ") + path + ": " + dlerror()};
      using GetApiBaseFn = const OrtApiBase* (*)();
      auto get = reinterpret_cast<GetApiBaseFn>(dlsym(h, "OrtGetApiBase"));
      if (!get) throw JsError{path + " does not export OrtGetApiBase: not an onnxruntime library"};
      const OrtApiBase* base = get();
      const OrtApi* api = base ? base->GetApi(ORT_API_VERSION) : nullptr;
      if (!api) {
        throw JsError{std::string("onnxruntime ") + (base ? base->GetVersionString() : "?") + " at " + path +
                      " does not provide C API version " + std::to_string(ORT_API_VERSION) + " (needs onnxruntime >= 1.29)"};
      }
      Ort::InitApi(api);
      // One OrtEnv per process: onnxruntime hands back the existing one (onnxruntime-node's) if any.
      r.env = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_WARNING, "vnmc");
      r.ort_handle = h;
      r.api_base = base;
      r.ort_path = path;
    } else if (path != r.ort_path) {
      // Loading a second onnxruntime would put two runtimes in the process; refuse.
      throw JsError{"onnxruntime is already loaded from " + r.ort_path + "; cannot also load " + path};
    }
    napi_value out;
    NAPI_OK(env, napi_create_object(env, &out));
    NAPI_OK(env, napi_set_named_property(env, out, "version", str(env, r.api_base->GetVersionString())));
    NAPI_OK(env, napi_set_named_property(env, out, "apiVersion", num(env, ORT_API_VERSION)));
    return out;
  } catch (const JsError& e) {
    throw_js(env, e.msg);
  } catch (const std::exception& e) {
    throw_js(env, e.what());
  }
  return nullptr;
}

napi_value LoadCustomOps(napi_env env, napi_callback_info info) {
  try {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
    if (argc < 1) throw JsError{"loadCustomOps(path) needs the path of libvnmc_ort.so"};
    const std::string path = get_string(env, argv[0], "path");
    Runtime& r = rt();
    std::lock_guard<std::mutex> lk(r.mu);
    if (!r.api_base) throw JsError{"loadRuntime() must be called before loadCustomOps()"};
    if (!r.ops_handle) {
      void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) throw JsError{std::string("cannot load the vnmc custom-op library: ") + dlerror()};
      auto fn = reinterpret_cast<Runtime::RegisterFn>(dlsym(h, "RegisterCustomOps"));
      if (!fn) {
        dlclose(h);
        throw JsError{path + " does not export RegisterCustomOps"};
      }
      r.ops_handle = h;  // kept loaded for the life of the process
      r.register_ops = fn;
      r.ops_path = path;
    } else if (path != r.ops_path) {
      throw JsError{"the vnmc custom-op library is already loaded from " + r.ops_path + "; cannot also load " + path};
    }
    return nullptr;
  } catch (const JsError& e) {
    throw_js(env, e.msg);
  } catch (const std::exception& e) {
    throw_js(env, e.what());
  }
  return nullptr;
}

// ---- createSession ---------------------------------------------------------------------------------
struct CreateWork {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  std::string path;           // either a path...
  napi_ref bytes_ref = nullptr;  // ...or bytes kept alive by this reference
  const void* bytes = nullptr;
  size_t bytes_len = 0;
  int intra = 0, inter = 0, opt_level = -1, log_level = -1, sequential = -1;
  bool custom_ops = true;
  std::vector<std::pair<std::string, std::string>> config;
  std::shared_ptr<SessionState> result;
  std::string error;
};

void CreateExecute(napi_env, void* data) {
  auto* w = static_cast<CreateWork*>(data);
  Runtime& r = rt();
  try {
    Ort::SessionOptions so;
    if (w->intra > 0) so.SetIntraOpNumThreads(w->intra);
    if (w->inter > 0) so.SetInterOpNumThreads(w->inter);
    if (w->opt_level >= 0) so.SetGraphOptimizationLevel(static_cast<GraphOptimizationLevel>(w->opt_level));
    if (w->log_level >= 0) so.SetLogSeverityLevel(w->log_level);
    if (w->sequential == 1) so.SetExecutionMode(ORT_SEQUENTIAL);
    if (w->sequential == 0) so.SetExecutionMode(ORT_PARALLEL);
    for (const auto& kv : w->config) so.AddConfigEntry(kv.first.c_str(), kv.second.c_str());
    if (w->custom_ops) {
      OrtStatus* st = r.register_ops(so, r.api_base);
      if (st) {
        std::string msg = Ort::GetApi().GetErrorMessage(st);
        Ort::GetApi().ReleaseStatus(st);
        throw JsError{"registering the vnmc custom ops failed: " + msg};
      }
    }
    auto state = std::make_shared<SessionState>();
    if (w->bytes) {
      state->session = Ort::Session(*r.env, w->bytes, w->bytes_len, so);
    } else {
      state->session = Ort::Session(*r.env, w->path.c_str(), so);
    }
    Ort::AllocatorWithDefaultOptions alloc;
    const size_t ni = state->session.GetInputCount(), no = state->session.GetOutputCount();
    for (size_t i = 0; i < ni; ++i) {
      state->inputs.emplace_back(state->session.GetInputNameAllocated(i, alloc).get());
      state->input_types.push_back(type_of(state->session.GetInputTypeInfo(i)));
    }
    for (size_t i = 0; i < no; ++i) {
      state->outputs.emplace_back(state->session.GetOutputNameAllocated(i, alloc).get());
      state->output_types.push_back(type_of(state->session.GetOutputTypeInfo(i)));
    }
    w->result = std::move(state);
  } catch (const Ort::Exception& e) {
    w->error = e.what();
  } catch (const JsError& e) {
    w->error = e.msg;
  } catch (const std::exception& e) {
    w->error = e.what();
  }
}

void CreateComplete(napi_env env, napi_status, void* data) {
  std::unique_ptr<CreateWork> w(static_cast<CreateWork*>(data));
  if (w->bytes_ref) napi_delete_reference(env, w->bytes_ref);
  try {
    if (!w->error.empty() || !w->result) {
      NAPI_OK(env, napi_reject_deferred(env, w->deferred, make_error(env, w->error.empty() ? "session creation failed" : w->error)));
    } else {
      auto* h = new Handle{w->result};
      napi_value ext, out;
      if (napi_create_external(env, h, finalize_handle, nullptr, &ext) != napi_ok) {
        delete h;
        throw JsError{"cannot create the session handle"};
      }
      NAPI_OK(env, napi_create_object(env, &out));
      NAPI_OK(env, napi_set_named_property(env, out, "handle", ext));
      NAPI_OK(env, napi_set_named_property(env, out, "inputNames", string_array(env, w->result->inputs)));
      NAPI_OK(env, napi_set_named_property(env, out, "outputNames", string_array(env, w->result->outputs)));
      NAPI_OK(env, napi_set_named_property(env, out, "inputTypes", int_array(env, w->result->input_types)));
      NAPI_OK(env, napi_set_named_property(env, out, "outputTypes", int_array(env, w->result->output_types)));
      NAPI_OK(env, napi_resolve_deferred(env, w->deferred, out));
    }
  } catch (const JsError& e) {
    napi_reject_deferred(env, w->deferred, make_error(env, e.msg));
  }
  napi_delete_async_work(env, w->work);
}

napi_value CreateSession(napi_env env, napi_callback_info info) {
  std::unique_ptr<CreateWork> w(new CreateWork());
  try {
    size_t argc = 2;
    napi_value argv[2];
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
    if (argc < 1) throw JsError{"createSession(model, options) needs a model"};
    Runtime& r = rt();
    if (!r.api_base) throw JsError{"loadRuntime() must be called before createSession()"};
    napi_valuetype t;
    NAPI_OK(env, napi_typeof(env, argv[0], &t));
    bool is_typed = false;
    NAPI_OK(env, napi_is_typedarray(env, argv[0], &is_typed));
    if (t == napi_string) {
      w->path = get_string(env, argv[0], "model");
    } else if (is_typed) {
      napi_typedarray_type tt;
      size_t len = 0, offset = 0;
      void* data = nullptr;
      napi_value ab;
      NAPI_OK(env, napi_get_typedarray_info(env, argv[0], &tt, &len, &data, &ab, &offset));
      if (tt != napi_uint8_array) throw JsError{"model bytes must be a Uint8Array"};
      if (len == 0) throw JsError{"model bytes are empty"};
      w->bytes = data;
      w->bytes_len = len;
      NAPI_OK(env, napi_create_reference(env, argv[0], 1, &w->bytes_ref));
    } else {
      throw JsError{"model must be a path or a Uint8Array"};
    }
    if (argc >= 2) {
      napi_valuetype ot;
      NAPI_OK(env, napi_typeof(env, argv[1], &ot));
      if (ot == napi_object) {
        napi_value v;
        if (get_prop(env, argv[1], "intraOpNumThreads", &v)) w->intra = static_cast<int>(get_int(env, v, "intraOpNumThreads"));
        if (get_prop(env, argv[1], "interOpNumThreads", &v)) w->inter = static_cast<int>(get_int(env, v, "interOpNumThreads"));
        if (get_prop(env, argv[1], "graphOptimizationLevel", &v)) w->opt_level = static_cast<int>(get_int(env, v, "graphOptimizationLevel"));
        if (get_prop(env, argv[1], "logSeverityLevel", &v)) w->log_level = static_cast<int>(get_int(env, v, "logSeverityLevel"));
        if (get_prop(env, argv[1], "sequential", &v)) {
          bool b;
          NAPI_OK(env, napi_get_value_bool(env, v, &b));
          w->sequential = b ? 1 : 0;
        }
        if (get_prop(env, argv[1], "customOps", &v)) NAPI_OK(env, napi_get_value_bool(env, v, &w->custom_ops));
        if (get_prop(env, argv[1], "config", &v)) {
          napi_value keys;
          NAPI_OK(env, napi_get_property_names(env, v, &keys));
          const uint32_t n = array_length(env, keys, "config keys");
          for (uint32_t i = 0; i < n; ++i) {
            napi_value k = element(env, keys, i), val;
            NAPI_OK(env, napi_get_property(env, v, k, &val));
            w->config.emplace_back(get_string(env, k, "config key"), get_string(env, val, "config value"));
          }
        }
      }
    }
    if (w->custom_ops && !r.register_ops) throw JsError{"loadCustomOps() must be called before creating a session with custom ops"};
    napi_value promise;
    NAPI_OK(env, napi_create_promise(env, &w->deferred, &promise));
    NAPI_OK(env, napi_create_async_work(env, nullptr, str(env, "vnmc.createSession"), CreateExecute, CreateComplete, w.get(), &w->work));
    NAPI_OK(env, napi_queue_async_work(env, w->work));
    w.release();
    return promise;
  } catch (const JsError& e) {
    if (w->bytes_ref) napi_delete_reference(env, w->bytes_ref);
    throw_js(env, e.msg);
  }
  return nullptr;
}

// ---- run -------------------------------------------------------------------------------------------
struct RunWork {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  std::shared_ptr<SessionState> state;
  std::vector<std::string> in_names, out_names;
  std::vector<int> in_types;
  std::vector<std::vector<int64_t>> in_dims;
  std::vector<void*> in_data;
  std::vector<size_t> in_bytes;
  std::vector<napi_ref> in_refs;  // keep the input arrays alive
  std::vector<Ort::Value> outputs;
  std::string error;
};

void RunExecute(napi_env, void* data) {
  auto* w = static_cast<RunWork*>(data);
  try {
    Ort::MemoryInfo mem = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeCPU);
    std::vector<Ort::Value> inputs;
    inputs.reserve(w->in_names.size());
    static int64_t empty_dummy = 0;
    for (size_t i = 0; i < w->in_names.size(); ++i) {
      void* p = w->in_data[i] ? w->in_data[i] : &empty_dummy;
      inputs.push_back(Ort::Value::CreateTensor(mem, p, w->in_bytes[i], w->in_dims[i].data(), w->in_dims[i].size(),
                                                static_cast<ONNXTensorElementDataType>(w->in_types[i])));
    }
    std::vector<const char*> in_names, out_names;
    for (const auto& s : w->in_names) in_names.push_back(s.c_str());
    for (const auto& s : w->out_names) out_names.push_back(s.c_str());
    w->outputs = w->state->session.Run(Ort::RunOptions{nullptr}, in_names.data(), inputs.data(), inputs.size(),
                                       out_names.data(), out_names.size());
  } catch (const Ort::Exception& e) {
    w->error = e.what();
  } catch (const std::exception& e) {
    w->error = e.what();
  }
}

void RunComplete(napi_env env, napi_status, void* data) {
  std::unique_ptr<RunWork> w(static_cast<RunWork*>(data));
  for (napi_ref ref : w->in_refs) napi_delete_reference(env, ref);
  try {
    if (!w->error.empty()) throw JsError{w->error};
    napi_value arr;
    NAPI_OK(env, napi_create_array_with_length(env, w->outputs.size(), &arr));
    for (size_t i = 0; i < w->outputs.size(); ++i) {
      Ort::Value& v = w->outputs[i];
      if (!v.IsTensor()) throw JsError{"output '" + w->out_names[i] + "' is not a tensor (sequences and maps are not supported)"};
      auto ti = v.GetTensorTypeAndShapeInfo();
      const int type = static_cast<int>(ti.GetElementType());
      const size_t es = elem_size(type);
      if (es == 0) throw JsError{"output '" + w->out_names[i] + "' has element type " + std::to_string(type) + ", which is not supported"};
      const std::vector<int64_t> shape = ti.GetShape();
      const size_t count = ti.GetElementCount();
      napi_value o, dims, ab;
      NAPI_OK(env, napi_create_object(env, &o));
      NAPI_OK(env, napi_create_array_with_length(env, shape.size(), &dims));
      for (size_t d = 0; d < shape.size(); ++d) NAPI_OK(env, napi_set_element(env, dims, static_cast<uint32_t>(d), num(env, static_cast<double>(shape[d]))));
      void* dst = nullptr;
      NAPI_OK(env, napi_create_arraybuffer(env, count * es, &dst, &ab));
      if (count) std::memcpy(dst, v.GetTensorRawData(), count * es);
      NAPI_OK(env, napi_set_named_property(env, o, "type", num(env, type)));
      NAPI_OK(env, napi_set_named_property(env, o, "dims", dims));
      NAPI_OK(env, napi_set_named_property(env, o, "data", ab));
      NAPI_OK(env, napi_set_element(env, arr, static_cast<uint32_t>(i), o));
    }
    NAPI_OK(env, napi_resolve_deferred(env, w->deferred, arr));
  } catch (const Ort::Exception& e) {
    napi_reject_deferred(env, w->deferred, make_error(env, e.what()));
  } catch (const JsError& e) {
    napi_reject_deferred(env, w->deferred, make_error(env, e.msg));
  }
  w->outputs.clear();
  w->state.reset();  // may destroy a released session, here on the main thread
  if (w->work) napi_delete_async_work(env, w->work);
}

napi_value Run(napi_env env, napi_callback_info info) {
  std::unique_ptr<RunWork> w(new RunWork());
  try {
    size_t argc = 7;
    napi_value argv[7];
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
    if (argc < 6) throw JsError{"run(handle, names, types, dims, data, outputNames[, sync]) needs 6 arguments"};
    bool sync = false;
    if (argc >= 7) {
      napi_valuetype st;
      NAPI_OK(env, napi_typeof(env, argv[6], &st));
      if (st == napi_boolean) NAPI_OK(env, napi_get_value_bool(env, argv[6], &sync));
    }
    Handle* h = get_handle(env, argv[0]);
    if (!h->state) throw JsError{"the session has been released"};
    w->state = h->state;
    const uint32_t n = array_length(env, argv[1], "names");
    if (array_length(env, argv[2], "types") != n || array_length(env, argv[3], "dims") != n || array_length(env, argv[4], "data") != n)
      throw JsError{"names, types, dims and data must have the same length"};
    for (uint32_t i = 0; i < n; ++i) {
      const std::string name = get_string(env, element(env, argv[1], i), "input name");
      const int type = static_cast<int>(get_int(env, element(env, argv[2], i), "element type"));
      const size_t es = elem_size(type);
      if (es == 0) throw JsError{"input '" + name + "' has element type " + std::to_string(type) + ", which is not supported"};
      napi_value dv = element(env, argv[3], i);
      const uint32_t rank = array_length(env, dv, "dims");
      std::vector<int64_t> dims(rank);
      uint64_t count = 1;
      for (uint32_t d = 0; d < rank; ++d) {
        dims[d] = get_int(env, element(env, dv, d), "dimension");
        if (dims[d] < 0) throw JsError{"input '" + name + "' has a negative dimension"};
        count *= static_cast<uint64_t>(dims[d]);
        if (count > (uint64_t(1) << 48)) throw JsError{"input '" + name + "' is too large"};
      }
      napi_value arr = element(env, argv[4], i);
      bool is_typed = false;
      NAPI_OK(env, napi_is_typedarray(env, arr, &is_typed));
      if (!is_typed) throw JsError{"data of input '" + name + "' must be a typed array"};
      napi_typedarray_type tt;
      size_t len = 0, offset = 0;
      void* data = nullptr;
      napi_value ab;
      NAPI_OK(env, napi_get_typedarray_info(env, arr, &tt, &len, &data, &ab, &offset));
      size_t bpe = 1;
      switch (tt) {
        case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: bpe = 1; break;
        case napi_int16_array: case napi_uint16_array: bpe = 2; break;
        case napi_int32_array: case napi_uint32_array: case napi_float32_array: bpe = 4; break;
        default: bpe = 8; break;
      }
      const uint64_t bytes = static_cast<uint64_t>(len) * bpe;
      if (bytes != count * es) {
        throw JsError{"input '" + name + "' has " + std::to_string(bytes) + " bytes of data but its shape needs " + std::to_string(count * es)};
      }
      napi_ref ref;
      NAPI_OK(env, napi_create_reference(env, arr, 1, &ref));
      w->in_refs.push_back(ref);
      w->in_names.push_back(name);
      w->in_types.push_back(type);
      w->in_dims.push_back(std::move(dims));
      w->in_data.push_back(data);
      w->in_bytes.push_back(static_cast<size_t>(bytes));
    }
    const uint32_t no = array_length(env, argv[5], "outputNames");
    for (uint32_t i = 0; i < no; ++i) w->out_names.push_back(get_string(env, element(env, argv[5], i), "output name"));
    napi_value promise;
    NAPI_OK(env, napi_create_promise(env, &w->deferred, &promise));
    if (sync) {
      // On the calling (JS) thread, as onnxruntime-node does: no worker hand-off, blocks the loop.
      RunExecute(env, w.get());
      RunComplete(env, napi_ok, w.release());
      return promise;
    }
    NAPI_OK(env, napi_create_async_work(env, nullptr, str(env, "vnmc.run"), RunExecute, RunComplete, w.get(), &w->work));
    NAPI_OK(env, napi_queue_async_work(env, w->work));
    w.release();
    return promise;
  } catch (const JsError& e) {
    for (napi_ref ref : w->in_refs) napi_delete_reference(env, ref);
    throw_js(env, e.msg);
  }
  return nullptr;
}

napi_value Release(napi_env env, napi_callback_info info) {
  try {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
    if (argc < 1) throw JsError{"release(handle) needs a handle"};
    get_handle(env, argv[0])->state.reset();
  } catch (const JsError& e) {
    throw_js(env, e.msg);
  }
  return nullptr;
}

// ---- readBandwidth: the memory-bandwidth floor for benchmarks ---------------------------------------
// Streams a buffer much larger than the caches with `threads` threads (each reads its own slice,
// first-touched by itself) and returns the best rate over `reps` passes, in GB/s (1e9 bytes/s).
uint64_t sum_slice_portable(const uint64_t* p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
    a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
  }
  for (; i < n; ++i) a0 += p[i];
  return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// 256-bit loads, four independent integer accumulators (1-cycle adds): the read rate, not the adds.
__attribute__((target("avx2"))) uint64_t sum_slice_avx2(const uint64_t* p, size_t n) {
  typedef long long v4 __attribute__((vector_size(32)));
  v4 a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v4 x0, x1, x2, x3;
    std::memcpy(&x0, p + i, 32);
    std::memcpy(&x1, p + i + 4, 32);
    std::memcpy(&x2, p + i + 8, 32);
    std::memcpy(&x3, p + i + 12, 32);
    a0 += x0; a1 += x1; a2 += x2; a3 += x3;
  }
  v4 a = a0 + a1 + a2 + a3;
  uint64_t r = static_cast<uint64_t>(a[0] + a[1] + a[2] + a[3]);
  for (; i < n; ++i) r += p[i];
  return r;
}
#endif

uint64_t sum_slice(const uint64_t* p, size_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return sum_slice_avx2(p, n);
#endif
  return sum_slice_portable(p, n);
}

napi_value ReadBandwidth(napi_env env, napi_callback_info info) {
  try {
    size_t argc = 3;
    napi_value argv[3];
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
    if (argc < 3) throw JsError{"readBandwidth(mebibytes, threads, reps) needs 3 arguments"};
    const int64_t mib = get_int(env, argv[0], "mebibytes"), threads = get_int(env, argv[1], "threads"), reps = get_int(env, argv[2], "reps");
    if (mib < 1 || mib > 16384 || threads < 1 || threads > 256 || reps < 1 || reps > 1000) throw JsError{"readBandwidth: argument out of range"};
    const size_t words = static_cast<size_t>(mib) << 17;  // 8-byte words
    std::unique_ptr<uint64_t[]> buf(new (std::nothrow) uint64_t[words]);
    if (!buf) throw JsError{"readBandwidth: out of memory"};
    const size_t per = words / static_cast<size_t>(threads);
    std::vector<uint64_t> sink(static_cast<size_t>(threads));
    auto pass = [&](bool fill) {
      std::vector<std::thread> ts;
      for (int64_t t = 0; t < threads; ++t) {
        ts.emplace_back([&, t] {
          uint64_t* p = buf.get() + per * static_cast<size_t>(t);
          if (fill) {
            for (size_t i = 0; i < per; ++i) p[i] = i ^ static_cast<size_t>(t);
          } else {
            sink[static_cast<size_t>(t)] += sum_slice(p, per);
          }
        });
      }
      for (auto& th : ts) th.join();
    };
    pass(true);
    double best = 1e300;
    for (int64_t r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      pass(false);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    uint64_t all = 0;
    for (uint64_t v : sink) all += v;
    const double gbps = static_cast<double>(per * static_cast<size_t>(threads) * 8) / best / 1e9 + (all == 42 ? 1e-12 : 0.0);
    return num(env, gbps);
  } catch (const JsError& e) {
    throw_js(env, e.msg);
  }
  return nullptr;
}

}  // namespace

NAPI_MODULE_INIT() {
  const napi_property_descriptor props[] = {
      {"loadRuntime", nullptr, LoadRuntime, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"loadCustomOps", nullptr, LoadCustomOps, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"createSession", nullptr, CreateSession, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"run", nullptr, Run, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"release", nullptr, Release, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"readBandwidth", nullptr, ReadBandwidth, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
