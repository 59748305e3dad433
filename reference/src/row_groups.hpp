// Shared plumbing of the reference formulations: which rows each slot owns,
// and gathering strided host tensors into dense float64 Eigen matrices.
#pragma once
#include <Eigen/Dense>
#include <map>
#include <vector>

#include "mlalora/host_tensors.hpp"
#include "mlalora/problem.hpp"
#include "mlalora/reference/reference.hpp"

namespace mlalora::reference::detail {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows of the result and, for each slot with work, the positions of its rows.
struct RowPlan {
  SideDelta skeleton;                             // rows, slots, H, N filled; values zeroed
  std::map<int32_t, std::vector<size_t>> by_slot; // slot -> positions in skeleton.rows
};
RowPlan plan_rows(const Problem& p, Side side, const RowSelection& sel);

// X[k, c] = t.at(rows[pos_k], h, c) for c < cols, from an (S,H,*) tensor.
MatD gather_rows(const HostTensor& t, const std::vector<int64_t>& rows, const std::vector<size_t>& positions,
                 int64_t h, int64_t cols, bool absolute);
// Block of a weight: t.at(l, r0 + i, c0 + j) for i < nr, j < nc.
MatD weight_block(const HostTensor& t, int64_t l, int64_t r0, int64_t nr, int64_t c0, int64_t nc, bool absolute);
// Add M (positions.size() x N) into the result rows for head h.
void scatter_rows(SideDelta& out, const std::vector<size_t>& positions, int64_t h, const MatD& M);

}  // namespace mlalora::reference::detail
