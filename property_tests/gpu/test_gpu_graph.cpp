// CUDA-graph mode of the SGMM kernels: one capture of lora_correction_both (both
// sides, num_segments_device set) must replay correctly for batches with
// fewer and more live segments than at capture, different ranks, segments,
// permutation and data, the index data overwritten in place. Every replay is
// judged against the float64 reference with the error model (every element
// within bound, uncovered rows and gaps bitwise unchanged) and must equal an
// eager (non-graph) run bit for bit. Skips visibly without a GPU.
#include <catch2/catch.hpp>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "skip_without_gpu.hpp"
#include "mlalora/harness/generators.hpp"
#include "mlalora/harness/gpu_implementations.hpp"
#include "mlalora/harness/testbed.hpp"
#include "mlalora/harness/verify.hpp"
#include "mlalora/optimized/sgmm.hpp"
#include "mlalora/reference/error_bound.hpp"
#include "mlalora/reference/reference.hpp"
#include "test_config.hpp"

using namespace mlalora;

namespace {

struct GraphConfig {
  const char* name;
  Dims dims;
  int64_t capacity;
  int64_t max_len;
  int64_t pad;  // extra elements on the activations' outer strides (gaps)
};

ProblemShape make_shape(const GraphConfig& gc, DType dt) {
  ProblemShape s;
  s.dims = gc.dims;
  s.dtype = dt;
  s.layout = Layout::contiguous(gc.dims);
  if (gc.pad > 0) {
    for (TensorId id : {TensorId::q_nope, TensorId::q_nope_out, TensorId::attn_latent, TensorId::attn_bmm_out}) {
      const Shape3 sh = tensor_shape(gc.dims, id);
      Strides3& st = s.layout.of(id);
      st.s2 = 1;
      st.s1 = sh[2] + gc.pad;
      st.s0 = sh[1] * st.s1 + gc.pad;
    }
  }
  s.segment_capacity = gc.capacity;
  s.max_segment_len = gc.max_len;
  s.has_permutation = true;
  return s;
}

// A valid batch of n live segments for the shape; the spare capacity entries hold garbage.
Problem random_batch(const ProblemShape& s, int64_t n, std::mt19937_64& rng) {
  const Dims& d = s.dims;
  Problem p;
  p.shape = s;
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  p.lora_ranks.resize(static_cast<size_t>(d.L));
  p.scalings.resize(static_cast<size_t>(d.L));
  for (int64_t l = 0; l < d.L; ++l) {
    p.lora_ranks[l] = static_cast<int32_t>(uni(1, d.r_max));
    p.scalings[l] = static_cast<float>(uni(1, 16)) * (uni(0, 3) == 0 ? -0.125f : 0.125f);
  }
  p.lora_ranks[0] = static_cast<int32_t>(d.r_max);
  if (d.L > 1) p.lora_ranks[1] = 0;  // a rank-0 slot: its segments must write nothing
  std::shuffle(p.lora_ranks.begin(), p.lora_ranks.end(), rng);
  p.num_segments = n;
  const size_t cap = static_cast<size_t>(s.segment_capacity);
  p.seg_indptr.assign(cap + 1, 0);
  p.weight_indices.assign(cap, 0);
  int64_t pos = 0;
  for (int64_t g = 0; g < n; ++g) {
    const int64_t len = uni(0, std::min<int64_t>(s.max_segment_len, d.S - pos));
    pos += len;
    p.seg_indptr[g + 1] = static_cast<int32_t>(pos);
    p.weight_indices[g] = static_cast<int32_t>(uni(0, d.L - 1));
  }
  for (size_t g = static_cast<size_t>(n) + 1; g <= cap; ++g) p.seg_indptr[g] = static_cast<int32_t>(uni(-1000, 1000));
  for (size_t g = static_cast<size_t>(n); g < cap; ++g) p.weight_indices[g] = static_cast<int32_t>(uni(-50, 50));
  p.permutation.resize(static_cast<size_t>(d.S));
  std::iota(p.permutation.begin(), p.permutation.end(), 0);
  std::shuffle(p.permutation.begin(), p.permutation.end(), rng);
  return p;
}

// "" when both sides pass the error model and the bitwise checks.
std::string verify_outputs(const Problem& p, const ProblemTensors& base, const ProblemTensors& got) {
  const auto model = reference::RoundingModel::factored(p.shape.dtype, p.shape.dtype != DType::f32);
  std::string err;
  for (Side side : kBothSides) {
    harness::SideExpectation e = harness::expect_side(p, base, side, reference::RowSelection::all());
    harness::SideVerdict v = harness::verify_side(p, base, got.of(output_of(side)), side, e, model);
    if (!v.passed()) err += std::string(side_name(side)) + ": " + v.describe() + "\n";
  }
  return err;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

struct GraphGuard {
  cudaStream_t stream = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~GraphGuard() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (stream) cudaStreamDestroy(stream);
  }
};

}  // namespace

TEST_CASE("CUDA graph: one capture replays correctly for changing batches", "[gpu][graph]") {
  MLALORA_SKIP_WITHOUT_GPU();
  const GraphConfig configs[] = {
      // dims that are multiples of no tile; padded outer strides
      {"odd dims", Dims{45, 3, 17, 9, 130, 4, 20}, 6, 16, 3},
      // DeepSeek-like head dims (tensor-core kernels), aligned padding
      {"model dims", Dims{80, 4, 128, 128, 512, 3, 64}, 8, 40, 8},
      // decode-like: many one- or two-token segments
      {"decode", Dims{24, 16, 128, 128, 512, 4, 16}, 24, 2, 0},
      // r_max above the fused on-chip limit: lora_correction goes through the split path
      {"large rank", Dims{24, 2, 32, 16, 64, 2, 300}, 4, 12, 0},
      // prefill-like: long segments of few slots, so the fast path's blocks
      // hold one head and share its weights across their four warps
      {"prefill", Dims{256, 4, 128, 128, 512, 2, 64}, 4, 128, 8},
      // small batches (<= 16 rows): the small-batch kernels, two stages with
      // the intermediate in the workspace; spare capacity; one token
      {"small batch", Dims{12, 16, 128, 128, 512, 4, 64}, 16, 3, 8},
      {"one token", Dims{1, 16, 128, 128, 512, 3, 128}, 2, 1, 0},
      // more slots than a block has threads: the small-batch kernels read
      // each slot's rank and scale from global memory instead of a table of
      // all slots (SlotTable, sgmm_common.cuh)
      {"small batch 200 slots", Dims{12, 2, 64, 64, 64, 200, 64}, 16, 3, 0},
      // more than 1024 slots and (at full capacity) live segments: the fast
      // path's tile plan keeps its per-slot and per-segment arrays in the workspace
      {"many slots", Dims{1200, 2, 64, 64, 64, 1100, 16}, 1100, 2, 0},
  };
  const uint64_t seed = test::base_seed();
  // MLALORA_GRAPH_CONFIGS="name,name" runs only those configurations (the
  // slow racecheck pass is split by configuration); default: all.
  const char* only = std::getenv("MLALORA_GRAPH_CONFIGS");
  for (const GraphConfig& gc : configs) {
    if (only != nullptr && *only != '\0' && (std::string(",") + only + ",").find(std::string(",") + gc.name + ",") ==
                                                  std::string::npos) {
      WARN("MLALORA_GRAPH_CONFIGS: skipping configuration " << gc.name);
      continue;
    }
    for (DType dt : kAllDTypes) {
      // MLALORA_GRAPH_DTYPES="bf16,f16" runs only those dtypes (racecheck of
      // the fast path without the slow f32 generic kernels); default: all.
      const char* dts = std::getenv("MLALORA_GRAPH_DTYPES");
      if (dts != nullptr && *dts != '\0' &&
          (std::string(",") + dts + ",").find(std::string(",") + dtype_name(dt) + ",") == std::string::npos) {
        WARN("MLALORA_GRAPH_DTYPES: skipping dtype " << dtype_name(dt) << " of configuration " << gc.name);
        continue;
      }
      for (optimized::Path path : {optimized::Path::fused, optimized::Path::split}) {
        // The fast path captures both sides as one q+v launch (default) or
        // as q then v; the eager runs below are always one side per launch,
        // so both launch forms are held to the same bits.
        const char* qv = static_cast<int>(dt) % 2 == 0 ? "" : "separate";
        test::ScopedEnv qv_env("MLALORA_FAST_QV", qv);
        // Tiling: the shape's choice in bf16 (plan, except "prefill": direct),
        // direct forced in f16, so the device-side live count drives both.
        const char* tiling = dt == DType::f16 ? "direct" : "";
        test::ScopedEnv tiling_env("MLALORA_FAST_TILING", tiling);
        // "small batch" (12 rows) runs the small-batch kernels only when forced
        // ("one token", one row at r_max = 128, takes them by default).
        test::ScopedEnv small_env("MLALORA_FAST_SMALL", std::string(gc.name).rfind("small batch", 0) == 0 ? "1" : "");
        INFO("config " << gc.name << ", dtype " << dtype_name(dt) << ", path " << optimized::path_name(path)
                       << ", MLALORA_FAST_QV=" << (*qv ? qv : "(default)")
                       << ", MLALORA_FAST_TILING=" << (*tiling ? tiling : "(default)") << ", MLALORA_SEED=" << seed);
        std::mt19937_64 rng(seed * 31 + static_cast<uint64_t>(dt) * 7 + static_cast<uint64_t>(path) +
                            std::hash<std::string>{}(gc.name));
        const ProblemShape shape = make_shape(gc, dt);
        const int64_t cap = shape.segment_capacity;
        Problem p0 = random_batch(shape, std::min<int64_t>(3, cap), rng);
        REQUIRE(validate(p0).message == "");
        harness::Case c0{p0, rng(), false};
        ProblemTensors t0 = harness::make_tensors(c0);

        harness::DeviceProblem dp;
        Status st = dp.init(p0, t0);
        REQUIRE(st.message == "");
        harness::SgmmRunner runner;
        REQUIRE(runner.reserve(shape, path).message == "");

        GraphGuard g;
        REQUIRE(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking) == cudaSuccess);
        // One eager run first (sets kernel attributes outside the capture).
        for (Side side : kBothSides) REQUIRE(runner.run(dp, side, path, /*graph_mode=*/true, g.stream).message == "");
        REQUIRE(runner.run_both(dp, path, /*graph_mode=*/true, g.stream).message == "");
        REQUIRE(cudaStreamSynchronize(g.stream) == cudaSuccess);

        // Captured through the both-sides call (one tile plan on the fast
        // path); the eager comparison below goes side by side, so the two
        // APIs must agree bit for bit.
        REQUIRE(cudaStreamBeginCapture(g.stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
        Status sboth = runner.run_both(dp, path, true, g.stream);
        cudaError_t ec = cudaStreamEndCapture(g.stream, &g.graph);
        REQUIRE(sboth.message == "");
        REQUIRE(ec == cudaSuccess);
        REQUIRE(cudaGraphInstantiate(&g.exec, g.graph, 0) == cudaSuccess);

        // Fewer and more live segments than at capture (up to capacity), none.
        // MLALORA_GRAPH_REPLAYS keeps the first N (the sanitizer run uses 3).
        const int64_t live_counts[] = {std::min<int64_t>(3, cap), 1, cap, 0, 2, cap - 1, cap};
        const int replays = std::min(7, test::env_int("MLALORA_GRAPH_REPLAYS", 7));
        bool first = true;
        for (int ri = 0; ri < replays; ++ri) {
          const int64_t n = live_counts[ri];
          Problem pb = first ? p0 : random_batch(shape, n, rng);
          first = false;
          harness::Case cb{pb, rng(), false};
          ProblemTensors base = harness::make_tensors(cb);
          std::ostringstream os;
          os << cb;
          INFO("replay with " << n << " live segments: " << os.str());
          REQUIRE(validate(pb).message == "");
          REQUIRE(dp.upload_tensors(base).message == "");
          REQUIRE(dp.upload_index(pb).message == "");
          REQUIRE(cudaGraphLaunch(g.exec, g.stream) == cudaSuccess);
          REQUIRE(cudaStreamSynchronize(g.stream) == cudaSuccess);
          ProblemTensors got = base;
          REQUIRE(dp.download_outputs(got).message == "");
          const std::string err = verify_outputs(pb, base, got);
          CHECK(err == "");

          // The eager run of the same batch gives the same bits.
          REQUIRE(dp.upload_tensors(base).message == "");
          for (Side side : kBothSides) REQUIRE(runner.run(dp, side, path, /*graph_mode=*/false, g.stream).message == "");
          REQUIRE(cudaStreamSynchronize(g.stream) == cudaSuccess);
          ProblemTensors eager = base;
          REQUIRE(dp.download_outputs(eager).message == "");
          CHECK(same_bits(eager.q_nope_out.data, got.q_nope_out.data));
          CHECK(same_bits(eager.attn_bmm_out.data, got.attn_bmm_out.data));
        }
      }
    }
  }
}

TEST_CASE("CUDA graph: launch geometry does not depend on the live batch", "[gpu][graph]") {
  MLALORA_SKIP_WITHOUT_GPU();
  // Capture with zero live segments, then replay a full batch: the captured
  // grid must already cover every tile a full batch can have.
  const GraphConfig gc{"empty capture", Dims{64, 2, 128, 128, 512, 2, 32}, 4, 64, 0};
  for (DType dt : kAllDTypes) {
    for (optimized::Path path : {optimized::Path::fused, optimized::Path::split}) {
      INFO("dtype " << dtype_name(dt) << ", path " << optimized::path_name(path));
      std::mt19937_64 rng(test::base_seed() + 17 + static_cast<uint64_t>(dt));
      const ProblemShape shape = make_shape(gc, dt);
      Problem p0 = random_batch(shape, 0, rng);
      ProblemTensors t0 = harness::make_tensors(harness::Case{p0, rng(), false});
      harness::DeviceProblem dp;
      REQUIRE(dp.init(p0, t0).message == "");
      harness::SgmmRunner runner;
      REQUIRE(runner.reserve(shape, path).message == "");
      GraphGuard g;
      REQUIRE(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking) == cudaSuccess);
      for (Side side : kBothSides) REQUIRE(runner.run(dp, side, path, true, g.stream).message == "");
      REQUIRE(cudaStreamSynchronize(g.stream) == cudaSuccess);
      REQUIRE(cudaStreamBeginCapture(g.stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
      Status sq = runner.run(dp, Side::q, path, true, g.stream);
      Status sv = runner.run(dp, Side::v, path, true, g.stream);
      cudaError_t ec = cudaStreamEndCapture(g.stream, &g.graph);
      REQUIRE(sq.message == "");
      REQUIRE(sv.message == "");
      REQUIRE(ec == cudaSuccess);
      REQUIRE(cudaGraphInstantiate(&g.exec, g.graph, 0) == cudaSuccess);

      // Full batch: every row covered, segments of the maximum length.
      Problem pb = p0;
      pb.num_segments = 1;
      pb.seg_indptr[0] = 0;
      pb.seg_indptr[1] = 64;
      pb.weight_indices[0] = 0;
      pb.lora_ranks = {32, 7};
      ProblemTensors base = harness::make_tensors(harness::Case{pb, rng(), false});
      REQUIRE(validate(pb).message == "");
      REQUIRE(dp.upload_tensors(base).message == "");
      REQUIRE(dp.upload_index(pb).message == "");
      REQUIRE(cudaGraphLaunch(g.exec, g.stream) == cudaSuccess);
      REQUIRE(cudaStreamSynchronize(g.stream) == cudaSuccess);
      ProblemTensors got = base;
      REQUIRE(dp.download_outputs(got).message == "");
      CHECK(verify_outputs(pb, base, got) == "");

      // Four segments of 16 rows, two slots.
      Problem pc = random_batch(shape, 4, rng);
      for (int g2 = 0; g2 <= 4; ++g2) pc.seg_indptr[g2] = 16 * g2;
      pc.lora_ranks = {5, 32};
      base = harness::make_tensors(harness::Case{pc, rng(), false});
      REQUIRE(validate(pc).message == "");
      REQUIRE(dp.upload_tensors(base).message == "");
      REQUIRE(dp.upload_index(pc).message == "");
      REQUIRE(cudaGraphLaunch(g.exec, g.stream) == cudaSuccess);
      REQUIRE(cudaStreamSynchronize(g.stream) == cudaSuccess);
      got = base;
      REQUIRE(dp.download_outputs(got).message == "");
      CHECK(verify_outputs(pc, base, got) == "");
    }
  }
}

namespace {

// A problem with the given segment lengths (consecutive from row 0), slots
// cycling over 0..L-1, ranks r_max, r_max/2+1, ... and an optional shuffle.
Problem problem_with_segments(const Dims& d, DType dt, int64_t cap, int64_t max_len, const std::vector<int64_t>& lens,
                              bool perm, std::mt19937_64& rng) {
  Problem p;
  p.shape.dims = d;
  p.shape.dtype = dt;
  p.shape.layout = Layout::contiguous(d);
  p.shape.segment_capacity = cap;
  p.shape.max_segment_len = max_len;
  p.shape.has_permutation = perm;
  for (int64_t l = 0; l < d.L; ++l) {
    p.lora_ranks.push_back(static_cast<int32_t>(l == 0 ? d.r_max : std::max<int64_t>(1, (d.r_max * (l + 1)) / (d.L + 1))));
    p.scalings.push_back(0.5f + 0.25f * static_cast<float>(l));
  }
  p.seg_indptr.assign(static_cast<size_t>(cap + 1), 0);
  p.weight_indices.assign(static_cast<size_t>(cap), 0);
  p.num_segments = static_cast<int64_t>(lens.size());
  int64_t pos = 0;
  for (size_t g = 0; g < lens.size(); ++g) {
    pos += lens[g];
    p.seg_indptr[g + 1] = static_cast<int32_t>(pos);
    p.weight_indices[g] = static_cast<int32_t>(g % static_cast<size_t>(d.L));
  }
  if (perm) {
    p.permutation.resize(static_cast<size_t>(d.S));
    std::iota(p.permutation.begin(), p.permutation.end(), 0);
    std::shuffle(p.permutation.begin(), p.permutation.end(), rng);
  }
  return p;
}

}  // namespace

// The tile shapes the launch heuristic picks for large batches (64-row tiles:
// 64 tokens x 1 head, 32 x 2, 4 x 16, 1 x 64), which the small graph cases
// above never reach, at model head dims and ranks up to 128.
TEST_CASE("large batches: every 64-row tile shape against the reference", "[gpu][tiles]") {
  MLALORA_SKIP_WITHOUT_GPU();
  struct Cfg {
    const char* name;
    Dims dims;
    int64_t cap, max_len;
    std::vector<int64_t> lens;
    bool perm;
  };
  std::vector<int64_t> pairs(64, 20), ones(300, 1), triples(200, 3);
  for (size_t g = 0; g < pairs.size(); g += 3) pairs[g] = 7;
  for (size_t g = 0; g < triples.size(); g += 5) triples[g] = 1;
  const Cfg cfgs[] = {
      {"prefill 64 tokens x 1 head, r 64", Dims{1536, 12, 128, 128, 512, 3, 64}, 4, 768, {700, 0, 768}, false},
      {"prefill 64 tokens x 1 head, r 128", Dims{1536, 12, 128, 128, 512, 3, 128}, 4, 768, {65, 768, 700}, true},
      {"32 tokens x 2 heads", Dims{1536, 12, 128, 128, 512, 3, 64}, 64, 20, pairs, true},
      {"1 token x 64 heads (decode)", Dims{300, 64, 128, 128, 512, 4, 32}, 300, 1, ones, true},
      {"4 tokens x 16 heads, odd D_v / R_kv", Dims{600, 32, 128, 72, 200, 4, 96}, 200, 3, triples, true},
  };
  const uint64_t seed = test::base_seed();
  for (const Cfg& cfg : cfgs) {
    for (DType dt : {DType::bf16, DType::f16}) {
      std::mt19937_64 rng(seed + std::hash<std::string>{}(cfg.name) + static_cast<uint64_t>(dt));
      Problem p = problem_with_segments(cfg.dims, dt, cfg.cap, cfg.max_len, cfg.lens, cfg.perm, rng);
      REQUIRE(validate(p).message == "");
      harness::Case c{p, rng(), false};
      harness::Testbed tb(c);
      for (const char* name : {"cuda-fused", "cuda-split"}) {
        auto impl = harness::make_implementation(name);
        REQUIRE(impl != nullptr);
        harness::RunOutcome o = tb.run(*impl);
        INFO(cfg.name << ", " << dtype_name(dt) << ", " << name << ", MLALORA_SEED=" << seed << ": " << o.message
                      << "\n q: " << o.q.describe() << "\n v: " << o.v.describe());
        CHECK(o.disposition == harness::Disposition::passed);
      }
    }
  }
}
