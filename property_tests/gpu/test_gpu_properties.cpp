// The GPU property suite: every CUDA implementation (cuda-fused, cuda-split,
// cublas-naive) on MLALORA_GPU_CASES generated problems per dtype (default
// 2000), judged by the float64 reference and the error model; the other
// implementation-level properties (permutation equivariance, scaling
// linearity, head independence) on every 10th case. Skips visibly without a GPU.
#include <catch2/catch.hpp>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "skip_without_gpu.hpp"
#include "impl_properties.hpp"
#include "mlalora/harness/gpu_implementations.hpp"
#include "mlalora/harness/testbed.hpp"
#include "test_config.hpp"

using namespace mlalora;

namespace {

const char* kGpuImpls[] = {"cuda-fused", "cuda-split", "cublas-naive"};

}  // namespace

TEST_CASE("GPU implementations pass the property suite in every dtype", "[gpu]") {
  MLALORA_SKIP_WITHOUT_GPU();
  const int cases = test::env_int("MLALORA_GPU_CASES", 2000);
  const uint64_t seed = test::base_seed();
  std::printf("GPU property suite: %d cases per dtype per implementation, MLALORA_SEED=%" PRIu64 "\n", cases, seed);
  for (DType dt : kAllDTypes) {
    harness::GenConfig cfg = harness::GenConfig::gpu_default();
    cfg.dtypes = {dt};
    cfg.inject_nonfinite = true;  // 1 in 4 cases carries a NaN/Inf input element
    std::vector<std::unique_ptr<harness::Implementation>> impls;
    for (const char* name : kGpuImpls) {
      auto impl = harness::make_implementation(name);
      REQUIRE(impl != nullptr);
      impls.push_back(std::move(impl));
    }
    std::vector<int64_t> passed(impls.size(), 0), not_supported(impls.size(), 0);
    std::vector<double> worst(impls.size(), 0);
    int64_t failures = 0;
    for (int i = 0; i < cases; ++i) {
      const uint64_t case_seed = seed * 1000003ULL + static_cast<uint64_t>(i) + 7919ULL * static_cast<uint64_t>(dt);
      harness::Case c = harness::sample_case(cfg, case_seed, 10 + (90 * i) / cases);
      harness::Testbed tb(c);
      for (size_t k = 0; k < impls.size(); ++k) {
        const test::CaseCheck r = test::run_and_check_case(*impls[k], c, tb, i % 10 == 0, false, test::gpu_dump_dir());
        if (r.outcome.disposition == harness::Disposition::not_supported) {
          ++not_supported[k];
        } else if (r.failure) {
          ++failures;
          FAIL_CHECK(test::describe_failure(impls[k]->name() + " " + dtype_name(dt), i, case_seed, c, r));
          if (failures > 20) FAIL("too many failures; stopping");
        } else {
          ++passed[k];
          worst[k] = std::max({worst[k], r.outcome.q.max_error_bound_ratio, r.outcome.v.max_error_bound_ratio});
        }
      }
    }
    for (size_t k = 0; k < impls.size(); ++k) {
      std::printf("  %-13s %-4s passed %5" PRId64 " / %d  not-supported %" PRId64 "  max err/bound %.3g\n",
                  impls[k]->name().c_str(), dtype_name(dt), passed[k], cases, not_supported[k], worst[k]);
      CHECK(passed[k] + not_supported[k] == cases);
      CHECK(not_supported[k] == 0);  // the GPU generator only makes problems every GPU implementation takes
    }
  }
}
