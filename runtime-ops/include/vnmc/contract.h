// The VNMSparseGemm operator contract (shared/design/vnm-format.md) in C++.
//
// Everything here is independent of onnxruntime: the ORT glue (src/ort/), the CPU kernel
// (src/cpu/), a future CUDA kernel and the tests all describe their inputs with these types and
// run the same validation, so a malformed model is rejected in exactly one place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vnmc {

// Element types, numbered as ONNX TensorProto.DataType (and ONNXTensorElementDataType).
enum class DType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt32 = 6,
  kFloat16 = 10,
  kBFloat16 = 16,
};

const char* dtype_name(DType t);
size_t dtype_size(DType t);  // 0 for kUndefined

// Op identity.
inline constexpr const char* kOpDomain = "com.vnmc";
inline constexpr const char* kOpType = "VNMSparseGemm";
inline constexpr int kOpSinceVersion = 1;

// Input positions.
enum InputIndex : int { kInA = 0, kInValues = 1, kInColumns = 2, kInMeta = 3, kInBias = 4, kInRowIndex = 5 };

// Limits this implementation accepts (anything outside is rejected as malformed).
inline constexpr int64_t kMinM = 4;
inline constexpr int64_t kMaxM = 32;
inline constexpr int64_t kMaxV = 4096;
inline constexpr int64_t kMaxFeatures = 0x7fffffff;  // K and N_out index int32 tensors

// The five integer attributes, as read from the node.
struct Attributes {
  int64_t in_features = 0;   // K
  int64_t out_features = 0;  // N_out
  int64_t v = 0;             // V
  int64_t m = 0;             // M
  int64_t n = 0;             // N (must be 2)
};

// Dimensions derived from valid attributes.
struct Dims {
  int64_t K = 0, N_out = 0, V = 0, M = 0;
  int64_t R = 0;           // packed rows = ceil(N_out / V) * V
  int64_t G = 0;           // groups = ceil(K / M)
  int64_t B = 0;           // blocks = R / V
  int64_t meta_cols = 0;   // ceil(G / 2)
};

// A non-owning view of one input tensor.
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::kUndefined;
  std::vector<int64_t> shape;
  bool present = false;  // false for an absent optional input

  int64_t element_count() const;  // -1 on a negative dimension or overflow
};

// A validated view of the constant weight inputs (values, columns, meta, row_index).
// Only validate_packed_weights() creates one; while its source tensors live, every access that
// the reference semantics make through it is in bounds.
struct PackedWeights {
  Dims dims;
  DType act_dtype = DType::kFloat32;    // T
  DType value_dtype = DType::kFloat32;  // TW
  const void* values = nullptr;         // [R, 2G] of TW
  const int32_t* columns = nullptr;     // [B, G, 4], each in [0, K)
  const uint8_t* meta = nullptr;        // [R, meta_cols], valid nibbles
  const int32_t* row_index = nullptr;   // [R] or nullptr (row r -> output r, r >= N_out padding)
  bool windowed = false;                // every columns[b,g,:] lies in [g*M, g*M+M)

  // Output channel that packed row r produces, or -1 for a padding row.
  int64_t output_of_row(int64_t r) const {
    if (row_index) return row_index[r];
    return r < dims.N_out ? r : -1;
  }
};

// Meta nibble helpers: bits 0-1 = p0, bits 2-3 = p1.
inline bool meta_code_valid(unsigned code) {
  const unsigned p0 = code & 3u, p1 = (code >> 2) & 3u;
  return code < 16u && p0 < p1;
}
inline unsigned meta_code(const uint8_t* meta, int64_t meta_cols, int64_t r, int64_t g) {
  const uint8_t byte = meta[r * meta_cols + g / 2];
  return (g & 1) ? (byte >> 4) : (byte & 0x0f);
}

// Is (activation type, value type) an allowed pair? float activations take float, float16 or
// bfloat16 values; float16 and bfloat16 activations take values of their own type.
bool dtype_pair_allowed(DType act, DType value);

// All validation returns "" when valid, else a one-line human-readable reason.
std::string validate_attributes(const Attributes& attrs, Dims* out);

// Validates inputs 1, 2, 3 and 5 (row_index may be absent: row_index.present == false) against the
// attributes, and fills *out. Checks: dtypes, exact shapes, data pointers, columns in [0, K), every
// meta nibble valid and the unused high nibble 0, row_index in [-1, N_out) with every output
// channel produced exactly once.
std::string validate_packed_weights(const Attributes& attrs, DType act_dtype, const TensorView& values,
                                    const TensorView& columns, const TensorView& meta,
                                    const TensorView& row_index, PackedWeights* out);

// Input 4: absent, or of type act_dtype and shape [N_out].
std::string validate_bias(const Dims& dims, DType act_dtype, const TensorView& bias);

// Input 0: type act_dtype, rank >= 1, last dim == K. On success *tokens = product of the leading dims.
std::string validate_activations(const Dims& dims, DType act_dtype, const TensorView& a, int64_t* tokens);

}  // namespace vnmc
