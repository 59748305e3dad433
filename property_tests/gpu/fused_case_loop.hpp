// The case loop the fused-kernel GPU suites share ([fast], [small], [planned]):
// the seed announcement, per-case seeds that replay from MLALORA_SEED and the
// case index, and (for the suites judged by run_and_check_case) the loop over
// generated cases with failure reports, the stop after 20 failures and the
// worst error/bound ratio. What differs per suite (the launch knobs a case
// cycles through, what it counts) stays in the test, in the `around` hook.
#pragma once
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>

#include <catch2/catch.hpp>

#include "impl_properties.hpp"
#include "mlalora/harness/generators.hpp"
#include "mlalora/harness/testbed.hpp"
#include "test_config.hpp"

namespace mlalora::test {

// Prints "GPU <what>: N cases per dtype, MLALORA_SEED=S" (the line a failing
// run is replayed from) and returns the base seed.
inline uint64_t announce_gpu_suite(const char* what, int cases) {
  const uint64_t seed = base_seed();
  std::printf("GPU %s: %d cases per dtype, MLALORA_SEED=%" PRIu64 "\n", what, cases, seed);
  return seed;
}

// Per-suite salts keep the suites' case streams apart; case i of dtype dt is
// seed * suite + i + dtype * dt (the formulas of the earlier sessions, so
// their reported seeds still replay the same cases).
struct CaseSalt {
  uint64_t suite, dtype;
  uint64_t seed_of(uint64_t seed, int i, DType dt) const {
    return seed * suite + static_cast<uint64_t>(i) + dtype * static_cast<uint64_t>(dt);
  }
};

inline harness::Case sample_gpu_case(const harness::GenConfig& cfg, uint64_t case_seed, int i, int cases) {
  return harness::sample_case(cfg, case_seed, 10 + (90 * i) / cases);  // sizes grow over the run
}

struct CaseTally {
  int64_t passed = 0;
  double worst = 0;  // largest error / bound over the passing cases
};

// `cases` generated cases of cfg (its dtypes set to dt), each run through
// impl by run_and_check_case (properties on every tenth case; not-supported
// fails). around(i, c, run) is called per case: it sets the case's knobs
// (ScopedEnv), counts what its suite checks, and calls run() once.
template <class Around>
CaseTally run_fused_cases(harness::Implementation& impl, const std::string& who, harness::GenConfig cfg, DType dt,
                          int cases, uint64_t seed, CaseSalt salt, Around&& around) {
  cfg.dtypes = {dt};
  CaseTally t;
  int64_t failures = 0;
  for (int i = 0; i < cases; ++i) {
    const uint64_t case_seed = salt.seed_of(seed, i, dt);
    const harness::Case c = sample_gpu_case(cfg, case_seed, i, cases);
    around(i, c, [&] {
      harness::Testbed tb(c);
      const CaseCheck r = run_and_check_case(impl, c, tb, i % 10 == 0, true, gpu_dump_dir());
      if (r.failure) {
        ++failures;
        FAIL_CHECK(describe_failure(who + " " + dtype_name(dt), i, case_seed, c, r));
        if (failures > 20) FAIL("too many failures; stopping");
      } else {
        ++t.passed;
        t.worst = std::max({t.worst, r.outcome.q.max_error_bound_ratio, r.outcome.v.max_error_bound_ratio});
      }
    });
  }
  return t;
}

}  // namespace mlalora::test
