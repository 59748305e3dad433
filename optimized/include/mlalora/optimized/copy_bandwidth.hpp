// Device-to-device copy bandwidth: the roofline every kernel speed is quoted
// against (shared/H200.md: "quote kernel speed as a fraction of the copy
// bandwidth measured in the same run"), plus an L2 flush for cold-cache
// benchmarks.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "mlalora/status.hpp"

namespace mlalora::optimized {

struct CopyBandwidth {
  double bytes_per_second = 0;  // 2 * bytes / median time (bytes read + bytes written)
  double median_us = 0;         // median time of one copy, microseconds
  size_t bytes = 0;             // bytes per buffer (one copy moves 2 * bytes)
};

// Default buffer size of measure_copy_bandwidth: 1 GiB (many times the 60 MB L2).
inline constexpr size_t kDefaultCopyBandwidthBytes = size_t{1} << 30;

// Allocates two device buffers of bytes_per_buffer bytes (0 -> the default),
// runs a few warm-up cudaMemcpyAsync D2D copies, then `repetitions` timed
// copies (each bracketed by CUDA events on a private stream) and reports the
// median. Frees everything before returning. Returns invalid_argument for
// repetitions < 1, device_error naming the failing CUDA call otherwise.
Status measure_copy_bandwidth(size_t bytes_per_buffer, int repetitions, CopyBandwidth* out);

// Bytes of a buffer whose memset evicts the whole L2 of the current device:
// 2 x the L2 size (cudaDevAttrL2CacheSize), at least 128 MiB; 256 MiB if the
// attribute cannot be read.
size_t l2_flush_bytes();

// cudaMemsetAsync(scratch, 0, bytes) on `stream`; bytes should be at least
// l2_flush_bytes(). Invalid for a null scratch with bytes > 0.
Status flush_l2(void* scratch, size_t bytes, cudaStream_t stream);

}  // namespace mlalora::optimized
