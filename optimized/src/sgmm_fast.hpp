// Internal interface of the fused fast path (sgmm_fast.cu): eligibility,
// workspace (the per-call tile plan) and launch. See sgmm_fast.cu for the design.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "mlalora/optimized/sgmm.hpp"
#include "sgmm_kernels.hpp"

namespace mlalora::optimized::detail {

// Dims/dtype part of the eligibility (decides the workspace; shape only).
bool fast_dims_eligible(const ProblemShape& shape, Side side);
// Tiling and block geometry the fast path picks for the shape.
FastPathLayout fast_layout(const ProblemShape& shape);
// Full eligibility: dims plus 16-byte pointer alignment and strides in multiples of 8.
bool fast_eligible(const ProblemShape& shape, const KParams& p, Side side);
// Workspace bytes of the tile plan (0 when the shape is not eligible).
size_t fast_workspace_size(const ProblemShape& shape, Side side);
// Plan kernel (unless plan_prebuilt) + fast kernel of one side, on `stream`.
Status launch_fast(const ProblemShape& shape, const KParams& p, DType dt, Side side, void* workspace,
                   size_t workspace_bytes, cudaStream_t stream, bool plan_prebuilt);
// Both sides from one plan (q then v), on `stream`. Both must be fast_eligible.
Status launch_fast_both(const ProblemShape& shape, const KParams& pq, const KParams& pv, DType dt, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream, bool plan_prebuilt);
// The plan kernel alone, where the fast path would run one for the shape (else nothing).
Status build_fast_plan(const ProblemShape& shape, const KParams& p, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream);

}  // namespace mlalora::optimized::detail
