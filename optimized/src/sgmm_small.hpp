// Internal interface of the small-batch kernels (sgmm_small.cu): batches of
// at most kSmallMaxRows rows (decode steps of one to a few tokens), where the
// fast path's tiles would leave one warp busy and each block would stage far
// more weight bytes than its share. See sgmm_small.cu for the design.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "mlalora/optimized/fast_trace.hpp"

#include "mlalora/optimized/sgmm.hpp"
#include "sgmm_kernels.hpp"

namespace mlalora::optimized::detail {

inline constexpr int kSmallMaxRows = 16;

// True when the fused fast path runs this shape with the small-batch kernels:
// by default one row at r_max >= 64, or r_max > 64 with at most 16 heads
// (where they measured faster on the H200); with
// MLALORA_FAST_SMALL=1 every batch of <= kSmallMaxRows rows, with =0 none
// (the fast kernels with direct tiling run instead). Also needs the staging
// to fit shared memory.
bool small_batch_applies(const ProblemShape& shape);
// Workspace bytes of the rank-r intermediates of both sides (fp32, by
// logical row); 0 when S > kSmallMaxRows. Shape only (not the env switch).
size_t small_workspace_size(const ProblemShape& shape);
// Stage 1 (Y = X @ W1 for the given sides) then stage 2 (out += s * Y @ W2),
// two launches on `stream`, the second a programmatic dependent launch.
// pq / pv: null for a side not run. Both must be fast_eligible.
Status launch_small(const ProblemShape& shape, const KParams* pq, const KParams* pv, DType dt, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream);

// Trace builds (MLALORA_FAST_TRACE): clear / append the small-batch kernels'
// per-block records (side 2 + role: q1, v1, q2, v2); no-ops otherwise.
Status small_trace_reset(cudaStream_t stream);
Status small_trace_read(std::vector<FastTraceRecord>* out);

}  // namespace mlalora::optimized::detail
