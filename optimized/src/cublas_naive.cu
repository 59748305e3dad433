// The cuBLAS "naive materialisation" baseline (cublas_naive.hpp).
//
// Per call (one side), for each slot l that a live, non-empty segment uses and
// whose rank r = lora_ranks[l] is > 0:
//
//   1. dW GEMM (strided-batched over heads, fp32 compute, output in the act
//      dtype, alpha = s_l, beta = 0):
//        q-side: dW[h] = s_l * B[l][h*F        : h*F+D_qk, :r] @ A[l][:r, :]   (D_qk x R_kv)
//        v-side: dW[h] = s_l * B[l][h*F+D_qk   : (h+1)*F,  :r] @ A[l][:r, :]   (D_v  x R_kv)
//      Only the rows of B the side needs are materialised, so one q-side plus
//      one v-side call materialise exactly H*F*r*R_kv FMAs per slot (SPEC).
//      dW is rounded to the act dtype: that is this implementation's one extra
//      rounding point (besides the fp32 accumulation and the output rounding).
//   2. apply GEMM (strided-batched over heads, fp32 compute, alpha = 1,
//      beta = 1, accumulating into the output in place: out = round(out + acc)):
//        q-side: out[t,h,:] (R_kv) += x[t,h,:] (D_qk) @ dW[h]            (D_qk x R_kv)
//        v-side: out[t,h,:] (D_v)  += x[t,h,:] (R_kv) @ dW[h]^T          (dW[h]: D_v x R_kv)
//      on the slot's physical rows t. When those rows form one uniformly
//      strided run t0 + j*step and the tensors' strides are expressible as
//      cuBLAS leading dimensions, the GEMM addresses the tensors directly
//      ("direct" path). Otherwise the rows are gathered into contiguous
//      workspace buffers (n, H, D), the GEMM runs there, and the output rows
//      are scattered back ("gather" path). Either way only the slot's rows
//      are ever written, so uncovered rows stay bitwise unchanged.
//      MLALORA_CUBLAS_NAIVE_FORCE_GATHER=1 in the environment forces the
//      gather path for every slot (for testing both paths).
//
// ---- Row-major tensors vs column-major cuBLAS ------------------------------
// A row-major matrix M (rows x cols) with row stride rs and unit column stride
// is, read by cuBLAS as column-major with ld = rs, the matrix M^T (cols x rows).
// A row-major M with unit row stride and column stride cs is column-major M
// itself with ld = cs, so op = T yields M^T. as_transposed_operand() below
// picks one of the two, so that op(X) == M^T in both cases.
// To compute a row-major C = P @ Q (m x n) we ask cuBLAS for the column-major
//      C^T (n x m) = Q^T (n x k) * P^T (k x m)
// i.e. cublas(m'=n, n'=m, k; A-operand = Q^T, B-operand = P^T, C = C^T with
// ldc = row stride of C, C's column (innermost) stride must be 1).
//   dW GEMM:   dW[h]^T (R_kv x D) = A_l^T (R_kv x r) * B_h^T (r x D)
//              m'=R_kv, n'=D, k=r; A-op from A_l (r x R_kv, strides A.s1,A.s2),
//              stride 0 over heads; B-op from B_h (D x r, strides B.s1,B.s2),
//              head stride F*B.s1; C = dW + h*D*R_kv, ldc = R_kv.
//   q apply:   out_h^T (R_kv x n) = dW[h]^T (R_kv x D_qk) * x_h^T (D_qk x n)
//              m'=R_kv, n'=n, k=D_qk; A-op: dW[h] row-major ld R_kv -> op N,
//              lda = R_kv, stride D_qk*R_kv; B-op from x_h (n x D_qk).
//   v apply:   out_h^T (D_v x n) = dW[h] (D_v x R_kv) * x_h^T (R_kv x n)
//              m'=D_v, n'=n, k=R_kv; A-op: dW[h] = (dW[h]^T)^T, dW[h]^T is a
//              row-major (R_kv x D_v) view with row stride 1 and column
//              stride R_kv -> op T, lda = R_kv, stride D_v*R_kv; B-op from x_h.
//   x_h / out_h: direct path rows t0 + j*step -> row stride step*s0, column
//              stride s2, head (batch) stride s1, base at row t0.
//              gather path: buffers (n, H, D) contiguous -> row stride H*D,
//              column stride 1, head stride D.
// All GEMMs use the 64-bit cuBLAS API (cublasGemmStridedBatchedEx_64).
//
// Handle state: the caller's handle gets the stream, host pointer mode and
// math mode CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION
// (no TF32 for f32, no split-K reductions in the bf16/f16 output type) for
// the duration of the call; the previous settings are restored on return.
// The host copy of the routing in `problem` is authoritative: the device
// index arrays in DeviceArgs (and num_segments_device) are not read.
#include "mlalora/optimized/cublas_naive.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "cuda_status.hpp"

namespace mlalora::optimized {
namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

cudaDataType cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

bool force_gather_from_env() {
  const char* e = std::getenv("MLALORA_CUBLAS_NAIVE_FORCE_GATHER");
  return e != nullptr && e[0] != '\0' && e[0] != '0';
}

// cuBLAS operand for a row-major logical matrix M (rows x cols) with element
// strides (rs, cs): op(X) == M^T where X is the column-major matrix at the same
// base address with leading dimension ld. See the header comment.
struct Operand {
  bool ok = false;
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t ld = 0;
};

Operand as_transposed_operand(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  Operand o;
  // X = M^T (cols x rows), X[j + i*ld] = M[i][j]: needs unit column stride.
  if (cs == 1 || cols == 1) {
    int64_t ld = rows == 1 ? std::max<int64_t>(cols, 1) : rs;
    if (ld >= std::max<int64_t>(cols, 1)) return Operand{true, CUBLAS_OP_N, ld};
  }
  // X = M (rows x cols), X[i + j*ld] = M[i][j]: needs unit row stride; op T.
  if (rs == 1 || rows == 1) {
    int64_t ld = cols == 1 ? std::max<int64_t>(rows, 1) : cs;
    if (ld >= std::max<int64_t>(rows, 1)) return Operand{true, CUBLAS_OP_T, ld};
  }
  return o;
}

// The C operand must be M^T stored non-transposed (op N only).
Operand as_output_operand(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  Operand o = as_transposed_operand(rows, cols, rs, cs);
  if (o.ok && o.op != CUBLAS_OP_N) o.ok = false;
  return o;
}

const char* cublas_status_str(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_<unknown>";
}

Status cublas_check(cublasStatus_t s, const char* call, const std::string& what = {}) {
  if (s == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Status::DeviceError(std::string("cublas_naive: ") + call + (what.empty() ? "" : " (" + what + ")") +
                             " failed: " + cublas_status_str(s));
}

Status cuda_check(cudaError_t e, const char* call) { return detail::cuda_status(e, "cublas_naive", call); }

// ---- gather / scatter of token rows ----------------------------------------
// buf[(j*H + h)*D + k] <-> tensor[rows[j]*s0 + h*s1 + k*s2], raw element bits.
template <typename T>
__global__ void gather_rows_kernel(const T* __restrict__ src, int64_t s0, int64_t s1, int64_t s2,
                                   const int32_t* __restrict__ rows, int64_t n, int64_t H, int64_t D,
                                   T* __restrict__ buf) {
  for (int64_t v = blockIdx.x; v < n * H; v += gridDim.x) {
    const int64_t j = v / H, h = v - j * H;
    const T* s = src + static_cast<int64_t>(rows[j]) * s0 + h * s1;
    T* d = buf + v * D;
    for (int64_t k = threadIdx.x; k < D; k += blockDim.x) d[k] = s[k * s2];
  }
}

template <typename T>
__global__ void scatter_rows_kernel(const T* __restrict__ buf, const int32_t* __restrict__ rows, int64_t n, int64_t H,
                                    int64_t D, T* __restrict__ dst, int64_t s0, int64_t s1, int64_t s2) {
  for (int64_t v = blockIdx.x; v < n * H; v += gridDim.x) {
    const int64_t j = v / H, h = v - j * H;
    T* d = dst + static_cast<int64_t>(rows[j]) * s0 + h * s1;
    const T* s = buf + v * D;
    for (int64_t k = threadIdx.x; k < D; k += blockDim.x) d[k * s2] = s[k];
  }
}

void launch_dims(int64_t n, int64_t H, int64_t D, unsigned* grid, unsigned* block) {
  int64_t b = D >= 256 ? 256 : D >= 128 ? 128 : D >= 64 ? 64 : 32;
  int64_t g = std::min<int64_t>(n * H, int64_t{1} << 16);
  *grid = static_cast<unsigned>(std::max<int64_t>(g, 1));
  *block = static_cast<unsigned>(b);
}

Status launch_gather(int es, const void* src, const Strides3& st, const int32_t* rows, int64_t n, int64_t H,
                     int64_t D, void* buf, cudaStream_t stream) {
  unsigned g, b;
  launch_dims(n, H, D, &g, &b);
  if (es == 2)
    gather_rows_kernel<uint16_t><<<g, b, 0, stream>>>(static_cast<const uint16_t*>(src), st.s0, st.s1, st.s2, rows,
                                                      n, H, D, static_cast<uint16_t*>(buf));
  else
    gather_rows_kernel<uint32_t><<<g, b, 0, stream>>>(static_cast<const uint32_t*>(src), st.s0, st.s1, st.s2, rows,
                                                      n, H, D, static_cast<uint32_t*>(buf));
  return cuda_check(cudaGetLastError(), "gather_rows_kernel launch");
}

Status launch_scatter(int es, const void* buf, const int32_t* rows, int64_t n, int64_t H, int64_t D, void* dst,
                      const Strides3& st, cudaStream_t stream) {
  unsigned g, b;
  launch_dims(n, H, D, &g, &b);
  if (es == 2)
    scatter_rows_kernel<uint16_t><<<g, b, 0, stream>>>(static_cast<const uint16_t*>(buf), rows, n, H, D,
                                                       static_cast<uint16_t*>(dst), st.s0, st.s1, st.s2);
  else
    scatter_rows_kernel<uint32_t><<<g, b, 0, stream>>>(static_cast<const uint32_t*>(buf), rows, n, H, D,
                                                       static_cast<uint32_t*>(dst), st.s0, st.s1, st.s2);
  return cuda_check(cudaGetLastError(), "scatter_rows_kernel launch");
}

// ---- host plan -----------------------------------------------------------------
struct SlotPlan {
  int32_t slot = 0;
  int32_t rank = 0;
  float scaling = 0.f;
  std::vector<int32_t> rows;  // physical rows, in routing order
  bool direct = false;
  int64_t t0 = 0, step = 0;  // direct path: rows[j] = t0 + j*step
  int64_t rows_offset = 0;   // gather path: offset of this slot's rows in the uploaded index array
};

struct SideDims {
  int64_t D_in = 0, D_out = 0, D_w = 0, b_row0 = 0;  // D_w: rows of dW per head; b_row0: first B row of head 0
};

SideDims side_dims(const Dims& d, Side side) {
  SideDims s;
  if (side == Side::q) {
    s.D_in = d.D_qk;
    s.D_out = d.R_kv;
    s.D_w = d.D_qk;
    s.b_row0 = 0;
  } else {
    s.D_in = d.R_kv;
    s.D_out = d.D_v;
    s.D_w = d.D_v;
    s.b_row0 = d.D_qk;
  }
  return s;
}

struct Plan {
  std::vector<SlotPlan> slots;
  std::vector<int32_t> gather_rows;  // concatenated rows of all gather-path slots
  int64_t max_gather_n = 0;
  // workspace layout (bytes)
  size_t dw_off = 0, dw_bytes = 0;
  size_t idx_off = 0, idx_bytes = 0;
  size_t xbuf_off = 0, xbuf_bytes = 0;
  size_t obuf_off = 0, obuf_bytes = 0;
  size_t total = 0;
};

// Can the apply GEMM address the tensors directly for rows t0 + j*step, j < n?
bool direct_ok(const ProblemShape& shape, Side side, int64_t n, int64_t step) {
  const Dims& d = shape.dims;
  SideDims sd = side_dims(d, side);
  const Strides3& xs = shape.layout.of(input_of(side));
  const Strides3& os = shape.layout.of(output_of(side));
  Operand x = as_transposed_operand(n, sd.D_in, step * xs.s0, xs.s2);
  Operand o = as_output_operand(n, sd.D_out, step * os.s0, os.s2);
  return x.ok && o.ok;
}

// Assumes validate(problem) passed.
Plan make_plan(const Problem& problem, Side side) {
  Plan plan;
  const ProblemShape& shape = problem.shape;
  const Dims& d = shape.dims;
  const bool force_gather = force_gather_from_env();
  std::map<int32_t, size_t> index_of;  // slot -> position in plan.slots (ordered by first use)
  for (int64_t g = 0; g < problem.num_segments; ++g) {
    const int64_t b = problem.seg_indptr[g], e = problem.seg_indptr[g + 1];
    if (e <= b) continue;
    const int32_t l = problem.weight_indices[g];
    if (problem.lora_ranks[l] <= 0) continue;
    auto it = index_of.find(l);
    if (it == index_of.end()) {
      it = index_of.emplace(l, plan.slots.size()).first;
      SlotPlan sp;
      sp.slot = l;
      sp.rank = problem.lora_ranks[l];
      sp.scaling = problem.scalings[l];
      plan.slots.push_back(std::move(sp));
    }
    SlotPlan& sp = plan.slots[it->second];
    for (int64_t i = b; i < e; ++i) sp.rows.push_back(static_cast<int32_t>(problem.physical_row(i)));
  }
  SideDims sd = side_dims(d, side);
  for (SlotPlan& sp : plan.slots) {
    const int64_t n = static_cast<int64_t>(sp.rows.size());
    sp.t0 = sp.rows[0];
    sp.step = n > 1 ? static_cast<int64_t>(sp.rows[1]) - sp.rows[0] : 0;
    bool uniform = sp.step >= 0;
    for (int64_t j = 1; uniform && j < n; ++j) uniform = sp.rows[j] == sp.t0 + j * sp.step;
    sp.direct = !force_gather && uniform && direct_ok(shape, side, n, sp.step);
    if (!sp.direct) {
      sp.rows_offset = static_cast<int64_t>(plan.gather_rows.size());
      plan.gather_rows.insert(plan.gather_rows.end(), sp.rows.begin(), sp.rows.end());
      plan.max_gather_n = std::max(plan.max_gather_n, n);
    }
  }
  const size_t es = static_cast<size_t>(dtype_bytes(shape.dtype));
  if (!plan.slots.empty()) plan.dw_bytes = static_cast<size_t>(d.H * sd.D_w * d.R_kv) * es;
  plan.idx_bytes = plan.gather_rows.size() * sizeof(int32_t);
  plan.xbuf_bytes = static_cast<size_t>(plan.max_gather_n * d.H * sd.D_in) * es;
  plan.obuf_bytes = static_cast<size_t>(plan.max_gather_n * d.H * sd.D_out) * es;
  size_t off = 0;
  plan.dw_off = off;
  off += align_up(plan.dw_bytes);
  plan.idx_off = off;
  off += align_up(plan.idx_bytes);
  plan.xbuf_off = off;
  off += align_up(plan.xbuf_bytes);
  plan.obuf_off = off;
  off += align_up(plan.obuf_bytes);
  plan.total = plan.slots.empty() ? 0 : off;
  return plan;
}

// Saves and restores the caller's handle state.
class HandleStateGuard {
 public:
  explicit HandleStateGuard(cublasHandle_t h) : h_(h) {}
  Status save() {
    MLALORA_RETURN_IF_ERROR(cublas_check(cublasGetStream(h_, &stream_), "cublasGetStream"));
    MLALORA_RETURN_IF_ERROR(cublas_check(cublasGetPointerMode(h_, &pmode_), "cublasGetPointerMode"));
    MLALORA_RETURN_IF_ERROR(cublas_check(cublasGetMathMode(h_, &mmode_), "cublasGetMathMode"));
    saved_ = true;
    return Status::Ok();
  }
  ~HandleStateGuard() {
    if (!saved_) return;
    cublasSetStream(h_, stream_);
    cublasSetPointerMode(h_, pmode_);
    cublasSetMathMode(h_, mmode_);
  }

 private:
  cublasHandle_t h_;
  cudaStream_t stream_ = nullptr;
  cublasPointerMode_t pmode_ = CUBLAS_POINTER_MODE_HOST;
  cublasMath_t mmode_ = CUBLAS_DEFAULT_MATH;
  bool saved_ = false;
};

Status check_ptr(const void* p, const char* name, int es) {
  if (p == nullptr) return Status::Invalid(std::string("args.") + name + " is null");
  if (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(es) != 0)
    return Status::Invalid(std::string("args.") + name + " is not aligned to its element size (" +
                           std::to_string(es) + " bytes)");
  return Status::Ok();
}

const char* byte_ptr_c(const void* p) { return static_cast<const char*>(p); }
char* byte_ptr(void* p) { return static_cast<char*>(p); }

}  // namespace

size_t cublas_naive_workspace_size(const Problem& problem, Side side) {
  if (!validate(problem).ok()) return 0;
  return make_plan(problem, side).total;
}

Status cublas_naive_correction(const Problem& problem, const DeviceArgs& args, Side side, cublasHandle_t handle,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  MLALORA_RETURN_IF_ERROR(validate(problem));
  if (side != Side::q && side != Side::v)
    return Status::Invalid("side = " + std::to_string(static_cast<int>(side)) + " is neither q nor v");
  const ProblemShape& shape = problem.shape;
  const Dims& d = shape.dims;
  if (d.S == 0 || problem.num_segments == 0) return Status::Ok();
  const Plan plan = make_plan(problem, side);
  if (plan.slots.empty()) return Status::Ok();  // only empty segments / rank-0 slots: nothing to do

  // ---- host validation: pointers, weight layouts, workspace ----
  const int es = dtype_bytes(shape.dtype);
  const TensorId in_id = input_of(side), out_id = output_of(side);
  const void* x_ptr = side == Side::q ? args.q_nope : args.attn_latent;
  void* out_ptr = side == Side::q ? args.q_nope_out : args.attn_bmm_out;
  MLALORA_RETURN_IF_ERROR(check_ptr(x_ptr, tensor_name(in_id), es));
  MLALORA_RETURN_IF_ERROR(check_ptr(out_ptr, tensor_name(out_id), es));
  MLALORA_RETURN_IF_ERROR(check_ptr(args.A, "A", es));
  MLALORA_RETURN_IF_ERROR(check_ptr(args.B, "B", es));
  if (handle == nullptr) return Status::Invalid("handle (cublasHandle_t) is null");

  const SideDims sd = side_dims(d, side);
  const Strides3& As = shape.layout.A;
  const Strides3& Bs = shape.layout.B;
  const Strides3& xs = shape.layout.of(in_id);
  const Strides3& os = shape.layout.of(out_id);
  // Weight operands must be expressible for every rank used (r only changes
  // the extents, so check each slot's r: with r == 1 a stride stops mattering).
  for (const SlotPlan& sp : plan.slots) {
    Operand a = as_transposed_operand(sp.rank, d.R_kv, As.s1, As.s2);
    if (!a.ok)
      return Status::NotSupported("layout.A strides (" + std::to_string(As.s0) + "," + std::to_string(As.s1) + "," +
                                  std::to_string(As.s2) +
                                  "): cublas_naive needs a unit stride in one of the two inner dims and the other "
                                  "stride >= the matching extent");
    Operand b = as_transposed_operand(sd.D_w, sp.rank, Bs.s1, Bs.s2);
    if (!b.ok)
      return Status::NotSupported("layout.B strides (" + std::to_string(Bs.s0) + "," + std::to_string(Bs.s1) + "," +
                                  std::to_string(Bs.s2) +
                                  "): cublas_naive needs a unit stride in one of the two inner dims and the other "
                                  "stride >= the matching extent");
  }
  if (plan.total > 0 && workspace == nullptr)
    return {StatusCode::workspace_too_small,
            "workspace is null: cublas_naive needs " + std::to_string(plan.total) + " bytes"};
  if (workspace_bytes < plan.total)
    return {StatusCode::workspace_too_small, "workspace: cublas_naive needs " + std::to_string(plan.total) +
                                                 " bytes, given " + std::to_string(workspace_bytes)};
  if (reinterpret_cast<uintptr_t>(workspace) % 16 != 0)
    return Status::Invalid("workspace must be 16-byte aligned");

  // ---- launch ----
  HandleStateGuard guard(handle);
  MLALORA_RETURN_IF_ERROR(guard.save());
  MLALORA_RETURN_IF_ERROR(cublas_check(cublasSetStream(handle, stream), "cublasSetStream"));
  MLALORA_RETURN_IF_ERROR(
      cublas_check(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode"));
  MLALORA_RETURN_IF_ERROR(cublas_check(
      cublasSetMathMode(handle, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                                          CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
      "cublasSetMathMode"));

  const cudaDataType ct = cuda_type(shape.dtype);
  void* dW = byte_ptr(workspace) + plan.dw_off;
  int32_t* rows_dev = reinterpret_cast<int32_t*>(byte_ptr(workspace) + plan.idx_off);
  void* xbuf = byte_ptr(workspace) + plan.xbuf_off;
  void* obuf = byte_ptr(workspace) + plan.obuf_off;

  if (!plan.gather_rows.empty()) {
    // Pageable source: cudaMemcpyAsync returns once the host data is staged,
    // so the vector may go away afterwards; stream order protects reuse.
    MLALORA_RETURN_IF_ERROR(cuda_check(cudaMemcpyAsync(rows_dev, plan.gather_rows.data(), plan.idx_bytes,
                                                       cudaMemcpyHostToDevice, stream),
                                       "cudaMemcpyAsync(row indices)"));
  }

  const float one = 1.f;
  for (const SlotPlan& sp : plan.slots) {
    const int64_t r = sp.rank;
    const int64_t n = static_cast<int64_t>(sp.rows.size());
    const std::string what = "slot " + std::to_string(sp.slot);

    // 1. dW[h]^T (R_kv x D_w) = A_l^T (R_kv x r) * B_h^T (r x D_w), alpha = s_l.
    {
      const Operand a = as_transposed_operand(r, d.R_kv, As.s1, As.s2);
      const Operand b = as_transposed_operand(sd.D_w, r, Bs.s1, Bs.s2);
      const void* A_l = byte_ptr_c(args.A) + static_cast<int64_t>(sp.slot) * As.s0 * es;
      const void* B_h0 = byte_ptr_c(args.B) + (static_cast<int64_t>(sp.slot) * Bs.s0 + sd.b_row0 * Bs.s1) * es;
      const float alpha = sp.scaling, beta = 0.f;
      MLALORA_RETURN_IF_ERROR(cublas_check(
          cublasGemmStridedBatchedEx_64(handle, a.op, b.op, /*m=*/d.R_kv, /*n=*/sd.D_w, /*k=*/r, &alpha,
                                        A_l, ct, a.ld, /*strideA=*/0,  //
                                        B_h0, ct, b.ld, /*strideB=*/d.F() * Bs.s1, &beta,  //
                                        dW, ct, /*ldc=*/d.R_kv, /*strideC=*/sd.D_w * d.R_kv,  //
                                        /*batch=*/d.H, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx_64 (dW)", what));
    }

    // 2. apply: out_h^T += W-operand * x_h^T, batched over heads.
    const cublasOperation_t w_op = side == Side::q ? CUBLAS_OP_N : CUBLAS_OP_T;
    const int64_t w_ld = d.R_kv;
    const int64_t w_stride = sd.D_w * d.R_kv;
    const void* x_base;
    void* o_base;
    Operand xo, oo;
    int64_t x_bstride, o_bstride;
    const int32_t* rows_j = rows_dev + sp.rows_offset;
    if (sp.direct) {
      xo = as_transposed_operand(n, sd.D_in, sp.step * xs.s0, xs.s2);
      oo = as_output_operand(n, sd.D_out, sp.step * os.s0, os.s2);
      if (!xo.ok || !oo.ok) return Status::DeviceError("cublas_naive: internal error: direct plan not addressable");
      x_base = byte_ptr_c(x_ptr) + sp.t0 * xs.s0 * es;
      o_base = byte_ptr(out_ptr) + sp.t0 * os.s0 * es;
      x_bstride = xs.s1;
      o_bstride = os.s1;
    } else {
      MLALORA_RETURN_IF_ERROR(launch_gather(es, x_ptr, xs, rows_j, n, d.H, sd.D_in, xbuf, stream));
      MLALORA_RETURN_IF_ERROR(launch_gather(es, out_ptr, os, rows_j, n, d.H, sd.D_out, obuf, stream));
      xo = as_transposed_operand(n, sd.D_in, d.H * sd.D_in, 1);
      oo = as_output_operand(n, sd.D_out, d.H * sd.D_out, 1);
      x_base = xbuf;
      o_base = obuf;
      x_bstride = sd.D_in;
      o_bstride = sd.D_out;
    }
    MLALORA_RETURN_IF_ERROR(cublas_check(
        cublasGemmStridedBatchedEx_64(handle, w_op, xo.op, /*m=*/sd.D_out, /*n=*/n, /*k=*/sd.D_in, &one,  //
                                      dW, ct, w_ld, w_stride,                                            //
                                      x_base, ct, xo.ld, x_bstride, &one,                                //
                                      o_base, ct, oo.ld, o_bstride,                                      //
                                      /*batch=*/d.H, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmStridedBatchedEx_64 (apply)", what));
    if (!sp.direct)
      MLALORA_RETURN_IF_ERROR(launch_scatter(es, obuf, rows_j, n, d.H, sd.D_out, out_ptr, os, stream));
  }
  return Status::Ok();
}

}  // namespace mlalora::optimized
