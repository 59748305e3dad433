// Properties of the float64 reference itself (rapidcheck; shrinking yields
// the smallest failing batch). Every Case prints with its data seed.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <cmath>

#include "impl_properties.hpp"
#include "mlalora/harness/generators.hpp"
#include "mlalora/reference/reference.hpp"

using namespace mlalora;
using harness::Case;

namespace {

// |a - b| <= tol * P elementwise (P = abs product): agreement relative to
// the scale of the computation, well-posed even where the delta cancels to ~0.
void assert_close_rel_to_abs(const reference::SideDelta& a, const reference::SideDelta& b,
                             const reference::SideDelta& P, double tol) {
  RC_ASSERT(a.rows == b.rows);
  RC_ASSERT(a.values.size() == b.values.size());
  for (size_t k = 0; k < a.values.size(); ++k) {
    if (!std::isfinite(P.values[k])) continue;
    const double diff = std::fabs(a.values[k] - b.values[k]);
    if (!(diff <= tol * P.values[k])) {
      RC_FAIL("element " + std::to_string(k) + ": |" + std::to_string(a.values[k]) + " - " +
              std::to_string(b.values[k]) + "| > " + std::to_string(tol) + " * P=" + std::to_string(P.values[k]));
    }
  }
}

}  // namespace

TEST_CASE("generated problems satisfy the SPEC invariants", "[reference][generator]") {
  rc::prop("validate(generated) is ok", [](const Case& c) {
    Status s = validate(c.problem);
    RC_ASSERT(s.ok());
  });
}

TEST_CASE("materialised and factored float64 paths agree to 1e-12", "[reference]") {
  rc::prop("materialised == factored", [](const Case& c) {
    ProblemTensors t = harness::make_tensors(c);
    for (Side side : kBothSides) {
      auto m = reference::delta_materialized(c.problem, t, side);
      auto f = reference::delta_factored(c.problem, t, side);
      auto P = reference::abs_product(c.problem, t, side);
      assert_close_rel_to_abs(m, f, P, 1e-12);
    }
  });
}

TEST_CASE("reference: rank-0 slots, empty segments and uncovered rows leave outputs bitwise unchanged",
          "[reference]") {
  rc::prop("untouched rows keep their bits", [](const Case& c) {
    auto impl = harness::make_implementation("reference-factored");
    harness::Testbed tb(c);
    harness::RunOutcome o = tb.run(*impl);
    RC_ASSERT(o.q.written_outside == 0);
    RC_ASSERT(o.v.written_outside == 0);
    RC_ASSERT(o.disposition == harness::Disposition::passed);
  });
}

TEST_CASE("reference: permutation equivariance (exact in float64)", "[reference]") {
  rc::prop("permuted == reordered", [](const Case& c) {
    RC_PRE(c.problem.shape.has_permutation);
    ProblemTensors in = harness::make_tensors(c), plain_in;
    Case plain = test::without_permutation(c, in, &plain_in);
    for (Side side : kBothSides) {
      auto a = reference::delta_factored(c.problem, in, side);
      auto b = reference::delta_factored(plain.problem, plain_in, side);
      auto P = reference::abs_product(plain.problem, plain_in, side);
      // Row perm[i] of a corresponds to row i of b.
      for (size_t pos = 0; pos < b.rows.size(); ++pos) {
        int64_t i = b.rows[pos];
        int64_t pa = a.position_of(c.problem.permutation[i]);
        RC_ASSERT(pa >= 0);
        for (int64_t h = 0; h < b.H; ++h)
          for (int64_t n = 0; n < b.N; ++n) {
            double x = a.at(static_cast<size_t>(pa), h, n), y = b.at(pos, h, n);
            if (std::isfinite(P.at(pos, h, n))) RC_ASSERT(std::fabs(x - y) <= 1e-13 * P.at(pos, h, n));
          }
      }
    }
  });
}

TEST_CASE("reference: linear in the scaling", "[reference]") {
  rc::prop("delta(2s) == 2 delta(s) exactly", [](const Case& c) {
    ProblemTensors in = harness::make_tensors(c);
    Case c2 = c;
    for (float& s : c2.problem.scalings) s *= 2.f;
    for (Side side : kBothSides) {
      auto a = reference::delta_factored(c.problem, in, side);
      auto b = reference::delta_factored(c2.problem, in, side);
      for (size_t k = 0; k < a.values.size(); ++k)
        if (std::isfinite(a.values[k])) RC_ASSERT(b.values[k] == 2 * a.values[k]);
    }
  });
}

TEST_CASE("reference: heads are independent", "[reference]") {
  rc::prop("perturbing one head changes no other head", [](const Case& c) {
    RC_PRE(c.problem.dims().H >= 2);
    auto impl = harness::make_implementation("reference-materialized");
    RC_ASSERT(!test::prop_head_independence(*impl, c).has_value());
  });
}

TEST_CASE("reference: hand-computed tiny case", "[reference]") {
  // H=1, D_qk=1, D_v=1, R_kv=2, r=1: q-side out += s * (x*Bk) * A; v-side out += s * (a.A) * Bv.
  Dims d{2, 1, 1, 1, 2, 1, 1};
  Problem p = harness::make_problem(d, DType::f32, {1}, {2.0f}, {0, 1}, {0});
  ProblemTensors t = allocate_tensors(p.shape, 0.f);
  t.q_nope.at(0, 0, 0) = 3;
  t.q_nope.at(1, 0, 0) = 100;  // row 1 uncovered
  t.B.at(0, 0, 0) = 5;         // B_kc
  t.B.at(0, 1, 0) = 7;         // B_vc
  t.A.at(0, 0, 0) = 0.5f;
  t.A.at(0, 0, 1) = -1;
  t.attn_latent.at(0, 0, 0) = 2;
  t.attn_latent.at(0, 0, 1) = 4;
  for (auto fn : {&reference::delta_factored, &reference::delta_materialized}) {
    auto q = fn(p, t, Side::q, reference::RowSelection::all());
    REQUIRE(q.rows == std::vector<int64_t>{0});
    CHECK(q.at(0, 0, 0) == 2 * 3 * 5 * 0.5);
    CHECK(q.at(0, 0, 1) == 2 * 3 * 5 * -1.0);
    auto v = fn(p, t, Side::v, reference::RowSelection::all());
    CHECK(v.at(0, 0, 0) == 2 * (2 * 0.5 + 4 * -1.0) * 7);
  }
}
