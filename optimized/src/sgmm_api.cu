// Host API of the SGMM kernels: validation, workspace sizing, kernel choice.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "mlalora/optimized/sgmm.hpp"
#include "sgmm_fast.hpp"
#include "sgmm_kernels.hpp"

namespace mlalora::optimized {

const char* path_name(Path p) { return p == Path::split ? "split" : "fused"; }

namespace {

using detail::KParams;
using detail::Mode;

// MLALORA_SGMM_KERNELS=generic forces the generic (FMA) kernels, =mma the
// general tensor-core kernels (no fast path): debugging and cross-checking
// aids; by default the fused path takes the fast kernels when eligible.
const char* forced_family() {
  static const char* v = [] {
    const char* e = std::getenv("MLALORA_SGMM_KERNELS");
    if (e != nullptr && std::strcmp(e, "generic") == 0) return "generic";
    if (e != nullptr && std::strcmp(e, "mma") == 0) return "mma";
    return "";
  }();
  return v;
}
bool force_generic() { return std::strcmp(forced_family(), "generic") == 0; }
bool fast_allowed() { return forced_family()[0] == '\0'; }

bool split_needed(const ProblemShape& s, Path path) {
  return path == Path::split || s.dims.r_max > detail::kFusedMaxRank;
}

size_t intermediate_bytes(const ProblemShape& s) {
  const Dims& d = s.dims;
  return static_cast<size_t>(d.S) * static_cast<size_t>(d.H) * static_cast<size_t>(d.r_max) *
         static_cast<size_t>(dtype_bytes(s.dtype));
}

std::string str(int64_t v) { return std::to_string(v); }

Status check_ptr(const void* ptr, const char* name, int64_t elems, size_t align) {
  if (elems <= 0) return Status::Ok();
  if (ptr == nullptr) return Status::Invalid(std::string("args.") + name + " is null");
  if (reinterpret_cast<uintptr_t>(ptr) % align != 0)
    return Status::Invalid(std::string("args.") + name + " is not " + str(static_cast<int64_t>(align)) +
                           "-byte aligned");
  return Status::Ok();
}

// Shape, strides, pointers and live count for one side. Never launches.
Status validate_side(const ProblemShape& shape, const DeviceArgs& a, Side side) {
  MLALORA_RETURN_IF_ERROR(validate_shape(shape));
  const Dims& d = shape.dims;
  const size_t eb = static_cast<size_t>(dtype_bytes(shape.dtype));
  const TensorId used[4] = {input_of(side), output_of(side), TensorId::A, TensorId::B};
  for (TensorId id : used) {
    const Shape3 sh = tensor_shape(d, id);
    const Strides3& st = shape.layout.of(id);
    if (sh[2] > 1 && st.s2 != 1 && storage_elems(sh, st) > 0)
      return Status::NotSupported(std::string("layout.") + tensor_name(id) + ".s2 = " + str(st.s2) +
                                  ": CUDA kernels need unit inner stride");
  }
  auto elems = [&](TensorId id) { return storage_elems(tensor_shape(d, id), shape.layout.of(id)); };
  const bool q = side == Side::q;
  MLALORA_RETURN_IF_ERROR(check_ptr(q ? a.q_nope : a.attn_latent, q ? "q_nope" : "attn_latent", elems(input_of(side)), eb));
  MLALORA_RETURN_IF_ERROR(
      check_ptr(q ? a.q_nope_out : a.attn_bmm_out, q ? "q_nope_out" : "attn_bmm_out", elems(output_of(side)), eb));
  MLALORA_RETURN_IF_ERROR(check_ptr(a.A, "A", elems(TensorId::A), eb));
  MLALORA_RETURN_IF_ERROR(check_ptr(a.B, "B", elems(TensorId::B), eb));
  MLALORA_RETURN_IF_ERROR(check_ptr(a.lora_ranks, "lora_ranks", d.L, 4));
  MLALORA_RETURN_IF_ERROR(check_ptr(a.scalings, "scalings", d.L, 4));
  MLALORA_RETURN_IF_ERROR(check_ptr(a.seg_indptr, "seg_indptr", shape.segment_capacity + 1, 4));
  MLALORA_RETURN_IF_ERROR(check_ptr(a.weight_indices, "weight_indices", shape.segment_capacity, 4));
  if (shape.has_permutation) {
    MLALORA_RETURN_IF_ERROR(check_ptr(a.permutation, "permutation", d.S, 4));
  } else if (a.permutation != nullptr) {
    return Status::Invalid("args.permutation is set but shape.has_permutation is false");
  }
  if (a.num_segments_device != nullptr) {
    MLALORA_RETURN_IF_ERROR(check_ptr(a.num_segments_device, "num_segments_device", 1, 4));
  } else if (a.num_segments_host < 0 || a.num_segments_host > shape.segment_capacity) {
    return Status::Invalid("args.num_segments_host = " + str(a.num_segments_host) +
                           " must be in [0, segment_capacity=" + str(shape.segment_capacity) + "]");
  }
  return Status::Ok();
}

KParams make_params(const ProblemShape& shape, const DeviceArgs& a, Side side) {
  const Dims& d = shape.dims;
  const Layout& L = shape.layout;
  KParams p;
  const bool q = side == Side::q;
  p.x = q ? a.q_nope : a.attn_latent;
  p.out = q ? a.q_nope_out : a.attn_bmm_out;
  const Strides3& xs = q ? L.q_nope : L.attn_latent;
  const Strides3& os = q ? L.q_nope_out : L.attn_bmm_out;
  p.xs0 = xs.s0;
  p.xs1 = xs.s1;
  p.os0 = os.s0;
  p.os1 = os.s1;
  p.A = a.A;
  p.As0 = L.A.s0;
  p.As1 = L.A.s1;
  p.B = a.B;
  p.Bs0 = L.B.s0;
  p.Bs1 = L.B.s1;
  p.ranks = a.lora_ranks;
  p.scalings = a.scalings;
  p.seg_indptr = a.seg_indptr;
  p.weight_indices = a.weight_indices;
  p.perm = shape.has_permutation ? a.permutation : nullptr;
  p.nseg_dev = a.num_segments_device;
  p.nseg_host = static_cast<int>(a.num_segments_device != nullptr ? 0 : a.num_segments_host);
  p.capacity = static_cast<int>(shape.segment_capacity);
  p.S = static_cast<int>(d.S);
  p.H = static_cast<int>(d.H);
  p.D_qk = static_cast<int>(d.D_qk);
  p.D_v = static_cast<int>(d.D_v);
  p.R_kv = static_cast<int>(d.R_kv);
  p.L = static_cast<int>(d.L);
  p.r_max = static_cast<int>(d.r_max);
  p.max_seg_len = static_cast<int>(shape.max_segment_len);
  p.K1 = q ? p.D_qk : p.R_kv;
  p.N2 = q ? p.R_kv : p.D_v;
  return p;
}

// True when the call cannot touch anything (valid no-op).
bool nothing_to_do(const ProblemShape& shape, const DeviceArgs& a) {
  if (shape.dims.S == 0 || shape.segment_capacity == 0 || shape.max_segment_len == 0) return true;
  return a.num_segments_device == nullptr && a.num_segments_host == 0;
}

Status run_mode(const KParams& p, DType dt, Side side, Mode mode, cudaStream_t stream) {
  if (!force_generic() && detail::mma_eligible(p, dt, side, mode)) return detail::launch_mma(p, dt, side, mode, stream);
  return detail::launch_generic(p, dt, side, mode, stream);
}

Status run_step(const ProblemShape& shape, const DeviceArgs& args, Side side, Mode mode, const void* inter,
                cudaStream_t stream) {
  MLALORA_RETURN_IF_ERROR(validate_side(shape, args, side));
  if (intermediate_bytes(shape) > 0 && inter == nullptr) return Status::Invalid("intermediate is null");
  if (reinterpret_cast<uintptr_t>(inter) % static_cast<uintptr_t>(dtype_bytes(shape.dtype)) != 0)
    return Status::Invalid("intermediate is not aligned to the dtype size");
  if (nothing_to_do(shape, args)) return Status::Ok();
  KParams p = make_params(shape, args, side);
  p.inter = const_cast<void*>(inter);
  return run_mode(p, shape.dtype, side, mode, stream);
}

}  // namespace

size_t workspace_size(const ProblemShape& shape, Path path, Side side) {
  if (split_needed(shape, path)) return intermediate_bytes(shape);
  return detail::fast_workspace_size(shape, side);
}

FastPathLayout fast_path_layout(const ProblemShape& shape) { return detail::fast_layout(shape); }

const char* fused_kernel_family(const ProblemShape& shape, const DeviceArgs& args, Side side) {
  if (split_needed(shape, Path::fused)) return "split";
  const KParams p = make_params(shape, args, side);
  if (fast_allowed() && detail::fast_eligible(shape, p, side)) return "fast";
  if (!force_generic() && detail::mma_eligible(p, shape.dtype, side, Mode::fused)) return "mma";
  return "generic";
}

Status lora_correction(const ProblemShape& shape, const DeviceArgs& args, Side side, Path path, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream, const CallOptions& options) {
  MLALORA_RETURN_IF_ERROR(validate_side(shape, args, side));
  const size_t need = workspace_size(shape, path, side);
  if (need > 0 && (workspace == nullptr || workspace_bytes < need))
    return Status{StatusCode::workspace_too_small,
                  std::string("workspace: ") + (workspace == nullptr ? "null" : std::to_string(workspace_bytes)) +
                      " bytes given, " + std::to_string(need) + " needed (" +
                      (split_needed(shape, path) ? std::string("split path intermediate S*H*r_max*") +
                                                       std::to_string(dtype_bytes(shape.dtype))
                                                 : std::string("fused fast path tile plan or small-batch intermediates")) +
                      ")"};
  if (need > 0 && reinterpret_cast<uintptr_t>(workspace) % 16 != 0)
    return Status::Invalid("workspace is not 16-byte aligned");
  if (nothing_to_do(shape, args)) return Status::Ok();
  KParams p = make_params(shape, args, side);
  if (split_needed(shape, path)) {
    p.inter = workspace;
    MLALORA_RETURN_IF_ERROR(run_mode(p, shape.dtype, side, Mode::step_a, stream));
    return run_mode(p, shape.dtype, side, Mode::step_b, stream);
  }
  if (fast_allowed() && detail::fast_eligible(shape, p, side))
    return detail::launch_fast(shape, p, shape.dtype, side, workspace, workspace_bytes, stream,
                               options.plan_prebuilt);
  return run_mode(p, shape.dtype, side, Mode::fused, stream);
}

size_t workspace_size_both(const ProblemShape& shape, Path path) {
  return std::max(workspace_size(shape, path, Side::q), workspace_size(shape, path, Side::v));
}

Status lora_correction_both(const ProblemShape& shape, const DeviceArgs& args, Path path, void* workspace,
                            size_t workspace_bytes, cudaStream_t stream, const CallOptions& options) {
  MLALORA_RETURN_IF_ERROR(validate_side(shape, args, Side::q));
  MLALORA_RETURN_IF_ERROR(validate_side(shape, args, Side::v));
  if (path == Path::fused && !split_needed(shape, path) && fast_allowed() && !nothing_to_do(shape, args)) {
    const KParams pq = make_params(shape, args, Side::q), pv = make_params(shape, args, Side::v);
    if (detail::fast_eligible(shape, pq, Side::q) && detail::fast_eligible(shape, pv, Side::v)) {
      if (reinterpret_cast<uintptr_t>(workspace) % 16 != 0) return Status::Invalid("workspace is not 16-byte aligned");
      return detail::launch_fast_both(shape, pq, pv, shape.dtype, workspace, workspace_bytes, stream,
                                      options.plan_prebuilt);
    }
  }
  MLALORA_RETURN_IF_ERROR(lora_correction(shape, args, Side::q, path, workspace, workspace_bytes, stream, options));
  return lora_correction(shape, args, Side::v, path, workspace, workspace_bytes, stream, options);
}

Status build_plan(const ProblemShape& shape, const DeviceArgs& args, void* workspace, size_t workspace_bytes,
                  cudaStream_t stream) {
  // The same checks as a call of both sides (the plan reads the index data
  // and lives in the workspace a call of either side would use).
  MLALORA_RETURN_IF_ERROR(validate_side(shape, args, Side::q));
  MLALORA_RETURN_IF_ERROR(validate_side(shape, args, Side::v));
  const size_t need = workspace_size_both(shape, Path::fused);
  if (need > 0 && (workspace == nullptr || workspace_bytes < need))
    return Status{StatusCode::workspace_too_small,
                  std::string("workspace: ") + (workspace == nullptr ? "null" : std::to_string(workspace_bytes)) +
                      " bytes given, " + std::to_string(need) + " needed (workspace_size_both(shape, Path::fused))"};
  if (need > 0 && reinterpret_cast<uintptr_t>(workspace) % 16 != 0)
    return Status::Invalid("workspace is not 16-byte aligned");
  if (split_needed(shape, Path::fused) || !fast_allowed() || nothing_to_do(shape, args)) return Status::Ok();
  const KParams pq = make_params(shape, args, Side::q), pv = make_params(shape, args, Side::v);
  // The plan is the same for both sides; it is built where either side takes the fast path.
  if (!detail::fast_eligible(shape, pq, Side::q) && !detail::fast_eligible(shape, pv, Side::v)) return Status::Ok();
  return detail::build_fast_plan(shape, pq, workspace, workspace_bytes, stream);
}

Status step_a_q(const ProblemShape& s, const DeviceArgs& a, void* inter, cudaStream_t st) {
  return run_step(s, a, Side::q, Mode::step_a, inter, st);
}
Status step_b_q(const ProblemShape& s, const DeviceArgs& a, const void* inter, cudaStream_t st) {
  return run_step(s, a, Side::q, Mode::step_b, inter, st);
}
Status step_a_v(const ProblemShape& s, const DeviceArgs& a, void* inter, cudaStream_t st) {
  return run_step(s, a, Side::v, Mode::step_a, inter, st);
}
Status step_b_v(const ProblemShape& s, const DeviceArgs& a, const void* inter, cudaStream_t st) {
  return run_step(s, a, Side::v, Mode::step_b, inter, st);
}

}  // namespace mlalora::optimized
