// Componentwise error bounds for an implementation's delta (SPEC "Numerics";
// derivation in reference/ERROR_MODEL.md).
//
// Every implementation computes, per output element, a chain of two
// contractions and a scaled accumulate:
//   factored q-side:  y = x @ B_kc (K1 = D_qk terms), round y, z = y @ A (K2 = r terms)
//   factored v-side:  y = a @ A^T  (K1 = R_kv),       round y, z = y @ B_vc^T (K2 = r)
//   materialising:    dW = B @ A (K1 = r), round dW,  z = x @ dW (K2 = D_qk or R_kv)
// then out = round_out(base + s * z). With P the float64 product of absolute
// values (|x| @ |B_kc| @ |A| etc., the same for both orders) the computed
// delta obeys
//   |delta_hat - delta| <= c * |s| * P + u_out_total * |base + delta|,
//   c = (1+g(K1))(1+u_mid)(1+g(K2))(1+u_acc) - 1,  g(n) = n u_acc / (1 - n u_acc)
// where u_out_total covers the fp32 add and the output rounding.
#pragma once
#include <string>

#include "mlalora/dtype.hpp"
#include "mlalora/problem.hpp"

namespace mlalora::reference {

struct RoundingModel {
  // Unit roundoff of one accumulation step. 2^-24 for fp32 round-to-nearest;
  // tensor-core fp32 accumulation may truncate, so kernels using MMA declare
  // 2^-23. 0 for exact (float64 treated as exact against the bound's scale).
  double u_accumulate = 0.0;
  // Rounding of the rank-r intermediate (factored) or of dW (materialising).
  double u_intermediate = 0.0;
  // Rounding of the final output value (unit roundoff of the output dtype),
  // including the fp32 add that precedes it.
  double u_output = 0.0;
  bool materializes = false;  // chain order: dW first (naive) vs x@B first (factored)
  // Absolute error of a rounding that lands in the subnormal range: half the
  // smallest subnormal of the intermediate / output dtype (f16: 2^-25). Relative
  // bounds alone do not hold there, and near-zero rows are a case SPEC names.
  double eta_intermediate = 0.0;
  double eta_output = 0.0;
  std::string describe() const;

  // Named models used by the project's implementations.
  static RoundingModel float64();                            // reference paths, compared in double
  static RoundingModel output_only(DType io);                // fp64 math, output rounded to io dtype
  static RoundingModel factored(DType io, bool tensor_core);  // our CUDA split/fused kernels
  static RoundingModel materialized(DType io, bool tensor_core);  // cuBLAS naive: dW rounded to io dtype
};

// Coefficient c of the bound for a side (see header comment).
double chain_coefficient(const RoundingModel& m, const Dims& d, int32_t rank, Side side);

// The per-(slot, side) constants of the bound; element_bound combines them
// with the element's data-dependent scales.
struct BoundTerms {
  double c = 0;          // relative coefficient on P
  double u_out = 0;      // output rounding (relative)
  double eta_mid = 0;    // absolute rounding floor of the intermediate
  double eta_out = 0;    // absolute rounding floor of the output
};
BoundTerms bound_terms(const RoundingModel& m, const Dims& d, int32_t rank, Side side);

// Bound on |delta_hat - delta| for one element.
//  P           : |s| * (float64 product of absolute values), from abs_product()
//  out_exact   : base + delta, the exact output value
//  eta_scale   : how an absolute error of 1 in each rounded intermediate
//                element reaches this output: factored, |s| * sum_k |W2[k, n]|
//                (W2 = A[:r] for q, B_vc[h] for v); materialising, sum_k |x_k|.
inline double element_bound(const BoundTerms& b, double P, double out_exact, double eta_scale) {
  return (1.0 + b.u_out) * (b.c * P + b.eta_mid * eta_scale) + b.u_out * (out_exact < 0 ? -out_exact : out_exact) +
         b.eta_out;
}

}  // namespace mlalora::reference
