// The definition, verbatim: dW = B[:, :r] @ A[:r, :] per slot, then applied.
// dW is built one head block at a time (rows [h*F, (h+1)*F) of B @ A) so a
// full DeepSeek-scale slot (H*F x R_kv doubles = 128 MiB) never has to be
// resident at once; the arithmetic is the same.
#include "row_groups.hpp"

namespace mlalora::reference {

using detail::MatD;

SideDelta delta_materialized(const Problem& p, const ProblemTensors& t, Side side, const RowSelection& sel) {
  const Dims& d = p.dims();
  detail::RowPlan plan = detail::plan_rows(p, side, sel);
  SideDelta& out = plan.skeleton;
  for (const auto& [slot, positions] : plan.by_slot) {
    const int64_t r = p.lora_ranks[slot];
    if (r == 0 || positions.empty()) continue;
    const double s = p.scalings[slot];
    const MatD A = detail::weight_block(t.A, slot, 0, r, 0, d.R_kv, false);  // r x R_kv
#pragma omp parallel for schedule(dynamic)
    for (int64_t h = 0; h < d.H; ++h) {
      if (side == Side::q) {
        MatD Bk = detail::weight_block(t.B, slot, h * d.F(), d.D_qk, 0, r, false);  // D_qk x r
        MatD dWk = Bk * A;                                                          // D_qk x R_kv
        MatD X = detail::gather_rows(t.q_nope, out.rows, positions, h, d.D_qk, false);
        MatD Y = s * (X * dWk);
        detail::scatter_rows(out, positions, h, Y);
      } else {
        MatD Bv = detail::weight_block(t.B, slot, h * d.F() + d.D_qk, d.D_v, 0, r, false);  // D_v x r
        MatD dWv = Bv * A;                                                                  // D_v x R_kv
        MatD X = detail::gather_rows(t.attn_latent, out.rows, positions, h, d.R_kv, false);
        MatD Y = s * (X * dWv.transpose());
        detail::scatter_rows(out, positions, h, Y);
      }
    }
  }
  return out;
}

}  // namespace mlalora::reference
