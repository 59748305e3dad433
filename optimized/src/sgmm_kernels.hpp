// Internal launch interface between the host API (sgmm_api.cu) and the kernel
// families (sgmm_generic.cu: any dtype, FMA; sgmm_mma.cu: bf16/f16 tensor cores).
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "mlalora/dtype.hpp"
#include "mlalora/problem.hpp"
#include "mlalora/status.hpp"
#include "sgmm_common.cuh"

namespace mlalora::optimized::detail {

enum class Mode : int { fused = 0, step_a = 1, step_b = 2 };

// Largest r_max the fused kernels keep on chip; above it lora_correction
// runs the split path (same rounding model).
inline constexpr int kFusedMaxRank = 256;

// Raise a kernel's dynamic shared memory limit to `bytes` (once per kernel
// and size; a no-op at or below 48 KB), so calls during graph capture after a
// first eager call make no runtime configuration calls.
Status ensure_smem_limit(const void* kernel, size_t bytes);

// Multiprocessors of the current device (132 if the query fails), cached.
int sm_count();

// cudaLaunchKernelEx with `pdl` = programmatic stream serialization (the
// kernel may start while the previous one on the stream runs, and waits for
// it in griddepcontrol.wait); raises the kernel's shared-memory limit first.
template <typename... KArgs, typename... Args>
Status launch_ex(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, bool pdl, cudaStream_t stream,
                 Args... args) {
  MLALORA_RETURN_IF_ERROR(ensure_smem_limit(reinterpret_cast<const void*>(kern), smem));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl ? 1 : 0;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kern, args...);
  if (e != cudaSuccess) return Status::DeviceError(std::string("SGMM kernel launch: ") + cudaGetErrorString(e));
  return Status::Ok();
}

// Tile-slot count of the grid for tiles of m_t tokens (see sgmm_common.cuh).
long long tile_slots(const KParams& p);

// Generic kernels: any dtype, any unit-inner-stride layout, any rank (fused: r_max <= kFusedMaxRank).
Status launch_generic(const KParams& p, DType dt, Side side, Mode mode, cudaStream_t stream);

// Tensor-core kernels (bf16/f16). mma_eligible says whether the shape /
// pointers / strides allow them (else the caller uses the generic kernels).
bool mma_eligible(const KParams& p, DType dt, Side side, Mode mode);
Status launch_mma(const KParams& p, DType dt, Side side, Mode mode, cudaStream_t stream);

}  // namespace mlalora::optimized::detail
