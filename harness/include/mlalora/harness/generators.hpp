// Random problems, one definition for the property tests, the CLI and the
// GPU suite.
//
// gen_case() is a rapidcheck generator: dims first, then (gen::mapcat) the
// slots, segments, routing and layout that depend on them, so rapidcheck's
// shrinking walks a failing case down to the smallest batch that still fails
// (fewest segments, smallest dims, rank 0 -> small ranks, no permutation,
// contiguous strides). The same generator is sampled with an explicit seed by
// `mlalora verify` (sample_case), so a CLI failure and a property failure are
// the same kind of object.
//
// Tensor values are not part of the shrinkable structure: a Case carries a
// data seed and make_tensors() draws the values from it deterministically.
#pragma once
#include <rapidcheck.h>

#include <cstdint>
#include <ostream>
#include <vector>

#include "mlalora/host_tensors.hpp"
#include "mlalora/problem.hpp"

namespace mlalora::harness {

struct GenConfig {
  std::vector<DType> dtypes{DType::f32, DType::f16, DType::bf16};
  // Candidate sizes: small, tile edges and non-multiples of any tile.
  std::vector<int64_t> head_dims{1, 3, 8, 16, 17, 32, 64, 130};  // D_qk, D_v
  std::vector<int64_t> latent_dims{1, 5, 16, 31, 64, 130};       // R_kv
  std::vector<int64_t> head_counts{1, 2, 3, 4, 5, 8};             // H
  int64_t max_tokens = 40;                                        // S
  int64_t max_slots = 4;                                          // L
  int64_t max_rank = 20;                                          // r_max (uniform in [1, max_rank])
  std::vector<int64_t> r_max_choices;                             // if set: r_max drawn from these instead
  int64_t max_segments = 6;
  bool allow_permutation = true;
  bool allow_strides = true;          // padded (non-contiguous) outer strides
  bool allow_inner_stride = true;     // inner stride > 1 (CUDA kernels need 1)
  bool allow_spare_capacity = true;   // capacity > live count, garbage in the spare entries
  bool inject_nonfinite = false;      // sometimes put a NaN/Inf into one input element
  bool aligned_strides = false;       // padding only in multiples of 8 elements (16-byte rows)
  static GenConfig cpu_default() { return {}; }
  static GenConfig gpu_default();     // unit inner stride, larger tiles
  static GenConfig model_scale();     // DeepSeek-like dims (D=128, R_kv=512), modest S
  static GenConfig gpu_fast_path();   // dims/strides the fused fast path takes (multiples of 16/64, aligned)
};

struct Case {
  Problem problem;
  uint64_t data_seed = 0;
  bool nonfinite = false;  // the tensors get one NaN/Inf input element
};
std::ostream& operator<<(std::ostream& os, const Case& c);

rc::Gen<Case> gen_case(const GenConfig& cfg);
// Draw the case the generator yields for (seed, size); size in [0, 100]
// grows the problems like rapidcheck's test size.
Case sample_case(const GenConfig& cfg, uint64_t seed, int size = 50);

// Deterministic tensor values for a case: inputs N(0,1) with per-row
// magnitudes 2^[-5,5] (large rows hide errors, near-zero rows expose fixed
// tolerances), weights N(0, 1/16), base outputs nonzero random except about
// one (token, head) row in 8 of -0.0 (adding +0.0 there flips the sign bit,
// so the bitwise-untouched rule sees a rank-0 slot that was not skipped),
// all rounded to the dtype. Gap elements of strided layouts hold kGapSentinel.
ProblemTensors make_tensors(const Case& c);
inline constexpr uint32_t kGapSentinelBits = 0x7fc0dead;  // a NaN with a recognisable payload

// A problem with contiguous layout and the given routing, for hand-built tests.
Problem make_problem(const Dims& d, DType dtype, std::vector<int32_t> ranks, std::vector<float> scalings,
                     std::vector<int32_t> seg_indptr, std::vector<int32_t> weight_indices,
                     std::vector<int32_t> permutation = {});

}  // namespace mlalora::harness

namespace rc {
template <>
struct Arbitrary<mlalora::harness::Case> {
  static Gen<mlalora::harness::Case> arbitrary() {
    return mlalora::harness::gen_case(mlalora::harness::GenConfig::cpu_default());
  }
};
}  // namespace rc
