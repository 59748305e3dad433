// The fused fast path (slot-grouped tensor-core kernels, sgmm_fast.cu) on
// generated problems whose dims and strides it takes: model head dims and
// latent widths, ranks up to 128 mixed with rank 0 and r_max above every
// rank, one-token and long segments of the same slot scattered over the
// batch, permutations, spare capacity with garbage, NaN/Inf inputs. Every
// case is judged by the float64 reference and the error model, and the test
// asserts that the fast kernels (not a fallback) ran. Skips visibly without a GPU.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

#include "fused_case_loop.hpp"
#include "impl_properties.hpp"
#include "skip_without_gpu.hpp"
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
  const uint64_t seed = test::announce_gpu_suite("fast-path suite", cases);
  auto impl = harness::make_implementation("cuda-fused");
  REQUIRE(impl != nullptr);
  for (DType dt : {DType::bf16, DType::f16}) {
    harness::GenConfig cfg = harness::GenConfig::gpu_fast_path();
    cfg.inject_nonfinite = true;
    int64_t fast_q = 0, fast_v = 0, rows = 0, one_head = 0, direct = 0, wide = 0;
    const test::CaseTally t = test::run_fused_cases(
        *impl, "cuda-fused (fast path)", cfg, dt, cases, seed, {7919, 104729},
        [&](int i, const harness::Case& c, const auto& run) {
          // Launch forms cycle with the case: q+v in one launch (default) or q
          // then v; every fourth case without programmatic dependent launch.
          test::ScopedEnv qv_env("MLALORA_FAST_QV", i % 2 == 1 ? "separate" : "");
          test::ScopedEnv pdl_env("MLALORA_FAST_PDL", i % 4 == 3 ? "0" : "");
          // Tiling cycles too: the shape's own choice, then direct (no plan
          // kernel) and plan forced, so both tilings see every kind of batch.
          test::ScopedEnv tiling_env("MLALORA_FAST_TILING", i % 3 == 1 ? "direct" : (i % 3 == 2 ? "plan" : ""));
          // Small batches (one row at r_max >= 64; <= 16 rows at r_max > 64 and
          // <= 16 heads) take the small-batch kernels (their own test below) unless
          // MLALORA_FAST_SMALL=0: every fifth case keeps them on the fast
          // kernels, so those still see such batches.
          test::ScopedEnv small_env("MLALORA_FAST_SMALL", i % 5 == 4 ? "0" : "");
          // The rank buckets with two compiled variants (r <= 32, r <= 128):
          // every other pair of cases forces the wide one (by default only
          // grids of >= 2 waves take it, which generated shapes seldom reach).
          const bool force_wide = (i / 2) % 2 == 0;
          test::ScopedEnv tune_env("MLALORA_FAST_TUNE", force_wide ? "wide" : "");
          const optimized::FastPathLayout layout = optimized::fast_path_layout(c.problem.shape);
          const int64_t rm = c.problem.shape.dims.r_max;
          wide += force_wide && (rm > 64 || rm <= 32) && !layout.small_batch;
          one_head += layout.heads_per_block == 1;
          direct += layout.direct;
          fast_q += family_of(c.problem.shape, Side::q) == "fast";
          fast_v += family_of(c.problem.shape, Side::v) == "fast";
          rows += c.problem.covered_rows();
          run();
        });
    std::printf("  cuda-fused %-4s fast path: passed %5" PRId64 " / %d (fast kernels: q %" PRId64 ", v %" PRId64
                "; %" PRId64 " covered rows; %" PRId64 " with one-head blocks, %" PRId64
                " with direct tiling, %" PRId64 " on the wide variants)  max err/bound %.3g\n",
                dtype_name(dt), t.passed, cases, fast_q, fast_v, rows, one_head, direct, wide, t.worst);
    CHECK(t.passed == cases);
    // The generator only makes shapes the fast path takes: a silent fallback
    // to the general kernels would make this suite test the wrong kernels.
    CHECK(fast_q == cases);
    CHECK(fast_v == cases);
    // Both tilings and both block shapes ran (a third of the cases force each tiling).
    if (cases >= 6) {
      CHECK(direct >= cases / 3);
      CHECK(direct <= cases - cases / 3);
    }
    if (cases >= 100) CHECK(wide >= cases / 20);  // both variants ran
  }
}

TEST_CASE("A tile plan built once serves several calls: the bits of the per-call plan", "[gpu][fast][planned]") {
  // optimized::build_plan + CallOptions::plan_prebuilt, as a forward step's
  // layers share one routing: the plan is built once, then three calls of
  // both sides (three layers adding into the same outputs) read it. Against
  // three ordinary calls, each building its own plan, on the same inputs,
  // every output bit must agree (a row's result does not depend on which
  // rows share its tile), and the planned implementation alone must pass
  // the error model. Generated fast-path problems; the plan kernel forced on
  // two cases in three (the shape's own tiling on the third, where direct
  // tiling and the small-batch kernels ignore the option); live count from
  // the host or, every other case, from the device (graph-mode arguments).
  MLALORA_SKIP_WITHOUT_GPU();
  const int cases = std::max(6, test::env_int("MLALORA_GPU_CASES", 2000) / 10);
  const uint64_t seed = test::announce_gpu_suite("plan-reuse suite", cases);
  const test::CaseSalt salt{3571, 65537};
  auto planned = harness::make_implementation("cuda-fused-planned");
  REQUIRE(planned != nullptr);
  for (DType dt : {DType::bf16, DType::f16}) {
    harness::GenConfig cfg = harness::GenConfig::gpu_fast_path();
    cfg.dtypes = {dt};
    int64_t passed = 0, plan_tiled = 0;
    double worst = 0;
    for (int i = 0; i < cases; ++i) {
      const harness::Case c = test::sample_gpu_case(cfg, salt.seed_of(seed, i, dt), i, cases);
      test::ScopedEnv tiling_env("MLALORA_FAST_TILING", i % 3 == 2 ? "" : "plan");
      const optimized::FastPathLayout layout = optimized::fast_path_layout(c.problem.shape);
      plan_tiled += !layout.direct && !layout.small_batch;
      INFO(c << " MLALORA_SEED=" << seed << " case " << i << " (" << dtype_name(dt) << ")");
      harness::Testbed tb(c);
      const harness::RunOutcome o = tb.run(*planned);
      CHECK(o.disposition == harness::Disposition::passed);
      if (o.disposition != harness::Disposition::passed) {
        FAIL_CHECK("cuda-fused-planned: " << o.message);
        continue;
      }
      worst = std::max({worst, o.q.max_error_bound_ratio, o.v.max_error_bound_ratio});
      const bool graph_args = i % 2 == 1;
      harness::DeviceProblem per_call, shared;
      REQUIRE(per_call.init(c.problem, tb.inputs()).message == "");
      REQUIRE(shared.init(c.problem, tb.inputs()).message == "");
      harness::SgmmRunner r_call, r_shared;
      // Poison the shared runner's workspace first: a plan must come from build_plan, not from leftovers.
      REQUIRE(r_shared.reserve(c.problem.shape, optimized::Path::fused).message == "");
      REQUIRE(r_shared.fill_workspace(0x5a).message == "");
      REQUIRE(r_shared.build_plan(shared, graph_args, nullptr).message == "");
      for (int layer = 0; layer < 3; ++layer) {
        REQUIRE(r_call.run_both(per_call, optimized::Path::fused, graph_args, nullptr).message == "");
        REQUIRE(r_shared.run_both(shared, optimized::Path::fused, graph_args, nullptr, true).message == "");
      }
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      ProblemTensors a = tb.inputs(), b = tb.inputs();
      REQUIRE(per_call.download_outputs(a).message == "");
      REQUIRE(shared.download_outputs(b).message == "");
      bool same = true;
      for (TensorId id : {TensorId::q_nope_out, TensorId::attn_bmm_out}) {
        const std::vector<float>& x = a.of(id).data;
        const std::vector<float>& y = b.of(id).data;
        int64_t bad = 0, first = -1, last = -1;
        for (size_t k = 0; k < x.size() && x.size() == y.size(); ++k)
          if (std::memcmp(&x[k], &y[k], sizeof(float)) != 0) {
            if (first < 0) first = static_cast<int64_t>(k);
            last = static_cast<int64_t>(k);
            ++bad;
          }
        INFO(tensor_name(id) << " after three layers: " << bad << " storage elements differ from the per-call plan's, first "
                             << first << ", last " << last);
        CHECK(x.size() == y.size());
        CHECK(bad == 0);
        same = same && bad == 0 && x.size() == y.size();
      }
      passed += same;
    }
    std::printf("  cuda-fused-planned %-4s: passed %5" PRId64 " / %d (%" PRId64
                " plan-tiled; three layers bit-identical to per-call plans)  max err/bound %.3g\n",
                dtype_name(dt), passed, cases, plan_tiled, worst);
    CHECK(passed == cases);
    CHECK(plan_tiled >= cases / 3);  // the plan kernel really ran on most cases
  }
}

TEST_CASE("Small-batch kernels pass the property suite in bf16 and f16", "[gpu][fast][small]") {
  // Batches of 1..16 rows (sgmm_small.cu): mixed ranks with rank 0 and
  // r_max above every rank, several slots in one batch (rows of one slot
  // share a weight tile), empty segments, spare capacity with garbage,
  // permutations, NaN/Inf inputs, model head dims and latent widths.
  MLALORA_SKIP_WITHOUT_GPU();
  const int cases = test::env_int("MLALORA_GPU_CASES", 2000);
  const uint64_t seed = test::announce_gpu_suite("small-batch suite", cases);
  auto impl = harness::make_implementation("cuda-fused");
  REQUIRE(impl != nullptr);
  for (DType dt : {DType::bf16, DType::f16}) {
    harness::GenConfig cfg = harness::GenConfig::gpu_fast_path();
    cfg.max_tokens = 16;
    cfg.inject_nonfinite = true;
    int64_t small = 0, nonempty = 0, rows = 0, multi_slot = 0;
    const test::CaseTally t = test::run_fused_cases(
        *impl, "cuda-fused (small batch)", cfg, dt, cases, seed, {6151, 49157},
        [&](int i, const harness::Case& c, const auto& run) {
          // Launch forms cycle: q+v stages together or q then v; every fourth
          // case without programmatic dependent launch (stage 2 then waits at
          // the kernel boundary instead of in griddepcontrol.wait).
          test::ScopedEnv qv_env("MLALORA_FAST_QV", i % 2 == 1 ? "separate" : "");
          test::ScopedEnv pdl_env("MLALORA_FAST_PDL", i % 4 == 3 ? "0" : "");
          // Forced on for every batch of <= 16 rows (by default only one row at
          // r_max >= 64, or r_max > 64 with at most 16 heads).
          test::ScopedEnv small_env("MLALORA_FAST_SMALL", "1");
          const ProblemShape& shape = c.problem.shape;
          nonempty += shape.dims.S >= 1;
          small += optimized::fast_path_layout(shape).small_batch && family_of(shape, Side::q) == "fast" &&
                   family_of(shape, Side::v) == "fast";
          rows += c.problem.covered_rows();
          std::vector<int32_t> slots(c.problem.weight_indices.begin(),
                                     c.problem.weight_indices.begin() + c.problem.num_segments);
          std::sort(slots.begin(), slots.end());
          multi_slot += std::unique(slots.begin(), slots.end()) - slots.begin() > 1;
          run();
        });
    std::printf("  cuda-fused %-4s small batch: passed %5" PRId64 " / %d (small-batch kernels on %" PRId64
                " of %" PRId64 " non-empty shapes; %" PRId64 " covered rows; %" PRId64
                " batches over several slots)  max err/bound %.3g\n",
                dtype_name(dt), t.passed, cases, small, nonempty, rows, multi_slot, t.worst);
    CHECK(t.passed == cases);
    // Every shape with rows must run the small-batch kernels (no silent fallback).
    CHECK(small == nonempty);
    // The generator draws S = 0 in about 13% of cases: at least 3/4 non-empty
    // is a check of the generator, meaningful only with enough cases (the
    // sanitizer runs use 4, where two empty draws are ordinary: seed 20261409).
    if (cases >= 200) CHECK(nonempty >= cases * 3 / 4);
  }
}
