// The float64 reference of SPEC: two independent formulations.
//
//  * delta_materialized: builds dW = B[:, :r] @ A[:r, :] for each slot (head
//    block by head block, so full-scale problems fit in memory) and applies it:
//    the definition, with no algebraic shortcut.
//  * delta_factored: (x @ B_kc) @ A and (a @ A^T) @ B_vc^T, never builds dW.
//    Must agree with the materialised one to ~1e-12 relative.
//  * abs_product: the factored chain on absolute values, P = |x|@|B_kc|@|A|
//    (q) and |a|@|A^T|@|B_vc^T| (v), scaled by |s|: the scale of every error bound.
//
// All three return the *delta* s * (...) for the covered physical rows (rows
// of an uncovered token are absent: they must not change at all). At large S
// a caller may ask for a seeded subset of rows (RowSelection), which is how
// the harness keeps full-model-scale verification practical on a small CPU.
#pragma once
#include <cstdint>
#include <vector>

#include "mlalora/host_tensors.hpp"
#include "mlalora/problem.hpp"

namespace mlalora::reference {

struct SideDelta {
  Side side = Side::q;
  int64_t H = 0, N = 0;        // heads, output features (R_kv for q, D_v for v)
  std::vector<int64_t> rows;   // physical token rows present, ascending
  std::vector<int32_t> slots;  // slot covering each row
  std::vector<double> values;  // rows.size() * H * N, row-major

  double at(size_t row_pos, int64_t h, int64_t n) const {
    return values[(row_pos * static_cast<size_t>(H) + static_cast<size_t>(h)) * static_cast<size_t>(N) +
                  static_cast<size_t>(n)];
  }
  // Position of physical row t in `rows`, or -1.
  int64_t position_of(int64_t t) const;
};

// Which covered rows to compute. Empty `only_rows` means all covered rows.
struct RowSelection {
  std::vector<int64_t> only_rows;  // physical rows (covered ones are kept, others ignored)
  static RowSelection all() { return {}; }
  // A seeded random sample of at most `max_rows` covered rows (all if fewer).
  static RowSelection sample(const Problem& p, int64_t max_rows, uint64_t seed);
};

SideDelta delta_materialized(const Problem& p, const ProblemTensors& t, Side side,
                             const RowSelection& sel = RowSelection::all());
SideDelta delta_factored(const Problem& p, const ProblemTensors& t, Side side,
                         const RowSelection& sel = RowSelection::all());
SideDelta abs_product(const Problem& p, const ProblemTensors& t, Side side,
                      const RowSelection& sel = RowSelection::all());

// Maximum over elements of |a - b| / max(|a|, |b|, tiny) restricted to finite
// pairs; the materialised/factored agreement metric.
double max_relative_difference(const SideDelta& a, const SideDelta& b);

}  // namespace mlalora::reference
