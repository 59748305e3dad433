// Judging an implementation's output against the float64 reference with the
// componentwise error model (reference/ERROR_MODEL.md).
//
// For each side: every element of every checked covered row (rank > 0) must
// satisfy |(out - base) - delta| <= bound, NaN/Inf must appear exactly where
// the reference has them, and every other storage element of the output
// (uncovered rows, rank-0 rows, gaps of strided layouts) must be bitwise
// unchanged in the dtype's storage bits.
#pragma once
#include <cstdint>
#include <string>

#include "mlalora/host_tensors.hpp"
#include "mlalora/problem.hpp"
#include "mlalora/reference/error_bound.hpp"
#include "mlalora/reference/reference.hpp"

namespace mlalora::harness {

struct Mismatch {
  int64_t t = -1, h = -1, n = -1;  // physical row, head, feature (n = -1: gap element)
  double got = 0, want = 0, bound = 0;
  std::string why;  // "error > bound", "NaN/Inf introduced", "NaN/Inf lost", "written outside segments"
};

struct SideVerdict {
  Side side = Side::q;
  int64_t elements_checked = 0;   // bound-checked elements
  int64_t elements_untouched = 0; // bitwise-checked elements
  double max_abs_error = 0;       // over finite expected elements
  double rel_frobenius_error = 0; // ||delta_hat - delta||_F / ||delta||_F (0 if both zero)
  double max_error_bound_ratio = 0;
  int64_t nonfinite_introduced = 0;
  int64_t nonfinite_lost = 0;
  int64_t bound_violations = 0;
  int64_t written_outside = 0;
  int64_t bad_count = 0;  // total of the four counters above
  Mismatch first_bad, last_bad;

  bool passed() const { return bad_count == 0; }
  std::string describe() const;  // one line: counts, worst ratio, first and last bad index
};

// Reference material for one side of a case, computed once and shared by
// every implementation judged on it.
struct SideExpectation {
  reference::SideDelta delta;    // float64 factored delta (s included)
  reference::SideDelta abs_prod; // |s| * |x| @ |W1| @ |W2|
  // Per (row, head): sum_k |x_k| (for the materialising model's eta term).
  std::vector<double> input_abs_sum;
  // Per slot: max_n sum_k |W2[k, n]| * |s| (factored eta term), conservative.
  std::vector<double> second_stage_colsum;
};
SideExpectation expect_side(const Problem& p, const ProblemTensors& inputs, Side side,
                            const reference::RowSelection& sel);

SideVerdict verify_side(const Problem& p, const ProblemTensors& base, const HostTensor& out, Side side,
                        const SideExpectation& expected, const reference::RoundingModel& model);

}  // namespace mlalora::harness
