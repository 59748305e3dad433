#include "mlalora/optimized/latency_probe.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda_status.hpp"

namespace mlalora::optimized {
namespace {

constexpr size_t kStrideEntries = (64 * 1024) / sizeof(uint32_t);  // one chain entry per 64 KiB
constexpr int kMaxLoads = 1024;

Status cuda_check(cudaError_t e, const char* call) { return detail::cuda_status(e, "latency_probe", call); }

// ld.global.cg: cached in L2 only, so a flushed L2 makes every load a DRAM
// round trip and L1 never hides one.
__global__ void dependent_loads_kernel(const uint32_t* __restrict__ chain, int loads, uint32_t* sink) {
  uint32_t i = 0;
  for (int k = 0; k < loads; ++k) i = __ldcg(chain + i);
  *sink = i;
}
// Empty blocks holding dynamic shared memory (never touched): the launch cost
// of a grid shaped like the fast path's.
__global__ void empty_wide_kernel(uint32_t* sink) {
  extern __shared__ uint32_t unused[];
  if (blockIdx.x == 0 && threadIdx.x == 0) *sink = 0u;
}

}  // namespace

DependentLoadChain::~DependentLoadChain() {
  if (chain_) cudaFree(chain_);
  if (sink_) cudaFree(sink_);
}

Status DependentLoadChain::init(size_t bytes, uint64_t seed) {
  if (bytes == 0) bytes = size_t{256} << 20;
  if (bytes < (size_t{1} << 20))
    return Status::Invalid("bytes = " + std::to_string(bytes) + ": the dependent-load chain needs at least 1 MiB");
  if (chain_ || sink_) return Status::Invalid("DependentLoadChain::init called twice");
  const size_t elems = bytes / sizeof(uint32_t);
  const size_t nodes = elems / kStrideEntries;
  // A random cycle through every node: node order[k] points at order[k + 1].
  std::vector<uint32_t>& order = order_;
  order.assign(nodes, 0u);
  std::iota(order.begin(), order.end(), 0u);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin() + 1, order.end(), rng);  // the chain starts at index 0
  std::vector<uint32_t> host(elems, 0u);
  for (size_t k = 0; k < nodes; ++k)
    host[order[k] * kStrideEntries] = static_cast<uint32_t>(order[(k + 1) % nodes] * kStrideEntries);
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaMalloc(&chain_, elems * sizeof(uint32_t)), "cudaMalloc(chain)"));
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaMalloc(&sink_, sizeof(uint32_t)), "cudaMalloc(sink)"));
  MLALORA_RETURN_IF_ERROR(
      cuda_check(cudaMemcpy(chain_, host.data(), elems * sizeof(uint32_t), cudaMemcpyHostToDevice), "cudaMemcpy"));
  entries_ = elems;
  return Status::Ok();
}

Status DependentLoadChain::launch(int loads, cudaStream_t stream) const {
  if (!chain_) return Status::Invalid("DependentLoadChain::launch before init");
  if (loads < 0 || loads > kMaxLoads)
    return Status::Invalid("loads = " + std::to_string(loads) + " must be in 0.." + std::to_string(kMaxLoads));
  dependent_loads_kernel<<<1, 1, 0, stream>>>(chain_, loads, sink_);
  return cuda_check(cudaGetLastError(), "dependent_loads_kernel launch");
}

Status DependentLoadChain::launch_empty(int blocks, size_t smem_bytes, cudaStream_t stream) const {
  if (!chain_) return Status::Invalid("DependentLoadChain::launch_empty before init");
  if (blocks < 1 || blocks > (1 << 20))
    return Status::Invalid("blocks = " + std::to_string(blocks) + " must be in 1..1048576");
  constexpr size_t kMaxSmem = 227 * 1024;
  if (smem_bytes > kMaxSmem)
    return Status::Invalid("smem_bytes = " + std::to_string(smem_bytes) + " must be at most 227 KiB");
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaFuncSetAttribute(empty_wide_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                          static_cast<int>(smem_bytes)),
                                     "cudaFuncSetAttribute"));
  empty_wide_kernel<<<blocks, 128, smem_bytes, stream>>>(sink_);
  return cuda_check(cudaGetLastError(), "empty_wide_kernel launch");
}

Status DependentLoadChain::last_index(uint32_t* out) const {
  if (!sink_ || !out) return Status::Invalid("DependentLoadChain::last_index before init or with a null out");
  return cuda_check(cudaMemcpy(out, sink_, sizeof(uint32_t), cudaMemcpyDeviceToHost), "cudaMemcpy(sink)");
}

uint32_t DependentLoadChain::expected_index(int loads) const {
  if (order_.empty() || loads <= 0) return 0u;
  return static_cast<uint32_t>(order_[static_cast<size_t>(loads) % order_.size()] * kStrideEntries);
}

}  // namespace mlalora::optimized
