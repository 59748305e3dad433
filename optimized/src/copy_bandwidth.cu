#include "mlalora/optimized/copy_bandwidth.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cuda_status.hpp"

namespace mlalora::optimized {
namespace {

Status cuda_check(cudaError_t e, const char* call) { return detail::cuda_status(e, "copy_bandwidth", call); }

// Owns everything measure_copy_bandwidth allocates, so every error path frees it.
struct Resources {
  void* src = nullptr;
  void* dst = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<cudaEvent_t> events;
  ~Resources() {
    if (stream) cudaStreamSynchronize(stream);
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    if (stream) cudaStreamDestroy(stream);
    if (src) cudaFree(src);
    if (dst) cudaFree(dst);
  }
};

}  // namespace

Status measure_copy_bandwidth(size_t bytes_per_buffer, int repetitions, CopyBandwidth* out) {
  if (out == nullptr) return Status::Invalid("out is null");
  if (repetitions < 1) return Status::Invalid("repetitions = " + std::to_string(repetitions) + " must be >= 1");
  const size_t bytes = bytes_per_buffer == 0 ? kDefaultCopyBandwidthBytes : bytes_per_buffer;
  constexpr int kWarmup = 3;

  Resources res;
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaMalloc(&res.src, bytes), "cudaMalloc(src)"));
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaMalloc(&res.dst, bytes), "cudaMalloc(dst)"));
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaStreamCreateWithFlags(&res.stream, cudaStreamNonBlocking),
                                     "cudaStreamCreateWithFlags"));
  res.events.reserve(2 * static_cast<size_t>(repetitions));
  for (int i = 0; i < 2 * repetitions; ++i) {
    cudaEvent_t e = nullptr;
    MLALORA_RETURN_IF_ERROR(cuda_check(cudaEventCreate(&e), "cudaEventCreate"));
    res.events.push_back(e);
  }
  // Initialise the source (also first-touches the pages) and warm up.
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaMemsetAsync(res.src, 0x3c, bytes, res.stream), "cudaMemsetAsync(src)"));
  for (int i = 0; i < kWarmup; ++i)
    MLALORA_RETURN_IF_ERROR(cuda_check(
        cudaMemcpyAsync(res.dst, res.src, bytes, cudaMemcpyDeviceToDevice, res.stream), "cudaMemcpyAsync(warm-up)"));
  for (int i = 0; i < repetitions; ++i) {
    MLALORA_RETURN_IF_ERROR(cuda_check(cudaEventRecord(res.events[2 * i], res.stream), "cudaEventRecord(start)"));
    MLALORA_RETURN_IF_ERROR(cuda_check(
        cudaMemcpyAsync(res.dst, res.src, bytes, cudaMemcpyDeviceToDevice, res.stream), "cudaMemcpyAsync(timed)"));
    MLALORA_RETURN_IF_ERROR(cuda_check(cudaEventRecord(res.events[2 * i + 1], res.stream), "cudaEventRecord(stop)"));
  }
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaStreamSynchronize(res.stream), "cudaStreamSynchronize"));
  std::vector<double> us(static_cast<size_t>(repetitions));
  for (int i = 0; i < repetitions; ++i) {
    float ms = 0.f;
    MLALORA_RETURN_IF_ERROR(
        cuda_check(cudaEventElapsedTime(&ms, res.events[2 * i], res.events[2 * i + 1]), "cudaEventElapsedTime"));
    us[static_cast<size_t>(i)] = 1e3 * static_cast<double>(ms);
  }
  std::sort(us.begin(), us.end());
  const size_t n = us.size();
  const double median = n % 2 ? us[n / 2] : 0.5 * (us[n / 2 - 1] + us[n / 2]);
  if (!(median > 0)) return Status::DeviceError("copy_bandwidth: measured a non-positive median copy time");
  out->bytes = bytes;
  out->median_us = median;
  out->bytes_per_second = 2.0 * static_cast<double>(bytes) / (median * 1e-6);
  return Status::Ok();
}

size_t l2_flush_bytes() {
  constexpr size_t kMin = size_t{128} << 20;
  int dev = 0, l2 = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) != cudaSuccess ||
      l2 <= 0) {
    cudaGetLastError();  // clear a non-sticky error from the failed query
    return size_t{256} << 20;
  }
  return std::max(kMin, 2 * static_cast<size_t>(l2));
}

Status flush_l2(void* scratch, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return Status::Ok();
  if (scratch == nullptr) return Status::Invalid("flush_l2: scratch is null");
  return cuda_check(cudaMemsetAsync(scratch, 0, bytes, stream), "cudaMemsetAsync(L2 flush)");
}

}  // namespace mlalora::optimized
