// The fused fast path (slot-grouped tensor-core kernels, sgmm_fast.cu) on
// generated problems whose dims and strides it takes: model head dims and
// latent widths, ranks up to 128 mixed with rank 0 and r_max above every
// rank, one-token and long segments of the same slot scattered over the
// batch, permutations, spare capacity with garbage, NaN/Inf inputs. Every
// case is judged by the float64 reference and the error model, and the test
// asserts that the fast kernels (not a fallback) ran. Skips visibly without a GPU.
#include <catch2/catch.hpp>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "skip_without_gpu.hpp"
#include "impl_properties.hpp"
#include "mlalora/harness/gpu_implementations.hpp"
#include "mlalora/harness/testbed.hpp"
#include "mlalora/optimized/sgmm.hpp"
#include "test_config.hpp"

using namespace mlalora;

namespace {

// The family lora_correction(fused) picks for a shape when the tensors are
// separate cudaMalloc allocations (256-byte aligned), as in the testbed.
std::string family_of(const ProblemShape& s, Side side) {
  auto fake = [](uintptr_t a) { return reinterpret_cast<void*>(a); };
  optimized::DeviceArgs a;
  a.q_nope = fake(0x100000), a.q_nope_out = fake(0x200000), a.attn_latent = fake(0x300000);
  a.attn_bmm_out = fake(0x400000), a.A = fake(0x500000), a.B = fake(0x600000);
  return optimized::fused_kernel_family(s, a, side);
}

}  // namespace

TEST_CASE("Fused fast path passes the property suite in bf16 and f16", "[gpu][fast]") {
  MLALORA_SKIP_WITHOUT_GPU();
  const int cases = test::env_int("MLALORA_GPU_CASES", 2000);
  const uint64_t seed = test::base_seed();
  std::printf("GPU fast-path suite: %d cases per dtype, MLALORA_SEED=%" PRIu64 "\n", cases, seed);
  auto impl = harness::make_implementation("cuda-fused");
  REQUIRE(impl != nullptr);
  for (DType dt : {DType::bf16, DType::f16}) {
    harness::GenConfig cfg = harness::GenConfig::gpu_fast_path();
    cfg.dtypes = {dt};
    cfg.inject_nonfinite = true;
    int64_t passed = 0, fast_q = 0, fast_v = 0, failures = 0, rows = 0, one_head = 0, direct = 0;
    double worst = 0;
    for (int i = 0; i < cases; ++i) {
      const uint64_t case_seed = seed * 7919ULL + static_cast<uint64_t>(i) + 104729ULL * static_cast<uint64_t>(dt);
      harness::Case c = harness::sample_case(cfg, case_seed, 10 + (90 * i) / cases);
      // Launch forms cycle with the case: q+v in one launch (default) or q
      // then v; every fourth case without programmatic dependent launch.
      test::ScopedEnv qv_env("MLALORA_FAST_QV", i % 2 == 1 ? "separate" : "");
      test::ScopedEnv pdl_env("MLALORA_FAST_PDL", i % 4 == 3 ? "0" : "");
      // Tiling cycles too: the shape's own choice, then direct (no plan
      // kernel) and plan forced, so both tilings see every kind of batch.
      test::ScopedEnv tiling_env("MLALORA_FAST_TILING", i % 3 == 1 ? "direct" : (i % 3 == 2 ? "plan" : ""));
      const optimized::FastPathLayout layout = optimized::fast_path_layout(c.problem.shape);
      one_head += layout.heads_per_block == 1;
      direct += layout.direct;
      fast_q += family_of(c.problem.shape, Side::q) == "fast";
      fast_v += family_of(c.problem.shape, Side::v) == "fast";
      rows += c.problem.covered_rows();
      harness::Testbed tb(c);
      const test::CaseCheck r = test::run_and_check_case(*impl, c, tb, i % 10 == 0, true, test::gpu_dump_dir());
      if (r.failure) {
        ++failures;
        FAIL_CHECK(test::describe_failure(std::string("cuda-fused (fast path) ") + dtype_name(dt), i, case_seed, c, r));
        if (failures > 20) FAIL("too many failures; stopping");
      } else {
        ++passed;
        worst = std::max({worst, r.outcome.q.max_error_bound_ratio, r.outcome.v.max_error_bound_ratio});
      }
    }
    std::printf("  cuda-fused %-4s fast path: passed %5" PRId64 " / %d (fast kernels: q %" PRId64 ", v %" PRId64
                "; %" PRId64 " covered rows; %" PRId64 " with one-head blocks, %" PRId64
                " with direct tiling)  max err/bound %.3g\n",
                dtype_name(dt), passed, cases, fast_q, fast_v, rows, one_head, direct, worst);
    CHECK(passed == cases);
    // The generator only makes shapes the fast path takes: a silent fallback
    // to the general kernels would make this suite test the wrong kernels.
    CHECK(fast_q == cases);
    CHECK(fast_v == cases);
    // Both tilings and both block shapes ran (a third of the cases force each tiling).
    if (cases >= 6) {
      CHECK(direct >= cases / 3);
      CHECK(direct <= cases - cases / 3);
    }
  }
}
