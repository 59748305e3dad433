// The implementation-level property suite over every CPU implementation
// registered in this binary (the reference paths; mutants are judged in
// test_mutation_score.cpp).
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include "impl_properties.hpp"
#include "regression_dir.hpp"
#include "test_config.hpp"

using namespace mlalora;

TEST_CASE("CPU implementations satisfy the property suite", "[properties]") {
  for (const auto& reg : harness::registered_implementations()) {
    if (reg.needs_gpu) continue;
    if (reg.name.rfind("mutant-", 0) == 0) continue;
    rc::prop(reg.name + " holds every property", [&reg](const harness::Case& c) {
      auto impl = reg.make();
      auto f = test::check_implementation_on_case(*impl, c);
      if (f) {
        // Keep a reproducer of the (last = most shrunk) failing case; commit it
        // under datasets/regressions/ once the bug is fixed.
        harness::Testbed tb(c);
        ProblemTensors got;
        harness::RunOutcome o = tb.run(*impl, &got);
        std::string why;
        std::string path = harness::dump_reproducer(test::regressions_dir(), tb, o, got, &why,
                                                    reg.name + "_" + f->property + "_latest.h5");
        RC_FAIL(f->property + ": " + f->detail + "\n  reproducer: " + (path.empty() ? why : path));
      }
    });
  }
}

TEST_CASE("CPU implementations: NaN/Inf propagate to the rows they touch and nowhere else", "[properties]") {
  harness::GenConfig cfg = harness::GenConfig::cpu_default();
  cfg.inject_nonfinite = true;
  rc::prop("nonfinite inputs", [cfg] {
    harness::Case c = *harness::gen_case(cfg);
    c.nonfinite = true;
    auto impl = harness::make_implementation("reference-factored");
    auto f = test::prop_error_bound(*impl, c);
    if (f) RC_FAIL(f->detail);
  });
}
