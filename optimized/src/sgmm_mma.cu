// Tensor-core SGMM kernels for bf16 / f16 (mma.sync m16n8k16, fp32 accumulate).
//
// Tile: ROWS = 16*MR (token, head) rows of one segment, MR in {1, 4}:
// M_T tokens x H_T heads (powers of two, M_T*H_T = ROWS), row rho = hh*M_T + tt.
// 256 threads = 8 warps. The rank-r intermediate Y (ROWS x r, rounded to the
// act dtype) lives in shared memory (Ys) between the two stages.
//
// q side (q_nope_out += s * (q_nope @ B_kc[h]) @ A):
//   Q1 per head:  Y^T[j, tok] = B_kc[h]^T @ X_h^T   (M = j, N = 8 tokens, K = D_qk)
//       X tile in smem (cp.async); weights straight from global with 16-byte
//       loads along j, transposed in registers by movmatrix (this permutes the
//       j order inside each 32-block, undone when Y is stored).
//   Q2 shared A:  Z[rho, c] = Y @ A                 (M = rows, N = R_kv in 64-col chunks, K = r)
//       A chunks double-buffered in smem (cp.async), Y fragments by ldmatrix.
// v side (attn_bmm_out += s * (attn_latent @ A^T) @ B_vc[h]^T):
//   V1 shared A:  Y[rho, j] = X @ A^T               (M = rows, N = j, K = R_kv)
//       both operands straight from global with 16-byte loads along K; the
//       K order inside each 32-block is permuted identically in both.
//   V2 per head:  Z^T[d, tok] = B_vc[h] @ Y_h^T     (M = d in 64-row chunks, N = 8 tokens, K = r)
//       weights straight from global (16-byte loads along K=j), Y by 16-byte
//       shared loads with the same K permutation.
// Epilogue: Z (fp32) staged in smem, then a coalesced read-modify-write of the
// output with 16-byte accesses: out = round(fmaf(s, z, out)). Each output
// element is written by exactly one thread; rows that are not live are skipped.
//
// Split path: step_a = stage 1 then Y -> intermediate (S, H, r_max) by logical
// row; step_b = intermediate -> Ys then stage 2. Same rounding as fused.
// r_max <= 128 (RJ32 = ceil(r_max/32) in {2, 4}); larger ranks use the generic kernels.
#include <algorithm>
#include <cstdint>
#include <string>

#include "sgmm_kernels.hpp"
#include "sgmm_ptx.cuh"

namespace mlalora::optimized::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kNC = 64;       // output columns per epilogue chunk
constexpr int kMaxRank = 128;  // RJ32 <= 4
constexpr int kMaxXCols = 512;  // D_qk bound of the q kernel's X tile

using namespace ptx;  // PTX wrappers and Mma<T> (sgmm_ptx.cuh)


// 8 consecutive 16-bit elements from global, the first n valid (n <= 0: all
// zero). Vector load only when allowed (host-checked alignment) and complete.
template <bool RO, typename T>
__device__ __forceinline__ uint4 ld8(const T* p, int n, bool vec) {
  if (n >= 8 && vec) {
    if (RO) return __ldg(reinterpret_cast<const uint4*>(p));
    return *reinterpret_cast<const uint4*>(p);
  }
  const unsigned short* q = reinterpret_cast<const unsigned short*>(p);
  uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if (i < n) {
      const uint32_t v = RO ? static_cast<uint32_t>(__ldg(q + i)) : static_cast<uint32_t>(q[i]);
      w[i >> 1] |= v << (16 * (i & 1));
    }
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}
__device__ __forceinline__ int clamp8(int n) { return n < 0 ? 0 : (n > 8 ? 8 : n); }

// Copy 8 elements (first n valid, rest zero) global -> shared (16-byte aligned dst).
template <typename T>
__device__ __forceinline__ void copy8_to_smem(T* dst, const T* src, int n, bool vec) {
  if (n >= 8 && vec) {
    cp_async16(dst, src);
  } else {
    *reinterpret_cast<uint4*>(dst) = ld8<true>(src, n, false);
  }
}

// Row metadata of a tile (shared memory).
template <int ROWS>
struct Rows {
  int t[ROWS];  // physical token row, -1 when the row is not live
  int h[ROWS];  // head
  int i[ROWS];  // logical row
};

template <int ROWS>
__device__ __forceinline__ void init_rows(const KParams& p, const TileInfo& ti, int h0, Rows<ROWS>& rows) {
  const int tid = static_cast<int>(threadIdx.x);
  if (tid < ROWS) {
    const int hh = tid / p.M_T, tt = tid % p.M_T;
    const int h = h0 + hh, i = ti.tok_begin + tt;
    int t = -1;
    if (hh < p.H_T && tt < ti.tok_count && h < p.H) t = physical_row(p, i);
    rows.t[tid] = t;
    rows.h[tid] = h;
    rows.i[tid] = i;
  }
}

// Epilogue of one kNC-column chunk: out[row, c0 + c] = round(fmaf(s, Z[row, c], out)).
template <typename T, int ROWS>
struct Epilogue {
  static constexpr int CH = kNC / 8;
  static constexpr int ITEMS = (ROWS * CH + kThreads - 1) / kThreads;
  uint4 old[ITEMS];

  __device__ __forceinline__ void load(const KParams& p, const Rows<ROWS>& rows, int c0, int N) {
    T* O = static_cast<T*>(p.out);
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int idx = static_cast<int>(threadIdx.x) + it * kThreads;
      old[it] = make_uint4(0u, 0u, 0u, 0u);
      if (idx < ROWS * CH) {
        const int rho = idx / CH, c = c0 + (idx % CH) * 8, t = rows.t[rho];
        if (t >= 0 && c < N) old[it] = ld8<false>(O + t * p.os0 + rows.h[rho] * p.os1 + c, clamp8(N - c), p.vec != 0);
      }
    }
  }

  template <int ZS>
  __device__ __forceinline__ void store(const KParams& p, const Rows<ROWS>& rows, int c0, int N, const float* Zs,
                                        float s) {
    T* O = static_cast<T*>(p.out);
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int idx = static_cast<int>(threadIdx.x) + it * kThreads;
      if (idx < ROWS * CH) {
        const int rho = idx / CH, cl = (idx % CH) * 8, c = c0 + cl, t = rows.t[rho];
        if (t >= 0 && c < N) {
          const float4 z0 = *reinterpret_cast<const float4*>(Zs + rho * ZS + cl);
          const float4 z1 = *reinterpret_cast<const float4*>(Zs + rho * ZS + cl + 4);
          const uint4 o = old[it];
          uint4 w;
          w.x = Mma<T>::bits(fmaf(s, z0.x, Mma<T>::lo(o.x))) | (Mma<T>::bits(fmaf(s, z0.y, Mma<T>::hi(o.x))) << 16);
          w.y = Mma<T>::bits(fmaf(s, z0.z, Mma<T>::lo(o.y))) | (Mma<T>::bits(fmaf(s, z0.w, Mma<T>::hi(o.y))) << 16);
          w.z = Mma<T>::bits(fmaf(s, z1.x, Mma<T>::lo(o.z))) | (Mma<T>::bits(fmaf(s, z1.y, Mma<T>::hi(o.z))) << 16);
          w.w = Mma<T>::bits(fmaf(s, z1.z, Mma<T>::lo(o.w))) | (Mma<T>::bits(fmaf(s, z1.w, Mma<T>::hi(o.w))) << 16);
          T* dst = O + t * p.os0 + rows.h[rho] * p.os1 + c;
          const int n = clamp8(N - c);
          if (n == 8 && p.vec) {
            *reinterpret_cast<uint4*>(dst) = w;
          } else {
            unsigned short* d16 = reinterpret_cast<unsigned short*>(dst);
            const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int e = 0; e < 8; ++e)
              if (e < n) d16[e] = static_cast<unsigned short>(ws[e >> 1] >> (16 * (e & 1)));
          }
        }
      }
    }
  }
};

// Split path: Ys <-> intermediate (S, H, r_max), logical row major.
template <typename T, int ROWS, int RW, int YS>
__device__ __forceinline__ void ys_to_inter(const KParams& p, const Rows<ROWS>& rows, const T* Ys, int r) {
  T* inter = static_cast<T*>(p.inter);
  for (int idx = static_cast<int>(threadIdx.x); idx < ROWS * RW; idx += kThreads) {
    const int rho = idx / RW, j = idx % RW;
    if (j < r && rows.t[rho] >= 0)
      inter[(static_cast<long long>(rows.i[rho]) * p.H + rows.h[rho]) * p.r_max + j] = Ys[rho * YS + j];
  }
}
template <typename T, int ROWS, int RW, int YS>
__device__ __forceinline__ void inter_to_ys(const KParams& p, const Rows<ROWS>& rows, T* Ys, int r) {
  const T* inter = static_cast<const T*>(p.inter);
  for (int idx = static_cast<int>(threadIdx.x); idx < ROWS * RW; idx += kThreads) {
    const int rho = idx / RW, j = idx % RW;
    T v = Elem<T>::from_f(0.f);
    if (j < r && rows.t[rho] >= 0) v = inter[(static_cast<long long>(rows.i[rho]) * p.H + rows.h[rho]) * p.r_max + j];
    Ys[rho * YS + j] = v;
  }
}

// ==== q side =======================================================================
template <int MR, int RJ32, int MODE>
struct QLayout {
  static constexpr int ROWS = 16 * MR, RW = 32 * RJ32, YS = RW + 8, AS = kNC + 8, ZS = 72;
  static constexpr bool kStage1 = MODE != static_cast<int>(Mode::step_b);
  static constexpr bool kStage2 = MODE != static_cast<int>(Mode::step_a);
  static __host__ __device__ int xs_stride(int D_qk) { return ((D_qk + 15) / 16) * 16 + 8; }
  static __host__ __device__ size_t ys_bytes() { return sizeof(uint16_t) * ROWS * YS; }
  static __host__ __device__ size_t as_bytes() { return kStage2 ? sizeof(uint16_t) * 2 * RW * AS : 0; }
  static __host__ __device__ size_t xz_bytes(int D_qk) {
    size_t x = kStage1 ? sizeof(uint16_t) * ROWS * xs_stride(D_qk) : 0;
    size_t z = kStage2 ? sizeof(float) * ROWS * ZS : 0;
    return x > z ? x : z;
  }
  static __host__ __device__ size_t smem_bytes(int D_qk) { return ys_bytes() + as_bytes() + xz_bytes(D_qk); }
};

template <typename T, int MR, int RJ32, int MODE>
__global__ void __launch_bounds__(kThreads, 2) mma_q_kernel(const KParams p) {
  using Lay = QLayout<MR, RJ32, MODE>;
  constexpr int ROWS = Lay::ROWS, RW = Lay::RW, YS = Lay::YS, AS = Lay::AS, ZS = Lay::ZS;
  constexpr int RJ = 2 * RJ32;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ TileInfo ti;
  __shared__ Rows<ROWS> rows;

  if (!find_tile<kThreads>(p, static_cast<long long>(blockIdx.x), &ti, smem)) return;  // smem: free until staged
  const int h0 = static_cast<int>(blockIdx.y) * p.H_T;
  init_rows<ROWS>(p, ti, h0, rows);

  T* Ys = reinterpret_cast<T*>(smem);
  T* As = reinterpret_cast<T*>(smem + Lay::ys_bytes());
  unsigned char* xz = smem + Lay::ys_bytes() + Lay::as_bytes();
  T* Xs = reinterpret_cast<T*>(xz);
  float* Zs = reinterpret_cast<float*>(xz);
  __syncthreads();

  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  const int r = ti.rank;
  const bool vec = p.vec != 0;
  const T* Al = static_cast<const T*>(p.A) + static_cast<long long>(ti.slot) * p.As0;
  const T* Bl = static_cast<const T*>(p.B) + static_cast<long long>(ti.slot) * p.Bs0;
  const long long F = static_cast<long long>(p.D_qk) + p.D_v;
  const int XS = Lay::xs_stride(p.D_qk);
  const int nchunks = (p.R_kv + kNC - 1) / kNC;

  // A chunk: rows j < RW (zero for j >= r), columns [c0, c0 + kNC) (zero past R_kv).
  auto load_a_chunk = [&](int chunk, int buf) {
    const int c0 = chunk * kNC;
    T* dst0 = As + buf * RW * AS;
    for (int idx = tid; idx < RW * (kNC / 8); idx += kThreads) {
      const int j = idx / (kNC / 8), cl = (idx % (kNC / 8)) * 8, c = c0 + cl;
      T* dst = dst0 + j * AS + cl;
      const int n = j < r ? clamp8(p.R_kv - c) : 0;
      if (n > 0) copy8_to_smem(dst, Al + j * p.As1 + c, n, vec);
      else *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
  };

  // ---- group 0: X tile; group 1: A chunk 0 ----
  if (Lay::kStage1) {
    const T* X = static_cast<const T*>(p.x);
    const int xch = (XS - 8) / 8;
    for (int idx = tid; idx < ROWS * xch; idx += kThreads) {
      const int rho = idx / xch, d = (idx % xch) * 8, t = rows.t[rho];
      T* dst = Xs + rho * XS + d;
      const int n = t >= 0 ? clamp8(p.D_qk - d) : 0;
      if (n > 0) copy8_to_smem(dst, X + t * p.xs0 + rows.h[rho] * p.xs1 + d, n, vec);
      else *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
  }
  cp_async_commit();
  if (Lay::kStage2) load_a_chunk(0, 0);
  cp_async_commit();

  if (Lay::kStage1) {
    cp_async_wait<1>();
    __syncthreads();
    // ---- Q1: Y^T = B_kc[h]^T @ X_h^T, one unit = (8-token column of one head, 32 j) ----
    const int ncph = (p.M_T + 7) / 8;    // columns per head
    const int ncols = p.H_T * ncph;
    const int njg = (r + 31) / 32;       // live 32-j groups
    for (int u = warp; u < ncols * RJ32; u += kThreads / 32) {
      const int col = u / RJ32, jg = u % RJ32;
      const int hh = col / ncph, ni = col % ncph;
      const int h = h0 + hh, rho0 = hh * p.M_T + ni * 8;
      const bool live = h < p.H && ni * 8 < ti.tok_count;
      float acc[2][4];
#pragma unroll
      for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[m][e] = 0.f;
      if (live && jg < njg) {
        const T* Wh = Bl + static_cast<long long>(h) * F * p.Bs1;
        const int jb = jg * 32 + 8 * t4;
        const int nj = clamp8(r - jb);
        const int xrow = min(rho0 + (lane & 7), ROWS - 1);
        const T* xbase = Xs + xrow * XS + ((lane >> 3) & 1) * 8;
#pragma unroll 2
        for (int d0 = 0; d0 < p.D_qk; d0 += 16) {
          const int da = d0 + g, db = d0 + 8 + g;
          const uint4 w0 = ld8<true>(Wh + da * p.Bs1 + jb, da < p.D_qk ? nj : 0, vec);
          const uint4 w1 = ld8<true>(Wh + db * p.Bs1 + jb, db < p.D_qk ? nj : 0, vec);
          uint32_t b0, b1;
          ldsm_x2(b0, b1, xbase + d0);
          Mma<T>::run(acc[0], movtrans(w0.x), movtrans(w0.y), movtrans(w1.x), movtrans(w1.y), b0, b1);
          Mma<T>::run(acc[1], movtrans(w0.z), movtrans(w0.w), movtrans(w1.z), movtrans(w1.w), b0, b1);
        }
      }
      if (h < p.H) {
        // C row g of m-tile mt -> j = jg*32 + 8*(g/2) + 4*mt + (g&1); row g+8 -> +2. Col -> token.
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
          for (int hr = 0; hr < 2; ++hr) {
            const int j = jg * 32 + 8 * (g >> 1) + 4 * mt + 2 * hr + (g & 1);
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int tt = ni * 8 + 2 * t4 + e;
              if (tt < p.M_T) {
                const float v = j < r ? acc[mt][2 * hr + e] : 0.f;
                Ys[(rho0 + 2 * t4 + e) * YS + j] = Elem<T>::from_f(v);
              }
            }
          }
        }
      }
    }
    __syncthreads();
    if (MODE == static_cast<int>(Mode::step_a)) {
      ys_to_inter<T, ROWS, RW, YS>(p, rows, Ys, r);
      return;
    }
  } else {
    inter_to_ys<T, ROWS, RW, YS>(p, rows, Ys, r);
    __syncthreads();
  }

  if (Lay::kStage2) {
    // ---- Q2: Z = Y @ A over kNC-column chunks ----
    constexpr int NPW = MR;  // n-tiles per warp: (kNC/8) * MR / 8
    const int mi = warp % MR, nq = warp / MR;
    uint32_t af[RJ][4];
#pragma unroll
    for (int kk = 0; kk < RJ; ++kk) {
      if (kk * 16 < r) {
        const int row = mi * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int colk = kk * 16 + (lane >> 4) * 8;
        ldsm_x4(af[kk], Ys + row * YS + colk);
      } else {
        af[kk][0] = af[kk][1] = af[kk][2] = af[kk][3] = 0u;
      }
    }
    const float s = ti.scale;
    Epilogue<T, ROWS> epi;
    for (int chunk = 0; chunk < nchunks; ++chunk) {
      const int buf = chunk & 1, c0 = chunk * kNC;
      if (chunk + 1 < nchunks) load_a_chunk(chunk + 1, buf ^ 1);
      cp_async_commit();
      epi.load(p, rows, c0, p.R_kv);
      cp_async_wait<1>();
      __syncthreads();
      const T* Ab = As + buf * RW * AS;
      float acc[NPW][4];
#pragma unroll
      for (int q = 0; q < NPW; ++q)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[q][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < RJ; ++kk) {
        if (kk * 16 < r) {
          if (NPW == 1) {
            uint32_t b0, b1;
            ldsm_x2_t(b0, b1, Ab + (kk * 16 + (lane & 15)) * AS + nq * 8);
            Mma<T>::run(acc[0], af[kk][0], af[kk][1], af[kk][2], af[kk][3], b0, b1);
          } else {
#pragma unroll
            for (int q = 0; q < NPW; q += 2) {
              uint32_t b[4];
              ldsm_x4_t(b, Ab + (kk * 16 + (lane & 15)) * AS + (nq * NPW + q) * 8 + (lane >> 4) * 8);
              Mma<T>::run(acc[q], af[kk][0], af[kk][1], af[kk][2], af[kk][3], b[0], b[1]);
              Mma<T>::run(acc[q + 1], af[kk][0], af[kk][1], af[kk][2], af[kk][3], b[2], b[3]);
            }
          }
        }
      }
#pragma unroll
      for (int q = 0; q < NPW; ++q) {
        const int cl = (nq * NPW + q) * 8 + 2 * t4;
        const int ra = mi * 16 + g;
        *reinterpret_cast<float2*>(Zs + ra * ZS + cl) = make_float2(acc[q][0], acc[q][1]);
        *reinterpret_cast<float2*>(Zs + (ra + 8) * ZS + cl) = make_float2(acc[q][2], acc[q][3]);
      }
      __syncthreads();
      epi.template store<ZS>(p, rows, c0, p.R_kv, Zs, s);
      // The next iteration's __syncthreads (after its wait) orders these Zs
      // reads before the next Zs writes, and this iteration's As reads before
      // the next prefetch into the same buffer.
      __syncthreads();
    }
  }
}

// ==== v side =======================================================================
template <int MR, int RJ32, int MODE>
struct VLayout {
  static constexpr int ROWS = 16 * MR, RW = 32 * RJ32, YS = RW + 8, ZS = 68;
  static constexpr bool kStage1 = MODE != static_cast<int>(Mode::step_b);
  static constexpr bool kStage2 = MODE != static_cast<int>(Mode::step_a);
  static __host__ __device__ size_t ys_bytes() { return sizeof(uint16_t) * ROWS * YS; }
  static __host__ __device__ size_t smem_bytes() { return ys_bytes() + (kStage2 ? sizeof(float) * ROWS * ZS : 0); }
};

template <typename T, int MR, int RJ32, int MODE>
__global__ void __launch_bounds__(kThreads, 2) mma_v_kernel(const KParams p) {
  using Lay = VLayout<MR, RJ32, MODE>;
  constexpr int ROWS = Lay::ROWS, RW = Lay::RW, YS = Lay::YS, ZS = Lay::ZS;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ TileInfo ti;
  __shared__ Rows<ROWS> rows;

  if (!find_tile<kThreads>(p, static_cast<long long>(blockIdx.x), &ti, smem)) return;  // smem: free until staged
  const int h0 = static_cast<int>(blockIdx.y) * p.H_T;
  init_rows<ROWS>(p, ti, h0, rows);
  T* Ys = reinterpret_cast<T*>(smem);
  float* Zs = reinterpret_cast<float*>(smem + Lay::ys_bytes());
  __syncthreads();

  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  const int r = ti.rank;
  const bool vec = p.vec != 0;
  const T* Al = static_cast<const T*>(p.A) + static_cast<long long>(ti.slot) * p.As0;
  const T* Bl = static_cast<const T*>(p.B) + static_cast<long long>(ti.slot) * p.Bs0;
  const long long F = static_cast<long long>(p.D_qk) + p.D_v;

  if (Lay::kStage1) {
    // ---- V1: Y = X @ A^T; warp = (m-tile mi, n-tiles [nq*NPW, +NPW)) ----
    constexpr int NPW = RJ32 * MR / 2;  // (RW/8) * MR / 8
    const int mi = warp % MR, nq = warp / MR;
    const int ra = mi * 16 + g, rb = ra + 8;
    const int ta = rows.t[ra], tb = rows.t[rb];
    const T* X = static_cast<const T*>(p.x);
    const T* xa = X + (ta >= 0 ? ta * p.xs0 + rows.h[ra] * p.xs1 : 0);
    const T* xb = X + (tb >= 0 ? tb * p.xs0 + rows.h[rb] * p.xs1 : 0);
    // Weight row j = (nq*NPW + q)*8 + g of n-tile q: A[l][j][:].
    const int j0 = nq * NPW * 8 + g;
    const T* wbase = Al + static_cast<long long>(j0) * p.As1;
    const long long wstep = 8 * p.As1;
    float acc[NPW][4];
#pragma unroll
    for (int q = 0; q < NPW; ++q)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[q][e] = 0.f;
    const bool any_live = (nq * NPW) * 8 < r;  // warp-uniform
    constexpr int kUnroll = NPW >= 8 ? 1 : 2;  // keep the hoisted loads within the register budget
    if (any_live) {
#pragma unroll kUnroll
      for (int k0 = 0; k0 < p.R_kv; k0 += 32) {
        const int kk = k0 + 8 * t4;
        const int nk = clamp8(p.R_kv - kk);
        const uint4 va = ld8<true>(xa + kk, ta >= 0 ? nk : 0, vec);
        const uint4 vb = ld8<true>(xb + kk, tb >= 0 ? nk : 0, vec);
#pragma unroll
        for (int q = 0; q < NPW; ++q) {
          if ((nq * NPW + q) * 8 < r) {  // warp-uniform
            const uint4 w = ld8<true>(wbase + q * wstep + kk, j0 + 8 * q < r ? nk : 0, vec);
            Mma<T>::run(acc[q], va.x, vb.x, va.y, vb.y, w.x, w.y);
            Mma<T>::run(acc[q], va.z, vb.z, va.w, vb.w, w.z, w.w);
          }
        }
      }
    }
#pragma unroll
    for (int q = 0; q < NPW; ++q) {
      const int j = (nq * NPW + q) * 8 + 2 * t4;
      const float v0 = j < r ? acc[q][0] : 0.f, v1 = j + 1 < r ? acc[q][1] : 0.f;
      const float v2 = j < r ? acc[q][2] : 0.f, v3 = j + 1 < r ? acc[q][3] : 0.f;
      *reinterpret_cast<uint32_t*>(Ys + ra * YS + j) = Mma<T>::bits(v0) | (Mma<T>::bits(v1) << 16);
      *reinterpret_cast<uint32_t*>(Ys + rb * YS + j) = Mma<T>::bits(v2) | (Mma<T>::bits(v3) << 16);
    }
    __syncthreads();
    if (MODE == static_cast<int>(Mode::step_a)) {
      ys_to_inter<T, ROWS, RW, YS>(p, rows, Ys, r);
      return;
    }
  } else {
    inter_to_ys<T, ROWS, RW, YS>(p, rows, Ys, r);
    __syncthreads();
  }

  if (Lay::kStage2) {
    // ---- V2: Z^T = B_vc[h] @ Y_h^T per 64-d chunk; unit = 8-token column of one head ----
    const int ncph = (p.M_T + 7) / 8;
    const int ncols = p.H_T * ncph;
    const float s = ti.scale;
    const int nchunks = (p.D_v + kNC - 1) / kNC;
    Epilogue<T, ROWS> epi;
    for (int chunk = 0; chunk < nchunks; ++chunk) {
      const int dc = chunk * kNC;
      epi.load(p, rows, dc, p.D_v);
      for (int col = warp; col < ncols; col += kThreads / 32) {
        const int hh = col / ncph, ni = col % ncph;
        const int h = h0 + hh, rho0 = hh * p.M_T + ni * 8;
        if (h >= p.H || ni * 8 >= ti.tok_count) continue;  // warp-uniform; rows not live
        const T* Wh = Bl + (static_cast<long long>(h) * F + p.D_qk) * p.Bs1;
        float acc[4][4];
#pragma unroll
        for (int m = 0; m < 4; ++m)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[m][e] = 0.f;
        const int yrow = min(rho0 + g, ROWS - 1);
        for (int jb = 0; jb < r; jb += 32) {
          const int jj = jb + 8 * t4;
          const int nj = clamp8(r - jj);
          const uint4 y = *reinterpret_cast<const uint4*>(Ys + yrow * YS + jj);
#pragma unroll
          for (int mt = 0; mt < 4; ++mt) {
            const int da = dc + mt * 16 + g, db = da + 8;
            const uint4 w0 = ld8<true>(Wh + static_cast<long long>(da < p.D_v ? da : 0) * p.Bs1 + jj, da < p.D_v ? nj : 0, vec);
            const uint4 w1 = ld8<true>(Wh + static_cast<long long>(db < p.D_v ? db : 0) * p.Bs1 + jj, db < p.D_v ? nj : 0, vec);
            Mma<T>::run(acc[mt], w0.x, w1.x, w0.y, w1.y, y.x, y.y);
            Mma<T>::run(acc[mt], w0.z, w1.z, w0.w, w1.w, y.z, y.w);
          }
        }
        // C: rows d = dc + mt*16 + g (+8), cols token 2*t4 + e of the column.
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int tt = ni * 8 + 2 * t4 + e;
          if (tt < p.M_T) {
            float* zr = Zs + (rho0 + 2 * t4 + e) * ZS;
#pragma unroll
            for (int mt = 0; mt < 4; ++mt) {
              zr[mt * 16 + g] = acc[mt][e];
              zr[mt * 16 + g + 8] = acc[mt][2 + e];
            }
          }
        }
      }
      __syncthreads();
      epi.template store<ZS>(p, rows, dc, p.D_v, Zs, s);
      __syncthreads();
    }
  }
}

// ==== host side ======================================================================

int pow2_at_least(long long v) {
  int x = 1;
  while (x < v && x < (1 << 30)) x <<= 1;
  return x;
}

// Tile shape for the launch: depends on the shape only (graph-safe).
void choose_tile(KParams& p, int& mr) {
  const int seg = pow2_at_least(p.max_seg_len < 1 ? 1 : p.max_seg_len);
  const int hp2 = pow2_at_least(p.H);
  auto config = [&](int rows) {
    int mt = seg < rows ? seg : rows;
    int ht = rows / mt;
    if (ht > hp2) {
      ht = hp2;
      mt = rows / ht;
    }
    p.M_T = mt;
    p.H_T = ht;
    p.n_hb = (p.H + ht - 1) / ht;
  };
  // Large tiles (64 rows) unless they would leave the GPU underfilled.
  config(64);
  const long long tiles64 = tile_slots(p) * p.n_hb;
  if (tiles64 >= 2 * 132) {
    mr = 4;
    return;
  }
  config(16);
  mr = 1;
}

bool vector_ok(const KParams& p, Side side) {
  auto a16 = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15u) == 0; };
  auto m8 = [](long long s, long long extent) { return extent <= 1 || (s % 8) == 0; };
  if (!a16(p.x) || !a16(p.out) || !a16(p.A) || !a16(p.B)) return false;
  if (!m8(p.xs0, p.S) || !m8(p.xs1, p.H) || !m8(p.os0, p.S) || !m8(p.os1, p.H)) return false;
  if (!m8(p.As0, p.L) || !m8(p.As1, p.r_max) || !m8(p.Bs0, p.L)) return false;
  if (!m8(p.Bs1, static_cast<long long>(p.H) * (p.D_qk + p.D_v))) return false;
  (void)side;
  return true;
}

template <typename Kern>
Status launch_kernel(Kern kern, dim3 grid, size_t smem, const KParams& p, cudaStream_t stream) {
  smem = std::max(smem, sizeof(SlotTable<kThreads>));  // find_tile's scratch
  MLALORA_RETURN_IF_ERROR(ensure_smem_limit(reinterpret_cast<const void*>(kern), smem));
  kern<<<grid, kThreads, smem, stream>>>(p);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return Status::DeviceError(std::string("SGMM mma kernel launch: ") + cudaGetErrorString(e));
  return Status::Ok();
}

template <typename T, int MR, int RJ32, int MODE>
Status launch_side(const KParams& p, Side side, dim3 grid, cudaStream_t stream) {
  if (side == Side::q) {
    const size_t smem = QLayout<MR, RJ32, MODE>::smem_bytes(p.D_qk);
    return launch_kernel(mma_q_kernel<T, MR, RJ32, MODE>, grid, smem, p, stream);
  }
  const size_t smem = VLayout<MR, RJ32, MODE>::smem_bytes();
  return launch_kernel(mma_v_kernel<T, MR, RJ32, MODE>, grid, smem, p, stream);
}

template <typename T, int MR, int RJ32>
Status launch_mode(const KParams& p, Side side, Mode mode, dim3 grid, cudaStream_t stream) {
  switch (mode) {
    case Mode::fused: return launch_side<T, MR, RJ32, 0>(p, side, grid, stream);
    case Mode::step_a: return launch_side<T, MR, RJ32, 1>(p, side, grid, stream);
    case Mode::step_b: return launch_side<T, MR, RJ32, 2>(p, side, grid, stream);
  }
  return Status::Invalid("bad mode");
}

template <typename T>
Status launch_typed(const KParams& p, Side side, Mode mode, int mr, cudaStream_t stream) {
  const long long slots = tile_slots(p);
  if (slots <= 0) return Status::Ok();
  if (slots > 0x7fffffffLL) return Status::NotSupported("SGMM mma kernel: too many tiles for one grid");
  if (p.n_hb > 65535) return Status::NotSupported("SGMM mma kernel: too many head blocks");
  dim3 grid(static_cast<unsigned>(slots), static_cast<unsigned>(p.n_hb));
  const bool small_rank = p.r_max <= 64;
  if (mr == 4) {
    return small_rank ? launch_mode<T, 4, 2>(p, side, mode, grid, stream) : launch_mode<T, 4, 4>(p, side, mode, grid, stream);
  }
  return small_rank ? launch_mode<T, 1, 2>(p, side, mode, grid, stream) : launch_mode<T, 1, 4>(p, side, mode, grid, stream);
}

}  // namespace

bool mma_eligible(const KParams& p, DType dt, Side side, Mode mode) {
  (void)mode;
  if (dt == DType::f32) return false;
  if (p.r_max > kMaxRank) return false;
  if (side == Side::q && p.D_qk > kMaxXCols) return false;
  return true;
}

Status launch_mma(const KParams& p0, DType dt, Side side, Mode mode, cudaStream_t stream) {
  KParams p = p0;
  int mr = 4;
  choose_tile(p, mr);
  p.vec = vector_ok(p, side) ? 1 : 0;
  if (dt == DType::bf16) return launch_typed<__nv_bfloat16>(p, side, mode, mr, stream);
  if (dt == DType::f16) return launch_typed<__half>(p, side, mode, mr, stream);
  return Status::NotSupported("SGMM mma kernels: f32");
}

}  // namespace mlalora::optimized::detail
