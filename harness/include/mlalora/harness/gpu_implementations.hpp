// GPU adapters for the harness: the GPU implementations ("cuda-fused",
// "cuda-fused-planned", "cuda-split", "cublas-naive") and the device-side problem they share, which
// the GPU tests also use directly (CUDA-graph capture / replay, garbage index
// data).
//
// Everything is uploaded as *storage*: every storage element of each strided
// tensor, gaps included, converted with to_bits; outputs come back the same
// way, so the harness sees any write into a gap.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mlalora/host_tensors.hpp"
#include "mlalora/optimized/sgmm.hpp"
#include "mlalora/problem.hpp"
#include "mlalora/status.hpp"

namespace mlalora::harness {

// True when a CUDA device this binary can run on (compute capability 9.x) is
// present; otherwise *why_not (if given) says why.
bool gpu_available(std::string* why_not = nullptr);

// Registers cuda-fused, cuda-split and cublas-naive (always, also without a
// GPU: their supports() then says not_supported).
void register_gpu_implementations();

// Owning device allocation (cudaMalloc / cudaFree), move-only. A request of 0
// bytes still allocates 16 so that the pointer is never null.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;

  Status allocate(size_t bytes);  // frees any previous allocation; contents undefined
  void reset();
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  Status upload(const void* src, size_t bytes, size_t offset = 0);
  Status download(void* dst, size_t bytes, size_t offset = 0) const;
  Status fill(int byte_value);

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// One problem on the device: the six dense tensors in the shape's strided
// storage layout and the index data at full capacity (seg_indptr capacity+1,
// weight_indices capacity), plus a device int32 live-segment count for
// CUDA-graph mode. Buffers are allocated once by init() for the shape; the
// set_* / upload_* calls overwrite them in place, so a captured graph that
// points at them replays on the new contents.
class DeviceProblem {
 public:
  // Allocate for p.shape and upload p's index data and t's tensors.
  Status init(const Problem& p, const ProblemTensors& t);

  const ProblemShape& shape() const { return shape_; }

  // All six tensors (every storage element, gaps included). t must have the shape's storage sizes.
  Status upload_tensors(const ProblemTensors& t);
  // One tensor.
  Status upload_tensor(TensorId id, const HostTensor& t);
  // Both outputs (every storage element) into t.q_nope_out / t.attn_bmm_out (from_bits).
  Status download_outputs(ProblemTensors& t) const;
  Status download_tensor(TensorId id, HostTensor& t) const;

  // Index data of p (same shape: dims, capacity, max_segment_len,
  // has_permutation must match init's), and the live count p.num_segments
  // (host value and device int).
  Status upload_index(const Problem& p);
  // Raw overwrite for garbage-data tests; sizes must match the capacity
  // (seg_indptr capacity+1, weight_indices capacity, ranks L, permutation S).
  // An empty vector leaves that array unchanged.
  Status set_index_raw(const std::vector<int32_t>& seg_indptr, const std::vector<int32_t>& weight_indices,
                       const std::vector<int32_t>& lora_ranks, const std::vector<int32_t>& permutation);
  // Overwrite the device live count (graph mode) and the host count used by args(false).
  Status set_live_segments(int32_t n);

  // Device pointers. graph_mode: num_segments_device points at the device
  // count; otherwise num_segments_host is the host count.
  optimized::DeviceArgs args(bool graph_mode) const;

 private:
  ProblemShape shape_;
  DeviceBuffer tensors_[6];
  DeviceBuffer ranks_, scalings_, seg_indptr_, weight_indices_, permutation_, live_;
  int64_t live_host_ = 0;
};

// Run one side through the SGMM API on `stream` with a workspace sized by
// workspace_size (grown as needed). Convenience for tests.
class SgmmRunner {
 public:
  Status run(const DeviceProblem& dp, Side side, optimized::Path path, bool graph_mode, cudaStream_t stream);
  // Both sides through lora_correction_both (one tile plan for both on the
  // fast path); plan_prebuilt: the plan build_plan() left in this runner's
  // workspace is read instead of built (CallOptions::plan_prebuilt).
  Status run_both(const DeviceProblem& dp, optimized::Path path, bool graph_mode, cudaStream_t stream,
                  bool plan_prebuilt = false);
  // optimized::build_plan into this runner's workspace (what a forward step
  // does once for all its layers' calls).
  Status build_plan(const DeviceProblem& dp, bool graph_mode, cudaStream_t stream);
  Status reserve(const ProblemShape& shape, optimized::Path path);  // allocate the workspace up front (before capture)
  Status fill_workspace(int byte_value) { return workspace_.get() ? workspace_.fill(byte_value) : Status::Ok(); }  // tests: poison it

 private:
  DeviceBuffer workspace_;
};

// Convert a CUDA error into a Status (device_error naming `what`).
Status cuda_check(cudaError_t e, const char* what);

}  // namespace mlalora::harness
