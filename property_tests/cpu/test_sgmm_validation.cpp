// Host-side validation of the CUDA API runs without a GPU: every refusal
// happens before any CUDA call, so bad arguments are tested in CI. The
// pointers below are never dereferenced (validation must fail first).
#include <catch2/catch.hpp>

#ifdef MLALORA_HAVE_CUDA
#include "mlalora/harness/generators.hpp"
#include "mlalora/optimized/sgmm.hpp"
#include "test_config.hpp"

using namespace mlalora;
using optimized::DeviceArgs;
using optimized::Path;

namespace {

ProblemShape valid_shape() {
  Dims d{32, 4, 16, 24, 64, 2, 8};
  return harness::make_problem(d, DType::bf16, {8, 0}, {1.f, 1.f}, {0, 10, 20}, {0, 1}).shape;
}

DeviceArgs fake_args(const ProblemShape& s) {
  auto fake = [](uintptr_t a) { return reinterpret_cast<void*>(a); };
  DeviceArgs a;
  a.q_nope = fake(0x100000);
  a.q_nope_out = fake(0x200000);
  a.attn_latent = fake(0x300000);
  a.attn_bmm_out = fake(0x400000);
  a.A = fake(0x500000);
  a.B = fake(0x600000);
  a.lora_ranks = static_cast<const int32_t*>(fake(0x700000));
  a.scalings = static_cast<const float*>(fake(0x710000));
  a.seg_indptr = static_cast<const int32_t*>(fake(0x720000));
  a.weight_indices = static_cast<const int32_t*>(fake(0x730000));
  a.num_segments_host = s.segment_capacity;
  return a;
}

Status call(const ProblemShape& s, const DeviceArgs& a, Side side = Side::q, Path path = Path::fused,
            size_t ws = 1 << 20) {
  return optimized::lora_correction(s, a, side, path, reinterpret_cast<void*>(0x800000), ws, nullptr);
}

}  // namespace

TEST_CASE("CUDA API refuses bad arguments on the host, naming them", "[cli][validation]") {
  ProblemShape s = valid_shape();
  DeviceArgs a = fake_args(s);

  SECTION("null input of the side") {
    a.q_nope = nullptr;
    Status st = call(s, a, Side::q);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("q_nope"));
  }
  SECTION("misaligned pointer") {
    a.attn_bmm_out = reinterpret_cast<void*>(0x400001);
    Status st = call(s, a, Side::v);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("attn_bmm_out"));
  }
  SECTION("inner stride other than 1 is not supported, named") {
    s.layout.q_nope.s2 = 2;
    s.layout.q_nope.s1 = 2 * 16;
    s.layout.q_nope.s0 = 4 * 32;
    Status st = call(s, a, Side::q);
    CHECK(st.code == StatusCode::not_supported);
    CHECK_THAT(st.message, Catch::Contains("layout.q_nope.s2"));
  }
  SECTION("negative stride") {
    s.layout.A.s1 = -64;
    Status st = call(s, a, Side::q);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("layout.A"));
  }
  SECTION("aliasing output layout") {
    s.layout.q_nope_out.s1 = 0;
    Status st = call(s, a, Side::q);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("q_nope_out"));
  }
  SECTION("bad dims") {
    s.dims.H = 0;
    Status st = call(s, a, Side::q);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("dims.H"));
  }
  SECTION("permutation pointer without has_permutation") {
    a.permutation = reinterpret_cast<const int32_t*>(0x740000);
    Status st = call(s, a, Side::q);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("permutation"));
  }
  SECTION("live count above capacity") {
    a.num_segments_host = s.segment_capacity + 1;
    Status st = call(s, a, Side::q);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("num_segments"));
  }
  SECTION("workspace too small for the split path") {
    const size_t need = optimized::workspace_size(s, Path::split, Side::q);
    REQUIRE(need > 0);
    Status st = call(s, a, Side::q, Path::split, need - 1);
    CHECK(st.code == StatusCode::workspace_too_small);
    CHECK_THAT(st.message, Catch::Contains(std::to_string(need)));
  }
}

TEST_CASE("Fused path: kernel family and workspace follow the documented eligibility", "[cli][validation]") {
  // Which kernels lora_correction(fused) takes is decided on the host from
  // the shape, strides and pointers; the tests that prove each family
  // correct on the GPU rely on this mapping.
  Dims d{64, 8, 128, 128, 512, 3, 64};
  ProblemShape s = harness::make_problem(d, DType::bf16, {64, 16, 0}, {1.f, 1.f, 1.f}, {0, 30, 64}, {0, 1}).shape;
  DeviceArgs a = fake_args(s);
  using optimized::fused_kernel_family;
  CHECK(std::string(fused_kernel_family(s, a, Side::q)) == "fast");
  CHECK(std::string(fused_kernel_family(s, a, Side::v)) == "fast");
  const size_t need = optimized::workspace_size(s, Path::fused, Side::q);
  CHECK(need > 0);  // the tile plan
  SECTION("too small a workspace for the tile plan is refused before any launch") {
    Status st = call(s, a, Side::q, Path::fused, need - 1);
    CHECK(st.code == StatusCode::workspace_too_small);
    CHECK_THAT(st.message, Catch::Contains("tile plan"));
    // The both-sides call needs the same plan and refuses the same way.
    CHECK(optimized::workspace_size_both(s, Path::fused) == need);
    Status both = optimized::lora_correction_both(s, a, Path::fused, reinterpret_cast<void*>(0x800000), need - 1, nullptr);
    CHECK(both.code == StatusCode::workspace_too_small);
  }
  SECTION("build_plan checks like a call of both sides, before any launch") {
    // The plan a forward step builds once for all its layers (CallOptions::plan_prebuilt).
    Status small = optimized::build_plan(s, a, reinterpret_cast<void*>(0x800000), need - 1, nullptr);
    CHECK(small.code == StatusCode::workspace_too_small);
    CHECK_THAT(small.message, Catch::Contains(std::to_string(need)));
    Status null_ws = optimized::build_plan(s, a, nullptr, need, nullptr);
    CHECK(null_ws.code == StatusCode::workspace_too_small);
    CHECK_THAT(null_ws.message, Catch::Contains("null"));
    Status misaligned = optimized::build_plan(s, a, reinterpret_cast<void*>(0x800008), need, nullptr);
    CHECK(misaligned.code == StatusCode::invalid_argument);
    CHECK_THAT(misaligned.message, Catch::Contains("16-byte"));
    DeviceArgs bad = a;
    bad.seg_indptr = nullptr;
    Status no_index = optimized::build_plan(s, bad, reinterpret_cast<void*>(0x800000), need, nullptr);
    CHECK(no_index.code == StatusCode::invalid_argument);
    CHECK_THAT(no_index.message, Catch::Contains("seg_indptr"));
    // Nothing to plan (no live segment): Ok without touching the device.
    DeviceArgs empty = a;
    empty.num_segments_host = 0;
    CHECK(optimized::build_plan(s, empty, reinterpret_cast<void*>(0x800000), need, nullptr).ok());
  }
  SECTION("D_v not a multiple of 64: v side general tensor-core kernels, no plan") {
    ProblemShape t = s;
    t.dims.D_v = 72;
    t.layout = Layout::contiguous(t.dims);
    CHECK(std::string(fused_kernel_family(t, fake_args(t), Side::q)) == "fast");
    CHECK(std::string(fused_kernel_family(t, fake_args(t), Side::v)) == "mma");
    CHECK(optimized::workspace_size(t, Path::fused, Side::v) == 0);
  }
  SECTION("a pointer aligned to the dtype but not to 16 bytes") {
    a.A = reinterpret_cast<const void*>(0x500008);
    CHECK(std::string(fused_kernel_family(s, a, Side::q)) == "mma");
  }
  SECTION("a row stride that is not a multiple of 8 elements") {
    ProblemShape t = s;
    t.layout.q_nope_out.s1 = 516;
    t.layout.q_nope_out.s0 = 516 * 8;
    CHECK(std::string(fused_kernel_family(t, fake_args(t), Side::q)) == "mma");
  }
  SECTION("f32, ranks above the tensor-core limit, ranks above the on-chip limit") {
    ProblemShape t = s;
    t.dtype = DType::f32;
    CHECK(std::string(fused_kernel_family(t, a, Side::q)) == "generic");
    t = s;
    t.dims.r_max = 200;
    t.layout = Layout::contiguous(t.dims);
    CHECK(std::string(fused_kernel_family(t, fake_args(t), Side::v)) == "generic");
    t.dims.r_max = 300;
    t.layout = Layout::contiguous(t.dims);
    CHECK(std::string(fused_kernel_family(t, fake_args(t), Side::v)) == "split");
  }
}

namespace {
// A model-like shape (DeepSeek head dims) with `nseg` equal segments over
// min(nseg, L) slots; capacity = nseg.
ProblemShape model_shape(int64_t S, int64_t H, int64_t L, int64_t r, int64_t nseg) {
  Dims d{S, H, 128, 128, 512, L, r};
  std::vector<int32_t> indptr{0}, widx;
  for (int64_t g = 0; g < nseg; ++g) {
    indptr.push_back(static_cast<int32_t>(S * (g + 1) / nseg));
    widx.push_back(static_cast<int32_t>(g % L));
  }
  return harness::make_problem(d, DType::bf16, std::vector<int32_t>(static_cast<size_t>(L), static_cast<int32_t>(r)),
                               std::vector<float>(static_cast<size_t>(L), 0.5f), indptr, widx)
      .shape;
}
}  // namespace

TEST_CASE("Fast path: tiling and block shape follow the documented rules; the workspace does not", "[cli][validation]") {
  // optimized/PERF.md, version 4: no plan kernel when segments are long or
  // the batch is one tile high; one head per block for long segments and for
  // one-tile batches whose H blocks fit one wave; the workspace is a function
  // of the shape alone (a graph sized under one setting may be captured under another).
  using optimized::fast_path_layout;
  const ProblemShape prefill = model_shape(4096, 16, 4, 64, 4);
  const ProblemShape decode = model_shape(256, 16, 8, 64, 256);
  const ProblemShape t1_tp8 = model_shape(1, 16, 8, 128, 1);
  const ProblemShape t1_tp1 = model_shape(1, 128, 8, 128, 1);
  CHECK(fast_path_layout(prefill).direct);
  CHECK(fast_path_layout(prefill).heads_per_block == 1);
  CHECK(fast_path_layout(prefill).tile_tokens == 64);
  CHECK(!fast_path_layout(decode).direct);             // one-token segments: the plan merges them by slot
  CHECK(fast_path_layout(decode).heads_per_block == 2);  // 32 tokens per slot
  CHECK(fast_path_layout(t1_tp8).direct);
  CHECK(fast_path_layout(t1_tp8).heads_per_block == 1);  // 16 heads: 5 x 16 blocks fit one wave
  CHECK(fast_path_layout(t1_tp1).direct);
  CHECK(fast_path_layout(t1_tp1).heads_per_block == 4);  // 128 heads at r = 128 (2 blocks per SM) do not
  // More than 256 segment slots: the plan, even for long segments.
  CHECK(!fast_path_layout(model_shape(300 * 64, 2, 4, 16, 300)).direct);

  const size_t ws_pre = optimized::workspace_size(prefill, Path::fused, Side::q);
  const size_t ws_dec = optimized::workspace_size(decode, Path::fused, Side::v);
  CHECK(ws_pre > 0);
  CHECK(ws_dec > 0);
  for (const char* tiling : {"plan", "direct", ""}) {
    for (const char* heads : {"1", "2", "4", ""}) {
      for (const char* geometry : {"v3", ""}) {
        test::ScopedEnv e1("MLALORA_FAST_TILING", tiling), e2("MLALORA_FAST_HEADS_PER_BLOCK", heads),
            e3("MLALORA_FAST_GEOMETRY", geometry);
        INFO("MLALORA_FAST_TILING=" << tiling << " MLALORA_FAST_HEADS_PER_BLOCK=" << heads
                                    << " MLALORA_FAST_GEOMETRY=" << geometry);
        CHECK(optimized::workspace_size(prefill, Path::fused, Side::q) == ws_pre);
        CHECK(optimized::workspace_size(decode, Path::fused, Side::v) == ws_dec);
        const optimized::FastPathLayout l = fast_path_layout(decode);
        if (*tiling) CHECK(l.direct == (std::string(tiling) == "direct"));
        if (*heads) CHECK(l.heads_per_block == std::atoi(heads));
        if (!*heads && std::string(geometry) == "v3") CHECK(fast_path_layout(t1_tp8).heads_per_block == 4);
        CHECK(l.tile_tokens * l.heads_per_block == 64);  // four warps of 16 rows
      }
    }
  }
}

TEST_CASE("Small-batch kernels: where they run, the switch, workspace from the shape alone", "[cli][validation]") {
  // sgmm_small.cu: by default one-row batches at r_max >= 64 and batches of
  // <= 16 rows at r_max > 64 with at most 16 heads run the two-stage
  // small-batch kernels (where they measured faster on the H200);
  // MLALORA_FAST_SMALL=1 takes them for every batch of <= 16 rows, =0 never.
  // Their rank-r intermediates (fp32, both sides) live in the workspace,
  // whose size must not depend on the switch (a graph may be captured under either).
  using optimized::fast_path_layout;
  CHECK(fast_path_layout(model_shape(1, 16, 8, 128, 1)).small_batch);
  CHECK(fast_path_layout(model_shape(1, 128, 8, 128, 1)).small_batch);
  CHECK(fast_path_layout(model_shape(1, 16, 8, 64, 1)).small_batch);
  CHECK(fast_path_layout(model_shape(1, 128, 8, 64, 1)).small_batch);
  CHECK(!fast_path_layout(model_shape(2, 16, 8, 64, 2)).small_batch);
  CHECK(!fast_path_layout(model_shape(1, 16, 8, 32, 1)).small_batch);
  CHECK(!fast_path_layout(model_shape(1, 16, 8, 16, 1)).small_batch);
  CHECK(fast_path_layout(model_shape(4, 16, 8, 128, 4)).small_batch);
  CHECK(fast_path_layout(model_shape(16, 16, 8, 128, 16)).small_batch);
  CHECK(!fast_path_layout(model_shape(4, 128, 8, 128, 4)).small_batch);
  CHECK(!fast_path_layout(model_shape(17, 16, 8, 128, 17)).small_batch);
  for (int64_t S : {1, 2, 7, 16}) {
    for (int64_t r : {16, 128}) {
      const ProblemShape t = model_shape(S, 16, 8, r, S);
      INFO("S = " << S << ", r_max = " << r);
      const size_t ws = optimized::workspace_size(t, Path::fused, Side::q);
      CHECK(ws >= 2 * static_cast<size_t>(S) * 16 * static_cast<size_t>(r) * sizeof(float));  // Y_q and Y_v
      CHECK(optimized::workspace_size_both(t, Path::fused) == ws);
      {
        test::ScopedEnv on("MLALORA_FAST_SMALL", "1");
        CHECK(fast_path_layout(t).small_batch);
        CHECK(optimized::workspace_size(t, Path::fused, Side::q) == ws);
      }
      test::ScopedEnv off("MLALORA_FAST_SMALL", "0");
      CHECK(!fast_path_layout(t).small_batch);
      CHECK(optimized::workspace_size(t, Path::fused, Side::q) == ws);
    }
  }
  test::ScopedEnv on("MLALORA_FAST_SMALL", "1");
  CHECK(!fast_path_layout(model_shape(17, 16, 8, 128, 17)).small_batch);
  // r_max not a multiple of 8 (the intermediate's rows are padded to 8) and TP1 head counts.
  CHECK(optimized::workspace_size(model_shape(3, 128, 4, 20, 3), Path::fused, Side::v) >=
        2 * 3 * 128 * 24 * sizeof(float));
  CHECK(fast_path_layout(model_shape(3, 128, 4, 20, 3)).small_batch);
  SECTION("too small a workspace is refused, naming the size needed") {
    const ProblemShape t = model_shape(4, 16, 8, 64, 4);
    const size_t need = optimized::workspace_size(t, Path::fused, Side::q);
    Status st = call(t, fake_args(t), Side::q, Path::fused, need - 1);
    CHECK(st.code == StatusCode::workspace_too_small);
    CHECK_THAT(st.message, Catch::Contains(std::to_string(need)));
  }
}
TEST_CASE("Small-batch kernels: launch geometry keeps the kernels' invariants on every eligible shape", "[cli][validation]") {
  // The kernels trust the host's tiles (sgmm_small.cu): a block's 128
  // threads split into 128 / work_units contraction slices (so work_units
  // must divide 128), 16-byte staging needs 8-column multiples, and the
  // column chunks must cover every output column: a tile choice that broke
  // one of these would compute wrong values, silently, on shapes the GPU
  // tests never draw. Checked here over a grid of dims, ranks and row counts.
  int64_t shapes = 0;
  for (int64_t S : {1, 2, 3, 5, 8, 13, 16})
    for (int64_t H : {1, 2, 3, 5, 8, 16, 40, 64, 128})
      for (int64_t Dqk : {16, 64, 128, 192, 256})
        for (int64_t Dv : {64, 128, 256})
          for (int64_t Rkv : {64, 128, 256, 512})
            for (int64_t r : {1, 7, 8, 20, 64, 96, 128})
              for (int64_t L : {1, 3, 32}) {
                ProblemShape t;
                t.dims = Dims{S, H, Dqk, Dv, Rkv, L, r};
                t.dtype = DType::bf16;
                t.layout = Layout::contiguous(t.dims);
                t.segment_capacity = S;
                t.max_segment_len = S;
                const optimized::SmallBatchGeometry g = optimized::small_batch_geometry(t);
                ++shapes;
                INFO("S=" << S << " H=" << H << " D_qk=" << Dqk << " D_v=" << Dv << " R_kv=" << Rkv << " r_max=" << r
                          << " L=" << L);
                REQUIRE(g.ok);
                REQUIRE(g.y_pitch == (r + 7) / 8 * 8);
                int64_t rows_pad = 1;
                while (rows_pad < S) rows_pad *= 2;
                const int64_t covers[4] = {g.y_pitch, g.y_pitch, Rkv, Dv};
                for (int k = 0; k < 4; ++k) {
                  const optimized::SmallBatchRole& ro = g.role[k];
                  INFO("role " << k << ": cols " << ro.cols << " heads " << ro.heads << " chunks " << ro.col_chunks
                               << " units " << ro.work_units);
                  REQUIRE(ro.work_units >= 1);
                  REQUIRE(ro.work_units <= 128);
                  REQUIRE(128 % ro.work_units == 0);
                  REQUIRE(ro.compute_rows == rows_pad * ro.heads);
                  if (k == 0 || k == 3) REQUIRE(ro.heads == 1);  // per-head weights
                  if (k != 1) REQUIRE(ro.cols % 8 == 0);         // 16-byte pieces of outputs / weight rows
                  REQUIRE(static_cast<int64_t>(ro.cols) * ro.col_chunks >= covers[k]);
                  if (k >= 2) REQUIRE(static_cast<int64_t>(ro.cols) * ro.col_chunks == covers[k]);
                  REQUIRE(ro.blocks == (H + ro.heads - 1) / ro.heads * ro.col_chunks);
                }
                for (int st = 0; st < 2; ++st) {
                  REQUIRE(g.smem_bytes[st] > 0);
                  REQUIRE(g.smem_bytes[st] <= 160 * 1024);
                }
              }
  CHECK(shapes == 7 * 9 * 5 * 3 * 4 * 7 * 3);
  // Outside 1..16 rows, and for dims far beyond any model's, there is no small-batch geometry.
  CHECK(!optimized::small_batch_geometry(model_shape(17, 16, 8, 64, 17)).ok);
  ProblemShape huge = model_shape(1, 16, 8, 64, 1);
  huge.dims.R_kv = 1 << 20;
  huge.layout = Layout::contiguous(huge.dims);
  CHECK(!optimized::small_batch_geometry(huge).ok);
  test::ScopedEnv on("MLALORA_FAST_SMALL", "1");
  CHECK(!optimized::fast_path_layout(huge).small_batch);
}
#else
TEST_CASE("CUDA API host validation", "[cli][validation]") { WARN("SKIPPED: built without CUDA"); }
#endif
