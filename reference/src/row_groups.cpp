#include "row_groups.hpp"

#include <algorithm>
#include <random>
#include <set>

namespace mlalora::reference {

int64_t SideDelta::position_of(int64_t t) const {
  auto it = std::lower_bound(rows.begin(), rows.end(), t);
  return (it != rows.end() && *it == t) ? static_cast<int64_t>(it - rows.begin()) : -1;
}

RowSelection RowSelection::sample(const Problem& p, int64_t max_rows, uint64_t seed) {
  std::vector<int64_t> covered;
  for_each_covered_row(p, [&](int64_t, int64_t, int64_t t, int32_t) { covered.push_back(t); });
  RowSelection s;
  if (static_cast<int64_t>(covered.size()) <= max_rows) return s;  // all
  std::mt19937_64 rng(seed);
  std::shuffle(covered.begin(), covered.end(), rng);
  covered.resize(static_cast<size_t>(std::max<int64_t>(max_rows, 1)));
  std::sort(covered.begin(), covered.end());
  s.only_rows = std::move(covered);
  return s;
}

double max_relative_difference(const SideDelta& a, const SideDelta& b) {
  if (a.values.size() != b.values.size() || a.rows != b.rows) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (size_t i = 0; i < a.values.size(); ++i) {
    double x = a.values[i], y = b.values[i];
    if (!std::isfinite(x) || !std::isfinite(y)) {
      if (std::isfinite(x) != std::isfinite(y)) return std::numeric_limits<double>::infinity();
      continue;
    }
    double scale = std::max({std::fabs(x), std::fabs(y), 1e-300});
    worst = std::max(worst, std::fabs(x - y) / scale);
  }
  return worst;
}

namespace detail {

RowPlan plan_rows(const Problem& p, Side side, const RowSelection& sel) {
  const Dims& d = p.dims();
  std::set<int64_t> wanted(sel.only_rows.begin(), sel.only_rows.end());
  std::vector<std::pair<int64_t, int32_t>> row_slot;
  for_each_covered_row(p, [&](int64_t, int64_t, int64_t t, int32_t l) {
    if (wanted.empty() || wanted.count(t)) row_slot.emplace_back(t, l);
  });
  std::sort(row_slot.begin(), row_slot.end());
  RowPlan plan;
  SideDelta& s = plan.skeleton;
  s.side = side;
  s.H = d.H;
  s.N = side == Side::q ? d.R_kv : d.D_v;
  for (size_t k = 0; k < row_slot.size(); ++k) {
    s.rows.push_back(row_slot[k].first);
    s.slots.push_back(row_slot[k].second);
    plan.by_slot[row_slot[k].second].push_back(k);
  }
  s.values.assign(s.rows.size() * static_cast<size_t>(s.H * s.N), 0.0);
  return plan;
}

MatD gather_rows(const HostTensor& t, const std::vector<int64_t>& rows, const std::vector<size_t>& positions,
                 int64_t h, int64_t cols, bool absolute) {
  MatD X(static_cast<Eigen::Index>(positions.size()), cols);
  for (size_t k = 0; k < positions.size(); ++k) {
    int64_t row = rows[positions[k]];
    for (int64_t c = 0; c < cols; ++c) {
      double v = t.at(row, h, c);
      X(static_cast<Eigen::Index>(k), c) = absolute ? std::fabs(v) : v;
    }
  }
  return X;
}

MatD weight_block(const HostTensor& t, int64_t l, int64_t r0, int64_t nr, int64_t c0, int64_t nc, bool absolute) {
  MatD W(nr, nc);
  for (int64_t i = 0; i < nr; ++i)
    for (int64_t j = 0; j < nc; ++j) {
      double v = t.at(l, r0 + i, c0 + j);
      W(i, j) = absolute ? std::fabs(v) : v;
    }
  return W;
}

void scatter_rows(SideDelta& out, const std::vector<size_t>& positions, int64_t h, const MatD& M) {
  for (size_t k = 0; k < positions.size(); ++k) {
    double* dst = &out.values[(positions[k] * static_cast<size_t>(out.H) + static_cast<size_t>(h)) *
                              static_cast<size_t>(out.N)];
    for (int64_t n = 0; n < out.N; ++n) dst[n] += M(static_cast<Eigen::Index>(k), n);
  }
}

}  // namespace detail
}  // namespace mlalora::reference
