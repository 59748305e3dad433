// A CUDA runtime result as a Status, for the host code of this library:
// device_error naming the module and the call, e.g. "copy_bandwidth:
// cudaMalloc(src) failed: cudaErrorMemoryAllocation: out of memory".
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include "mlalora/status.hpp"

namespace mlalora::optimized::detail {

inline Status cuda_status(cudaError_t e, const char* module, const char* call) {
  if (e == cudaSuccess) return Status::Ok();
  return Status::DeviceError(std::string(module) + ": " + call + " failed: " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
}

}  // namespace mlalora::optimized::detail
