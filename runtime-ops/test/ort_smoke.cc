// End-to-end test through a real onnxruntime: dlopen()s libonnxruntime (nothing links it), registers
// libvnmc_ort.so with RegisterCustomOpsLibrary_V2, builds small ONNX models in memory (a minimal
// protobuf writer below), runs them and compares with the dense reference. Also checks that
// malformed models and inputs produce error statuses, not crashes.
// Usage: vnmc_ort_smoke <libonnxruntime.so> <libvnmc_ort.so>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <onnxruntime_c_api.h>

#include "reference.h"

using namespace vnmc_test;
using vnmc::DType;

namespace {

int g_pass = 0, g_fail = 0;
void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_pass;
  } else {
    ++g_fail;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

// ---- minimal protobuf writer (just what ModelProto needs) ----------------------------------------
struct Pb {
  std::string b;
  void varint(uint64_t v) {
    while (v >= 0x80) {
      b.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    b.push_back(static_cast<char>(v));
  }
  void tag(int field, int wt) { varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wt)); }
  Pb& i(int field, int64_t v) {
    tag(field, 0);
    varint(static_cast<uint64_t>(v));
    return *this;
  }
  Pb& s(int field, const std::string& v) {
    tag(field, 2);
    varint(v.size());
    b += v;
    return *this;
  }
  Pb& m(int field, const Pb& v) { return s(field, v.b); }
};

int onnx_type(DType t) { return static_cast<int>(t); }  // same numbering

Pb tensor(const std::string& name, DType t, const std::vector<int64_t>& dims, const void* data, size_t bytes) {
  Pb p;
  for (int64_t d : dims) p.i(1, d);
  p.i(2, onnx_type(t));
  p.s(8, name);
  p.s(9, std::string(static_cast<const char*>(data), bytes));
  return p;
}

// dims: >= 0 fixed, -1 symbolic ("d<i>")
Pb value_info(const std::string& name, DType t, const std::vector<int64_t>& dims) {
  Pb shape;
  for (size_t k = 0; k < dims.size(); ++k) {
    Pb dim;
    if (dims[k] >= 0) dim.i(1, dims[k]);
    else dim.s(2, "d" + std::to_string(k));
    shape.m(1, dim);
  }
  Pb tt;
  tt.i(1, onnx_type(t)).m(2, shape);
  Pb type;
  type.m(1, tt);
  Pb vi;
  vi.s(1, name).m(2, type);
  return vi;
}

Pb int_attr(const std::string& name, int64_t v) {
  Pb a;
  a.s(1, name).i(3, v).i(20, 2);  // type INT
  return a;
}

struct ModelOptions {
  bool weights_as_inputs = false;  // feed values/columns/meta/row_index at run time
  bool symbolic_k = false;         // A declared [.., "d"] instead of K
  bool drop_attr_v = false;
};

std::string build_model(const CaseData& c, const ModelOptions& mo) {
  const CaseSpec& s = c.spec;
  Pb node;
  node.s(1, "A").s(1, "values").s(1, "columns").s(1, "meta");
  if (!c.bias.empty() || !c.row_index.empty()) node.s(1, c.bias.empty() ? "" : "bias");
  if (!c.row_index.empty()) node.s(1, "row_index");
  node.s(2, "Y").s(3, "vnm_node").s(4, "VNMSparseGemm").s(7, "com.vnmc");
  node.m(5, int_attr("in_features", s.K)).m(5, int_attr("out_features", s.N_out)).m(5, int_attr("m", s.M));
  node.m(5, int_attr("n", 2));
  if (!mo.drop_attr_v) node.m(5, int_attr("v", s.V));

  Pb graph;
  graph.m(1, node).s(2, "vnmc_smoke");
  std::vector<int64_t> a_dims = s.a_shape.empty() ? std::vector<int64_t>{-1, s.K} : s.a_shape;
  for (size_t k = 0; k + 1 < a_dims.size(); ++k) a_dims[k] = -1;
  if (mo.symbolic_k) a_dims.back() = -1;
  graph.m(11, value_info("A", s.act, a_dims));
  struct W {
    const char* name;
    DType t;
    std::vector<int64_t> dims;
    const void* data;
    size_t bytes;
  };
  std::vector<W> ws = {{"values", s.val, {c.R, 2 * c.G}, c.values.data(), c.values.size()},
                       {"columns", DType::kInt32, {c.B, c.G, 4}, c.columns.data(), c.columns.size() * 4},
                       {"meta", DType::kUInt8, {c.R, c.meta_cols}, c.meta.data(), c.meta.size()}};
  if (!c.row_index.empty()) ws.push_back({"row_index", DType::kInt32, {c.R}, c.row_index.data(), c.row_index.size() * 4});
  for (const W& w : ws) {
    if (mo.weights_as_inputs) graph.m(11, value_info(w.name, w.t, w.dims));
    else graph.m(5, tensor(w.name, w.t, w.dims, w.data, w.bytes));
  }
  if (!c.bias.empty()) graph.m(5, tensor("bias", s.act, {s.N_out}, c.bias.data(), c.bias.size()));
  std::vector<int64_t> y_dims(a_dims.begin(), a_dims.end() - 1);
  y_dims.push_back(s.N_out);
  graph.m(12, value_info("Y", s.act, y_dims));

  Pb op_default, op_vnmc;
  op_default.s(1, "").i(2, 17);
  op_vnmc.s(1, "com.vnmc").i(2, 1);
  Pb model;
  model.i(1, 8).s(2, "vnmc-ort-smoke").m(7, graph).m(8, op_default).m(8, op_vnmc);
  return model.b;
}

// ---- onnxruntime -----------------------------------------------------------------------------------
const OrtApi* api = nullptr;
OrtEnv* env = nullptr;
std::string lib_path;

std::string take_error(OrtStatus* st) {
  if (!st) return {};
  std::string m = api->GetErrorMessage(st);
  api->ReleaseStatus(st);
  return m;
}

#define ORT_OK(expr)                                            \
  do {                                                          \
    const std::string e_ = take_error(expr);                    \
    if (!e_.empty()) {                                          \
      std::printf("onnxruntime call failed: %s\n", e_.c_str()); \
      std::exit(1);                                             \
    }                                                           \
  } while (0)

// Creates a session; returns "" and *out, or the error message.
std::string make_session(const std::string& model, OrtSession** out, bool register_lib = true) {
  OrtSessionOptions* so = nullptr;
  ORT_OK(api->CreateSessionOptions(&so));
  ORT_OK(api->SetIntraOpNumThreads(so, 2));
  if (register_lib) ORT_OK(api->RegisterCustomOpsLibrary_V2(so, lib_path.c_str()));
  std::string err = take_error(api->CreateSessionFromArray(env, model.data(), model.size(), so, out));
  api->ReleaseSessionOptions(so);
  return err;
}

struct Feed {
  std::string name;
  DType t;
  std::vector<int64_t> dims;
  void* data;
  size_t bytes;
};

// Runs; returns "" and the output bytes, or the error.
std::string run(OrtSession* sess, const std::vector<Feed>& feeds, std::vector<uint8_t>* y, std::vector<int64_t>* yshape) {
  OrtMemoryInfo* mi = nullptr;
  ORT_OK(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mi));
  std::vector<OrtValue*> vals;
  std::vector<const char*> names;
  for (const Feed& f : feeds) {
    OrtValue* v = nullptr;
    ORT_OK(api->CreateTensorWithDataAsOrtValue(mi, f.data, f.bytes, f.dims.data(), f.dims.size(),
                                               static_cast<ONNXTensorElementDataType>(f.t), &v));
    vals.push_back(v);
    names.push_back(f.name.c_str());
  }
  const char* out_names[] = {"Y"};
  OrtValue* out = nullptr;
  std::string err = take_error(api->Run(sess, nullptr, names.data(), vals.data(), vals.size(), out_names, 1, &out));
  if (err.empty()) {
    OrtTensorTypeAndShapeInfo* ti = nullptr;
    ORT_OK(api->GetTensorTypeAndShape(out, &ti));
    size_t n = 0, rank = 0;
    ORT_OK(api->GetTensorShapeElementCount(ti, &n));
    ORT_OK(api->GetDimensionsCount(ti, &rank));
    yshape->assign(rank, 0);
    ORT_OK(api->GetDimensions(ti, yshape->data(), rank));
    ONNXTensorElementDataType et;
    ORT_OK(api->GetTensorElementType(ti, &et));
    api->ReleaseTensorTypeAndShapeInfo(ti);
    void* p = nullptr;
    ORT_OK(api->GetTensorMutableData(out, &p));
    const size_t esz = et == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? 4 : 2;
    y->assign(static_cast<uint8_t*>(p), static_cast<uint8_t*>(p) + n * esz);
    api->ReleaseValue(out);
  }
  for (OrtValue* v : vals) api->ReleaseValue(v);
  api->ReleaseMemoryInfo(mi);
  return err;
}

std::vector<Feed> feeds_for(CaseData& c, bool weights_as_inputs) {
  const CaseSpec& s = c.spec;
  std::vector<int64_t> a_dims = s.a_shape.empty() ? std::vector<int64_t>{s.T, s.K} : s.a_shape;
  std::vector<Feed> f = {{"A", s.act, a_dims, c.A.data(), c.A.size()}};
  if (weights_as_inputs) {
    f.push_back({"values", s.val, {c.R, 2 * c.G}, c.values.data(), c.values.size()});
    f.push_back({"columns", DType::kInt32, {c.B, c.G, 4}, c.columns.data(), c.columns.size() * 4});
    f.push_back({"meta", DType::kUInt8, {c.R, c.meta_cols}, c.meta.data(), c.meta.size()});
    if (!c.row_index.empty()) f.push_back({"row_index", DType::kInt32, {c.R}, c.row_index.data(), c.row_index.size() * 4});
  }
  return f;
}

std::string run_and_compare(CaseData& c, const ModelOptions& mo) {
  OrtSession* sess = nullptr;
  std::string err = make_session(build_model(c, mo), &sess);
  if (!err.empty()) return "session: " + err;
  std::vector<uint8_t> y;
  std::vector<int64_t> ys;
  err = run(sess, feeds_for(c, mo.weights_as_inputs), &y, &ys);
  if (err.empty()) {
    std::vector<int64_t> want = c.spec.a_shape.empty() ? std::vector<int64_t>{c.spec.T, c.spec.K} : c.spec.a_shape;
    want.back() = c.spec.N_out;
    if (ys != want) err = "output shape mismatch";
  }
  if (err.empty()) {
    std::vector<double> ref, scale;
    reference(c, &ref, &scale);
    err = compare(c, y.data(), ref, scale);
  }
  if (err.empty() && mo.weights_as_inputs) {
    // Same buffers, new contents: the kernel's cache must notice.
    for (size_t i = 0; i < c.values.size(); ++i) c.values[i] = static_cast<uint8_t>(c.values[i] ^ (i % 7 == 0 ? 0x01 : 0));
    std::vector<double> ref, scale;
    reference(c, &ref, &scale);
    err = run(sess, feeds_for(c, true), &y, &ys);
    if (err.empty()) err = compare(c, y.data(), ref, scale);
    if (!err.empty()) err = "after changing the weights in place: " + err;
  }
  api->ReleaseSession(sess);
  return err;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::printf("usage: %s <libonnxruntime.so> <libvnmc_ort.so>\n", argv[0]);
    return 2;
  }
  lib_path = argv[2];
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::printf("cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  using GetApiBaseFn = const OrtApiBase* (*)();
  auto get_base = reinterpret_cast<GetApiBaseFn>(dlsym(h, "OrtGetApiBase"));
  if (!get_base) {
    std::printf("OrtGetApiBase not found\n");
    return 1;
  }
  const OrtApiBase* base = get_base();
  api = base->GetApi(ORT_API_VERSION);
  if (!api) {
    std::printf("onnxruntime %s lacks API %d\n", base->GetVersionString(), ORT_API_VERSION);
    return 1;
  }
  std::printf("onnxruntime %s\n", base->GetVersionString());
  ORT_OK(api->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "vnmc_smoke", &env));

  // --- correct results --------------------------------------------------------------------------------
  struct Combo {
    DType act, val;
  } combos[] = {{DType::kFloat32, DType::kFloat32},
                {DType::kFloat32, DType::kFloat16},
                {DType::kFloat32, DType::kBFloat16},
                {DType::kFloat16, DType::kFloat16},
                {DType::kBFloat16, DType::kBFloat16}};
  int k = 0;
  for (const Combo& cb : combos) {
    for (int variant = 0; variant < 4; ++variant) {  // bias / row_index on-off
      CaseSpec s;
      s.K = 77 + 13 * k;
      s.N_out = 45 + 7 * k;
      s.V = variant % 2 ? 16 : 32;
      s.M = 5 + (k % 4);
      s.act = cb.act;
      s.val = cb.val;
      s.bias = variant & 1;
      s.row_index = variant & 2;
      s.cols = variant == 3 ? ColumnMode::kPermuted : ColumnMode::kWindowed;
      s.T = variant == 2 ? 6 : 20;
      if (variant == 1) s.a_shape = {2, 10, s.K};
      s.seed = 1000 + k;
      ++k;
      CaseData c = make_case(s);
      const std::string err = run_and_compare(c, ModelOptions());
      check(err.empty(), "ort run " + s.describe() + ": " + err);
    }
  }
  // Weights fed at run time (not constant): validated and re-laid out in Compute, cached.
  {
    CaseSpec s;
    s.K = 100;
    s.N_out = 50;
    s.V = 16;
    s.M = 8;
    s.row_index = true;
    s.bias = true;
    s.T = 3;
    s.seed = 77;
    CaseData c = make_case(s);
    ModelOptions mo;
    mo.weights_as_inputs = true;
    const std::string err = run_and_compare(c, mo);
    check(err.empty(), "non-constant weights: " + err);
  }
  // Without the library, a model without a fallback function fails to load (sanity of the setup).
  {
    CaseSpec s;
    CaseData c = make_case(s);
    OrtSession* sess = nullptr;
    const std::string err = make_session(build_model(c, ModelOptions()), &sess, false);
    check(!err.empty(), "model does not load without the library");
    if (sess) api->ReleaseSession(sess);
  }

  // --- malformed models: session creation fails with our message -----------------------------------------
  struct Bad {
    const char* name;
    void (*corrupt)(CaseData&);
    const char* expect;
  } bads[] = {
      {"bad meta nibble", [](CaseData& c) { c.meta[1] = 0x55; }, "meta code"},
      {"column out of range", [](CaseData& c) { c.columns[5] = 1 << 20; }, "out of range"},
      {"row_index duplicate", [](CaseData& c) { c.row_index[1] = c.row_index[0] >= 0 ? c.row_index[0] : c.row_index[2]; if (c.row_index[0] < 0) c.row_index[0] = c.row_index[2]; }, "row_index"},
      {"in_features inconsistent with the tensors", [](CaseData& c) { c.spec.K += 8; }, "values"},
  };
  for (const Bad& b : bads) {
    CaseSpec s;
    s.K = 64;
    s.N_out = 40;
    s.V = 16;
    s.M = 8;
    s.row_index = true;
    s.seed = 5;
    CaseData c = make_case(s);
    b.corrupt(c);
    OrtSession* sess = nullptr;
    const std::string err = make_session(build_model(c, ModelOptions()), &sess);
    check(!err.empty() && err.find(b.expect) != std::string::npos && err.find("VNMSparseGemm") != std::string::npos,
          std::string("malformed model rejected (") + b.name + "): " + err);
    if (getenv("VNMC_TEST_VERBOSE")) std::printf("  %s -> %s\n", b.name, err.c_str());
    if (sess) api->ReleaseSession(sess);
  }
  {
    CaseSpec s;
    CaseData c = make_case(s);
    ModelOptions mo;
    mo.drop_attr_v = true;
    OrtSession* sess = nullptr;
    const std::string err = make_session(build_model(c, mo), &sess);
    check(!err.empty() && err.find("'v'") != std::string::npos, "missing attribute rejected: " + err);
    if (sess) api->ReleaseSession(sess);
  }
  // Wrong K at run time: an error from Run, not a crash.
  {
    CaseSpec s;
    s.K = 64;
    s.N_out = 32;
    CaseData c = make_case(s);
    ModelOptions mo;
    mo.symbolic_k = true;
    OrtSession* sess = nullptr;
    std::string err = make_session(build_model(c, mo), &sess);
    check(err.empty(), "session with symbolic K: " + err);
    if (sess) {
      std::vector<float> a(3 * 65, 1.0f);
      std::vector<Feed> f = {{"A", DType::kFloat32, {3, 65}, a.data(), a.size() * 4}};
      std::vector<uint8_t> y;
      std::vector<int64_t> ys;
      err = run(sess, f, &y, &ys);
      check(!err.empty() && err.find("last dimension") != std::string::npos, "A with wrong K rejected at run: " + err);
      api->ReleaseSession(sess);
    }
  }

  api->ReleaseEnv(env);
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}
