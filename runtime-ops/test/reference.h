// Test-side data generator and dense reference for VNMSparseGemm, written from the contract
// (shared/design/vnm-format.md) independently of the library's kernels and conversions.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "vnmc/contract.h"

namespace vnmc_test {

using vnmc::DType;

// kPermuted: each block its own input permutation; kGlobalPerm: one permutation for all blocks (what
// `vnmc compile --permute` writes when it cannot fold it into the producer).
enum class ColumnMode { kWindowed, kPermuted, kRandom, kGlobalPerm };

struct CaseSpec {
  int64_t K = 64, N_out = 64, V = 16, M = 8;
  DType act = DType::kFloat32, val = DType::kFloat32;
  ColumnMode cols = ColumnMode::kWindowed;
  bool row_index = false;
  bool bias = false;
  std::vector<int64_t> a_shape;  // leading dims of A (empty: {T})
  int64_t T = 1;
  uint64_t seed = 1;
  std::string describe() const;
};

struct CaseData {
  CaseSpec spec;
  vnmc::Attributes attrs;
  int64_t R = 0, G = 0, B = 0, meta_cols = 0;
  std::vector<uint8_t> values;  // [R][2G] of spec.val
  std::vector<int32_t> columns; // [B][G][4]
  std::vector<uint8_t> meta;    // [R][meta_cols]
  std::vector<int32_t> row_index;  // [R] or empty
  std::vector<uint8_t> bias;    // [N_out] of spec.act or empty
  std::vector<uint8_t> A;       // [T][K] of spec.act

  vnmc::TensorView values_view() const;
  vnmc::TensorView columns_view() const;
  vnmc::TensorView meta_view() const;
  vnmc::TensorView row_index_view() const;  // present == false when absent
  vnmc::TensorView bias_view() const;
};

CaseData make_case(const CaseSpec& spec);

// Independent decoders (test-side).
double decode(DType t, const void* base, int64_t i);
size_t elem_size(DType t);

// Dense reference: y[t][o] and scale[t][o] = |bias| + sum |a*w| (for tolerances).
void reference(const CaseData& c, std::vector<double>* y, std::vector<double>* scale);

// Compares an output buffer (spec.act elements, [T][N_out]) with the reference; returns "" or the
// first mismatch.
std::string compare(const CaseData& c, const void* out, const std::vector<double>& y, const std::vector<double>& scale);

}  // namespace vnmc_test
