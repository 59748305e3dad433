// The implementation-level property suite over every CPU implementation
// registered in this binary (the reference paths; mutants are judged in
// test_mutation_score.cpp).
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <filesystem>

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

// The loop body both GPU property suites share (run_and_check_case,
// describe_failure), checked here on CPU implementations so CI covers it:
// a correct implementation passes with no reproducer; a broken one fails
// with the property named, a reproducer file on disk and a message that
// carries the case index, the seed and the reproducer's path.
TEST_CASE("run_and_check_case: passes a correct implementation, names and dumps a broken one", "[properties]") {
  const uint64_t seed = test::base_seed();
  INFO("seed " << seed << " (MLALORA_SEED replays it)");
  harness::GenConfig cfg = harness::GenConfig::cpu_default();
  const std::string dir = (std::filesystem::temp_directory_path() / ("mlalora-casecheck-" + std::to_string(seed))).string();
  auto good = harness::make_implementation("reference-factored");
  auto bad = harness::make_implementation("mutant-scaling-ignored");
  REQUIRE(good != nullptr);
  REQUIRE(bad != nullptr);
  int failed_bad = 0;
  for (int i = 0; i < 200 && failed_bad < 5; ++i) {
    const uint64_t case_seed = seed * 31ULL + static_cast<uint64_t>(i);
    harness::Case c = harness::sample_case(cfg, case_seed, 30);
    INFO("case " << i << " (sample_case seed " << case_seed << "): " << c);
    harness::Testbed tb_good(c);
    const test::CaseCheck ok = test::run_and_check_case(*good, c, tb_good, true, true, dir);
    CHECK(ok.outcome.disposition == harness::Disposition::passed);
    CHECK_FALSE(ok.failure.has_value());
    CHECK(ok.reproducer.empty());
    harness::Testbed tb_bad(c);
    const test::CaseCheck r = test::run_and_check_case(*bad, c, tb_bad, false, true, dir);
    if (!r.failure) continue;  // a case whose scalings are all 1 (or no live row) cannot show the bug
    ++failed_bad;
    CHECK(r.failure->property == "incorrect");
    CHECK(std::filesystem::exists(r.reproducer));
    const std::string text = test::describe_failure("mutant", i, case_seed, c, r);
    CHECK(text.find("case " + std::to_string(i) + " (sample_case seed " + std::to_string(case_seed) + ")") !=
          std::string::npos);
    CHECK(text.find(r.reproducer) != std::string::npos);
  }
  CHECK(failed_bad == 5);  // caught on about half of the random cases (scalings of 1 or no live row hide it)
  std::filesystem::remove_all(dir);
}
