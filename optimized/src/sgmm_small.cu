// The small-batch kernels (bf16/f16, S <= kSmallMaxRows rows): the design
// the sixth session's measurements asked for (optimized/PERF.md, "Sixth
// session" and "Seventh session").
//
// At one to a few tokens the work is tiny and the time is latency: the
// launch, the dependent index loads, and one cold staging round of the
// weights, whose time grows with the bytes each SM takes in (the staging
// probe), not with the threads that issue them. So these kernels
//  - spread the call's weights thin over the grid, each weight byte staged
//    by about one block: q stage 1 stages B_kc by (head, rank columns),
//    v stage 1 stages A by (rank rows, head group), q stage 2 stages A by
//    (R_kv columns, head group), v stage 2 stages B_vc by (head, D_v rows);
//    the host picks each role's tile to minimise the bytes per SM;
//  - resolve the rows with two dependent loads (segment bounds and slot,
//    then rank and scale), done by every block at once;
//  - keep all 128 threads busy on CUDA cores: the contraction is split over
//    thread groups and summed in shared memory in a fixed order (a few
//    thousand FMAs per block);
//  - stage every byte with 16-byte cp.async issued before the first wait.
// The rank-r intermediate Y goes through the workspace (fp32 storage of the
// value rounded to the act dtype, by logical row), so there are two kernels:
// stage 1 (Y_q = X_q @ B_kc, Y_v = X_v @ A^T) and stage 2 (q_out += s * Y_q
// @ A, v_out += s * Y_v @ B_vc^T). Stage 2 is a programmatic dependent
// launch: its blocks resolve their rows and stage their weights and output
// tiles while stage 1 runs; only reading Y waits for stage 1.
// Rounding: the points of the other kernels (fp32 accumulation, Y rounded
// to the act dtype, one fmaf + one rounding per output element); only the
// order of the fp32 sums differs.
// Ranks: weights past a slot's rank are never read (zero-filled in shared
// memory) and Y past the rank is stored as 0, so NaN/Inf in unused weight
// rows cannot leak. Garbage index data: the segment filter of
// sgmm_common.cuh; a row that several processable segments cover takes the
// lowest-numbered one (updated once).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "mlalora/optimized/fast_trace.hpp"
#include "sgmm_fast.hpp"
#include "sgmm_ptx.cuh"
#include "sgmm_small.hpp"

// The index and staging loops stay rolled (MLALORA_SMALL_ROLLED=0 builds
// let the compiler unroll them): at one token a block's time is a chain of
// latencies, and rolling them cut the rows and staging phases by 0.3-0.5 us
// each (phase traces, PERF.md; the code fell from 51/65 KB to 28/32 KB;
// whether fewer instructions to fetch or to issue did it was not
// separated). Rolling the compute loops as well cost 1-2 us, so those stay
// unrolled.
#ifndef MLALORA_SMALL_ROLLED
#define MLALORA_SMALL_ROLLED 1
#endif
#if MLALORA_SMALL_ROLLED
#define MLALORA_SMALL_LOOP _Pragma("unroll 1")
#else
#define MLALORA_SMALL_LOOP
#endif

namespace mlalora::optimized::detail {
namespace {

constexpr int kThreads = 128;
constexpr int kNcontigRed = 8 * kThreads;  // floats of the n-contiguous roles' partial sums

// The four roles: stage 1 runs q1 and v1 blocks, stage 2 q2 and v2 blocks.
// n = the role's output column, k = its contraction index.
//   q1: Y_q[i,h,n]  = sum_k X_q[t,h,k] * B[l, h*F + k, n]          W n-contiguous, per head
//   v1: Y_v[i,h,n]  = sum_k X_v[t,h,k] * A[l, n, k]                W k-contiguous, all heads
//   q2: out_q[t,h,n] += s * sum_k Y_q[i,h,k] * A[l, k, n]           W n-contiguous, all heads
//   v2: out_v[t,h,n] += s * sum_k Y_v[i,h,k] * B[l, h*F+D_qk+n, k]  W k-contiguous, per head
enum RoleKind : int { kQ1 = 0, kV1 = 1, kQ2 = 2, kV2 = 3 };

// Geometry of one role (host-chosen, shape only). An item (= block) is
// (head group, column chunk); its compute has R = rows_pad * hg rows.
struct Role {
  int blocks = 0;    // items
  int nc = 8;        // output columns per item
  int hg = 1;        // heads per item
  int n_chunks = 1;  // column chunks per head group
  int R = 1;         // compute rows: rows_pad * hg
  int w_pitch = 0;   // shared-memory pitch of a weight tile's rows (elements)
  int w_elems = 0;   // elements of one weight tile (one per distinct slot)
  int x_pitch = 0;   // pitch of the staged input rows (act elements in stage 1, floats in stage 2)
  int off_x = 0, off_o = 0, off_red = 0;  // byte offsets in dynamic shared memory (weights at 0)
};

struct SmallArgs {
  KParams q, v;
  Role role[2];         // [0]: the q role, [1]: the v role; q blocks first
  float* y[2];          // Y_q, Y_v: (S, H, y_pitch) fp32, by logical row
  int y_pitch = 8;      // r_max rounded up to 8
};

// Per-row facts, resolved by every block (S <= kSmallMaxRows).
struct RowsSmem {
  unsigned long long key[kSmallMaxRows];  // (segment << 32 | slot) of the lowest processable segment
  int slot[kSmallMaxRows];                // -1: the row is not processed
  int rank[kSmallMaxRows];
  int phys[kSmallMaxRows];
  int first[kSmallMaxRows];               // first row with the same slot
  int tile[kSmallMaxRows];                // dense index of the row's weight tile
  float scale[kSmallMaxRows];
};

// 16-byte cp.async that reads `bytes` (0..16) and zero-fills the rest; with
// bytes == 0 nothing is read (src must still be a valid, aligned address).
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(ptx::smem_u32(smem)), "l"(gmem), "r"(bytes));
}


// ---- phase trace (MLALORA_FAST_TRACE builds only; fast_trace.hpp) ----------------------
// Per block of each stage: entry, rows resolved, then stage 1: its staged
// bytes landed / stage 2: griddepcontrol.wait returned, and the end (last
// warp, atomicMax). Records carry side 2 + role (q1, v1, q2, v2).
#ifndef MLALORA_FAST_TRACE
#define MLALORA_FAST_TRACE 0
#endif
struct SmallTraceSlot {
  unsigned long long ns[kFastTraceMarks];
  long long cycles[kFastTraceMarks];
  int role, smid;
};
#if MLALORA_FAST_TRACE
__device__ SmallTraceSlot g_small_trace[2][kFastTraceBlocks];
__device__ __forceinline__ unsigned long long small_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
template <int STAGE>
__device__ __forceinline__ void small_mark(int k) {
  if (threadIdx.x == 0 && blockIdx.x < kFastTraceBlocks) {
    SmallTraceSlot& s = g_small_trace[STAGE - 1][blockIdx.x];
    s.cycles[k] = clock64();
    s.ns[k] = small_ns();
  }
}
template <int STAGE>
__device__ __forceinline__ void small_entry(int role) {
  if (threadIdx.x == 0 && blockIdx.x < kFastTraceBlocks) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    g_small_trace[STAGE - 1][blockIdx.x].role = role;
    g_small_trace[STAGE - 1][blockIdx.x].smid = static_cast<int>(smid);
  }
  small_mark<STAGE>(0);
}
template <int STAGE>
__device__ __forceinline__ void small_end() {
  if ((threadIdx.x & 31) == 0 && blockIdx.x < kFastTraceBlocks) {
    SmallTraceSlot& s = g_small_trace[STAGE - 1][blockIdx.x];
    atomicMax(reinterpret_cast<unsigned long long*>(&s.cycles[3]), static_cast<unsigned long long>(clock64()));
    atomicMax(&s.ns[3], small_ns());
  }
}
#else
template <int STAGE>
__device__ __forceinline__ void small_mark(int) {}
template <int STAGE>
__device__ __forceinline__ void small_entry(int) {}
template <int STAGE>
__device__ __forceinline__ void small_end() {}
#endif

// `scratch`: the block's dynamic shared memory (at least the slot table),
// free until the barrier resolve_rows ends with.
__device__ void resolve_rows(const KParams& p, RowsSmem& s, void* scratch) {
  SlotTable<kThreads>& table = *static_cast<SlotTable<kThreads>*>(scratch);
  const int tid = static_cast<int>(threadIdx.x);
  // Round 1, all independent: the row's permutation entry, the first chunk
  // of segment data, every slot's rank and scale (L <= kThreads), the live count.
  const int t = tid < p.S ? physical_row(p, tid) : -1;
  int b0 = 0, e0 = 0, w0 = 0;
  if (tid < p.capacity) {
    b0 = __ldg(p.seg_indptr + tid);
    e0 = __ldg(p.seg_indptr + tid + 1);
    w0 = __ldg(p.weight_indices + tid);
  }
  const SlotEntry own = table.load(p);
  const int n = live_segments(p);
  if (tid < p.S) s.key[tid] = ~0ULL;
  table.publish(p, own);
  __syncthreads();
  MLALORA_SMALL_LOOP
  for (int g = tid; g < p.capacity; g += kThreads) {
    int b = b0, e = e0, w = w0;
    if (g != tid) {
      b = __ldg(p.seg_indptr + g);
      e = __ldg(p.seg_indptr + g + 1);
      w = __ldg(p.weight_indices + g);
    }
    if (g < n && b >= 0 && e > b && e <= p.S && e - b <= p.max_seg_len && w >= 0 && w < p.L) {
      const int r = table.get(p, w).rank;
      if (r >= 1 && r <= p.r_max)
        MLALORA_SMALL_LOOP
        for (int i = b; i < e; ++i)
          atomicMin(&s.key[i], (static_cast<unsigned long long>(g) << 32) | static_cast<unsigned>(w));
    }
  }
  __syncthreads();
  int slot = -1;
  if (tid < p.S) {
    const unsigned long long key = s.key[tid];
    SlotEntry se{0, 0.f};
    if (key != ~0ULL && t >= 0) {
      slot = static_cast<int>(key & 0xffffffffULL);
      se = table.get(p, slot);
    }
    s.slot[tid] = slot;
    s.rank[tid] = se.rank;
    s.scale[tid] = se.scale;
    s.phys[tid] = t;
  }
  __syncthreads();
  // Rows of one slot share one weight tile: first row of the slot, then a dense tile number.
  int first = tid;
  if (tid < p.S && slot >= 0) {
    MLALORA_SMALL_LOOP
    for (int j = 0; j < tid; ++j)
      if (s.slot[j] == slot) {
        first = j;
        break;
      }
    s.first[tid] = first;
  } else if (tid < p.S) {
    s.first[tid] = -1;
  }
  __syncthreads();
  if (tid < p.S && slot >= 0) {
    int d = 0;
    MLALORA_SMALL_LOOP
    for (int j = 0; j < first; ++j) d += s.first[j] == j;
    s.tile[tid] = d;
  }
  __syncthreads();
}

template <typename T>
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    f[2 * e] = ptx::Mma<T>::lo(w[e]);
    f[2 * e + 1] = ptx::Mma<T>::hi(w[e]);
  }
}

// One item of role K: stage (weights, inputs, output tile), compute, store.
template <typename T, int K>
__device__ void run_role(const KParams& p, const Role& ro, const SmallArgs& a, int item, const RowsSmem& rs,
                         unsigned char* smem) {
  constexpr bool kNcontig = K == kQ1 || K == kQ2;
  constexpr bool kStage2 = K == kQ2 || K == kV2;
  const int tid = static_cast<int>(threadIdx.x);
  const int chunk = item % ro.n_chunks;
  const int n0 = chunk * ro.nc;
  const int h0 = (item / ro.n_chunks) * ro.hg;
  const long long F = p.D_qk + p.D_v;
  const int S = p.S;
  T* Ws = reinterpret_cast<T*>(smem);
  const T* Wg = static_cast<const T*>(K == kV1 || K == kQ2 ? p.A : p.B);
  const int pieces_per_row = K == kQ1 || K == kQ2 ? ro.nc / 8 : (K == kV1 ? p.R_kv / 8 : a.y_pitch / 8);
  const int tile_rows = K == kQ1 ? p.D_qk : (K == kQ2 ? p.r_max : ro.nc);

  // ---- weights: one tile per distinct slot; bytes past the rank zero-filled, never read
  MLALORA_SMALL_LOOP
  for (int i = 0; i < S; ++i) {
    if (rs.slot[i] < 0 || rs.first[i] != i) continue;
    const long long l = rs.slot[i];
    const int rank = rs.rank[i];
    T* tile = Ws + static_cast<size_t>(rs.tile[i]) * ro.w_elems;
    MLALORA_SMALL_LOOP
    for (int pc = tid; pc < tile_rows * pieces_per_row; pc += kThreads) {
      const int row = pc / pieces_per_row, c = (pc % pieces_per_row) * 8;
      const T* src = Wg;
      int bytes = 0;
      if (K == kQ1) {  // B_kc[h0] row k = row, columns n0 + c ..
        const int left = rank - (n0 + c);
        bytes = left <= 0 ? 0 : (left >= 8 ? 16 : 2 * left);
        if (bytes > 0) src = Wg + l * p.Bs0 + (static_cast<long long>(h0) * F + row) * p.Bs1 + n0 + c;
      } else if (K == kV1) {  // A row n0 + row, k = c ..
        if (n0 + row < rank) {
          bytes = 16;
          src = Wg + l * p.As0 + static_cast<long long>(n0 + row) * p.As1 + c;
        }
      } else if (K == kQ2) {  // A row k = row, columns n0 + c ..; rows >= rank are never read
        if (row >= rank) continue;
        bytes = 16;
        src = Wg + l * p.As0 + static_cast<long long>(row) * p.As1 + n0 + c;
      } else {  // kV2: B_vc[h0] row d = n0 + row, k = c ..
        const int left = rank - c;
        bytes = left <= 0 ? 0 : (left >= 8 ? 16 : 2 * left);
        if (bytes > 0) src = Wg + l * p.Bs0 + (static_cast<long long>(h0) * F + p.D_qk + n0 + row) * p.Bs1 + c;
      }
      cp_async16_zfill(tile + row * ro.w_pitch + c, src, bytes);
    }
  }
  // ---- stage 1: the input rows (act); stage 2: the output tile (act)
  {
    const T* xg = static_cast<const T*>(p.x);
    const T* og = static_cast<const T*>(p.out);
    T* dst_base = reinterpret_cast<T*>(smem + (kStage2 ? ro.off_o : ro.off_x));
    const int len = kStage2 ? ro.nc : (K == kQ1 ? p.D_qk : p.R_kv);
    const int pitch = kStage2 ? ro.nc : ro.x_pitch;
    const int per_row = len / 8;
    MLALORA_SMALL_LOOP
    for (int pc = tid; pc < ro.R * per_row; pc += kThreads) {
      const int rho = pc / per_row, c = (pc % per_row) * 8;
      const int i = rho / ro.hg, h = h0 + rho % ro.hg;
      if (i >= S || h >= p.H || rs.slot[i] < 0) continue;
      const long long t = rs.phys[i];
      const T* src = kStage2 ? og + t * p.os0 + h * p.os1 + n0 + c : xg + t * p.xs0 + h * p.xs1 + c;
      ptx::cp_async16(dst_base + rho * pitch + c, src);
    }
  }
  ptx::cp_async_commit();
  // ---- stage 2: Y of stage 1 (after it has completed)
  if (kStage2) {
    ptx::wait_for_prior_grid();
    small_mark<2>(2);
    const float* yg = a.y[K == kQ2 ? 0 : 1];
    float* dst_base = reinterpret_cast<float*>(smem + ro.off_x);
    const int per_row = a.y_pitch / 4;
    MLALORA_SMALL_LOOP
    for (int pc = tid; pc < ro.R * per_row; pc += kThreads) {
      const int rho = pc / per_row, c = (pc % per_row) * 4;
      const int i = rho / ro.hg, h = h0 + rho % ro.hg;
      if (i >= S || h >= p.H || rs.slot[i] < 0) continue;
      ptx::cp_async16(dst_base + rho * ro.x_pitch + c, yg + (static_cast<long long>(i) * p.H + h) * a.y_pitch + c);
    }
    ptx::cp_async_commit();
  }
  ptx::cp_async_wait<0>();
  __syncthreads();
  if (!kStage2) small_mark<1>(2);

  // ---- compute: thread = (k-slice ksi, compute row rho, column or 8-column vector)
  float* red = reinterpret_cast<float*>(smem + ro.off_red);
  const int vecs = kNcontig ? ro.nc / 8 : ro.nc;  // n-contiguous: 8 columns per thread
  const int units = ro.R * vecs;
  const int ks = kThreads / units;
  const int ksi = tid / units, rem = tid % units;
  const int rho = rem / vecs, v = rem % vecs;
  const int i = rho / ro.hg, h = h0 + rho % ro.hg;
  const bool live = ksi < ks && i < S && h < p.H && rs.slot[i] >= 0;
  if (kNcontig) {
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (live) {
      const T* w = Ws + static_cast<size_t>(rs.tile[i]) * ro.w_elems + v * 8;
      const int kend = K == kQ1 ? p.D_qk : rs.rank[i];
      const T* xa = reinterpret_cast<const T*>(smem + ro.off_x) + rho * ro.x_pitch;
      const float* xf = reinterpret_cast<const float*>(smem + ro.off_x) + rho * ro.x_pitch;
#pragma unroll 4
      for (int k = ksi; k < kend; k += ks) {
        const float x = K == kQ1 ? Elem<T>::to_f(xa[k]) : xf[k];
        float wf[8];
        unpack8<T>(*reinterpret_cast<const uint4*>(w + k * ro.w_pitch), wf);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] = fmaf(x, wf[e], acc[e]);
      }
    }
    if (ksi < ks)
#pragma unroll
      for (int e = 0; e < 8; ++e) red[(ksi * units + rem) * 8 + e] = acc[e];
  } else {
    float acc = 0.f;
    if (live) {
      const T* w = Ws + static_cast<size_t>(rs.tile[i]) * ro.w_elems + v * ro.w_pitch;
      const int kvend = K == kV1 ? p.R_kv / 8 : (rs.rank[i] + 7) / 8;
      const T* xa = reinterpret_cast<const T*>(smem + ro.off_x) + rho * ro.x_pitch;
      const float* xf = reinterpret_cast<const float*>(smem + ro.off_x) + rho * ro.x_pitch;
#pragma unroll 4
      for (int kv = ksi; kv < kvend; kv += ks) {
        float wf[8], xv[8];
        unpack8<T>(*reinterpret_cast<const uint4*>(w + kv * 8), wf);
        if (K == kV1) {
          unpack8<T>(*reinterpret_cast<const uint4*>(xa + kv * 8), xv);
        } else {
          const float4 x0 = *reinterpret_cast<const float4*>(xf + kv * 8);
          const float4 x1 = *reinterpret_cast<const float4*>(xf + kv * 8 + 4);
          xv[0] = x0.x, xv[1] = x0.y, xv[2] = x0.z, xv[3] = x0.w;
          xv[4] = x1.x, xv[5] = x1.y, xv[6] = x1.z, xv[7] = x1.w;
        }
#pragma unroll
        for (int e = 0; e < 8; ++e) acc = fmaf(xv[e], wf[e], acc);
      }
    }
    if (ksi < ks) red[ksi * units + rem] = acc;
  }
  __syncthreads();

  // ---- fixed-order sum over the k-slices, then the epilogue
  const int outs = ro.R * ro.nc;
  for (int o = tid; o < outs; o += kThreads) {
    const int orho = o / ro.nc, n = o % ro.nc;
    const int oi = orho / ro.hg, oh = h0 + orho % ro.hg;
    if (oi >= S || oh >= p.H || rs.slot[oi] < 0) continue;
    float sum = 0.f;
    for (int s = 0; s < ks; ++s) sum += red[s * outs + o];
    const int ng = n0 + n;
    if (!kStage2) {
      if (ng >= a.y_pitch) continue;
      a.y[K == kQ1 ? 0 : 1][(static_cast<long long>(oi) * p.H + oh) * a.y_pitch + ng] =
          ng < rs.rank[oi] ? round_through<T>(sum) : 0.f;
    } else {
      const T* os = reinterpret_cast<const T*>(smem + ro.off_o);
      T* out = static_cast<T*>(p.out) + static_cast<long long>(rs.phys[oi]) * p.os0 + oh * p.os1 + ng;
      *out = Elem<T>::from_f(fmaf(rs.scale[oi], sum, Elem<T>::to_f(os[orho * ro.nc + n])));
    }
  }
}

template <typename T, int STAGE>
__global__ void __launch_bounds__(kThreads) small_kernel(const SmallArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ RowsSmem rs;
  if (STAGE == 1) ptx::allow_next_grid();
  const int b = static_cast<int>(blockIdx.x);
  const bool q = b < a.role[0].blocks;
  small_entry<STAGE>(q ? (STAGE == 1 ? kQ1 : kQ2) : (STAGE == 1 ? kV1 : kV2));
  resolve_rows(q ? a.q : a.v, rs, smem);
  small_mark<STAGE>(1);
  if (q)
    run_role<T, STAGE == 1 ? kQ1 : kQ2>(a.q, a.role[0], a, b, rs, smem);
  else
    run_role<T, STAGE == 1 ? kV1 : kV2>(a.v, a.role[1], a, b - a.role[0].blocks, rs, smem);
  small_end<STAGE>();
}

// ---- host side -------------------------------------------------------------------------

int pow2_at_least(int x) {
  int p = 1;
  while (p < x) p *= 2;
  return p;
}
int round_up(int x, int m) { return (x + m - 1) / m * m; }
int align16(int bytes) { return round_up(bytes, 16); }

// The shape as the geometry code uses it (int dims, padded row count and Y pitch).
struct SmallDims {
  int S, H, D_qk, D_v, R_kv, r_max, L, rows_pad, y_pitch;
};

SmallDims dims_of(const ProblemShape& shape) {
  const Dims& d = shape.dims;
  SmallDims m{};
  m.S = static_cast<int>(d.S), m.H = static_cast<int>(d.H), m.D_qk = static_cast<int>(d.D_qk);
  m.D_v = static_cast<int>(d.D_v), m.R_kv = static_cast<int>(d.R_kv), m.r_max = static_cast<int>(d.r_max);
  m.L = static_cast<int>(std::min<long long>(d.L, kSmallMaxRows));
  m.rows_pad = pow2_at_least(std::max(1, m.S));
  m.y_pitch = round_up(m.r_max, 8);
  return m;
}

// Shared-memory layout of role `kind` with (nc, hg); returns the bytes.
int layout_role(const SmallDims& m, int kind, int nc, int hg, Role* ro) {
  const bool stage2 = kind == kQ2 || kind == kV2;
  ro->nc = nc, ro->hg = hg, ro->R = m.rows_pad * hg;
  switch (kind) {
    case kQ1: ro->w_pitch = nc, ro->w_elems = m.D_qk * nc, ro->x_pitch = m.D_qk; break;
    case kV1: ro->w_pitch = m.R_kv + 8, ro->w_elems = nc * (m.R_kv + 8), ro->x_pitch = m.R_kv + 8; break;
    case kQ2: ro->w_pitch = nc, ro->w_elems = m.r_max * nc, ro->x_pitch = m.y_pitch + 4; break;
    default: ro->w_pitch = m.y_pitch + 8, ro->w_elems = nc * (m.y_pitch + 8), ro->x_pitch = m.y_pitch + 4; break;
  }
  const int tiles = std::min(m.S, m.L);
  int off = align16(tiles * ro->w_elems * 2);
  ro->off_x = off;
  off += align16(ro->R * ro->x_pitch * (stage2 ? 4 : 2));
  ro->off_o = off;
  if (stage2) off += align16(ro->R * nc * 2);
  ro->off_red = off;
  const bool ncontig = kind == kQ1 || kind == kQ2;
  off += (ncontig ? kNcontigRed : kThreads) * 4;
  return off;
}

constexpr int kSmemBudget = 160 * 1024;

// The role's tile: the (nc, hg) with the fewest bytes per SM, counting a
// block's fixed cost (index loads, barriers) as 2 KB of staging.
bool choose_role(const SmallDims& m, int kind, int sms, Role* out) {
  const int N = kind == kQ1 || kind == kV1 ? m.y_pitch : (kind == kQ2 ? m.R_kv : m.D_v);
  const bool per_head = kind == kQ1 || kind == kV2;
  const bool ncontig = kind == kQ1 || kind == kQ2;
  double best = 1e300;
  bool found = false;
  for (int nc = ncontig || kind == kV2 ? 8 : 1; nc <= 64; nc *= 2) {
    if (kind == kQ2 || kind == kV2) {
      if (N % nc != 0) continue;
    }
    for (int hg = 1; hg <= (per_head ? 1 : pow2_at_least(m.H)); hg *= 2) {
      const int units = m.rows_pad * hg * (ncontig ? nc / 8 : nc);
      if (units > kThreads) continue;
      Role ro;
      const int smem = layout_role(m, kind, nc, hg, &ro);
      if (smem > kSmemBudget) continue;
      const int heads = std::min(hg, m.H);
      const long long items = static_cast<long long>((m.H + hg - 1) / hg) * ((N + nc - 1) / nc);
      if (items > (1LL << 30)) continue;  // the two roles' blocks together must fit one int grid
      // Weight tiles: one per distinct slot, at most min(S, L) of them (sized for the worst case).
      const double tiles = std::min(m.S, m.L);
      double bytes = 0;
      switch (kind) {
        case kQ1: bytes = tiles * 2.0 * m.D_qk * std::min(nc, m.r_max) + 2.0 * m.S * m.D_qk; break;
        case kV1: bytes = tiles * 2.0 * std::min(nc, m.r_max) * m.R_kv + 2.0 * m.S * heads * m.R_kv; break;
        case kQ2: bytes = tiles * 2.0 * m.r_max * nc + m.S * heads * (4.0 * m.y_pitch + 2.0 * nc); break;
        default: bytes = tiles * 2.0 * nc * m.r_max + m.S * (4.0 * m.y_pitch + 2.0 * nc); break;
      }
      const double cost = static_cast<double>((items + sms - 1) / sms) * (bytes + 2048.0);
      if (cost < best) {
        best = cost, found = true;
        *out = ro;
        out->n_chunks = (N + nc - 1) / nc;
        out->blocks = static_cast<int>(items);
      }
    }
  }
  return found;
}

struct SmallGeometry {
  Role role[2][2];  // [stage - 1][q, v]
  int smem[2] = {0, 0};
  bool ok = false;
};

SmallGeometry geometry(const ProblemShape& shape) {
  SmallGeometry g;
  // Tile sizes are int arithmetic: dims far beyond any model's stay with the fast kernels.
  const Dims& d = shape.dims;
  if (d.D_qk > (1 << 16) || d.D_v > (1 << 16) || d.R_kv > (1 << 16) || d.H > (1 << 20)) return g;
  const SmallDims m = dims_of(shape);
  const int sms = sm_count();
  g.ok = choose_role(m, kQ1, sms, &g.role[0][0]) && choose_role(m, kV1, sms, &g.role[0][1]) &&
         choose_role(m, kQ2, sms, &g.role[1][0]) && choose_role(m, kV2, sms, &g.role[1][1]);
  for (int s = 0; s < 2; ++s)
    for (int r = 0; r < 2; ++r) {
      Role tmp;
      const int kind = s == 0 ? (r == 0 ? kQ1 : kV1) : (r == 0 ? kQ2 : kV2);
      g.smem[s] = std::max(g.smem[s], layout_role(m, kind, g.role[s][r].nc, g.role[s][r].hg, &tmp));
    }
  for (int s = 0; s < 2; ++s) g.smem[s] = std::max<int>(g.smem[s], sizeof(SlotTable<kThreads>));  // resolve_rows
  return g;
}

// MLALORA_FAST_SMALL: 0 = never, 1 = every batch of <= kSmallMaxRows rows
// (tests, A/B runs), unset = where they measured faster than the fast
// kernels on the H200 (optimized/PERF.md, seventh session): one row at
// r_max >= 64 (0.70-0.99x), and 1-16 rows at r_max > 64 with at most 16
// heads (TP8 r = 128 at 4 and 16 rows: 0.80x, 0.92x). One row at r <= 32 was
// 0.89-1.05x (not taken), and 4-16 rows at r <= 64 or with 128 heads were
// slower, up to 3x with 8 slots in 16 rows.
int small_mode() {
  const char* e = std::getenv("MLALORA_FAST_SMALL");
  if (e != nullptr && std::strcmp(e, "0") == 0) return 0;
  if (e != nullptr && std::strcmp(e, "1") == 0) return 1;
  return 2;
}
bool small_pdl_enabled() {
  const char* e = std::getenv("MLALORA_FAST_PDL");
  return !(e != nullptr && std::strcmp(e, "0") == 0);
}

// Both stages ask for the largest shared-memory carveout, so that stage 2's
// blocks can join stage 1's SMs as soon as they launch: an SM runs blocks of
// two kernels side by side only under one L1/shared split, and the split
// the driver picks per kernel follows its own needs (MLALORA_SMALL_CARVEOUT=0:
// the driver's choice; A/B runs). Set on the first (eager) call.
bool small_carveout() {
  const char* e = std::getenv("MLALORA_SMALL_CARVEOUT");
  return !(e != nullptr && std::strcmp(e, "0") == 0);
}
template <typename T>
Status set_carveout_once() {
  static const cudaError_t e = [] {
    if (!small_carveout()) return cudaSuccess;
    cudaError_t a = cudaFuncSetAttribute(small_kernel<T, 1>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                         cudaSharedmemCarveoutMaxShared);
    if (a != cudaSuccess) return a;
    return cudaFuncSetAttribute(small_kernel<T, 2>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                cudaSharedmemCarveoutMaxShared);
  }();
  if (e != cudaSuccess) return Status::DeviceError(std::string("small-batch kernels: carveout: ") + cudaGetErrorString(e));
  return Status::Ok();
}

template <typename T>
Status launch_stages(const SmallArgs& s1, const SmallArgs& s2, const SmallGeometry& g, bool pdl, cudaStream_t stream) {
  MLALORA_RETURN_IF_ERROR(set_carveout_once<T>());
  const int b1 = s1.role[0].blocks + s1.role[1].blocks, b2 = s2.role[0].blocks + s2.role[1].blocks;
  MLALORA_RETURN_IF_ERROR(launch_ex(small_kernel<T, 1>, dim3(b1), dim3(kThreads), g.smem[0], false, stream, s1));
  return launch_ex(small_kernel<T, 2>, dim3(b2), dim3(kThreads), g.smem[1], pdl, stream, s2);
}

}  // namespace

Status small_trace_reset(cudaStream_t stream) {
#if MLALORA_FAST_TRACE
  void* a = nullptr;
  cudaError_t e = cudaGetSymbolAddress(&a, g_small_trace);
  if (e == cudaSuccess) e = cudaMemsetAsync(a, 0, sizeof(g_small_trace), stream);
  if (e != cudaSuccess) return Status::DeviceError(std::string("small_trace_reset: ") + cudaGetErrorString(e));
#else
  (void)stream;
#endif
  return Status::Ok();
}

Status small_trace_read(std::vector<FastTraceRecord>* out) {
#if MLALORA_FAST_TRACE
  std::vector<SmallTraceSlot> slots(2 * static_cast<size_t>(kFastTraceBlocks));
  const cudaError_t e = cudaMemcpyFromSymbol(slots.data(), g_small_trace, sizeof(g_small_trace));
  if (e != cudaSuccess) return Status::DeviceError(std::string("small_trace_read: ") + cudaGetErrorString(e));
  for (size_t k = 0; k < slots.size(); ++k) {
    const SmallTraceSlot& s = slots[k];
    if (s.ns[0] == 0) continue;
    FastTraceRecord r;
    r.block = static_cast<int>(k % kFastTraceBlocks), r.side = 2 + s.role, r.smid = s.smid, r.resolved = true;
    for (int m = 0; m < kFastTraceMarks; ++m) r.ns[m] = s.ns[m], r.cycles[m] = s.cycles[m];
    out->push_back(r);
  }
#else
  (void)out;
#endif
  return Status::Ok();
}

size_t small_workspace_size(const ProblemShape& shape) {
  const Dims& d = shape.dims;
  if (d.S > kSmallMaxRows || d.S <= 0) return 0;
  return 2 * static_cast<size_t>(d.S) * static_cast<size_t>(d.H) *
         static_cast<size_t>(round_up(static_cast<int>(d.r_max), 8)) * sizeof(float);
}

bool small_batch_applies(const ProblemShape& shape) {
  const int mode = small_mode();
  if (mode == 0) return false;
  const Dims& d = shape.dims;
  if (d.S < 1 || d.S > kSmallMaxRows || d.H > (1 << 20)) return false;
  if (mode == 2 && !((d.S == 1 && d.r_max >= 64) || (d.r_max > 64 && d.H <= 16))) return false;
  return geometry(shape).ok;
}

Status launch_small(const ProblemShape& shape, const KParams* pq, const KParams* pv, DType dt, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream) {
  const size_t need = small_workspace_size(shape);
  if (workspace == nullptr || workspace_bytes < need)
    return Status{StatusCode::workspace_too_small, "workspace: " + std::to_string(workspace_bytes) +
                                                       " bytes given, " + std::to_string(need) +
                                                       " needed by the small-batch kernels' intermediates"};
  const SmallGeometry g = geometry(shape);
  if (!g.ok) return Status::NotSupported("small-batch kernels: no tile fits shared memory for this shape");
  const Dims& d = shape.dims;
  const int y_pitch = round_up(static_cast<int>(d.r_max), 8);
  SmallArgs s1;
  if (pq != nullptr) s1.q = *pq;
  if (pv != nullptr) s1.v = *pv;
  s1.y[0] = static_cast<float*>(workspace);
  s1.y[1] = s1.y[0] + static_cast<size_t>(d.S) * static_cast<size_t>(d.H) * static_cast<size_t>(y_pitch);
  s1.y_pitch = y_pitch;
  SmallArgs s2 = s1;
  s1.role[0] = g.role[0][0], s1.role[1] = g.role[0][1];
  s2.role[0] = g.role[1][0], s2.role[1] = g.role[1][1];
  if (pq == nullptr) s1.role[0].blocks = s2.role[0].blocks = 0;
  if (pv == nullptr) s1.role[1].blocks = s2.role[1].blocks = 0;
  if (s1.role[0].blocks + s1.role[1].blocks <= 0) return Status::Ok();
  const bool pdl = small_pdl_enabled();
  if (dt == DType::bf16) return launch_stages<__nv_bfloat16>(s1, s2, g, pdl, stream);
  if (dt == DType::f16) return launch_stages<__half>(s1, s2, g, pdl, stream);
  return Status::NotSupported("small-batch kernels: f32");
}

}  // namespace mlalora::optimized::detail

namespace mlalora::optimized {

SmallBatchGeometry small_batch_geometry(const ProblemShape& shape) {
  SmallBatchGeometry out;
  const Dims& d = shape.dims;
  if (d.S < 1 || d.S > detail::kSmallMaxRows || d.H > (1 << 20)) return out;
  const detail::SmallGeometry g = detail::geometry(shape);
  out.ok = g.ok;
  out.smem_bytes[0] = g.smem[0], out.smem_bytes[1] = g.smem[1];
  out.y_pitch = detail::round_up(static_cast<int>(d.r_max), 8);
  for (int k = 0; k < 4; ++k) {
    const detail::Role& r = g.role[k / 2][k % 2];
    const bool ncontig = k == detail::kQ1 || k == detail::kQ2;
    SmallBatchRole& o = out.role[k];
    o.blocks = r.blocks, o.cols = r.nc, o.heads = r.hg, o.col_chunks = r.n_chunks, o.compute_rows = r.R;
    o.work_units = r.R * (ncontig ? r.nc / 8 : r.nc);
  }
  return out;
}

}  // namespace mlalora::optimized
