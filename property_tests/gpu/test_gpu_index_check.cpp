// Device-side index data: check_index_data must report the first bad entry
// exactly as the host validation does; the kernels, run on garbage index data
// (negative, huge, non-monotone, out-of-range, repeated), must not crash, must
// not write the inputs, and must leave every output element outside the
// segments they are documented to process bitwise unchanged (gaps included).
// Meant to be run under compute-sanitizer as well. Skips visibly without a GPU.
#include <catch2/catch.hpp>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "skip_without_gpu.hpp"
#include "mlalora/harness/generators.hpp"
#include "mlalora/harness/gpu_implementations.hpp"
#include "mlalora/optimized/sgmm.hpp"
#include "test_config.hpp"

using namespace mlalora;

namespace {

Problem base_problem(DType dt) {
  // S = 20, capacity 7 with 5 live segments, max_segment_len 6.
  Problem p;
  p.shape.dims = Dims{20, 2, 8, 8, 16, 4, 8};
  p.shape.dtype = dt;
  p.shape.layout = Layout::contiguous(p.shape.dims);
  p.shape.segment_capacity = 7;
  p.shape.max_segment_len = 6;
  p.shape.has_permutation = true;
  p.lora_ranks = {2, 0, 8, 5};
  p.scalings = {0.5f, 1.f, -2.f, 0.25f};
  p.seg_indptr = {0, 3, 7, 7, 12, 18, -4, 99};
  p.weight_indices = {0, 1, 2, 3, 1, 77, -3};
  p.num_segments = 5;
  p.permutation = {7, 3, 19, 0, 12, 5, 1, 18, 2, 9, 4, 6, 8, 10, 11, 13, 14, 15, 16, 17};
  return p;
}

struct Mutation {
  const char* name;
  std::function<void(Problem&)> apply;
};

}  // namespace

TEST_CASE("check_index_data reports the first bad entry, like the host validation", "[gpu][index]") {
  MLALORA_SKIP_WITHOUT_GPU();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Mutation mutations[] = {
      {"valid", [](Problem&) {}},
      {"weight index too large (two of them)", [](Problem& p) { p.weight_indices[2] = 12; p.weight_indices[4] = 13; }},
      {"negative weight index", [](Problem& p) { p.weight_indices[3] = -1; }},
      {"spare weight indices are not checked", [](Problem& p) { p.weight_indices[5] = 1000; }},
      {"seg_indptr not monotone", [](Problem& p) { p.seg_indptr[2] = 2; }},
      {"seg_indptr[0] nonzero", [](Problem& p) { p.seg_indptr[0] = 1; }},
      {"seg_indptr[0] negative", [](Problem& p) { p.seg_indptr[0] = -5; }},
      {"seg_indptr past S", [](Problem& p) { p.seg_indptr[5] = 25; }},
      {"seg_indptr huge", [](Problem& p) { p.seg_indptr[4] = INT_MAX; }},
      {"segment too long", [](Problem& p) { p.seg_indptr[4] = 14; }},
      {"negative rank", [](Problem& p) { p.lora_ranks[1] = -3; }},
      {"rank above r_max", [](Problem& p) { p.lora_ranks[3] = 9; }},
      {"scaling NaN", [nan](Problem& p) { p.scalings[2] = nan; }},
      {"permutation out of range", [](Problem& p) { p.permutation[5] = 20; }},
      {"permutation negative", [](Problem& p) { p.permutation[0] = -1; }},
      {"permutation repeat", [](Problem& p) { p.permutation[9] = p.permutation[4]; }},
      {"permutation repeat and later range error", [](Problem& p) {
         p.permutation[6] = p.permutation[1];
         p.permutation[11] = -7;
       }},
      {"permutation beyond covered rows is not checked", [](Problem& p) { p.permutation[19] = p.permutation[18]; }},
      {"several errors: the host order wins", [](Problem& p) {
         p.weight_indices[4] = 9;
         p.seg_indptr[3] = 5;
         p.permutation[2] = 40;
       }},
      {"rank error before segment error", [](Problem& p) {
         p.seg_indptr[1] = -1;
         p.lora_ranks[2] = 100;
       }},
  };
  for (DType dt : {DType::bf16, DType::f32}) {
    Problem p = base_problem(dt);
    REQUIRE(validate(p).ok());
    ProblemTensors t = harness::make_tensors(harness::Case{p, 1, false});
    harness::DeviceProblem dp;
    REQUIRE(dp.init(p, t).message == "");
    harness::DeviceBuffer ws;
    REQUIRE(ws.allocate(optimized::check_index_data_workspace_size(p.shape)).message == "");
    for (const Mutation& m : mutations) {
      INFO("mutation: " << m.name);
      Problem q = base_problem(dt);
      m.apply(q);
      const Status host = validate_index_data(q);
      REQUIRE(dp.upload_index(q).message == "");
      for (bool graph : {false, true}) {
        INFO((graph ? "graph mode (device live count)" : "host live count"));
        const Status dev = optimized::check_index_data(q.shape, dp.args(graph), ws.get(), ws.bytes(), nullptr);
        CHECK(static_cast<int>(dev.code) == static_cast<int>(host.code));
        CHECK(dev.message == host.message);
      }
    }
    // Live count out of range (graph mode only: the host count is validated before launch).
    REQUIRE(dp.upload_index(base_problem(dt)).message == "");
    for (int32_t live : {8, -1, INT_MAX, INT_MIN}) {
      REQUIRE(dp.set_live_segments(live).message == "");
      const Status dev = optimized::check_index_data(p.shape, dp.args(true), ws.get(), ws.bytes(), nullptr);
      CHECK(dev.code == StatusCode::invalid_argument);
      CHECK(dev.message == "num_segments_device = " + std::to_string(live) + " must be in [0, segment_capacity=7]");
    }
    // Host count out of range: refused on the host.
    optimized::DeviceArgs a = dp.args(false);
    a.num_segments_host = 8;
    CHECK(optimized::check_index_data(p.shape, a, ws.get(), ws.bytes(), nullptr).code == StatusCode::invalid_argument);
    // Too small a workspace.
    CHECK(optimized::check_index_data(p.shape, dp.args(true), ws.get(), 8, nullptr).code ==
          StatusCode::workspace_too_small);
  }
}

namespace {

// Rows the kernels may write for the given (garbage) index data: exactly the
// processable segments of sgmm.hpp's documented rule.
std::vector<char> writable_rows(const ProblemShape& s, const std::vector<int32_t>& sp, const std::vector<int32_t>& wi,
                                const std::vector<int32_t>& ranks, const std::vector<int32_t>& perm, int64_t live) {
  const Dims& d = s.dims;
  std::vector<char> w(static_cast<size_t>(d.S), 0);
  for (int64_t g = 0; g < live; ++g) {
    const int64_t b = sp[g], e = sp[g + 1], l = wi[g];
    if (b < 0 || e < b || e > d.S || e - b > s.max_segment_len || l < 0 || l >= d.L) continue;
    if (ranks[l] < 1 || ranks[l] > d.r_max) continue;
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = s.has_permutation ? perm[i] : i;
      if (t >= 0 && t < d.S) w[t] = 1;
    }
  }
  return w;
}

int32_t pick(std::mt19937_64& rng, const std::vector<int32_t>& choices) {
  return choices[std::uniform_int_distribution<size_t>(0, choices.size() - 1)(rng)];
}

}  // namespace

TEST_CASE("kernels on garbage index data stay in bounds and write only processable segments", "[gpu][index]") {
  MLALORA_SKIP_WITHOUT_GPU();
  struct Cfg {
    const char* name;
    Dims dims;
    int64_t cap, max_len, pad;
    bool perm;
  };
  const Cfg cfgs[] = {
      {"odd dims, permutation", Dims{33, 3, 17, 24, 40, 3, 12}, 6, 10, 5, true},
      {"model dims, permutation", Dims{40, 2, 128, 128, 512, 3, 32}, 6, 12, 0, true},
      {"model dims, no permutation", Dims{40, 2, 128, 128, 512, 3, 32}, 6, 12, 8, false},
      // the small-batch kernels (forced on): <= 16 rows, spare capacity, and
      // more segment slots than a block has threads
      {"small batch, permutation", Dims{12, 4, 128, 128, 512, 3, 96}, 20, 6, 0, true},
      {"small batch, 150 segments", Dims{16, 2, 64, 64, 64, 3, 16}, 150, 4, 8, false},
      {"small batch, 200 slots", Dims{16, 2, 64, 64, 64, 200, 16}, 40, 4, 0, true},
      // the plan kernel's shared-memory limit (512 segment slots) and more slots than the direct tiling takes
      {"512 segments, permutation", Dims{300, 2, 64, 64, 128, 40, 32}, 512, 3, 0, true},
      // more slots than a block has threads (no slot table in shared memory)
      {"200 slots", Dims{300, 2, 64, 64, 128, 200, 32}, 40, 20, 0, false},
  };
  const uint64_t seed = test::base_seed();
  const int trials = std::max(2, test::env_int("MLALORA_GARBAGE_TRIALS", 6));
  for (const Cfg& cfg : cfgs) {
    for (DType dt : kAllDTypes) {
      std::mt19937_64 rng(seed + 101 * static_cast<uint64_t>(dt) + std::hash<std::string>{}(cfg.name));
      const Dims& d = cfg.dims;
      // A valid initial problem for the allocation and the tensors.
      Problem p;
      p.shape.dims = d;
      p.shape.dtype = dt;
      p.shape.layout = Layout::contiguous(d);
      if (cfg.pad > 0)
        for (TensorId id : {TensorId::q_nope, TensorId::q_nope_out, TensorId::attn_latent, TensorId::attn_bmm_out}) {
          const Shape3 sh = tensor_shape(d, id);
          Strides3& st = p.shape.layout.of(id);
          st.s1 = sh[2] + cfg.pad;
          st.s0 = sh[1] * st.s1 + cfg.pad;
        }
      p.shape.segment_capacity = cfg.cap;
      p.shape.max_segment_len = cfg.max_len;
      p.shape.has_permutation = cfg.perm;
      p.lora_ranks.assign(static_cast<size_t>(d.L), static_cast<int32_t>(d.r_max));
      p.scalings.assign(static_cast<size_t>(d.L), 0.5f);
      p.seg_indptr.assign(static_cast<size_t>(cfg.cap + 1), 0);
      p.weight_indices.assign(static_cast<size_t>(cfg.cap), 0);
      p.num_segments = 0;
      if (cfg.perm) {
        p.permutation.resize(static_cast<size_t>(d.S));
        std::iota(p.permutation.begin(), p.permutation.end(), 0);
      }
      REQUIRE(validate(p).message == "");
      const ProblemTensors base = harness::make_tensors(harness::Case{p, rng(), false});
      harness::DeviceProblem dp;
      REQUIRE(dp.init(p, base).message == "");
      harness::SgmmRunner runner;

      const int32_t S = static_cast<int32_t>(d.S), L = static_cast<int32_t>(d.L), R = static_cast<int32_t>(d.r_max);
      for (int trial = 0; trial < trials; ++trial) {
        std::vector<int32_t> sp(static_cast<size_t>(cfg.cap + 1)), wi(static_cast<size_t>(cfg.cap)),
            ranks(static_cast<size_t>(L)), perm;
        auto small = [&](int32_t lo, int32_t hi) { return std::uniform_int_distribution<int32_t>(lo, hi)(rng); };
        for (auto& v : sp) v = pick(rng, {-5, 0, 3, 7, 12, S / 2, S - 1, S, S + 4, INT_MAX, INT_MIN, small(-10, S + 10)});
        if (trial % 2 == 0) {  // mostly plausible: monotone prefix with a few bad entries
          int32_t pos = 0;
          for (size_t g = 0; g < sp.size(); ++g) {
            sp[g] = pos;
            pos = std::min<int32_t>(S, pos + small(0, static_cast<int32_t>(cfg.max_len) + 2));
          }
          sp[static_cast<size_t>(small(0, static_cast<int32_t>(cfg.cap)))] = pick(rng, {-3, S + 1, INT_MAX, 1});
        }
        for (auto& v : wi) v = pick(rng, {-1, 0, 1, L - 1, L, 100, INT_MIN, small(0, L - 1), small(0, L - 1)});
        for (auto& v : ranks) v = pick(rng, {-2, 0, 1, R, R + 1, INT_MAX, small(1, R), small(1, R)});
        if (cfg.perm) {
          perm.resize(static_cast<size_t>(S));
          std::iota(perm.begin(), perm.end(), 0);
          std::shuffle(perm.begin(), perm.end(), rng);
          for (int k = 0; k < 4; ++k)
            perm[static_cast<size_t>(small(0, S - 1))] = pick(rng, {-1, S, INT_MAX, INT_MIN, small(0, S - 1)});
        }
        REQUIRE(dp.set_index_raw(sp, wi, ranks, perm).message == "");
        for (bool graph : {false, true}) {
          for (optimized::Path path : {optimized::Path::fused, optimized::Path::split}) {
            // The fast path's two tilings alternate by trial (plan kernel /
            // each block finds its own segment): both must filter the same way.
            const char* tiling = trial % 2 == 1 ? "direct" : "plan";
            test::ScopedEnv tiling_env("MLALORA_FAST_TILING", tiling);
            const bool small_cfg = std::string(cfg.name).rfind("small batch", 0) == 0;
            test::ScopedEnv small_env("MLALORA_FAST_SMALL", small_cfg ? "1" : "");
            INFO(cfg.name << ", " << dtype_name(dt) << ", trial " << trial << ", "
                          << (graph ? "graph mode" : "host count") << ", " << optimized::path_name(path)
                          << ", MLALORA_FAST_TILING=" << tiling << ", MLALORA_SEED=" << seed);
            int32_t live_dev = graph ? pick(rng, {-3, static_cast<int32_t>(cfg.cap), static_cast<int32_t>(cfg.cap) + 5,
                                                  INT_MAX, INT_MIN, small(0, static_cast<int32_t>(cfg.cap))})
                                     : small(0, static_cast<int32_t>(cfg.cap));
            REQUIRE(dp.set_live_segments(live_dev).message == "");
            REQUIRE(dp.upload_tensors(base).message == "");
            for (Side side : kBothSides) {
              const Status st = runner.run(dp, side, path, graph, nullptr);
              CHECK(st.message == "");
            }
            REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
            REQUIRE(cudaGetLastError() == cudaSuccess);
            const int64_t live = std::clamp<int64_t>(live_dev, 0, cfg.cap);
            const std::vector<char> rows = writable_rows(p.shape, sp, wi, ranks, perm, live);
            for (TensorId id : kAllTensors) {
              HostTensor got;
              REQUIRE(dp.download_tensor(id, got).message == "");
              const HostTensor& want = base.of(id);
              REQUIRE(got.data.size() == want.data.size());
              const bool is_out = id == TensorId::q_nope_out || id == TensorId::attn_bmm_out;
              // Storage elements that may change: logical elements of writable rows of an output.
              std::vector<char> may(want.data.size(), 0);
              if (is_out)
                for (int64_t t = 0; t < want.shape[0]; ++t)
                  if (rows[static_cast<size_t>(t)])
                    for (int64_t h = 0; h < want.shape[1]; ++h)
                      for (int64_t n = 0; n < want.shape[2]; ++n) may[static_cast<size_t>(want.offset(t, h, n))] = 1;
              int64_t bad = 0, first_bad = -1;
              for (size_t k = 0; k < want.data.size(); ++k) {
                if (may[k]) continue;
                // Compare storage bits in the dtype: NaN payloads (the gap
                // sentinel) do not survive a float -> f16/bf16 -> float trip.
                if (to_bits(dt, got.data[k]) != to_bits(dt, want.data[k])) {
                  if (first_bad < 0) first_bad = static_cast<int64_t>(k);
                  ++bad;
                }
              }
              INFO("tensor " << tensor_name(id) << ": first changed storage element " << first_bad);
              CHECK(bad == 0);
            }
          }
        }
      }
    }
  }
}
