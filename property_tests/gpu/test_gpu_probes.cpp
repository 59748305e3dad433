// The hardware probes every bench report is quoted against: the copy
// bandwidth (roofline of the byte floor), the dependent-load chain (the
// latency floor of a graph-launched kernel) and the staging probe (the
// per-block rate of cp.async staging). A probe that measured the wrong
// thing would make every speed claim wrong, so their results are checked.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include "../test_config.hpp"
#include "mlalora/optimized/copy_bandwidth.hpp"
#include "mlalora/optimized/latency_probe.hpp"
#include "mlalora/optimized/staging_probe.hpp"
#include "skip_without_gpu.hpp"

using mlalora::StatusCode;
using mlalora::optimized::DependentLoadChain;

TEST_CASE("Latency probe: k chained loads end on the k-th node of the host's chain order", "[probe]") {
  MLALORA_SKIP_WITHOUT_GPU();
  const uint64_t seed = mlalora::test::base_seed();
  INFO("seed " << seed << " (MLALORA_SEED replays it)");
  DependentLoadChain chain;
  REQUIRE(chain.init(size_t{16} << 20, seed).ok());  // 256 nodes: k = 300 wraps around the cycle
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  uint32_t last = 0;
  for (int loads : {0, 1, 2, 3, 7, 16, 255, 256, 300}) {
    INFO("loads = " << loads);
    REQUIRE(chain.launch(loads, stream).ok());
    REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
    REQUIRE(chain.last_index(&last).ok());
    CHECK(last == chain.expected_index(loads));
    if (loads >= 1) CHECK(last % (64 * 1024 / 4) == 0);  // every node sits on its own 64 KiB
  }
  // The chain is a single cycle through all 256 nodes: back at the start after 256 loads, not before.
  CHECK(chain.expected_index(256) == 0u);
  for (int k = 1; k < 256; ++k) CHECK(chain.expected_index(k) != 0u);
  // The kernel-shaped empty grid runs and touches nothing but the sink.
  REQUIRE(chain.launch_empty(264, 81 * 1024, stream).ok());
  REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
  REQUIRE(chain.last_index(&last).ok());
  CHECK(last == 0u);
  CHECK(chain.launch_empty(0, 0, stream).code == StatusCode::invalid_argument);
  CHECK(chain.launch_empty(1, 228 * 1024, stream).code == StatusCode::invalid_argument);
  CHECK(chain.launch(-1, stream).code == StatusCode::invalid_argument);
  CHECK(chain.launch(1025, stream).code == StatusCode::invalid_argument);
  cudaStreamDestroy(stream);
}

TEST_CASE("Latency probe: bad arguments are refused with the argument named", "[probe]") {
  DependentLoadChain chain;  // no device needed: nothing is allocated on these paths
  const auto small = chain.init(1000, 1);
  CHECK(small.code == StatusCode::invalid_argument);
  CHECK(small.message.find("bytes") != std::string::npos);
  CHECK(chain.launch(1, nullptr).code == StatusCode::invalid_argument);
  CHECK(chain.launch_empty(1, 0, nullptr).code == StatusCode::invalid_argument);
  uint32_t out = 0;
  CHECK(chain.last_index(&out).code == StatusCode::invalid_argument);
}

TEST_CASE("Copy bandwidth probe: a positive rate below the H200's 4.8 TB/s DRAM peak", "[probe]") {
  MLALORA_SKIP_WITHOUT_GPU();
  mlalora::optimized::CopyBandwidth cb;
  REQUIRE(mlalora::optimized::measure_copy_bandwidth(size_t{256} << 20, 5, &cb).ok());
  CHECK(cb.bytes == (size_t{256} << 20));
  CHECK(cb.median_us > 0);
  CHECK(cb.bytes_per_second > 0.5e12);   // a copy far below any HBM device means the probe is broken
  CHECK(cb.bytes_per_second < 5.2e12);   // above peak: the copy did not happen or the timing is wrong
  CHECK(mlalora::optimized::measure_copy_bandwidth(0, 0, &cb).code == StatusCode::invalid_argument);
}

TEST_CASE("Staging probe: every block stages exactly its own region's bytes", "[probe]") {
  MLALORA_SKIP_WITHOUT_GPU();
  const uint64_t seed = mlalora::test::base_seed();
  INFO("seed " << seed << " (MLALORA_SEED replays it)");
  using mlalora::optimized::StagingCase;
  mlalora::optimized::StagingProbe probe;
  REQUIRE(probe.init(size_t{64} << 20, seed).ok());
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  // Contiguous and row layouts, one warp to many, sizes not a multiple of
  // the thread count's pieces, and the largest allowed block.
  const StagingCase cases[] = {
      {1, 128, 16}, {3, 32, 4096}, {132, 128, 32 * 1024}, {7, 96, 4096 + 48},
      {5, 128, 32 * 1024, 32, 256}, {4, 64, 8 * 1024, 128, 272}, {2, 1024, 160 * 1024}, {9, 128, 0},
      // groups of blocks on one region, in order and rotated (a rotation must still stage every piece once)
      {24, 128, 4096 + 32, 0, 0, 8, false}, {24, 128, 4096 + 32, 0, 0, 8, true}, {10, 64, 2048, 32, 96, 3, true}};
  for (const StagingCase& c : cases) {
    INFO("case " << c.name());
    // Poison the result words: a block that wrote nothing cannot pass.
    REQUIRE(probe.launch({c.blocks, 32, 16}, false, stream).ok());
    REQUIRE(probe.launch(c, true, stream).ok());
    std::vector<uint32_t> sums;
    REQUIRE(probe.results(c.blocks, &sums, stream).ok());  // ordered after the launch by the stream alone
    int bad = 0, first_bad = -1, last_bad = -1;
    for (int b = 0; b < c.blocks; ++b)
      if (sums[static_cast<size_t>(b)] != probe.expected_sum(c, b)) ++bad, last_bad = b, first_bad = first_bad < 0 ? b : first_bad;
    INFO(bad << " blocks wrong, first " << first_bad << ", last " << last_bad);
    CHECK(bad == 0);
    if (c.bytes_per_block > 0) CHECK(probe.expected_sum(c, 0) != probe.expected_sum(c, c.share));  // regions differ
    if (c.share > 1) CHECK(probe.expected_sum(c, 0) == probe.expected_sum(c, c.share - 1));  // a group shares one
  }
  cudaStreamDestroy(stream);
}

TEST_CASE("Staging probe: bad cases are refused with the argument named", "[probe]") {
  using mlalora::optimized::StagingCase;
  mlalora::optimized::StagingProbe probe;
  CHECK(probe.launch({1, 128, 16}, false, nullptr).code == StatusCode::invalid_argument);  // before init
  CHECK(probe.init(1000, 1).code == StatusCode::invalid_argument);
  StagingCase named{132, 128, 32 * 1024, 32, 256};
  named.share = 8, named.rotate = true, named.clean_l2 = true;
  CHECK(named.name() == "b132.t128.32768B.r32p256.s8rot.clean");
  CHECK(mlalora::optimized::StagingProbe::region_stride({1, 128, 16}) == size_t{64} << 10);
  CHECK(mlalora::optimized::StagingProbe::region_stride({1, 128, 32 * 1024, 32, 256}) == size_t{256} << 10);
  MLALORA_SKIP_WITHOUT_GPU();
  REQUIRE(probe.init(size_t{1} << 20, 1).ok());
  struct Bad {
    StagingCase c;
    const char* arg;
  };
  const Bad bad[] = {{{0, 128, 16}, "blocks"},
                     {{1, 100, 16}, "threads"},
                     {{1, 128, 17}, "bytes_per_block"},
                     {{1, 128, 200 * 1024}, "bytes_per_block"},
                     {{1, 128, 64, 24, 32}, "row_bytes"},
                     {{1, 128, 64, 32, 16}, "row_pitch"},
                     {{1, 128, 48, 32, 32}, "bytes_per_block"},
                     {{17, 128, 16}, "blocks"},  // 17 regions of 64 KiB > 1 MiB
                     {{4, 128, 16, 0, 0, 5}, "share"},
                     {{4, 128, 16, 0, 0, 0}, "share"}};
  for (const Bad& b : bad) {
    const auto st = probe.launch(b.c, false, nullptr);
    INFO(b.c.name() << ": " << st.message);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK(st.message.find(b.arg) != std::string::npos);
  }
}
