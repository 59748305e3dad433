// The two hardware probes every bench report is quoted against: the copy
// bandwidth (roofline of the byte floor) and the dependent-load chain (the
// latency floor of a graph-launched kernel). A probe that measured the wrong
// thing would make every speed claim wrong, so their results are checked.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include "../test_config.hpp"
#include "mlalora/optimized/copy_bandwidth.hpp"
#include "mlalora/optimized/latency_probe.hpp"
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
