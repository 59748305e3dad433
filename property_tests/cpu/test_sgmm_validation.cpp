// Host-side validation of the CUDA API runs without a GPU: every refusal
// happens before any CUDA call, so bad arguments are tested in CI. The
// pointers below are never dereferenced (validation must fail first).
#include <catch2/catch.hpp>

#ifdef MLALORA_HAVE_CUDA
#include "mlalora/harness/generators.hpp"
#include "mlalora/optimized/sgmm.hpp"

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
#else
TEST_CASE("CUDA API host validation", "[cli][validation]") { WARN("SKIPPED: built without CUDA"); }
#endif
