#include "impl_properties.hpp"

#include <cmath>
#include <numeric>
#include <sstream>

namespace mlalora::test {

using harness::Case;
using harness::Implementation;
using harness::Testbed;

namespace {

// Run impl on explicit tensors; returns the status.
Status run_on(Implementation& impl, const Problem& p, ProblemTensors& io) { return impl.run(p, io); }

std::string where(const Problem& p, int64_t t, int64_t h, int64_t n, Side s) {
  std::ostringstream o;
  o << side_name(s) << "-side (t=" << t << ", h=" << h << ", n=" << n << ") in " << p.summary();
  return o.str();
}

}  // namespace

std::optional<PropertyFailure> prop_error_bound(Implementation& impl, const Case& c) {
  Testbed tb(c);
  harness::RunOutcome o = tb.run(impl);
  if (o.disposition == harness::Disposition::passed || o.disposition == harness::Disposition::not_supported)
    return std::nullopt;
  return PropertyFailure{o.disposition == harness::Disposition::failed ? "run" : "error-bound", o.message};
}

Case without_permutation(const Case& c, const ProblemTensors& in, ProblemTensors* out) {
  Case r = c;
  Problem& p = r.problem;
  p.shape.has_permutation = false;
  p.permutation.clear();
  *out = in;
  if (!c.problem.shape.has_permutation) return r;
  // New physical row i <- old physical row perm[i], for every row (perm is a bijection of [0,S)).
  const auto& perm = c.problem.permutation;
  for (TensorId id : {TensorId::q_nope, TensorId::attn_latent, TensorId::q_nope_out, TensorId::attn_bmm_out}) {
    const HostTensor& src = in.of(id);
    HostTensor& dst = out->of(id);
    for (int64_t i = 0; i < src.shape[0]; ++i)
      for (int64_t h = 0; h < src.shape[1]; ++h)
        for (int64_t k = 0; k < src.shape[2]; ++k) dst.at(i, h, k) = src.at(perm[i], h, k);
  }
  return r;
}

std::optional<PropertyFailure> prop_permutation_equivariance(Implementation& impl, const Case& c) {
  const Problem& p = c.problem;
  if (!p.shape.has_permutation || c.nonfinite) return std::nullopt;
  // Only full permutations of [0,S) can be undone row for row.
  std::vector<int32_t> sorted = p.permutation;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    if (sorted[i] != static_cast<int32_t>(i)) return std::nullopt;
  if (!impl.supports(p).ok()) return std::nullopt;
  ProblemTensors in = harness::make_tensors(c);
  ProblemTensors plain_in;
  Case plain = without_permutation(c, in, &plain_in);
  ProblemTensors a = in, b = plain_in;
  Status sa = run_on(impl, p, a), sb = run_on(impl, plain.problem, b);
  if (!sa.ok() || !sb.ok())
    return PropertyFailure{"run", "permutation-equivariance run failed: " + sa.message + " / " + sb.message};
  // Results agree within twice the bound of the shared exact value.
  for (Side side : kBothSides) {
    harness::SideExpectation ex = harness::expect_side(plain.problem, plain_in, side, reference::RowSelection::all());
    const reference::RoundingModel m = impl.rounding_model(p, side);
    const HostTensor& oa = a.of(output_of(side));
    const HostTensor& ob = b.of(output_of(side));
    for (size_t pos = 0; pos < ex.delta.rows.size(); ++pos) {
      const int64_t i = ex.delta.rows[pos];
      const int32_t rank = p.lora_ranks[ex.delta.slots[pos]];
      if (rank == 0) continue;
      const reference::BoundTerms bt = reference::bound_terms(m, p.dims(), rank, side);
      for (int64_t h = 0; h < ex.delta.H; ++h) {
        const double eta = m.materializes ? ex.input_abs_sum[pos * ex.delta.H + h]
                                          : ex.second_stage_colsum[ex.delta.slots[pos]];
        for (int64_t n = 0; n < ex.delta.N; ++n) {
          const double base = plain_in.of(output_of(side)).at(i, h, n);
          const double bound =
              reference::element_bound(bt, ex.abs_prod.at(pos, h, n), base + ex.delta.at(pos, h, n), eta);
          const double x = oa.at(p.permutation[i], h, n), y = ob.at(i, h, n);
          if (!(std::fabs(x - y) <= 2 * bound))
            return PropertyFailure{"permutation-equivariance",
                                   "permuted vs reordered differ by " + std::to_string(std::fabs(x - y)) +
                                       " > 2*bound " + std::to_string(2 * bound) + " at " +
                                       where(p, p.permutation[i], h, n, side)};
        }
      }
    }
  }
  return std::nullopt;
}

std::optional<PropertyFailure> prop_scaling_linearity(Implementation& impl, const Case& c) {
  if (c.nonfinite) return std::nullopt;
  // Doubling every scaling doubles the delta: judged by the error model on
  // the doubled problem (a kernel that ignores or squares s fails it), and the
  // doubled delta must be close to twice the original one.
  Case c2 = c;
  for (float& s : c2.problem.scalings) s *= 2.f;
  if (auto f = prop_error_bound(impl, c2)) {
    f->property = "scaling-linearity";
    f->detail = "with every scaling doubled: " + f->detail;
    return f;
  }
  return std::nullopt;
}

std::optional<PropertyFailure> prop_head_independence(Implementation& impl, const Case& c) {
  const Problem& p = c.problem;
  const Dims& d = p.dims();
  if (d.H < 2 || c.nonfinite || !impl.supports(p).ok()) return std::nullopt;
  // Perturb everything that belongs to the last head (its activations and its
  // rows of B); the outputs of every other head must not change by one bit.
  ProblemTensors in = harness::make_tensors(c);
  ProblemTensors pert = in;
  const int64_t hp = d.H - 1;
  for (TensorId id : {TensorId::q_nope, TensorId::attn_latent}) {
    HostTensor& t = pert.of(id);
    for (int64_t i = 0; i < t.shape[0]; ++i)
      for (int64_t k = 0; k < t.shape[2]; ++k) t.at(i, hp, k) = round_to(p.shape.dtype, t.at(i, hp, k) * -3.f + 1.f);
  }
  for (int64_t l = 0; l < d.L; ++l)
    for (int64_t row = hp * d.F(); row < (hp + 1) * d.F(); ++row)
      for (int64_t k = 0; k < d.r_max; ++k) pert.B.at(l, row, k) = round_to(p.shape.dtype, pert.B.at(l, row, k) * 2.f + 0.5f);
  ProblemTensors a = in, b = pert;
  Status sa = run_on(impl, p, a), sb = run_on(impl, p, b);
  if (!sa.ok() || !sb.ok()) return PropertyFailure{"run", "head-independence run failed: " + sa.message + " / " + sb.message};
  for (Side side : kBothSides) {
    const HostTensor& oa = a.of(output_of(side));
    const HostTensor& ob = b.of(output_of(side));
    for (int64_t t = 0; t < d.S; ++t)
      for (int64_t h = 0; h < hp; ++h)
        for (int64_t n = 0; n < oa.shape[2]; ++n)
          if (to_bits(p.shape.dtype, oa.at(t, h, n)) != to_bits(p.shape.dtype, ob.at(t, h, n)))
            return PropertyFailure{"head-independence", "perturbing head " + std::to_string(hp) + " changed " +
                                                            where(p, t, h, n, side)};
  }
  return std::nullopt;
}

std::optional<PropertyFailure> check_implementation_on_case(Implementation& impl, const Case& c, bool* not_supported) {
  if (not_supported) *not_supported = !impl.supports(c.problem).ok();
  if (not_supported && *not_supported) return std::nullopt;
  if (auto f = prop_error_bound(impl, c)) return f;
  if (auto f = prop_permutation_equivariance(impl, c)) return f;
  if (auto f = prop_scaling_linearity(impl, c)) return f;
  if (auto f = prop_head_independence(impl, c)) return f;
  return std::nullopt;
}

CaseCheck run_and_check_case(Implementation& impl, const Case& c, Testbed& tb, bool with_properties,
                             bool not_supported_fails, const std::string& dump_dir) {
  CaseCheck r;
  ProblemTensors got;
  r.outcome = tb.run(impl, &got);
  const harness::Disposition d = r.outcome.disposition;
  if (d == harness::Disposition::not_supported && !not_supported_fails) return r;
  if (d != harness::Disposition::passed) {
    r.failure = PropertyFailure{harness::disposition_name(d), r.outcome.message};
  } else if (with_properties && !c.nonfinite) {
    if (!(r.failure = prop_permutation_equivariance(impl, c)))
      if (!(r.failure = prop_scaling_linearity(impl, c))) r.failure = prop_head_independence(impl, c);
  }
  if (r.failure) {
    std::string why;
    const std::string path = harness::dump_reproducer(dump_dir, tb, r.outcome, got, &why);
    r.reproducer = path.empty() ? why : path;
  }
  return r;
}

std::string describe_failure(const std::string& who, int case_index, uint64_t case_seed, const Case& c,
                             const CaseCheck& r) {
  std::ostringstream o;
  o << who << " case " << case_index << " (sample_case seed " << case_seed << "): "
    << (r.failure ? r.failure->property + ": " + r.failure->detail : std::string("no failure")) << "\n  case: " << c
    << "\n  reproducer: " << r.reproducer;
  return o.str();
}

}  // namespace mlalora::test
