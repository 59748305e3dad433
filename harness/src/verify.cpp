#include "mlalora/harness/verify.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace mlalora::harness {

std::string SideVerdict::describe() const {
  std::ostringstream o;
  o << side_name(side) << "-side: " << (passed() ? "passed" : "FAILED") << ", checked " << elements_checked
    << " + untouched " << elements_untouched << ", max err/bound " << max_error_bound_ratio << ", max abs err "
    << max_abs_error << ", rel frob " << rel_frobenius_error;
  if (!passed()) {
    auto m = [](const Mismatch& x) {
      std::ostringstream s;
      s << x.why << " at (t=" << x.t << ", h=" << x.h << ", n=" << x.n << ") got " << x.got << " want " << x.want
        << " bound " << x.bound;
      return s.str();
    };
    o << "; bad " << bad_count << " (bound " << bound_violations << ", NaN/Inf introduced " << nonfinite_introduced
      << ", lost " << nonfinite_lost << ", outside " << written_outside << "); first: " << m(first_bad)
      << "; last: " << m(last_bad);
  }
  return o.str();
}

SideExpectation expect_side(const Problem& p, const ProblemTensors& in, Side side,
                            const reference::RowSelection& sel) {
  const Dims& d = p.dims();
  SideExpectation e;
  e.delta = reference::delta_factored(p, in, side, sel);
  e.abs_prod = reference::abs_product(p, in, side, sel);
  const HostTensor& x = side == Side::q ? in.q_nope : in.attn_latent;
  const int64_t K = side == Side::q ? d.D_qk : d.R_kv;
  e.input_abs_sum.assign(e.delta.rows.size() * static_cast<size_t>(d.H), 0.0);
  for (size_t r = 0; r < e.delta.rows.size(); ++r)
    for (int64_t h = 0; h < d.H; ++h) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += std::fabs(static_cast<double>(x.at(e.delta.rows[r], h, k)));
      e.input_abs_sum[r * d.H + h] = s;
    }
  e.second_stage_colsum.assign(static_cast<size_t>(d.L), 0.0);
  for (int64_t l = 0; l < d.L; ++l) {
    const int64_t r = p.lora_ranks[l];
    const double s = std::fabs(static_cast<double>(p.scalings[l]));
    double worst = 0;
    if (side == Side::q) {
      for (int64_t n = 0; n < d.R_kv; ++n) {
        double c = 0;
        for (int64_t k = 0; k < r; ++k) c += std::fabs(static_cast<double>(in.A.at(l, k, n)));
        worst = std::max(worst, c);
      }
    } else {
      for (int64_t row = 0; row < d.H * d.F(); ++row) {
        double c = 0;
        for (int64_t k = 0; k < r; ++k) c += std::fabs(static_cast<double>(in.B.at(l, row, k)));
        worst = std::max(worst, c);
      }
    }
    e.second_stage_colsum[l] = s * worst;
  }
  return e;
}

namespace {

void note(SideVerdict& v, Mismatch m) {
  if (v.bad_count == 0) v.first_bad = m;
  v.last_bad = std::move(m);
  ++v.bad_count;
}

}  // namespace

SideVerdict verify_side(const Problem& p, const ProblemTensors& base, const HostTensor& out, Side side,
                        const SideExpectation& ex, const reference::RoundingModel& model) {
  const Dims& d = p.dims();
  const DType dt = p.shape.dtype;
  const HostTensor& b = base.of(output_of(side));
  SideVerdict v;
  v.side = side;
  const int64_t N = side == Side::q ? d.R_kv : d.D_v;

  // Which storage elements are judged by the bound; everything else must keep its bits.
  std::vector<char> judged(b.data.size(), 0);
  std::vector<char> covered_row(static_cast<size_t>(d.S), 0);  // covered by a live segment with rank > 0
  for_each_covered_row(p, [&](int64_t, int64_t, int64_t t, int32_t l) {
    if (p.lora_ranks[l] > 0) covered_row[t] = 1;
  });

  double err2 = 0, ref2 = 0;
  const auto& rows = ex.delta.rows;
  for (size_t pos = 0; pos < rows.size(); ++pos) {
    const int64_t t = rows[pos];
    const int32_t slot = ex.delta.slots[pos];
    const int32_t rank = p.lora_ranks[slot];
    if (rank == 0) continue;  // bitwise rule applies
    const reference::BoundTerms bt = reference::bound_terms(model, d, rank, side);
    for (int64_t h = 0; h < d.H; ++h) {
      const double eta_scale = model.materializes ? ex.input_abs_sum[pos * d.H + h] : ex.second_stage_colsum[slot];
      for (int64_t n = 0; n < N; ++n) {
        const size_t off = static_cast<size_t>(b.offset(t, h, n));
        judged[off] = 1;
        ++v.elements_checked;
        const double base_v = b.data[off];
        const double got = out.data[off];
        const double want = ex.delta.at(pos, h, n);
        const double P = ex.abs_prod.at(pos, h, n);
        const double got_delta = got - base_v;
        if (!std::isfinite(want) || !std::isfinite(P) || !std::isfinite(base_v)) {
          // Non-finite input reaches this element (or the base is non-finite):
          // the output must be non-finite too.
          if (std::isfinite(got) && (!std::isfinite(want) || !std::isfinite(base_v))) {
            ++v.nonfinite_lost;
            note(v, {t, h, n, got, want, 0, "NaN/Inf lost"});
          }
          continue;
        }
        if (!std::isfinite(got)) {
          ++v.nonfinite_introduced;
          note(v, {t, h, n, got, base_v + want, 0, "NaN/Inf introduced"});
          continue;
        }
        const double bound = reference::element_bound(bt, P, base_v + want, eta_scale);
        const double err = std::fabs(got_delta - want);
        v.max_abs_error = std::max(v.max_abs_error, err);
        err2 += err * err;
        ref2 += want * want;
        const double ratio = err == 0 ? 0 : (bound > 0 ? err / bound : INFINITY);
        v.max_error_bound_ratio = std::max(v.max_error_bound_ratio, ratio);
        if (err > bound) {
          ++v.bound_violations;
          note(v, {t, h, n, got, base_v + want, bound, "error > bound"});
        }
      }
    }
  }
  v.rel_frobenius_error = ref2 > 0 ? std::sqrt(err2 / ref2) : (err2 > 0 ? INFINITY : 0.0);

  // Bitwise: every storage element not judged above, except rows that are
  // covered (rank > 0) but were left out of a row sample.
  std::vector<char> logical_in_unchecked_covered(b.data.size(), 0);
  for (int64_t t = 0; t < d.S; ++t) {
    if (!covered_row[t] || ex.delta.position_of(t) >= 0) continue;
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t n = 0; n < N; ++n) logical_in_unchecked_covered[static_cast<size_t>(b.offset(t, h, n))] = 1;
  }
  // Count in parallel (full-scale outputs are large); walk serially only to
  // describe the first and last changed element when there are any.
  const int64_t nstore = static_cast<int64_t>(b.data.size());
  int64_t untouched = 0, changed = 0;
#pragma omp parallel for reduction(+ : untouched, changed) schedule(static)
  for (int64_t k = 0; k < nstore; ++k) {
    const size_t off = static_cast<size_t>(k);
    if (judged[off] || logical_in_unchecked_covered[off]) continue;
    ++untouched;
    changed += to_bits(dt, b.data[off]) != to_bits(dt, out.data[off]);
  }
  v.elements_untouched = untouched;
  for (size_t off = 0; changed > 0 && off < b.data.size(); ++off) {
    if (judged[off] || logical_in_unchecked_covered[off]) continue;
    if (to_bits(dt, b.data[off]) != to_bits(dt, out.data[off])) {
      ++v.written_outside;
      // Recover (t, h, n) for the message when the element is logical.
      Mismatch m{-1, -1, -1, out.data[off], b.data[off], 0, "written outside segments"};
      const Strides3& st = b.strides;
      int64_t rem = static_cast<int64_t>(off);
      if (st.s0 > 0 && st.s1 > 0 && st.s2 > 0 && st.s0 >= st.s1 && st.s1 >= st.s2) {
        int64_t t = rem / st.s0, h = (rem % st.s0) / st.s1, n = ((rem % st.s0) % st.s1) / st.s2;
        if (t < d.S && h < d.H && n < N && b.offset(t, h, n) == rem) m.t = t, m.h = h, m.n = n;
      }
      note(v, m);
    }
  }
  return v;
}

}  // namespace mlalora::harness
