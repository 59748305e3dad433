// How fast blocks pull their bytes into shared memory from a cold L2: the
// rate the fast path's small-batch calls are bound by. The phase traces of
// the fifth session (optimized/PERF.md) found one fast-path block staging its
// weights at 4-7 GB/s at T=1, far below both DRAM and the one-round-trip
// latency of the bytes it asks for. This probe measures the same thing with
// nothing else in the kernel: every block cp.async's `bytes_per_block` bytes
// (16-byte pieces, all issued before one wait) from its own region into
// shared memory, timed as a graph launch with the L2 flushed exactly like a
// bench shape. Against the same grid with 0 bytes it gives the staging time,
// and with it the per-block rate the hardware allows for a given grid, block
// size, access pattern and L2 state (dirty lines from a memset flush or clean
// ones), so a kernel's stage time can be judged against what is possible.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mlalora/status.hpp"

namespace mlalora::optimized {

struct StagingCase {
  int blocks = 1;           // 1..65535
  int threads = 128;        // 32..1024, a multiple of 32: the threads that issue the copies
  int bytes_per_block = 0;  // 0..(160 KiB), a multiple of 16
  // Layout of a block's bytes in global memory: rows of row_bytes (a
  // multiple of 16, 0 = contiguous) every row_pitch bytes (>= row_bytes,
  // multiple of 16), like the rows of a LoRA weight with r < r_max.
  int row_bytes = 0;
  int row_pitch = 0;
  // Blocks b and b' read the same region when b / share == b' / share (the
  // fast path's column splits of one head all read its B_kc; the heads of one
  // split all read the same A chunk): share = 1 gives each block its own.
  int share = 1;
  // With share > 1: block b starts at piece (b % share) * pieces / share and
  // wraps around, so the blocks of a group ask for different lines at first.
  bool rotate = false;
  bool clean_l2 = false;  // timed after a read sweep that leaves the L2 full of clean lines (the bench's
                          // memset flush leaves it full of dirty ones); the launch itself ignores it
  // "b132.t128.32768B[.r32p256][.s8[rot]][.clean]": a stable name for reports.
  std::string name() const;
};

// Device memory for the probe: a source buffer filled with a known pattern
// (word i = a hash of i and the seed) and one result word per block.
class StagingProbe {
 public:
  StagingProbe() = default;
  StagingProbe(const StagingProbe&) = delete;
  StagingProbe& operator=(const StagingProbe&) = delete;
  ~StagingProbe();

  // bytes: source buffer (0 -> 256 MiB, far above the L2), at least 1 MiB.
  Status init(size_t bytes, uint64_t seed);
  // One launch of the staging kernel. checksum: each block also sums the
  // 32-bit words it staged (a reduction after the wait; for verification,
  // not for timing) into its result word; otherwise the block writes one
  // staged word. Invalid before init, for arguments outside the ranges
  // above, or when the grid's regions do not fit the source buffer.
  Status launch(const StagingCase& c, bool checksum, cudaStream_t stream) const;
  // The result words of the first `blocks` blocks, after everything queued on
  // `stream` (the launch's stream: a non-blocking stream does not order
  // with a plain cudaMemcpy) has finished.
  Status results(int blocks, std::vector<uint32_t>* out, cudaStream_t stream) const;
  // What a checksum launch of `c` must leave in block b's word, from the
  // host's copy of the pattern.
  uint32_t expected_sum(const StagingCase& c, int block) const;
  // Bytes between the regions of consecutive blocks for case c (each region
  // starts on a 64 KiB boundary, so blocks share no DRAM page or L2 line).
  static size_t region_stride(const StagingCase& c);

 private:
  void* src_ = nullptr;
  uint32_t* results_ = nullptr;
  size_t bytes_ = 0;
  uint64_t seed_ = 0;
  int max_blocks_ = 0;
};

// A read sweep over `bytes` of `buf` (L2-cached loads; nothing written
// unless an impossible sum turns up): after a memset flush it evicts the
// dirty lines, leaving the L2 full of clean lines of `buf`.
Status sweep_l2_clean(const void* buf, size_t bytes, cudaStream_t stream);

}  // namespace mlalora::optimized
