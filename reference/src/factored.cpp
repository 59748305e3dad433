// The factored form (what every SGMM kernel computes): never builds B @ A.
// abs_product runs the same chain on absolute values: the scale P of the
// componentwise error bound (ERROR_MODEL.md).
#include <cmath>

#include "row_groups.hpp"

namespace mlalora::reference {

using detail::MatD;

namespace {

SideDelta factored_chain(const Problem& p, const ProblemTensors& t, Side side, const RowSelection& sel,
                         bool absolute) {
  const Dims& d = p.dims();
  detail::RowPlan plan = detail::plan_rows(p, side, sel);
  SideDelta& out = plan.skeleton;
  for (const auto& [slot, positions] : plan.by_slot) {
    const int64_t r = p.lora_ranks[slot];
    if (r == 0 || positions.empty()) continue;
    const double s = absolute ? std::fabs(static_cast<double>(p.scalings[slot])) : p.scalings[slot];
    const MatD A = detail::weight_block(t.A, slot, 0, r, 0, d.R_kv, absolute);  // r x R_kv
#pragma omp parallel for schedule(dynamic)
    for (int64_t h = 0; h < d.H; ++h) {
      if (side == Side::q) {
        MatD Bk = detail::weight_block(t.B, slot, h * d.F(), d.D_qk, 0, r, absolute);  // D_qk x r
        MatD X = detail::gather_rows(t.q_nope, out.rows, positions, h, d.D_qk, absolute);
        MatD Y = X * Bk;  // n x r: the rank-r intermediate
        MatD Z = s * (Y * A);
        detail::scatter_rows(out, positions, h, Z);
      } else {
        MatD Bv = detail::weight_block(t.B, slot, h * d.F() + d.D_qk, d.D_v, 0, r, absolute);  // D_v x r
        MatD X = detail::gather_rows(t.attn_latent, out.rows, positions, h, d.R_kv, absolute);
        MatD Y = X * A.transpose();  // n x r
        MatD Z = s * (Y * Bv.transpose());
        detail::scatter_rows(out, positions, h, Z);
      }
    }
  }
  return out;
}

}  // namespace

SideDelta delta_factored(const Problem& p, const ProblemTensors& t, Side side, const RowSelection& sel) {
  return factored_chain(p, t, side, sel, false);
}

SideDelta abs_product(const Problem& p, const ProblemTensors& t, Side side, const RowSelection& sel) {
  return factored_chain(p, t, side, sel, true);
}

}  // namespace mlalora::reference
