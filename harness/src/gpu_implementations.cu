// GPU adapters: upload / launch / download around the SGMM kernels and the
// cuBLAS naive baseline (see gpu_implementations.hpp).
#include "mlalora/harness/gpu_implementations.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

#include "mlalora/harness/implementation.hpp"
#include "storage_conversion.hpp"
#include "mlalora/optimized/cublas_naive.hpp"
#include "mlalora/reference/error_bound.hpp"

namespace mlalora::harness {

Status cuda_check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status::DeviceError(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

bool gpu_available(std::string* why_not) {
  static std::once_flag once;
  static bool ok = false;
  static std::string why;
  std::call_once(once, [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
      cudaGetLastError();
      return;
    }
    if (n == 0) {
      why = "no CUDA device";
      return;
    }
    cudaDeviceProp prop{};
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
      why = std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e);
      return;
    }
    if (prop.major != 9) {
      why = std::string("device 0 (") + prop.name + ") has compute capability " + std::to_string(prop.major) + "." +
            std::to_string(prop.minor) + "; this build targets sm_90";
      return;
    }
    ok = true;
  });
  if (!ok && why_not) *why_not = why;
  return ok;
}

// ---- DeviceBuffer ------------------------------------------------------------

DeviceBuffer::~DeviceBuffer() { reset(); }
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}
void DeviceBuffer::reset() {
  if (ptr_) cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}
Status DeviceBuffer::allocate(size_t bytes) {
  reset();
  size_t n = bytes < 16 ? 16 : bytes;
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaMalloc(&ptr_, n), "cudaMalloc"));
  bytes_ = bytes;
  return Status::Ok();
}
Status DeviceBuffer::upload(const void* src, size_t bytes, size_t offset) {
  if (offset + bytes > bytes_) return Status::Invalid("DeviceBuffer::upload past the end");
  if (bytes == 0) return Status::Ok();
  return cuda_check(cudaMemcpy(static_cast<char*>(ptr_) + offset, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}
Status DeviceBuffer::download(void* dst, size_t bytes, size_t offset) const {
  if (offset + bytes > bytes_) return Status::Invalid("DeviceBuffer::download past the end");
  if (bytes == 0) return Status::Ok();
  return cuda_check(cudaMemcpy(dst, static_cast<const char*>(ptr_) + offset, bytes, cudaMemcpyDeviceToHost),
                    "cudaMemcpy D2H");
}
Status DeviceBuffer::fill(int byte_value) {
  return cuda_check(cudaMemset(ptr_, byte_value, bytes_ < 16 ? 16 : bytes_), "cudaMemset");
}

// ---- DeviceProblem -------------------------------------------------------------

namespace {

size_t storage_bytes(const ProblemShape& s, TensorId id) {
  return static_cast<size_t>(storage_elems(tensor_shape(s.dims, id), s.layout.of(id))) *
         static_cast<size_t>(dtype_bytes(s.dtype));
}

bool same_shape(const ProblemShape& a, const ProblemShape& b) {
  const Dims &x = a.dims, &y = b.dims;
  if (x.S != y.S || x.H != y.H || x.D_qk != y.D_qk || x.D_v != y.D_v || x.R_kv != y.R_kv || x.L != y.L ||
      x.r_max != y.r_max)
    return false;
  if (a.dtype != b.dtype || a.segment_capacity != b.segment_capacity || a.max_segment_len != b.max_segment_len ||
      a.has_permutation != b.has_permutation)
    return false;
  for (TensorId id : kAllTensors) {
    const Strides3 &s = a.layout.of(id), &t = b.layout.of(id);
    if (s.s0 != t.s0 || s.s1 != t.s1 || s.s2 != t.s2) return false;
  }
  return true;
}

}  // namespace

Status DeviceProblem::init(const Problem& p, const ProblemTensors& t) {
  shape_ = p.shape;
  const Dims& d = shape_.dims;
  for (TensorId id : kAllTensors)
    MLALORA_RETURN_IF_ERROR(tensors_[static_cast<int>(id)].allocate(storage_bytes(shape_, id)));
  MLALORA_RETURN_IF_ERROR(ranks_.allocate(4 * static_cast<size_t>(d.L)));
  MLALORA_RETURN_IF_ERROR(scalings_.allocate(4 * static_cast<size_t>(d.L)));
  MLALORA_RETURN_IF_ERROR(seg_indptr_.allocate(4 * static_cast<size_t>(shape_.segment_capacity + 1)));
  MLALORA_RETURN_IF_ERROR(weight_indices_.allocate(4 * static_cast<size_t>(shape_.segment_capacity)));
  if (shape_.has_permutation) {
    MLALORA_RETURN_IF_ERROR(permutation_.allocate(4 * static_cast<size_t>(d.S)));
  } else {
    permutation_.reset();
  }
  MLALORA_RETURN_IF_ERROR(live_.allocate(4));
  MLALORA_RETURN_IF_ERROR(upload_tensors(t));
  return upload_index(p);
}

Status DeviceProblem::upload_tensor(TensorId id, const HostTensor& t) {
  const size_t want = static_cast<size_t>(storage_elems(tensor_shape(shape_.dims, id), shape_.layout.of(id)));
  if (t.data.size() != want)
    return Status::Invalid(std::string("upload_tensor: ") + tensor_name(id) + " has " + std::to_string(t.data.size()) +
                           " storage elements, the shape needs " + std::to_string(want));
  std::vector<unsigned char> bytes = to_storage(shape_.dtype, t.data);
  return tensors_[static_cast<int>(id)].upload(bytes.data(), bytes.size());
}

Status DeviceProblem::upload_tensors(const ProblemTensors& t) {
  for (TensorId id : kAllTensors) MLALORA_RETURN_IF_ERROR(upload_tensor(id, t.of(id)));
  return Status::Ok();
}

Status DeviceProblem::download_tensor(TensorId id, HostTensor& t) const {
  const size_t n = static_cast<size_t>(storage_elems(tensor_shape(shape_.dims, id), shape_.layout.of(id)));
  t.shape = tensor_shape(shape_.dims, id);
  t.strides = shape_.layout.of(id);
  t.data.resize(n);
  std::vector<unsigned char> bytes(n * static_cast<size_t>(dtype_bytes(shape_.dtype)));
  MLALORA_RETURN_IF_ERROR(tensors_[static_cast<int>(id)].download(bytes.data(), bytes.size()));
  from_storage(shape_.dtype, bytes, t.data);
  return Status::Ok();
}

Status DeviceProblem::download_outputs(ProblemTensors& t) const {
  MLALORA_RETURN_IF_ERROR(download_tensor(TensorId::q_nope_out, t.q_nope_out));
  return download_tensor(TensorId::attn_bmm_out, t.attn_bmm_out);
}

Status DeviceProblem::upload_index(const Problem& p) {
  if (!same_shape(p.shape, shape_)) return Status::Invalid("upload_index: problem shape differs from the device problem's");
  const Dims& d = shape_.dims;
  auto sz = [](const char* name, size_t got, int64_t want) -> Status {
    if (static_cast<int64_t>(got) != want)
      return Status::Invalid(std::string("upload_index: ") + name + " has " + std::to_string(got) + " entries, expected " +
                             std::to_string(want));
    return Status::Ok();
  };
  MLALORA_RETURN_IF_ERROR(sz("lora_ranks", p.lora_ranks.size(), d.L));
  MLALORA_RETURN_IF_ERROR(sz("scalings", p.scalings.size(), d.L));
  MLALORA_RETURN_IF_ERROR(sz("seg_indptr", p.seg_indptr.size(), shape_.segment_capacity + 1));
  MLALORA_RETURN_IF_ERROR(sz("weight_indices", p.weight_indices.size(), shape_.segment_capacity));
  MLALORA_RETURN_IF_ERROR(sz("permutation", p.permutation.size(), shape_.has_permutation ? d.S : 0));
  MLALORA_RETURN_IF_ERROR(ranks_.upload(p.lora_ranks.data(), 4 * p.lora_ranks.size()));
  MLALORA_RETURN_IF_ERROR(scalings_.upload(p.scalings.data(), 4 * p.scalings.size()));
  MLALORA_RETURN_IF_ERROR(seg_indptr_.upload(p.seg_indptr.data(), 4 * p.seg_indptr.size()));
  MLALORA_RETURN_IF_ERROR(weight_indices_.upload(p.weight_indices.data(), 4 * p.weight_indices.size()));
  if (shape_.has_permutation) MLALORA_RETURN_IF_ERROR(permutation_.upload(p.permutation.data(), 4 * p.permutation.size()));
  return set_live_segments(static_cast<int32_t>(p.num_segments));
}

Status DeviceProblem::set_index_raw(const std::vector<int32_t>& seg_indptr, const std::vector<int32_t>& weight_indices,
                                    const std::vector<int32_t>& lora_ranks, const std::vector<int32_t>& permutation) {
  const Dims& d = shape_.dims;
  if (!seg_indptr.empty()) {
    if (static_cast<int64_t>(seg_indptr.size()) != shape_.segment_capacity + 1)
      return Status::Invalid("set_index_raw: seg_indptr size must be capacity+1");
    MLALORA_RETURN_IF_ERROR(seg_indptr_.upload(seg_indptr.data(), 4 * seg_indptr.size()));
  }
  if (!weight_indices.empty()) {
    if (static_cast<int64_t>(weight_indices.size()) != shape_.segment_capacity)
      return Status::Invalid("set_index_raw: weight_indices size must be capacity");
    MLALORA_RETURN_IF_ERROR(weight_indices_.upload(weight_indices.data(), 4 * weight_indices.size()));
  }
  if (!lora_ranks.empty()) {
    if (static_cast<int64_t>(lora_ranks.size()) != d.L) return Status::Invalid("set_index_raw: lora_ranks size must be L");
    MLALORA_RETURN_IF_ERROR(ranks_.upload(lora_ranks.data(), 4 * lora_ranks.size()));
  }
  if (!permutation.empty()) {
    if (!shape_.has_permutation || static_cast<int64_t>(permutation.size()) != d.S)
      return Status::Invalid("set_index_raw: permutation needs has_permutation and S entries");
    MLALORA_RETURN_IF_ERROR(permutation_.upload(permutation.data(), 4 * permutation.size()));
  }
  return Status::Ok();
}

Status DeviceProblem::set_live_segments(int32_t n) {
  live_host_ = n;
  return live_.upload(&n, 4);
}

optimized::DeviceArgs DeviceProblem::args(bool graph_mode) const {
  optimized::DeviceArgs a;
  auto ptr = [&](TensorId id) { return tensors_[static_cast<int>(id)].get(); };
  a.q_nope = ptr(TensorId::q_nope);
  a.q_nope_out = ptr(TensorId::q_nope_out);
  a.attn_latent = ptr(TensorId::attn_latent);
  a.attn_bmm_out = ptr(TensorId::attn_bmm_out);
  a.A = ptr(TensorId::A);
  a.B = ptr(TensorId::B);
  a.lora_ranks = ranks_.as<int32_t>();
  a.scalings = scalings_.as<float>();
  a.seg_indptr = seg_indptr_.as<int32_t>();
  a.weight_indices = weight_indices_.as<int32_t>();
  a.permutation = shape_.has_permutation ? permutation_.as<int32_t>() : nullptr;
  if (graph_mode) {
    a.num_segments_device = live_.as<int32_t>();
    a.num_segments_host = 0;
  } else {
    a.num_segments_device = nullptr;
    a.num_segments_host = live_host_;
  }
  return a;
}

// ---- SgmmRunner -------------------------------------------------------------

Status SgmmRunner::reserve(const ProblemShape& shape, optimized::Path path) {
  size_t need = 0;
  for (Side s : kBothSides) need = std::max(need, optimized::workspace_size(shape, path, s));
  if (need > 0 && (workspace_.get() == nullptr || workspace_.bytes() < need)) return workspace_.allocate(need);
  return Status::Ok();
}

Status SgmmRunner::run(const DeviceProblem& dp, Side side, optimized::Path path, bool graph_mode, cudaStream_t stream) {
  const size_t need = optimized::workspace_size(dp.shape(), path, side);
  if (need > 0 && (workspace_.get() == nullptr || workspace_.bytes() < need))
    MLALORA_RETURN_IF_ERROR(workspace_.allocate(need));
  return optimized::lora_correction(dp.shape(), dp.args(graph_mode), side, path, workspace_.get(), workspace_.bytes(),
                                    stream);
}

Status SgmmRunner::run_both(const DeviceProblem& dp, optimized::Path path, bool graph_mode, cudaStream_t stream,
                            bool plan_prebuilt) {
  const size_t need = optimized::workspace_size_both(dp.shape(), path);
  if (need > 0 && (workspace_.get() == nullptr || workspace_.bytes() < need)) {
    // A fresh workspace holds no plan: refuse rather than read garbage.
    if (plan_prebuilt) return Status::Invalid("run_both: plan_prebuilt with no workspace built by build_plan");
    MLALORA_RETURN_IF_ERROR(workspace_.allocate(need));
  }
  optimized::CallOptions o;
  o.plan_prebuilt = plan_prebuilt;
  return optimized::lora_correction_both(dp.shape(), dp.args(graph_mode), path, workspace_.get(), workspace_.bytes(),
                                         stream, o);
}

Status SgmmRunner::build_plan(const DeviceProblem& dp, bool graph_mode, cudaStream_t stream) {
  MLALORA_RETURN_IF_ERROR(reserve(dp.shape(), optimized::Path::fused));
  return optimized::build_plan(dp.shape(), dp.args(graph_mode), workspace_.get(), workspace_.bytes(), stream);
}

// ---- the registered implementations --------------------------------------------

namespace {

Status gpu_layout_support(const Problem& p) {
  std::string why;
  if (!gpu_available(&why)) return Status::NotSupported("no usable GPU: " + why);
  MLALORA_RETURN_IF_ERROR(validate(p));
  const Dims& d = p.shape.dims;
  for (TensorId id : kAllTensors) {
    const Shape3 sh = tensor_shape(d, id);
    const Strides3& st = p.shape.layout.of(id);
    if (sh[2] > 1 && st.s2 != 1 && storage_elems(sh, st) > 0)
      return Status::NotSupported(std::string("layout.") + tensor_name(id) + ".s2 = " + std::to_string(st.s2) +
                                  ": CUDA kernels need unit inner stride");
  }
  return Status::Ok();
}

// cuda-fused, cuda-split, and cuda-fused-planned: the fused path with its
// tile plan built once beforehand (optimized::build_plan) and read by the
// call (CallOptions::plan_prebuilt), as when a forward step's layers share
// one routing. Its run() builds the plan and then calls, so the testbed
// verifies both; the benchmark times the call alone.
class SgmmImplementation final : public Implementation {
 public:
  explicit SgmmImplementation(optimized::Path path, bool planned = false) : path_(path), planned_(planned) {}
  std::string name() const override {
    return path_ == optimized::Path::fused ? (planned_ ? "cuda-fused-planned" : "cuda-fused") : "cuda-split";
  }
  std::string description() const override {
    if (planned_) return "CUDA SGMM fused, tile plan built once (build_plan) and reused by the call";
    return path_ == optimized::Path::fused
               ? "CUDA SGMM, one kernel per side, rank-r intermediate on chip (split above r_max 256)"
               : "CUDA SGMM, step_a + step_b per side through a global intermediate";
  }
  bool needs_gpu() const override { return true; }
  Status supports(const Problem& p) const override { return gpu_layout_support(p); }
  reference::RoundingModel rounding_model(const Problem& p, Side) const override {
    return reference::RoundingModel::factored(p.shape.dtype, /*tensor_core=*/p.shape.dtype != DType::f32);
  }
  Status run(const Problem& p, ProblemTensors& io) override {
    MLALORA_RETURN_IF_ERROR(supports(p));
    DeviceProblem dp;
    MLALORA_RETURN_IF_ERROR(dp.init(p, io));
    // Both sides through the one-call API (what an engine calls per layer);
    // the per-side API is exercised by the graph and index tests.
    if (planned_) MLALORA_RETURN_IF_ERROR(runner_.build_plan(dp, /*graph_mode=*/false, nullptr));
    MLALORA_RETURN_IF_ERROR(runner_.run_both(dp, path_, /*graph_mode=*/false, nullptr, planned_));
    MLALORA_RETURN_IF_ERROR(cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize after SGMM"));
    MLALORA_RETURN_IF_ERROR(cuda_check(cudaGetLastError(), "SGMM kernels"));
    return dp.download_outputs(io);
  }

 private:
  optimized::Path path_;
  bool planned_;
  SgmmRunner runner_;
};

class CublasNaiveImplementation final : public Implementation {
 public:
  ~CublasNaiveImplementation() override {
    if (handle_) cublasDestroy(handle_);
  }
  std::string name() const override { return "cublas-naive"; }
  std::string description() const override {
    return "cuBLAS: materialise dW = s*B@A per used slot (rounded to the act dtype), then GEMMs";
  }
  bool needs_gpu() const override { return true; }
  Status supports(const Problem& p) const override { return gpu_layout_support(p); }
  reference::RoundingModel rounding_model(const Problem& p, Side) const override {
    return reference::RoundingModel::materialized(p.shape.dtype, /*tensor_core=*/true);
  }
  Status run(const Problem& p, ProblemTensors& io) override {
    MLALORA_RETURN_IF_ERROR(supports(p));
    if (!handle_) {
      cublasStatus_t st = cublasCreate(&handle_);
      if (st != CUBLAS_STATUS_SUCCESS) {
        handle_ = nullptr;
        return Status::DeviceError("cublasCreate failed: " + std::to_string(static_cast<int>(st)));
      }
    }
    cublasSetStream(handle_, nullptr);
    DeviceProblem dp;
    MLALORA_RETURN_IF_ERROR(dp.init(p, io));
    size_t need = 0;
    for (Side s : kBothSides) need = std::max(need, optimized::cublas_naive_workspace_size(p, s));
    if (need > 0 && (workspace_.get() == nullptr || workspace_.bytes() < need))
      MLALORA_RETURN_IF_ERROR(workspace_.allocate(need));
    for (Side side : kBothSides)
      MLALORA_RETURN_IF_ERROR(optimized::cublas_naive_correction(p, dp.args(false), side, handle_, workspace_.get(),
                                                                 workspace_.bytes(), nullptr));
    MLALORA_RETURN_IF_ERROR(cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize after cublas-naive"));
    MLALORA_RETURN_IF_ERROR(cuda_check(cudaGetLastError(), "cublas-naive"));
    return dp.download_outputs(io);
  }

 private:
  cublasHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
};

}  // namespace

void register_gpu_implementations() {
  register_implementation({"cuda-fused", "CUDA SGMM fused: one kernel per side, intermediate on chip", true,
                           [] { return std::make_unique<SgmmImplementation>(optimized::Path::fused); }});
  register_implementation({"cuda-fused-planned", "CUDA SGMM fused, tile plan built once and reused (per-layer cost)", true,
                           [] { return std::make_unique<SgmmImplementation>(optimized::Path::fused, true); }});
  register_implementation({"cuda-split", "CUDA SGMM split: step_a + step_b through a global intermediate", true,
                           [] { return std::make_unique<SgmmImplementation>(optimized::Path::split); }});
  register_implementation({"cublas-naive", "cuBLAS materialised dW baseline", true,
                           [] { return std::make_unique<CublasNaiveImplementation>(); }});
}

}  // namespace mlalora::harness
