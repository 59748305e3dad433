// The implementation one writes without SGMM: for each slot the live batch
// uses, materialise dW = s * B[:, :r] @ A[:r, :] with cuBLAS (fp32 compute,
// rounded to the activation dtype: that rounding is its extra error term),
// then apply it to that slot's rows with strided-batched GEMMs over heads.
// It is both the "naive materialisation" the FMA report compares against and
// a second, independent GPU implementation for the harness.
//
// Unlike the SGMM kernels it needs the routing on the host (it plans one set
// of GEMMs per used slot), so it takes the host Problem; device pointers for
// the dense tensors still come through DeviceArgs. It is not graph-capturable
// for a changing batch, by design (that is part of why SGMM exists).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "mlalora/optimized/sgmm.hpp"

namespace mlalora::optimized {

// Workspace for one call: dW for one slot (H*F x R_kv in the act dtype) plus
// gathered row buffers for permuted / non-contiguous rows.
size_t cublas_naive_workspace_size(const Problem& problem, Side side);

Status cublas_naive_correction(const Problem& problem, const DeviceArgs& args, Side side, cublasHandle_t handle,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace mlalora::optimized
