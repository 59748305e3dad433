// Full model scale (DeepSeek-V3 TP=1 dims, r=64, S=4096): both float64
// formulations run and agree on every element. The wall time is printed, not
// asserted (speed targets live in benchmarks); ERROR_MODEL.md quotes it.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "mlalora/harness/generators.hpp"
#include "mlalora/reference/reference.hpp"
#include "test_config.hpp"

using namespace mlalora;

TEST_CASE("reference at full model scale: materialised == factored", "[scale]") {
  Dims d{4096, 128, 128, 128, 512, 2, 64};
  // Two slots (rank 64 and 32), four segments, slot reuse, last 96 rows uncovered.
  harness::Case c;
  c.problem = harness::make_problem(d, DType::bf16, {64, 32}, {0.5f, 2.0f}, {0, 1000, 2500, 3900, 4000},
                                    {0, 1, 0, 1});
  c.data_seed = test::base_seed();
  ProblemTensors t = harness::make_tensors(c);
  for (Side side : kBothSides) {
    auto t0 = std::chrono::steady_clock::now();
    auto m = reference::delta_materialized(c.problem, t, side);
    auto t1 = std::chrono::steady_clock::now();
    auto f = reference::delta_factored(c.problem, t, side);
    auto t2 = std::chrono::steady_clock::now();
    auto P = reference::abs_product(c.problem, t, side);
    auto t3 = std::chrono::steady_clock::now();
    REQUIRE(m.rows.size() == 4000);
    double worst = 0;
    for (size_t k = 0; k < m.values.size(); ++k) worst = std::max(worst, std::fabs(m.values[k] - f.values[k]) / P.values[k]);
    std::printf("scale %s-side: materialised %.1fs, factored %.1fs, abs product %.1fs; max |m-f|/P = %.3g\n",
                side_name(side), std::chrono::duration<double>(t1 - t0).count(),
                std::chrono::duration<double>(t2 - t1).count(), std::chrono::duration<double>(t3 - t2).count(), worst);
    CHECK(worst <= 1e-12);
  }
}
