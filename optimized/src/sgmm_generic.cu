// Generic SGMM kernels: every dtype (f32 / f16 / bf16), every unit-inner-stride
// layout, every dim and rank, plain fp32 FMA. They are the f32 path and the
// fallback of the tensor-core kernels (misaligned pointers / strides).
//
// One block = one tile of up to 64 token rows of one segment and ONE head
// (M_T = 64, H_T = 1), 256 threads as 8 warps x 32 lanes; a thread owns
// rows {ty + 8q : q < 8} and column `lane` of every 64x32 output chunk.
//   stage 1 (fused, step_a):  Y[row, j] = sum_k X[row, k] W1[k, j]   in 32x32 k/j chunks
//                             rounded to the act dtype (f32: exact), kept in
//                             shared memory (fused) or stored to the
//                             intermediate (step_a).
//   stage 2 (fused, step_b):  out[row, c] = round(out + s * sum_j Y[row, j] W2[j, c])
// q: W1 = B_kc[h] (D_qk x r), W2 = A (r x R_kv);  v: W1 = A^T (R_kv x r), W2 = B_vc[h]^T (r x D_v).
#include <mutex>
#include <string>
#include <unordered_map>

#include "sgmm_kernels.hpp"

namespace mlalora::optimized::detail {
namespace {

constexpr int kNT = 256;
constexpr int kRows = 64;
constexpr int kKC = 32;

__host__ __device__ constexpr int ys_stride(int r_max) { return ((r_max + 31) / 32) * 32 + 1; }

template <typename T, int SIDE, int MODE>
__global__ void __launch_bounds__(kNT) generic_kernel(const KParams p) {
  extern __shared__ float ys_dyn[];  // fused: [kRows][ys_stride(r_max)]
  __shared__ TileInfo ti;
  __shared__ int row_t[kRows], row_i[kRows];
  __shared__ float xs[kRows][kKC + 1];
  static_assert(sizeof(xs) >= sizeof(SlotTable<kNT>), "find_tile's scratch");
  __shared__ float ws[kKC][kKC + 1];

  if (!find_tile<kNT>(p, static_cast<long long>(blockIdx.x), &ti, &xs[0][0])) return;  // xs: free until staged
  const int h = static_cast<int>(blockIdx.y);
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, ty = tid >> 5;
  if (tid < kRows) {
    int t = -1, i = -1;
    if (tid < ti.tok_count) {
      i = ti.tok_begin + tid;
      t = physical_row(p, i);
    }
    row_t[tid] = t;
    row_i[tid] = i;
  }
  __syncthreads();

  const int r = ti.rank;
  const long long F = static_cast<long long>(p.D_qk) + p.D_v;
  const T* X = static_cast<const T*>(p.x);
  T* O = static_cast<T*>(p.out);
  const T* Al = static_cast<const T*>(p.A) + static_cast<long long>(ti.slot) * p.As0;
  const T* Bl = static_cast<const T*>(p.B) + static_cast<long long>(ti.slot) * p.Bs0;
  T* inter = static_cast<T*>(p.inter);
  const int RS = ys_stride(p.r_max);

  if (MODE != static_cast<int>(Mode::step_b)) {
    for (int jc = 0; jc < r; jc += 32) {
      float acc[8];
#pragma unroll
      for (int q = 0; q < 8; ++q) acc[q] = 0.f;
      for (int kc = 0; kc < p.K1; kc += kKC) {
#pragma unroll
        for (int q = 0; q < 8; ++q) {
          const int row = ty + 8 * q, k = kc + lane, t = row_t[row];
          float v = 0.f;
          if (t >= 0 && k < p.K1) v = Elem<T>::to_f(X[t * p.xs0 + h * p.xs1 + k]);
          xs[row][lane] = v;
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int a = ty + 8 * q;
          if (SIDE == 0) {  // ws[kk][jj] = B_kc[h][k][j] = B[l][h*F + k][j]
            const int k = kc + a, j = jc + lane;
            float v = 0.f;
            if (k < p.K1 && j < r) v = Elem<T>::to_f(Bl[(h * F + k) * p.Bs1 + j]);
            ws[a][lane] = v;
          } else {  // ws[kk][jj] = A^T[k][j] = A[l][j][k]
            const int k = kc + lane, j = jc + a;
            float v = 0.f;
            if (k < p.K1 && j < r) v = Elem<T>::to_f(Al[j * p.As1 + k]);
            ws[lane][a] = v;
          }
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < kKC; ++kk) {
          const float w = ws[kk][lane];
#pragma unroll
          for (int q = 0; q < 8; ++q) acc[q] = fmaf(xs[ty + 8 * q][kk], w, acc[q]);
        }
        __syncthreads();
      }
      const int j = jc + lane;
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const int row = ty + 8 * q;
        if (MODE == static_cast<int>(Mode::fused)) {
          ys_dyn[row * RS + j] = j < r ? round_through<T>(acc[q]) : 0.f;
        } else if (j < r && row_t[row] >= 0) {
          inter[(static_cast<long long>(row_i[row]) * p.H + h) * p.r_max + j] = Elem<T>::from_f(acc[q]);
        }
      }
    }
    if (MODE == static_cast<int>(Mode::step_a)) return;
    __syncthreads();
  }

  const float s = ti.scale;
  for (int nc = 0; nc < p.N2; nc += 32) {
    float acc[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) acc[q] = 0.f;
    for (int jc = 0; jc < r; jc += 32) {
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int a = ty + 8 * q;
        if (SIDE == 0) {  // ws[jj][cc] = A[l][j][c]
          const int j = jc + a, c = nc + lane;
          float v = 0.f;
          if (j < r && c < p.N2) v = Elem<T>::to_f(Al[j * p.As1 + c]);
          ws[a][lane] = v;
        } else {  // ws[jj][cc] = B_vc[h]^T[j][c] = B[l][h*F + D_qk + c][j]
          const int j = jc + lane, c = nc + a;
          float v = 0.f;
          if (j < r && c < p.N2) v = Elem<T>::to_f(Bl[(h * F + p.D_qk + c) * p.Bs1 + j]);
          ws[lane][a] = v;
        }
      }
      if (MODE == static_cast<int>(Mode::step_b)) {
#pragma unroll
        for (int q = 0; q < 8; ++q) {
          const int row = ty + 8 * q, j = jc + lane;
          float v = 0.f;
          if (row_t[row] >= 0 && j < r)
            v = Elem<T>::to_f(inter[(static_cast<long long>(row_i[row]) * p.H + h) * p.r_max + j]);
          xs[row][lane] = v;
        }
      }
      __syncthreads();
#pragma unroll 8
      for (int jj = 0; jj < 32; ++jj) {
        const float w = ws[jj][lane];
#pragma unroll
        for (int q = 0; q < 8; ++q) {
          const int row = ty + 8 * q;
          const float y = MODE == static_cast<int>(Mode::fused) ? ys_dyn[row * RS + jc + jj] : xs[row][jj];
          acc[q] = fmaf(y, w, acc[q]);
        }
      }
      __syncthreads();
    }
    const int c = nc + lane;
    if (c < p.N2) {
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const int t = row_t[ty + 8 * q];
        if (t >= 0) {
          T* o = O + t * p.os0 + h * p.os1 + c;
          *o = Elem<T>::from_f(fmaf(s, acc[q], Elem<T>::to_f(*o)));
        }
      }
    }
  }
}

template <typename T, int SIDE, int MODE>
Status launch_one(const KParams& p0, cudaStream_t stream) {
  KParams p = p0;
  p.M_T = kRows;
  p.H_T = 1;
  p.n_hb = p.H;
  const long long slots = tile_slots(p);
  if (slots <= 0) return Status::Ok();
  if (slots > 0x7fffffffLL) return Status::NotSupported("generic SGMM kernel: too many tiles for one grid");
  if (p.H > 65535) return Status::NotSupported("generic SGMM kernel: H = " + std::to_string(p.H) + " > 65535");
  size_t dyn = 0;
  if (MODE == static_cast<int>(Mode::fused)) dyn = sizeof(float) * kRows * static_cast<size_t>(ys_stride(p.r_max));
  auto kern = generic_kernel<T, SIDE, MODE>;
  MLALORA_RETURN_IF_ERROR(ensure_smem_limit(reinterpret_cast<const void*>(kern), dyn));
  dim3 grid(static_cast<unsigned>(slots), static_cast<unsigned>(p.H));
  kern<<<grid, kNT, dyn, stream>>>(p);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return Status::DeviceError(std::string("generic SGMM kernel launch: ") + cudaGetErrorString(e));
  return Status::Ok();
}

template <typename T>
Status launch_typed(const KParams& p, Side side, Mode mode, cudaStream_t stream) {
  const bool q = side == Side::q;
  switch (mode) {
    case Mode::fused: return q ? launch_one<T, 0, 0>(p, stream) : launch_one<T, 1, 0>(p, stream);
    case Mode::step_a: return q ? launch_one<T, 0, 1>(p, stream) : launch_one<T, 1, 1>(p, stream);
    case Mode::step_b: return q ? launch_one<T, 0, 2>(p, stream) : launch_one<T, 1, 2>(p, stream);
  }
  return Status::Invalid("bad mode");
}

}  // namespace

Status ensure_smem_limit(const void* kernel, size_t bytes) {
  // The opt-in is needed when static + dynamic shared memory exceeds 48 KB:
  // the kernels' static __shared__ (tile info, row tables, scan storage) counts
  // too, so compare the sum, not the dynamic bytes alone.
  static std::mutex mu;
  static std::unordered_map<const void*, std::pair<size_t, size_t>> done;  // kernel -> (static, opted-in dynamic)
  std::lock_guard<std::mutex> lock(mu);
  auto it = done.find(kernel);
  if (it == done.end()) {
    cudaFuncAttributes attr{};
    cudaError_t e = cudaFuncGetAttributes(&attr, kernel);
    if (e != cudaSuccess) return Status::DeviceError(std::string("cudaFuncGetAttributes: ") + cudaGetErrorString(e));
    it = done.emplace(kernel, std::make_pair(attr.sharedSizeBytes, size_t{0})).first;
  }
  const size_t static_bytes = it->second.first;
  if (static_bytes + bytes <= 48 * 1024 || it->second.second >= bytes) return Status::Ok();
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (e != cudaSuccess) return Status::DeviceError(std::string("cudaFuncSetAttribute: ") + cudaGetErrorString(e));
  it->second.second = bytes;
  return Status::Ok();
}

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 132;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || v <= 0) return 132;
    return v;
  }();
  return n;
}

long long tile_slots(const KParams& p) {
  if (p.S <= 0 || p.capacity <= 0 || p.max_seg_len <= 0 || p.M_T <= 0) return 0;
  const long long n = p.nseg_dev != nullptr ? p.capacity : p.nseg_host;
  if (n <= 0) return 0;
  const long long per_seg = (static_cast<long long>(p.max_seg_len) + p.M_T - 1) / p.M_T;
  const long long a = n * per_seg;
  const long long b = static_cast<long long>(p.S) / p.M_T + n;
  return a < b ? a : b;
}

Status launch_generic(const KParams& p, DType dt, Side side, Mode mode, cudaStream_t stream) {
  if (mode == Mode::fused && p.r_max > kFusedMaxRank)
    return Status::NotSupported("generic fused kernel: r_max > " + std::to_string(kFusedMaxRank));
  switch (dt) {
    case DType::f32: return launch_typed<float>(p, side, mode, stream);
    case DType::f16: return launch_typed<__half>(p, side, mode, stream);
    case DType::bf16: return launch_typed<__nv_bfloat16>(p, side, mode, stream);
  }
  return Status::Invalid("bad dtype");
}

}  // namespace mlalora::optimized::detail
