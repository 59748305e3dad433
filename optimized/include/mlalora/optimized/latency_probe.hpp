// The latency floor of one graph-launched kernel, measured the way `mlalora
// bench` times a shape (L2 flushed, CUDA events around the launch): what a
// decode call cannot go below however few bytes it moves. A kernel of one
// thread does `loads` dependent 4-byte loads (each address comes from the
// previous load) over a buffer far larger than L2, so each load is a DRAM
// round trip; timed for several chain lengths, the intercept is the launch
// floor and the slope the cost of one dependent DRAM round trip.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mlalora/status.hpp"

namespace mlalora::optimized {

// Device buffer holding a random cyclic chain of 4-byte indices, one per
// 64 KiB (so consecutive loads share no DRAM page, L2 line or TLB entry).
class DependentLoadChain {
 public:
  DependentLoadChain() = default;
  DependentLoadChain(const DependentLoadChain&) = delete;
  DependentLoadChain& operator=(const DependentLoadChain&) = delete;
  ~DependentLoadChain();

  // bytes: buffer size (0 -> 256 MiB, several times the 60 MB L2); seed
  // picks the chain order. Invalid for bytes below 1 MiB.
  Status init(size_t bytes, uint64_t seed);
  // One kernel of one thread doing `loads` (0..1024) dependent loads, the
  // last index written to a device word so nothing is optimised away.
  // Invalid before init or for loads outside 0..1024.
  Status launch(int loads, cudaStream_t stream) const;
  // The same kernel with no loads in a kernel-sized configuration: `blocks`
  // blocks of 128 threads, each asking for `smem_bytes` (<= 227 KiB) of
  // dynamic shared memory. Against launch(0), it measures what a wide grid
  // and a large shared-memory carve-out add to the launch floor (the fast
  // path's ring needs 55-83 KiB per block). Invalid before init or outside
  // those ranges.
  Status launch_empty(int blocks, size_t smem_bytes, cudaStream_t stream) const;
  // The index the last completed launch ended on (host copy; synchronises),
  // and the index a launch of `loads` loads must end on (from the host's
  // copy of the chain order): a check that the loads really were chained.
  Status last_index(uint32_t* out) const;
  uint32_t expected_index(int loads) const;

 private:
  std::vector<uint32_t> order_;  // node order of the cycle (node k -> order_[k + 1])
  uint32_t* chain_ = nullptr;
  uint32_t* sink_ = nullptr;
  size_t entries_ = 0;
};

}  // namespace mlalora::optimized
