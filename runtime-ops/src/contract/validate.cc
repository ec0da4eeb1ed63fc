// All validation of the VNMSparseGemm contract. Every runtime kernel calls these functions before it
// touches the weights, so that a malformed model becomes an error status, never an out-of-bounds access.
#include "vnmc/contract.h"

#include <limits>
#include <sstream>

namespace vnmc {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float";
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    default: return "unsupported";
  }
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: return 4;
    case DType::kUInt8: return 1;
    case DType::kInt32: return 4;
    case DType::kFloat16: return 2;
    case DType::kBFloat16: return 2;
    default: return 0;
  }
}

int64_t TensorView::element_count() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

bool dtype_pair_allowed(DType act, DType value) {
  switch (act) {
    case DType::kFloat32:
      return value == DType::kFloat32 || value == DType::kFloat16 || value == DType::kBFloat16;
    case DType::kFloat16: return value == DType::kFloat16;
    case DType::kBFloat16: return value == DType::kBFloat16;
    default: return false;
  }
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << ']';
  return os.str();
}

std::string check_tensor(const char* name, const TensorView& t, DType want_type, const std::vector<int64_t>& want_shape) {
  std::ostringstream os;
  if (!t.present) {
    os << "input '" << name << "' is missing";
    return os.str();
  }
  if (t.dtype != want_type) {
    os << "input '" << name << "' has type " << dtype_name(t.dtype) << ", expected " << dtype_name(want_type);
    return os.str();
  }
  if (t.shape != want_shape) {
    os << "input '" << name << "' has shape " << shape_str(t.shape) << ", expected " << shape_str(want_shape);
    return os.str();
  }
  const int64_t n = t.element_count();
  if (n < 0) {
    os << "input '" << name << "' has an invalid shape " << shape_str(t.shape);
    return os.str();
  }
  if (n > 0 && t.data == nullptr) {
    os << "input '" << name << "' has no data";
    return os.str();
  }
  return {};
}

}  // namespace

std::string validate_attributes(const Attributes& a, Dims* out) {
  std::ostringstream os;
  if (a.n != 2) {
    os << "attribute n = " << a.n << " is not supported (only n = 2)";
  } else if (a.m < kMinM || a.m > kMaxM) {
    os << "attribute m = " << a.m << " is out of range [" << kMinM << ", " << kMaxM << "]";
  } else if (a.v < 1 || a.v > kMaxV) {
    os << "attribute v = " << a.v << " is out of range [1, " << kMaxV << "]";
  } else if (a.in_features < 1 || a.in_features > kMaxFeatures) {
    os << "attribute in_features = " << a.in_features << " is out of range [1, " << kMaxFeatures << "]";
  } else if (a.out_features < 1 || a.out_features > kMaxFeatures) {
    os << "attribute out_features = " << a.out_features << " is out of range [1, " << kMaxFeatures << "]";
  }
  if (!os.str().empty()) return os.str();
  Dims d;
  d.K = a.in_features;
  d.N_out = a.out_features;
  d.V = a.v;
  d.M = a.m;
  d.B = (d.N_out + d.V - 1) / d.V;
  d.R = d.B * d.V;  // <= (2^31 + 4096) * ... fits easily in int64
  d.G = (d.K + d.M - 1) / d.M;
  d.meta_cols = (d.G + 1) / 2;
  // R * 2G must be addressable: R < 2^32, 2G < 2^31 -> product < 2^63.
  if (out) *out = d;
  return {};
}

std::string validate_packed_weights(const Attributes& attrs, DType act_dtype, const TensorView& values,
                                    const TensorView& columns, const TensorView& meta,
                                    const TensorView& row_index, PackedWeights* out) {
  Dims d;
  std::string err = validate_attributes(attrs, &d);
  if (!err.empty()) return err;

  if (!dtype_pair_allowed(act_dtype, values.dtype)) {
    std::ostringstream os;
    os << "values of type " << dtype_name(values.dtype) << " are not allowed with " << dtype_name(act_dtype)
       << " activations";
    return os.str();
  }
  if (!(err = check_tensor("values", values, values.dtype, {d.R, 2 * d.G})).empty()) return err;
  if (!(err = check_tensor("columns", columns, DType::kInt32, {d.B, d.G, 4})).empty()) return err;
  if (!(err = check_tensor("meta", meta, DType::kUInt8, {d.R, d.meta_cols})).empty()) return err;
  if (row_index.present) {
    if (!(err = check_tensor("row_index", row_index, DType::kInt32, {d.R})).empty()) return err;
  }

  // columns in [0, K); windowed detection.
  const int32_t* cols = static_cast<const int32_t*>(columns.data);
  bool windowed = true;
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t g = 0; g < d.G; ++g) {
      for (int j = 0; j < 4; ++j) {
        const int64_t c = cols[(b * d.G + g) * 4 + j];
        if (c < 0 || c >= d.K) {
          std::ostringstream os;
          os << "columns[" << b << "," << g << "," << j << "] = " << c << " is out of range [0, " << d.K << ")";
          return os.str();
        }
        if (c < g * d.M || c >= g * d.M + d.M) windowed = false;
      }
    }
  }

  // meta: six valid codes per (row, group); unused high nibble 0.
  const uint8_t* mt = static_cast<const uint8_t*>(meta.data);
  for (int64_t r = 0; r < d.R; ++r) {
    const uint8_t* row = mt + r * d.meta_cols;
    for (int64_t g = 0; g < d.G; ++g) {
      const unsigned code = (g & 1) ? (row[g / 2] >> 4) : (row[g / 2] & 0x0f);
      if (!meta_code_valid(code)) {
        std::ostringstream os;
        os << "meta code " << code << " at row " << r << ", group " << g << " is invalid (needs p0 < p1)";
        return os.str();
      }
    }
    if ((d.G & 1) && (row[d.meta_cols - 1] >> 4) != 0) {
      std::ostringstream os;
      os << "meta row " << r << ": the unused high nibble of the last byte is not 0";
      return os.str();
    }
  }

  // row_index: values in [-1, N_out), each output exactly once.
  const int32_t* ri = row_index.present ? static_cast<const int32_t*>(row_index.data) : nullptr;
  if (ri) {
    std::vector<uint8_t> seen(static_cast<size_t>(d.N_out), 0);
    int64_t produced = 0;
    for (int64_t r = 0; r < d.R; ++r) {
      const int64_t o = ri[r];
      if (o == -1) continue;
      if (o < -1 || o >= d.N_out) {
        std::ostringstream os;
        os << "row_index[" << r << "] = " << o << " is out of range [-1, " << d.N_out << ")";
        return os.str();
      }
      if (seen[o]) {
        std::ostringstream os;
        os << "row_index[" << r << "] = " << o << ": output channel produced twice";
        return os.str();
      }
      seen[o] = 1;
      ++produced;
    }
    if (produced != d.N_out) {
      for (int64_t o = 0; o < d.N_out; ++o) {
        if (!seen[o]) {
          std::ostringstream os;
          os << "row_index: output channel " << o << " is produced by no packed row";
          return os.str();
        }
      }
    }
  }

  if (out) {
    out->dims = d;
    out->act_dtype = act_dtype;
    out->value_dtype = values.dtype;
    out->values = values.data;
    out->columns = cols;
    out->meta = mt;
    out->row_index = ri;
    out->windowed = windowed;
  }
  return {};
}

std::string validate_bias(const Dims& d, DType act_dtype, const TensorView& bias) {
  if (!bias.present) return {};
  return check_tensor("bias", bias, act_dtype, {d.N_out});
}

std::string validate_activations(const Dims& d, DType act_dtype, const TensorView& a, int64_t* tokens) {
  std::ostringstream os;
  if (!a.present) return "input 'A' is missing";
  if (a.dtype != act_dtype) {
    os << "input 'A' has type " << dtype_name(a.dtype) << ", expected " << dtype_name(act_dtype);
    return os.str();
  }
  if (a.shape.empty()) return "input 'A' must have rank >= 1";
  if (a.shape.back() != d.K) {
    os << "input 'A' has last dimension " << a.shape.back() << ", expected in_features = " << d.K;
    return os.str();
  }
  const int64_t n = a.element_count();
  if (n < 0) {
    os << "input 'A' has an invalid shape " << shape_str(a.shape);
    return os.str();
  }
  int64_t t = 1;
  for (size_t i = 0; i + 1 < a.shape.size(); ++i) t *= a.shape[i];  // no overflow: n did not overflow
  // Output T x N_out elements must be addressable as well.
  if (t > 0 && d.N_out > std::numeric_limits<int64_t>::max() / 8 / t) return "output would be too large";
  if (t > 0 && a.data == nullptr) return "input 'A' has no data";
  if (tokens) *tokens = t;
  return {};
}

}  // namespace vnmc
