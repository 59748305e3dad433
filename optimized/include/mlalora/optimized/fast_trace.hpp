// Per-block phase timestamps of the fused fast path's main kernel: where a
// small (decode) call spends its time, block by block. Recorded only in a
// build compiled with -DMLALORA_FAST_TRACE=1 (scripts/trace_build.sh); in
// every other build the kernels carry no trace code and these functions say
// so (fast_trace_compiled() false, the others not_supported).
//
// Each traced block (blockIdx.x < kFastTraceBlocks) writes, from its first
// thread, %globaltimer (ns, device-wide) and clock64 (SM cycles) at four
// marks: kernel entry (before the programmatic-launch wait), index data
// resolved (tile_ctx), stage 1 done (Y in registers), and the end (the last
// warp to leave, by atomicMax). A build with -DMLALORA_FAST_TRACE=2
// (scripts/trace_build.sh TRACE=2) records mark 2 when stage 1's first
// staged bytes have landed (after its first wait and barrier) instead: the
// two builds together split stage 1 into loading and computing.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "mlalora/status.hpp"

namespace mlalora::optimized {

inline constexpr int kFastTraceBlocks = 16384;
inline constexpr int kFastTraceMarks = 4;  // entry, index resolved, stage 1 done, end

struct FastTraceRecord {
  int block = 0;
  int side = 0;  // fast kernels: 0 q block, 1 v block; small-batch kernels (sgmm_small.cu): 2 q1, 3 v1
                 // (stage 1), 4 q2, 5 v2 (stage 2), whose mark 2 is "staged bytes landed" (stage 1)
                 // or "griddepcontrol.wait returned" (stage 2); fast_trace_side_name() names them
  int smid = 0;
  bool resolved = false;  // the block found a tile (else it returned after the index step)
  uint64_t ns[kFastTraceMarks] = {};  // %globaltimer at each mark (0: not reached)
  int64_t cycles[kFastTraceMarks] = {};  // clock64 at each mark (same SM for all marks of a block)
};

inline const char* fast_trace_side_name(int side) {
  static const char* const names[] = {"q", "v", "q1", "v1", "q2", "v2"};
  return side >= 0 && side < 6 ? names[side] : "?";
}

bool fast_trace_compiled();
// Clears the trace buffer (stream-ordered), so the next fast-path launch
// writes fresh records.
Status fast_trace_reset(cudaStream_t stream);
// The records written since the last reset (synchronises the device).
Status fast_trace_read(std::vector<FastTraceRecord>* out);

}  // namespace mlalora::optimized
