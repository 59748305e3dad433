// The fused fast path (bf16/f16, tensor cores): built for memory bandwidth on
// model-like shapes. Version 4 of the kernels; optimized/PERF.md has why.
//
// Two launches for both sides (one with direct tiling, see choose_direct, or
// with a plan built beforehand: build_fast_plan, CallOptions::plan_prebuilt):
//  1. plan_kernel (one block) groups the live rows of the batch BY SLOT:
//     segments of the same adapter, adjacent or not, become one run of rows,
//     cut into tiles of TM rows (physical token rows, -1 for padding). One
//     tile = one slot, so each block reads its slot's weights once for up to
//     TM tokens, however the batch scatters that slot over one-token segments.
//  2. fast_qv_kernel: q blocks and v blocks of one grid, so the two
//     independent sides run side by side (MLALORA_FAST_QV=separate: q then v,
//     fast_q_kernel / fast_v_kernel). Block = (tile, head group, [q: output
//     column range]); 4 warps, warp = (head, 16 tokens of the tile). The main
//     kernel is a programmatic dependent launch of the plan (its blocks wait
//     in griddepcontrol.wait, not behind a kernel boundary).
// Shared memory is one ring of (r_max + 64)-row slots, the same on both sides.
// Compiled variants (KernelTune): each rank bucket (r_max <= 32, 64, 128) has
// a default ring depth and blocks-per-SM register cap; the 32 and 128
// buckets also a "wide" one (one more resident block, a shallower ring),
// which grids of >= 2 default waves take (launch_sides; PERF.md, v9.1, v9.3).
//
// q side, per warp: Y (16 x r) = X_h @ B_kc[h], X fragments straight from
//   global (32-bit loads, all of a staged step issued before its wait), B_kc
//   staged by cp.async into the ring slots stage 2 does not prefetch (the
//   split that needs the fewest staged steps; often all of B_kc at once) and
//   read by ldmatrix.trans; when the block's warps share one head (hg == 1),
//   B_kc is staged once per block. Y masked to j < r and rounded to the act
//   dtype IN REGISTERS (the C fragments are the next MMA's A fragments); then
//   Z = Y @ A over 64-column chunks, A chunk + the four warps' old output
//   chunks per ring slot (cp.async, coalesced 16-byte); the epilogue
//   out = round(fmaf(s, z, out)) runs on the staged tile, 16-byte stores write it back.
// v side: Y = X_h @ A^T with X (64 rows of the block) and A (r rows) streamed
//   through the ring in 64-column slices of R_kv (ldmatrix); then the ring
//   becomes stage-2 staging: per warp B_vc (64 rows of d) and the output tile,
//   or, for one-head blocks, a block-wide double buffer of B_vc rows plus the
//   four output tiles; Z = Y @ B_vc[h]^T by ldmatrix, same epilogue.
// All global traffic of the main kernels is 16-byte cp.async / stores except
// the q side's X fragments (D_qk per row, the smallest input).
// Rounding: identical to the other kernel families (fp32 accumulation, Y
// rounded to the act dtype, one fmaf + one rounding per output element).
// Rank handling: per-slot rank r <= r_max <= 128; weights at j >= r are never
// read (zero-filled) and Y at j >= r is set to zero before stage 2, so NaN/Inf
// inputs cannot leak through padded columns.
// Eligibility (fast_eligible): bf16/f16, r_max <= 128, D_qk % 16 == 0 (q),
// R_kv % 64 == 0, D_v % 64 == 0 (v); activations, A and B 16-byte aligned
// with outer strides in multiples of 8 elements (so a contiguous B needs
// r_max % 8 == 0). Anything else runs the general kernels.
// Garbage index data: the plan applies the same segment filter as the other
// kernels (sgmm_common.cuh) and clamps every index it writes, so the main
// kernels only ever see in-range rows and slots.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cub/block/block_scan.cuh>
#include <string>
#include <type_traits>

#include "mlalora/optimized/fast_trace.hpp"
#include "sgmm_fast.hpp"
#include "sgmm_ptx.cuh"
#include "sgmm_small.hpp"

namespace mlalora::optimized::detail {

// ---- phase trace (MLALORA_FAST_TRACE builds only; fast_trace.hpp) ----------------------
#ifndef MLALORA_FAST_TRACE
#define MLALORA_FAST_TRACE 0
#endif
struct TraceSlot {
  unsigned long long ns[kFastTraceMarks];
  long long cycles[kFastTraceMarks];
  int side, smid, resolved, pad;
};
#if MLALORA_FAST_TRACE
__device__ TraceSlot g_fast_trace[kFastTraceBlocks];
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// Mark k (0..2) from the block's first thread.
__device__ __forceinline__ void trace_mark(int k) {
  if (threadIdx.x == 0 && blockIdx.x < kFastTraceBlocks) {
    TraceSlot& s = g_fast_trace[blockIdx.x];
    s.cycles[k] = clock64();
    s.ns[k] = global_ns();
    if (k == 1) s.resolved = 1;
  }
}
__device__ __forceinline__ void trace_entry(int side) {
  if (threadIdx.x == 0 && blockIdx.x < kFastTraceBlocks) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    g_fast_trace[blockIdx.x].side = side;
    g_fast_trace[blockIdx.x].smid = static_cast<int>(smid);
  }
  trace_mark(0);
}
// The end mark: the last warp of the block to get here wins (atomicMax).
__device__ __forceinline__ void trace_end() {
  if ((threadIdx.x & 31) == 0 && blockIdx.x < kFastTraceBlocks) {
    TraceSlot& s = g_fast_trace[blockIdx.x];
    atomicMax(reinterpret_cast<unsigned long long*>(&s.cycles[3]), static_cast<unsigned long long>(clock64()));
    atomicMax(&s.ns[3], global_ns());
  }
}
#else
__device__ __forceinline__ void trace_mark(int) {}
__device__ __forceinline__ void trace_entry(int) {}
__device__ __forceinline__ void trace_end() {}
#endif
// Mark 2 is "stage 1 done" (Y in registers) in MLALORA_FAST_TRACE=1 builds;
// MLALORA_FAST_TRACE=2 builds move it to "stage 1's first staged bytes have
// landed" (after the first wait + barrier of stage 1), which splits stage 1
// into issue + wait and the rest (scripts/trace_build.sh TRACE=2).
__device__ __forceinline__ void trace_stage1_landed(bool first) {
  if (MLALORA_FAST_TRACE == 2 && first) trace_mark(2);
}
__device__ __forceinline__ void trace_stage1_done() {
  if (MLALORA_FAST_TRACE == 1) trace_mark(2);
}

namespace {

using namespace ptx;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kChunk = 64;            // columns per shared-memory chunk (q: of R_kv out; v: of R_kv in)
constexpr int kPitch = kChunk + 8;    // smem row pitch in elements: 144 B keeps ldmatrix conflict-free
constexpr int kPlanThreads = 512;
constexpr int kMaxRank = 128;

// Workspace views written by plan_kernel and read by the main kernels.
// The main kernels read, per block, the tile count, the tile's record and
// two rows per thread: three independent loads, one round trip (v8.2; the
// version-4 layout needed three dependent ones: slot, then rank, scale,
// slot base and count, then the rows).
struct alignas(16) TileMeta {
  int slot, rank;
  float scale;
  int pad;
};
struct Plan {
  unsigned long long* slot_cursor = nullptr;  // L: row counter when L > kPlanSmemSlots
  int* seg_first = nullptr;                   // capacity: per-segment arrays when the live
  int* seg_slot = nullptr;                    //   count exceeds kPlanSmemSegs
  unsigned long long* seg_pos = nullptr;
  long long* seg_incl = nullptr;
  int* slot_base = nullptr;                   // L+1: first tile of each slot (clamped to max_tiles)
  int* num_tiles = nullptr;                   // 1
  TileMeta* tile_meta = nullptr;              // max_tiles: slot -1 past the tile count
  int* tile_rows = nullptr;                   // max_tiles * tm: physical token row, -1 for padding, a
                                              // bad permutation entry and tiles past the count
  int max_tiles = 0;
  int tm = 16;
  int direct = 0;  // 1: no plan; each block finds its (segment, token block) itself (find_tile)
};

struct Geom {
  int tm = 16;              // tokens per tile = 16 * ts
  int hg = 4;               // heads per block
  int ts = 1;               // 16-token sub-tiles per tile (hg * ts = kWarps)
  int cols_per_block = 64;  // q side: output columns per block (multiple of kChunk)
};

// Programmatic dependent launch: wait_for_prior_grid / allow_next_grid (sgmm_ptx.cuh).

// ---- plan ------------------------------------------------------------------------
// One block, four phases: (A) per segment: validity, length, and its offset
// within its slot's run (an atomicAdd on the slot's row count), then an
// inclusive scan of the valid lengths; (B) exclusive scan of tiles per slot;
// (C) per tile: its record (slot, rank, scale) by binary search, and -1 in
// the padding rows of each slot's last tile; tiles past the count up to
// max_tiles get slot -1 and rows -1, so that every entry a main-kernel
// block may read is written (it loads its record and rows before it knows
// the count); (D) the covered rows, flattened over the valid segments in
// parallel: flat index f -> its segment (binary search on the monotone
// inclusive scan) -> slot base + segment offset + row offset. Every
// position a slot's count promises is written exactly once, even when
// garbage index data makes segments overlap. Per-slot and per-segment
// arrays live in shared memory when small (the common case), else in the
// workspace.
// Latency (v8.2): the first 512 segments' index loads and every slot's rank
// and scale (up to 1024 slots) are issued together with the live count, so
// the plan's chain is that one round, then the permutation entries of
// phase D.
constexpr int kPlanSmemSlots = 1024;
constexpr int kPlanSmemSegs = 512;

__global__ void __launch_bounds__(kPlanThreads) plan_kernel(const KParams p, const Plan v) {
  using Scan = cub::BlockScan<long long, kPlanThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ unsigned long long s_count[kPlanSmemSlots];
  __shared__ int s_base[kPlanSmemSlots + 1];
  __shared__ int s_rank[kPlanSmemSlots];
  __shared__ float s_scale[kPlanSmemSlots];
  __shared__ int s_first[kPlanSmemSegs], s_slot[kPlanSmemSegs];
  __shared__ unsigned long long s_pos[kPlanSmemSegs];
  __shared__ long long s_incl[kPlanSmemSegs];
  const int tid = static_cast<int>(threadIdx.x);
  allow_next_grid();  // the main kernel's blocks may become resident; they wait for our completion
  // Round 1: nothing here waits for another load (the index arrays hold
  // capacity entries, the rank and scale arrays L).
  int b0 = 0, e0 = 0, w0 = 0;
  if (tid < p.capacity) {
    b0 = __ldg(p.seg_indptr + tid);
    e0 = __ldg(p.seg_indptr + tid + 1);
    w0 = __ldg(p.weight_indices + tid);
  }
  const bool few_slots = p.L <= kPlanSmemSlots;
  if (few_slots)
    for (int l = tid; l < p.L; l += kPlanThreads) {
      s_rank[l] = __ldg(p.ranks + l);
      s_scale[l] = __ldg(p.scalings + l);
    }
  const int n = live_segments(p);
  const bool few_segs = n <= kPlanSmemSegs;
  unsigned long long* count = few_slots ? s_count : v.slot_cursor;
  int* base = few_slots ? s_base : v.slot_base;
  int* first = few_segs ? s_first : v.seg_first;
  int* slot = few_segs ? s_slot : v.seg_slot;
  unsigned long long* pos = few_segs ? s_pos : v.seg_pos;
  long long* incl = few_segs ? s_incl : v.seg_incl;
  for (int l = tid; l < p.L; l += kPlanThreads) count[l] = 0ull;
  __syncthreads();
  auto rank_of = [&](int w) { return few_slots ? s_rank[w] : __ldg(p.ranks + w); };
  auto scale_of = [&](int w) { return few_slots ? s_scale[w] : __ldg(p.scalings + w); };
  // (A) validity, offset within the slot, length.
  for (int g = tid; g < n; g += kPlanThreads) {
    int b = b0, e = e0, w = w0;
    if (g >= kPlanThreads) {
      b = __ldg(p.seg_indptr + g);
      e = __ldg(p.seg_indptr + g + 1);
      w = __ldg(p.weight_indices + g);
    }
    bool ok = b >= 0 && e > b && e <= p.S && e - b <= p.max_seg_len && w >= 0 && w < p.L;
    if (ok) {
      const int r = rank_of(w);
      ok = r >= 1 && r <= p.r_max;
    }
    first[g] = b;
    slot[g] = ok ? w : -1;
    incl[g] = ok ? e - b : 0;
    if (ok) pos[g] = atomicAdd(count + w, static_cast<unsigned long long>(e - b));
  }
  __syncthreads();
  long long covered = 0;  // inclusive scan of the valid lengths, in place
  for (int c0 = 0; c0 < n; c0 += kPlanThreads) {
    const int g = c0 + tid;
    const long long len = g < n ? incl[g] : 0;
    long long ex = 0, agg = 0;
    Scan(scan_tmp).ExclusiveSum(len, ex, agg);
    if (g < n) incl[g] = covered + ex + len;
    covered += agg;
    __syncthreads();
  }
  // (B) tiles per slot -> exclusive prefix (clamped: garbage data cannot exceed the workspace).
  long long running = 0;
  for (int c0 = 0; c0 < p.L; c0 += kPlanThreads) {
    const int l = c0 + tid;
    const unsigned long long cnt = l < p.L ? count[l] : 0ull;
    const long long nt = static_cast<long long>((cnt + v.tm - 1) / v.tm);
    long long excl = 0, agg = 0;
    Scan(scan_tmp).ExclusiveSum(nt, excl, agg);
    if (l < p.L) base[l] = static_cast<int>(min(running + excl, static_cast<long long>(v.max_tiles)));
    running += agg;
    __syncthreads();  // scan_tmp reuse
  }
  const int T = static_cast<int>(min(running, static_cast<long long>(v.max_tiles)));
  if (tid == 0) {
    base[p.L] = T;
    *v.num_tiles = T;
  }
  __syncthreads();
  // (C)
  for (int k = tid; k < v.max_tiles; k += kPlanThreads) {
    if (k >= T) {
      v.tile_meta[k] = TileMeta{-1, 0, 0.f, 0};
      continue;
    }
    int lo = 0, hi = p.L - 1;  // last slot whose first tile is <= k
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (base[mid] <= k) lo = mid;
      else hi = mid - 1;
    }
    v.tile_meta[k] = TileMeta{lo, rank_of(lo), scale_of(lo), 0};
    // Padding: positions at or past the slot's row count (only its last tile has any).
    const unsigned long long local = static_cast<unsigned long long>(k - base[lo]) * v.tm;
    const unsigned long long cnt = count[lo];
    const int valid = local >= cnt ? 0 : static_cast<int>(min(cnt - local, static_cast<unsigned long long>(v.tm)));
    for (int i = valid; i < v.tm; ++i) v.tile_rows[static_cast<long long>(k) * v.tm + i] = -1;
  }
  for (long long f = static_cast<long long>(T) * v.tm + tid; f < static_cast<long long>(v.max_tiles) * v.tm;
       f += kPlanThreads)
    v.tile_rows[f] = -1;
  // (D)
  const long long nrows = static_cast<long long>(T) * v.tm;
  for (long long f = tid; f < covered; f += kPlanThreads) {
    int lo = 0, hi = n - 1;  // first segment whose inclusive end exceeds f (non-empty, valid)
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if (incl[mid] > f) hi = mid;
      else lo = mid + 1;
    }
    const int w = slot[lo];
    if (w < 0) continue;  // cannot happen (empty segments never contain f); defensive
    const long long off = f - (lo > 0 ? incl[lo - 1] : 0);
    const long long d = static_cast<long long>(base[w]) * v.tm + static_cast<long long>(pos[lo]) + off;
    if (d < nrows) v.tile_rows[d] = physical_row(p, first[lo] + static_cast<int>(off));
  }
}

// ---- main-kernel helpers ---------------------------------------------------------

// Predicated global loads (zero when the predicate is off; nothing is read
// then), written as predicated PTX rather than branches so that every load of
// a batch is issued before the MMAs that consume it.
__device__ __forceinline__ uint32_t ldg32_if(const void* p, bool pred) {
  uint32_t v;
  asm("{\n .reg .pred q;\n setp.ne.b32 q, %2, 0;\n mov.b32 %0, 0;\n @q ld.global.nc.b32 %0, [%1];\n}\n"
      : "=r"(v)
      : "l"(p), "r"(static_cast<int>(pred)));
  return v;
}
// cp.async of 16 bytes of which the first `bytes` (0..16) are read, the rest zero-filled.
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(bytes));
}
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  return Mma<T>::bits(lo) | (Mma<T>::bits(hi) << 16);
}

// `rows` rows of a weight matrix (row stride ld, first `r` columns valid) into
// shared memory with row pitch `pitch`, columns [0, r16): full 16-byte copies,
// a zero-filled partial copy at the rank edge, zeros past it. Rows >= nvalid
// are zeroed. Threads `t` of `nt` cooperate.
template <int RMAX, typename T>
__device__ __forceinline__ void stage_weight_rows(T* dst, int pitch, const T* src, long long ld, int rows, int nvalid,
                                                  int r, int r16, int t, int nt) {
  constexpr int kPieces = RMAX / 8;  // 16-byte pieces per row (compile-time: shifts, not divisions)
  for (int idx = t; idx < rows * kPieces; idx += nt) {
    const int row = idx / kPieces, col = (idx % kPieces) * 8;
    if (col >= r16) continue;
    T* d = dst + row * pitch + col;
    const int n = row < nvalid ? r - col : 0;
    if (n >= 8) cp_async16(d, src + row * ld + col);
    else if (n > 0) cp_async16_zfill(d, src + row * ld + col, 2 * n);
    else *reinterpret_cast<uint4*>(d) = make_uint4(0u, 0u, 0u, 0u);
  }
}

// Y accumulators (16 x RMAX, C layout) -> A fragments of the stage-2 MMA,
// zero at j >= r, rounded to T.
template <typename T, int RB>
__device__ __forceinline__ void y_to_a_frags(const float (&y)[2 * RB][4], int r, int q4, uint32_t (&af)[RB][4]) {
#pragma unroll
  for (int kk = 0; kk < RB; ++kk) {
    const int j0 = kk * 16 + 2 * q4, j1 = j0 + 8;
    af[kk][0] = pack2<T>(j0 < r ? y[2 * kk][0] : 0.f, j0 + 1 < r ? y[2 * kk][1] : 0.f);
    af[kk][1] = pack2<T>(j0 < r ? y[2 * kk][2] : 0.f, j0 + 1 < r ? y[2 * kk][3] : 0.f);
    af[kk][2] = pack2<T>(j1 < r ? y[2 * kk + 1][0] : 0.f, j1 + 1 < r ? y[2 * kk + 1][1] : 0.f);
    af[kk][3] = pack2<T>(j1 < r ? y[2 * kk + 1][2] : 0.f, j1 + 1 < r ? y[2 * kk + 1][3] : 0.f);
  }
}

// A warp's 16 output rows x (8*NT) columns between global memory and a
// shared staging tile, with coalesced 16-byte accesses (LOAD: cp.async
// global -> smem; else smem -> global stores). Row i of the tile is the
// fragment row held by lane 4*(i%8) as ra (i < 8) or rb (i >= 8); padding
// rows (-1) are skipped.
template <typename T, int NT, bool LOAD>
__device__ __forceinline__ void warp_tile_io(T* tile, int pitch, const KParams& p, int h, int ra, int rb, int c0,
                                             int lane) {
  T* O = static_cast<T*>(p.out);
#pragma unroll
  for (int i = 0; i < NT / 2; ++i) {
    const int idx = lane + 32 * i, row = idx / NT, col = (idx % NT) * 8;
    const int ta = __shfl_sync(0xffffffffu, ra, (row & 7) * 4);
    const int tb = __shfl_sync(0xffffffffu, rb, (row & 7) * 4);
    const int t = row < 8 ? ta : tb;
    if (t >= 0) {
      T* g = O + t * p.os0 + h * p.os1 + c0 + col;
      T* s = tile + row * pitch + col;
      if (LOAD) cp_async16(s, g);
      else *reinterpret_cast<uint4*>(g) = *reinterpret_cast<const uint4*>(s);
    }
  }
}

// out = round(fmaf(s, z, out)) on the staged tile, in fragment layout.
template <typename T, int NT>
__device__ __forceinline__ void staged_epilogue(T* tile, int pitch, int lane, float s, const float (&z)[NT][4]) {
  const int g = lane >> 2, q4 = lane & 3;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    uint32_t* pa = reinterpret_cast<uint32_t*>(tile + g * pitch + nt * 8 + 2 * q4);
    uint32_t* pb = reinterpret_cast<uint32_t*>(tile + (g + 8) * pitch + nt * 8 + 2 * q4);
    const uint32_t oa = *pa, ob = *pb;
    *pa = pack2<T>(fmaf(s, z[nt][0], Mma<T>::lo(oa)), fmaf(s, z[nt][1], Mma<T>::hi(oa)));
    *pb = pack2<T>(fmaf(s, z[nt][2], Mma<T>::lo(ob)), fmaf(s, z[nt][3], Mma<T>::hi(ob)));
  }
  __syncwarp();
}

// Block prologue shared by both sides: the tile's slot, rank, scale and this
// warp's head and two fragment rows. Returns false (block-uniformly) when the
// tile is past the plan's tile count.
struct TileCtx {
  int slot, r, r16, h, ra, rb;
  float s;
  bool live;  // warp-uniform: this warp has at least one live row
};
// Which (tile, q output-column split, head block) a block works on: from
// blockIdx in the one-side kernels, from a flat index in the q+v kernel.
struct BlockCoord {
  int tile, split, head_block;
};
// Direct tiling (no plan): tiles are (segment, block of geo.tm tokens) in
// segment order, found by every block from the index data (find_tile: one
// block scan over the live segments, p.M_T == geo.tm). Same segment filter
// and row checks as the plan.
// `scratch`: the block's dynamic shared memory, free until the tile is known.
__device__ __forceinline__ bool tile_ctx_direct(const KParams& p, const Geom& geo, const BlockCoord& at, TileCtx& c,
                                                void* scratch) {
  __shared__ TileInfo info;
  if (!find_tile<kThreads>(p, at.tile, &info, scratch)) return false;
  c.slot = info.slot;
  c.r = info.rank;
  c.r16 = (c.r + 15) & ~15;
  c.s = info.scale;
  const int warp = static_cast<int>(threadIdx.x) >> 5, g = (static_cast<int>(threadIdx.x) & 31) >> 2;
  c.h = at.head_block * geo.hg + warp / geo.ts;
  const int sub = (warp % geo.ts) * 16;
  const bool head_ok = c.h < p.H;
  c.ra = head_ok && sub + g < info.tok_count ? physical_row(p, info.tok_begin + sub + g) : -1;
  c.rb = head_ok && sub + g + 8 < info.tok_count ? physical_row(p, info.tok_begin + sub + g + 8) : -1;
  c.live = __any_sync(0xffffffffu, c.ra >= 0 || c.rb >= 0) != 0;
  return true;
}
__device__ __forceinline__ bool tile_ctx(const KParams& p, const Geom& geo, const Plan& v, const BlockCoord& at,
                                         TileCtx& c, void* scratch) {
  if (v.direct) return tile_ctx_direct(p, geo, at, c, scratch);
  const int tile = at.tile;  // < grid tiles <= max_tiles: every entry read below was written by the plan
  const int warp = static_cast<int>(threadIdx.x) >> 5, g = (static_cast<int>(threadIdx.x) & 31) >> 2;
  c.h = at.head_block * geo.hg + warp / geo.ts;
  const int sub = (warp % geo.ts) * 16;
  // One round trip: count, record and rows do not depend on each other.
  const int ntiles = __ldg(v.num_tiles);
  const int4 m = __ldg(reinterpret_cast<const int4*>(v.tile_meta) + tile);  // TileMeta: slot, rank, scale
  const int* rows = v.tile_rows + static_cast<long long>(tile) * geo.tm + sub + g;
  const int ra = __ldg(rows), rb = __ldg(rows + 8);
  if (tile >= ntiles) return false;
  c.slot = m.x;
  c.r = m.y;
  if (c.slot < 0 || c.slot >= p.L || c.r < 1 || c.r > p.r_max) return false;  // the plan never makes such tiles
  c.r16 = (c.r + 15) & ~15;
  c.s = __int_as_float(m.z);
  // Rows are the plan's, in [0, S) or -1; the range check keeps a stale or
  // never-built plan (CallOptions::plan_prebuilt misused) in bounds.
  const bool head_ok = c.h < p.H;
  c.ra = head_ok && ra < p.S ? ra : -1;
  c.rb = head_ok && rb < p.S ? rb : -1;
  c.live = __any_sync(0xffffffffu, c.ra >= 0 || c.rb >= 0) != 0;
  return true;
}

// ---- shared-memory ring (both sides) --------------------------------------------------
// One ring of kStages slots of (RMAX + 64) rows x kPitch, the same geometry
// on both sides (so the q+v kernel wastes nothing):
//  q slot: A chunk (RMAX rows x 64 columns of R_kv), then the four warps'
//          16 x 64 output chunks;
//  v slot: A slice (RMAX rows x 64 columns of R_kv), then the block's 64 X
//          rows of that slice.
// q side: the ring slots that stage 2 does not prefetch before stage 1 hold
// B_kc during stage 1 (so B costs no extra shared memory, and the ring gets
// one more stage). v side: stage 2 reuses the whole ring.
// Ring depth and the blocks per SM the q+v kernel is compiled for (its
// register cap: 65536 / (128 * blocks)), per rank bucket. Compile-time
// defines so that a variant is a separate build, A/B'd against this one on
// the same machine (scripts/variant_build.sh, scripts/bench_variants.sh
// EXE=...): a runtime branch inside one kernel would change the code of
// both paths and measure neither (PERF.md, v4.2). The wide variants below
// are separate instantiations of the kernels, each compiled as itself.
#ifndef MLALORA_FAST_RING_STAGES_R32
#define MLALORA_FAST_RING_STAGES_R32 4
#endif
#ifndef MLALORA_FAST_RING_STAGES_R64
#define MLALORA_FAST_RING_STAGES_R64 4
#endif
#ifndef MLALORA_FAST_RING_STAGES_R128
#define MLALORA_FAST_RING_STAGES_R128 3
#endif
#ifndef MLALORA_FAST_MIN_BLOCKS_R32
#define MLALORA_FAST_MIN_BLOCKS_R32 4
#endif
#ifndef MLALORA_FAST_MIN_BLOCKS_R64
#define MLALORA_FAST_MIN_BLOCKS_R64 3
#endif
#ifndef MLALORA_FAST_MIN_BLOCKS_R128
#define MLALORA_FAST_MIN_BLOCKS_R128 2
#endif
// The rank-32 and rank-128 buckets have a second compiled variant for grids
// of many waves ("wide": one more resident block per SM, a shallower ring
// and a lower register cap), taken when the grid is at least
// MLALORA_FAST_WIDE_WAVES waves of the default variant (wide_applies):
//  r <= 128: a two-stage ring, three blocks per SM (168 registers, 88 bytes
//            of spills); PERF.md, v9.1: 0.83-0.91x on chunked, prefill and
//            TP=1 decode batches, 1.05-1.11x on sub-wave TP=8 decode batches;
//  r <= 32:  a three-stage ring, five blocks per SM at 95 registers (v5.1's
//            build), only for r_max > 16; PERF.md, v9.3: 0.94-0.97x on
//            the rank-32 chunked, prefill and 64-adapter decode batches,
//            while the rank-16 batches of >= 2 waves were 1.00-1.03x in
//            this run and 1.00-1.04x in v5.1's.
#ifndef MLALORA_FAST_RING_STAGES_R128_WIDE
#define MLALORA_FAST_RING_STAGES_R128_WIDE 2
#endif
#ifndef MLALORA_FAST_MIN_BLOCKS_R128_WIDE
#define MLALORA_FAST_MIN_BLOCKS_R128_WIDE 3
#endif
#ifndef MLALORA_FAST_RING_STAGES_R32_WIDE
#define MLALORA_FAST_RING_STAGES_R32_WIDE 3
#endif
#ifndef MLALORA_FAST_MIN_BLOCKS_R32_WIDE
#define MLALORA_FAST_MIN_BLOCKS_R32_WIDE 5
#endif
#ifndef MLALORA_FAST_WIDE_WAVES
#define MLALORA_FAST_WIDE_WAVES 2
#endif
template <int RMAX>
constexpr int ring_stages() {
  return RMAX <= 32 ? MLALORA_FAST_RING_STAGES_R32
                    : (RMAX <= 64 ? MLALORA_FAST_RING_STAGES_R64 : MLALORA_FAST_RING_STAGES_R128);
}
template <int RMAX>
constexpr int min_blocks() {
  return RMAX <= 32 ? MLALORA_FAST_MIN_BLOCKS_R32 : (RMAX <= 64 ? MLALORA_FAST_MIN_BLOCKS_R64 : MLALORA_FAST_MIN_BLOCKS_R128);
}
template <int RMAX, int STAGES = ring_stages<RMAX>()>
struct Ring {
  static constexpr int kStages = STAGES;
  static_assert(kStages >= 2, "the ring needs at least two stages");
  static constexpr int kSlotElems = (RMAX + 16 * kWarps) * kPitch;
  static constexpr int kElems = kStages * kSlotElems;
  static constexpr int kBPitch = RMAX + 8;  // staged weight rows (r columns): 16-byte rows, ldmatrix conflict-free
  // B_kc staging (q stage 1) can always have all slots: two 16-row steps per warp.
  static_assert(kStages * kSlotElems >= kWarps * 2 * 16 * kBPitch, "B_kc staging must fit in the ring");
  static_assert((kSlotElems * 2) % 16 == 0 && (kBPitch * 2) % 16 == 0, "16-byte aligned regions");
  static constexpr size_t bytes = sizeof(uint16_t) * kElems;
};

// ---- q side ----------------------------------------------------------------------------
// Stage 1 staging plan of B_kc in `elems` ring elements, for a unit of
// `units` (1: block-wide, the warps share one head; 4: one region per warp):
// one buffer holding all D_qk rows when they fit (at most 128), else a
// double buffer of kch rows (a multiple of 16, at most 128).
struct BStaging {
  int region;  // elements per unit
  int kch;     // rows per step
  int nbuf;    // 1 or 2
};
__device__ __forceinline__ BStaging plan_b_staging(int elems, int units, int bp, int D_qk) {
  BStaging b;
  const int rows = ((elems / units) / bp) & ~15;
  b.region = rows * bp;
  if (D_qk <= rows && D_qk <= 128) {
    b.kch = D_qk, b.nbuf = 1;
  } else {
    b.kch = min(128, ((rows / 2) & ~15)), b.nbuf = 2;
  }
  return b;
}

// One staged step of stage 1 of the q side: up to 8 k-steps of 16 rows of d
// from the staged B_kc rows Bb (pitch BP). All X fragments of the step are
// issued before the wait for the B copy, so they travel together.
// BLOCK_SYNC: the B buffer is block-wide (barriers), else per warp.
template <typename T, int RB, bool BLOCK_SYNC>
__device__ __forceinline__ void q_stage1_step(float (&y)[2 * RB][4], const T* Bb, int BP, const T* xa, const T* xb,
                                              int kb0, int ksteps, int D_qk, int r16, bool live, int lane) {
  constexpr int kMaxSteps = 8;
  uint32_t xf[kMaxSteps][4];
#pragma unroll
  for (int s = 0; s < kMaxSteps; ++s) {
    const int kb = kb0 + 16 * s;  // D_qk % 16 == 0: a step is all in or all out
    const bool in = s < ksteps && kb < D_qk;
    xf[s][0] = ldg32_if(xa + kb, in && xa != nullptr);
    xf[s][1] = ldg32_if(xb + kb, in && xb != nullptr);
    xf[s][2] = ldg32_if(xa + kb + 8, in && xa != nullptr);
    xf[s][3] = ldg32_if(xb + kb + 8, in && xb != nullptr);
  }
  cp_async_wait<1>();
  if (BLOCK_SYNC) __syncthreads();
  else __syncwarp();
  trace_stage1_landed(kb0 == 0);
  if (live) {
#pragma unroll
    for (int s = 0; s < kMaxSteps; ++s) {
      if (s < ksteps && kb0 + 16 * s < D_qk) {
#pragma unroll
        for (int np = 0; np < RB; ++np) {
          if (np * 16 < r16) {  // warp-uniform
            uint32_t b[4];
            ldsm_x4_t(b, Bb + (s * 16 + (lane & 15)) * BP + np * 16 + (lane >> 4) * 8);
            Mma<T>::run(y[2 * np], xf[s][0], xf[s][1], xf[s][2], xf[s][3], b[0], b[1]);
            Mma<T>::run(y[2 * np + 1], xf[s][0], xf[s][1], xf[s][2], xf[s][3], b[2], b[3]);
          }
        }
      }
    }
  }
  if (BLOCK_SYNC) __syncthreads();  // the buffer is refilled two steps later
  else __syncwarp();
}

template <typename T, int RMAX, int STAGES>
__device__ __forceinline__ void q_body(const KParams& p, const Geom& geo, const Plan& v, const BlockCoord& at,
                                       unsigned char* smem_raw) {
  using RG = Ring<RMAX, STAGES>;
  constexpr int RB = RMAX / 16, BP = RG::kBPitch, ST = RG::kStages, SE = RG::kSlotElems;
  TileCtx c;
  if (!tile_ctx(p, geo, v, at, c, smem_raw)) return;
  trace_mark(1);
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5, q4 = lane & 3;
  T* ring = reinterpret_cast<T*>(smem_raw);
  const int r = c.r;
  const int c_begin = at.split * geo.cols_per_block;
  const int nch = geo.cols_per_block / kChunk;
  // hg == 1: the four warps are four 16-token sub-tiles of ONE head and
  // share its B_kc (read once per block instead of once per warp).
  const bool shared_b = geo.hg == 1;
  const int units = shared_b ? 1 : kWarps;
  // `pre` stage-2 chunks are prefetched before stage 1; the slots after them
  // hold B_kc. Stage 1 is a chain of dependent copy-then-compute steps, so
  // the fewest steps win over prefetching (ties: the most prefetch).
  int pre = min(nch, ST - 1);
  BStaging bst = plan_b_staging((ST - pre) * SE, units, BP, p.D_qk);
  for (int k = pre - 1; k >= 0; --k) {
    const BStaging b = plan_b_staging((ST - k) * SE, units, BP, p.D_qk);
    if (b.kch >= 16 && (bst.kch < 16 || (p.D_qk + b.kch - 1) / b.kch < (p.D_qk + bst.kch - 1) / bst.kch))
      pre = k, bst = b;
  }
  T* Bw = ring + pre * SE + (shared_b ? 0 : warp * bst.region);
  const T* Bh = static_cast<const T*>(p.B) + static_cast<long long>(c.slot) * p.Bs0 +
                static_cast<long long>(c.h < p.H ? c.h : 0) * (p.D_qk + p.D_v) * p.Bs1;

  // Per-thread copy assignments, fixed for the whole kernel (only the column
  // offset moves): A piece k of this thread is row j = tid/8 + 16k, columns
  // (tid%8)*8..+8 of the chunk; output piece i of this lane is tile row
  // (lane + 32i)/8, columns ((lane + 32i)%8)*8..+8.
  const int a_row0 = tid >> 3, a_col = (tid & 7) * 8;
  const T* a_src = static_cast<const T*>(p.A) + static_cast<long long>(c.slot) * p.As0 +
                   static_cast<long long>(a_row0) * p.As1 + c_begin + a_col;
  T* o_glob[kChunk / 16];
  int o_smem[kChunk / 16];
  {
    T* O = static_cast<T*>(p.out);
#pragma unroll
    for (int i = 0; i < kChunk / 16; ++i) {
      const int idx = lane + 32 * i, row = idx >> 3, col = (idx & 7) * 8;
      const int ta = __shfl_sync(0xffffffffu, c.ra, (row & 7) * 4);
      const int tb = __shfl_sync(0xffffffffu, c.rb, (row & 7) * 4);
      const int t = row < 8 ? ta : tb;
      o_glob[i] = t >= 0 ? O + t * p.os0 + c.h * p.os1 + c_begin + col : nullptr;
      o_smem[i] = (RMAX + warp * 16 + row) * kPitch + col;  // within a slot
    }
  }
  // Chunk ci of A (rows j < r16; zero at j >= r) and of this warp's output tile -> ring slot buf.
  auto load_chunk = [&](int ci, int buf) {
    T* slot = ring + buf * SE;
    T* ad = slot + a_row0 * kPitch + a_col;
#pragma unroll
    for (int k = 0; k < RMAX / 16; ++k) {
      const int j = a_row0 + 16 * k;
      if (j < c.r16) {
        if (j < r) cp_async16(ad + 16 * k * kPitch, a_src + 16 * k * p.As1 + ci * kChunk);
        else *reinterpret_cast<uint4*>(ad + 16 * k * kPitch) = make_uint4(0u, 0u, 0u, 0u);
      }
    }
#pragma unroll
    for (int i = 0; i < kChunk / 16; ++i)
      if (o_glob[i]) cp_async16(slot + o_smem[i], o_glob[i] + ci * kChunk);
  };
  // Staged step kc of B_kc: rows d in [kc*kch, +kch).
  auto load_b = [&](int kc, int buf) {
    T* dst = Bw + buf * bst.kch * BP;
    const T* src = Bh + static_cast<long long>(kc) * bst.kch * p.Bs1;
    if (shared_b)
      stage_weight_rows<RMAX>(dst, BP, src, p.Bs1, bst.kch, p.D_qk - kc * bst.kch, r, c.r16, tid, kThreads);
    else if (c.live)
      stage_weight_rows<RMAX>(dst, BP, src, p.Bs1, bst.kch, p.D_qk - kc * bst.kch, r, c.r16, lane, 32);
  };
  for (int st = 0; st < pre; ++st) {
    load_chunk(st, st);
    cp_async_commit();
  }
  load_b(0, 0);  // bst.kch >= 16: with pre = 0 the ring holds two 16-row steps per warp (static_assert)
  cp_async_commit();

  // ---- stage 1: Y = X_h @ B_kc[h] (16 x r16); B_kc staged in the free ring slots ----
  float y[2 * RB][4];
#pragma unroll
  for (int nt = 0; nt < 2 * RB; ++nt) y[nt][0] = y[nt][1] = y[nt][2] = y[nt][3] = 0.f;
  const T* X = static_cast<const T*>(p.x);
  const T* xa = c.ra >= 0 ? X + c.ra * p.xs0 + c.h * p.xs1 + 2 * q4 : nullptr;
  const T* xb = c.rb >= 0 ? X + c.rb * p.xs0 + c.h * p.xs1 + 2 * q4 : nullptr;
  const int nkc = (p.D_qk + bst.kch - 1) / bst.kch;
  for (int kc = 0; kc < nkc; ++kc) {
    if (kc + 1 < nkc) load_b(kc + 1, (kc + 1) % bst.nbuf);
    cp_async_commit();
    const T* Bb = Bw + (kc % bst.nbuf) * bst.kch * BP;
    if (shared_b)
      q_stage1_step<T, RB, true>(y, Bb, BP, xa, xb, kc * bst.kch, bst.kch / 16, p.D_qk, c.r16, c.live, lane);
    else
      q_stage1_step<T, RB, false>(y, Bb, BP, xa, xb, kc * bst.kch, bst.kch / 16, p.D_qk, c.r16, c.live, lane);
  }
  __syncthreads();    // every warp is done with B_kc: its slots become stage-2 ring slots
  trace_stage1_done();
  allow_next_grid();  // the v side may launch as the last q blocks reach stage 2
  uint32_t af[RB][4];
  y_to_a_frags<T, RB>(y, r, q4, af);
  for (int st = pre; st < ST - 1; ++st) {  // the chunks B_kc's slots kept from the prefetch
    if (st < nch) load_chunk(st, st);
    cp_async_commit();
  }

  // ---- stage 2: Z = Y @ A over the block's column range; A (per block) and
  // the old output chunk (per warp) in the ST-deep cp.async ring ----
  for (int ci = 0; ci < nch; ++ci) {
    const int buf = ci % ST, c0 = c_begin + ci * kChunk;
    cp_async_wait<ST - 2>();
    __syncthreads();  // chunk ci visible; every warp done with chunk ci-1's ring slot
    if (ci + ST - 1 < nch) load_chunk(ci + ST - 1, (ci + ST - 1) % ST);
    cp_async_commit();
    if (c.live) {
      const T* Ab = ring + buf * SE;
      float z[8][4];
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) z[nt][0] = z[nt][1] = z[nt][2] = z[nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < RB; ++kk) {
        if (kk * 16 < c.r16) {
#pragma unroll
          for (int np = 0; np < 4; ++np) {
            uint32_t b[4];
            ldsm_x4_t(b, Ab + (kk * 16 + (lane & 15)) * kPitch + np * 16 + (lane >> 4) * 8);
            Mma<T>::run(z[2 * np], af[kk][0], af[kk][1], af[kk][2], af[kk][3], b[0], b[1]);
            Mma<T>::run(z[2 * np + 1], af[kk][0], af[kk][1], af[kk][2], af[kk][3], b[2], b[3]);
          }
        }
      }
      T* tile = ring + buf * SE + (RMAX + warp * 16) * kPitch;
      staged_epilogue<T, 8>(tile, kPitch, lane, c.s, z);
#pragma unroll
      for (int i = 0; i < kChunk / 16; ++i)
        if (o_glob[i])
          *reinterpret_cast<uint4*>(o_glob[i] + (c0 - c_begin)) =
              *reinterpret_cast<const uint4*>(ring + buf * SE + o_smem[i]);
    }
  }
}

// ---- v side ----------------------------------------------------------------------------
// Stage 1 ring (A rows, then the block's 64 X rows) per 64-column slice of
// R_kv; stage 2 reuses the ring: per warp, B_vc (DC rows of d) and the output
// tile (16 x DC); or, when the four warps share one head (hg == 1), a
// block-wide double buffer of 64-column steps: B_vc rows (read once per
// block) plus the four warps' output tiles.
template <int RMAX, int STAGES>
struct VSmem {
  static constexpr int kStageElems = Ring<RMAX, STAGES>::kSlotElems;
  static constexpr int kRingElems = Ring<RMAX, STAGES>::kElems;
  static constexpr int kBPitch = RMAX + 8;
  // Per-warp stage-2 output columns per step: 64, or 32 when four warps'
  // 64-column staging does not fit a shallow ring (r = 128 with two stages).
  static constexpr int DC = kWarps * (kChunk * kBPitch + 16 * (kChunk + 8)) <= kRingElems ? kChunk : kChunk / 2;
  static constexpr int kOPitch = DC + 8;
  static constexpr int kWarpElems = DC * kBPitch + 16 * kOPitch;
  static constexpr int kSharedStep = kChunk * kBPitch + kWarps * 16 * kPitch;  // block-wide stage-2 buffer
  static_assert(kWarps * kWarpElems <= kRingElems, "stage-2 staging must fit in the stage-1 ring");
  static_assert(2 * kSharedStep <= kRingElems, "shared stage-2 double buffer must fit in the stage-1 ring");
  static_assert((kWarpElems * 2) % 16 == 0 && (DC * kBPitch * 2) % 16 == 0 && (kSharedStep * 2) % 16 == 0,
                "16-byte aligned regions");
};

// Z = Y @ B_vc^T for 16 rows x (16*NP) columns from staged B_vc rows Bs
// (pitch BP), then the epilogue on the staged output tile Os (pitch OP).
template <typename T, int RB, int NP>
__device__ __forceinline__ void v_stage2_step(const T* Bs, int BP, T* Os, int OP, const uint32_t (&af)[RB][4], int r16,
                                              float s, int lane) {
  float z[2 * NP][4];
#pragma unroll
  for (int nt = 0; nt < 2 * NP; ++nt) z[nt][0] = z[nt][1] = z[nt][2] = z[nt][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < RB; ++kk) {
    if (kk * 16 < r16) {
#pragma unroll
      for (int np = 0; np < NP; ++np) {
        uint32_t b[4];
        ldsm_x4(b, Bs + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * BP + kk * 16 + ((lane >> 3) & 1) * 8);
        Mma<T>::run(z[2 * np], af[kk][0], af[kk][1], af[kk][2], af[kk][3], b[0], b[1]);
        Mma<T>::run(z[2 * np + 1], af[kk][0], af[kk][1], af[kk][2], af[kk][3], b[2], b[3]);
      }
    }
  }
  staged_epilogue<T, 2 * NP>(Os, OP, lane, s, z);
}

template <typename T, int RMAX, int STAGES>
__device__ __forceinline__ void v_body(const KParams& p, const Geom& geo, const Plan& v, const BlockCoord& at,
                                       unsigned char* smem_raw) {
  using SM = VSmem<RMAX, STAGES>;
  constexpr int RB = RMAX / 16, SE = SM::kStageElems, DC = SM::DC;
  T* ring = reinterpret_cast<T*>(smem_raw);
  __shared__ const T* xrow[16 * kWarps];  // block's X rows (null: padding)
  TileCtx c;
  if (!tile_ctx(p, geo, v, at, c, smem_raw)) return;
  trace_mark(1);
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5, q4 = lane & 3;
  const int r = c.r;
  const T* X = static_cast<const T*>(p.x);
  {
    // Row i of warp w's 16: lane 4*(i%8) of warp w holds it as ra (i < 8) / rb.
    const int ta = __shfl_sync(0xffffffffu, c.ra, (lane & 7) * 4);
    const int tb = __shfl_sync(0xffffffffu, c.rb, (lane & 7) * 4);
    if (lane < 16) {
      const int t = lane < 8 ? ta : tb;
      xrow[warp * 16 + lane] = t >= 0 ? X + t * p.xs0 + c.h * p.xs1 : nullptr;
    }
  }
  __syncthreads();
  // Per-thread copy assignments, fixed for the whole kernel: A piece k is row
  // j = tid/8 + 16k, X piece k is block row tid/8 + 16k (warp k's row tid/8),
  // both at columns (tid%8)*8..+8 of the slice.
  const int a_row0 = tid >> 3, a_col = (tid & 7) * 8;
  const T* a_src = static_cast<const T*>(p.A) + static_cast<long long>(c.slot) * p.As0 +
                   static_cast<long long>(a_row0) * p.As1 + a_col;
  const T* x_src[kWarps];
#pragma unroll
  for (int k = 0; k < kWarps; ++k) x_src[k] = xrow[a_row0 + 16 * k] ? xrow[a_row0 + 16 * k] + a_col : nullptr;
  auto load_stage = [&](int kc, int buf) {
    T* ad = ring + buf * SE + a_row0 * kPitch + a_col;
    T* xd = ad + RMAX * kPitch;
#pragma unroll
    for (int k = 0; k < RMAX / 16; ++k) {
      const int j = a_row0 + 16 * k;
      if (j < c.r16) {
        if (j < r) cp_async16(ad + 16 * k * kPitch, a_src + 16 * k * p.As1 + kc * kChunk);
        else *reinterpret_cast<uint4*>(ad + 16 * k * kPitch) = make_uint4(0u, 0u, 0u, 0u);
      }
    }
#pragma unroll
    for (int k = 0; k < kWarps; ++k) {
      if (x_src[k]) cp_async16(xd + 16 * k * kPitch, x_src[k] + kc * kChunk);
      else *reinterpret_cast<uint4*>(xd + 16 * k * kPitch) = make_uint4(0u, 0u, 0u, 0u);
    }
  };

  // ---- stage 1: Y = X_h @ A^T over R_kv in kChunk slices (multistage ring) ----
  const int nk = p.R_kv / kChunk;
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < nk) load_stage(st, st);
    cp_async_commit();
  }
  float y[2 * RB][4];
#pragma unroll
  for (int nt = 0; nt < 2 * RB; ++nt) y[nt][0] = y[nt][1] = y[nt][2] = y[nt][3] = 0.f;
  for (int kc = 0; kc < nk; ++kc) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // slice kc visible; every warp done with slice kc-1's buffer
    trace_stage1_landed(kc == 0);
    if (kc + STAGES - 1 < nk) load_stage(kc + STAGES - 1, (kc + STAGES - 1) % STAGES);
    cp_async_commit();
    if (c.live) {
      const T* Ab = ring + (kc % STAGES) * SE;
      const T* Xb = Ab + RMAX * kPitch + warp * 16 * kPitch;
#pragma unroll
      for (int kk = 0; kk < kChunk / 16; ++kk) {
        uint32_t a[4];
        ldsm_x4(a, Xb + (lane & 15) * kPitch + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int np = 0; np < RB; ++np) {
          if (np * 16 < c.r16) {
            uint32_t b[4];
            ldsm_x4(b, Ab + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * kPitch + kk * 16 + ((lane >> 3) & 1) * 8);
            Mma<T>::run(y[2 * np], a[0], a[1], a[2], a[3], b[0], b[1]);
            Mma<T>::run(y[2 * np + 1], a[0], a[1], a[2], a[3], b[2], b[3]);
          }
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the ring becomes stage-2 staging
  trace_stage1_done();
  uint32_t af[RB][4];
  y_to_a_frags<T, RB>(y, r, q4, af);
  const T* Bv = static_cast<const T*>(p.B) + static_cast<long long>(c.slot) * p.Bs0 +
                (static_cast<long long>(c.h) * (p.D_qk + p.D_v) + p.D_qk) * p.Bs1;

  if (geo.hg == 1) {
    // ---- stage 2, one head per block: 64-column steps, double-buffered, B_vc rows shared ----
    constexpr int BP = SM::kBPitch, SS = SM::kSharedStep;
    auto load_step = [&](int d0, int buf) {
      T* Bs = ring + buf * SS;
      stage_weight_rows<RMAX>(Bs, BP, Bv + static_cast<long long>(d0) * p.Bs1, p.Bs1, kChunk, kChunk, r, c.r16, tid,
                              kThreads);
      if (c.live) warp_tile_io<T, kChunk / 8, true>(Bs + kChunk * BP + warp * 16 * kPitch, kPitch, p, c.h, c.ra, c.rb,
                                                     d0, lane);
    };
    const int nsteps = p.D_v / kChunk;
    load_step(0, 0);
    cp_async_commit();
    for (int st = 0; st < nsteps; ++st) {
      if (st + 1 < nsteps) load_step((st + 1) * kChunk, (st + 1) & 1);
      cp_async_commit();
      cp_async_wait<1>();
      __syncthreads();  // step st's B_vc rows (all threads' copies) visible
      if (c.live) {
        T* Bs = ring + (st & 1) * SS;
        T* Os = Bs + kChunk * BP + warp * 16 * kPitch;
        v_stage2_step<T, RB, kChunk / 16>(Bs, BP, Os, kPitch, af, c.r16, c.s, lane);
        warp_tile_io<T, kChunk / 8, false>(Os, kPitch, p, c.h, c.ra, c.rb, st * kChunk, lane);
      }
      __syncthreads();  // buffer st&1 is refilled at step st+2
    }
    return;
  }

  // ---- stage 2, per warp (its own head): DC output columns per step ----
  if (!c.live) return;  // no block-wide barrier follows
  T* Bs = ring + warp * SM::kWarpElems;
  T* Os = Bs + DC * SM::kBPitch;
  for (int d0 = 0; d0 < p.D_v; d0 += DC) {
    stage_weight_rows<RMAX>(Bs, SM::kBPitch, Bv + static_cast<long long>(d0) * p.Bs1, p.Bs1, DC, DC, r, c.r16, lane, 32);
    warp_tile_io<T, DC / 8, true>(Os, SM::kOPitch, p, c.h, c.ra, c.rb, d0, lane);
    cp_async_commit();
    cp_async_wait<0>();
    __syncwarp();
    v_stage2_step<T, RB, DC / 16>(Bs, SM::kBPitch, Os, SM::kOPitch, af, c.r16, c.s, lane);
    warp_tile_io<T, DC / 8, false>(Os, SM::kOPitch, p, c.h, c.ra, c.rb, d0, lane);
    __syncwarp();  // staging reused by the next step
  }
}

// ---- kernels -----------------------------------------------------------------------------
// Template arguments: the act dtype, the rank bucket, the ring depth and the
// blocks per SM the kernel is compiled for (a tune, KernelTune below).
template <typename T, int RMAX, int STAGES, int MINB>
__global__ void __launch_bounds__(kThreads, MINB)
    fast_q_kernel(const KParams p, const Geom geo, const Plan v) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  trace_entry(0);
  wait_for_prior_grid();
  q_body<T, RMAX, STAGES>(p, geo, v, BlockCoord{static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y),
                                        static_cast<int>(blockIdx.z)},
                  smem_raw);
  trace_end();
}

template <typename T, int RMAX, int STAGES, int MINB>
__global__ void __launch_bounds__(kThreads, 4)
    fast_v_kernel(const KParams p, const Geom geo, const Plan v) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  trace_entry(1);
  wait_for_prior_grid();
  v_body<T, RMAX, STAGES>(p, geo, v, BlockCoord{static_cast<int>(blockIdx.x), 0, static_cast<int>(blockIdx.z)}, smem_raw);
  trace_end();
}

// Both sides in one launch: blocks [0, q_blocks) are q blocks (tile fastest,
// then column split, then head block), the rest v blocks. The two sides are
// independent, so they run side by side instead of one after the other
// (faster on every suite shape measured; PERF.md, version 3). Shared memory:
// the common ring. Putting the v blocks first was measured and reverted
// (PERF.md, v3.3).
template <typename T, int RMAX, int STAGES, int MINB>
__global__ void __launch_bounds__(kThreads, MINB)
    fast_qv_kernel(const KParams pq, const KParams pv, const Geom gq, const Geom gv, const Plan v, int tiles,
                   int nsplit, int q_blocks) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int b = static_cast<int>(blockIdx.x);
  trace_entry(b < q_blocks ? 0 : 1);
  wait_for_prior_grid();
  if (b < q_blocks)
    q_body<T, RMAX, STAGES>(pq, gq, v, BlockCoord{b % tiles, (b / tiles) % nsplit, b / (tiles * nsplit)}, smem_raw);
  else
    v_body<T, RMAX, STAGES>(pv, gv, v, BlockCoord{(b - q_blocks) % tiles, 0, (b - q_blocks) / tiles}, smem_raw);
  trace_end();
}

// ---- host side -------------------------------------------------------------------------

bool aligned16(const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15u) == 0; }
bool stride_ok(long long s, long long extent) { return extent <= 1 || s % 8 == 0; }

// MLALORA_FAST_GEOMETRY=v3: the block geometry of version 3 (q column
// splits until 4 blocks per SM, no one-head blocks for one-tile batches),
// to measure version 4's choices against in the same run.
bool geometry_v3() {
  const char* e = std::getenv("MLALORA_FAST_GEOMETRY");
  return e != nullptr && std::strcmp(e, "v3") == 0;
}

// Blocks of the q+v kernel resident on one SM, asked of the occupancy
// calculator once per ring size (without a GPU: what the launch bounds and
// shared memory allow by design, r_max <= 32: 4 x 57 KB, <= 64: 3 x 76 KB,
// 128: 2 x 85 KB of 228 KB; the r <= 32 case has under 1 KB to spare).
// A compiled variant of the kernels of one rank bucket: ring depth and the
// blocks per SM its register cap is set for.
template <int RMAX, int STAGES, int MINB>
struct KernelTune {
  static constexpr int kRmax = RMAX, kStages = STAGES, kMinBlocks = MINB;
  static constexpr size_t kSmem = Ring<RMAX, STAGES>::bytes;
};
template <int RMAX>
using DefaultTune = KernelTune<RMAX, ring_stages<RMAX>(), min_blocks<RMAX>()>;
template <int RMAX>
struct WideTuneOf {
  using type = void;  // no wide variant in this bucket
};
template <>
struct WideTuneOf<32> {
  using type = KernelTune<32, MLALORA_FAST_RING_STAGES_R32_WIDE, MLALORA_FAST_MIN_BLOCKS_R32_WIDE>;
};
template <>
struct WideTuneOf<128> {
  using type = KernelTune<128, MLALORA_FAST_RING_STAGES_R128_WIDE, MLALORA_FAST_MIN_BLOCKS_R128_WIDE>;
};

template <typename K>
int qv_blocks_per_sm() {
  static const int n = [] {
    const int by_design = std::min<int>(K::kMinBlocks, (228 * 1024) / (K::kSmem + 1024));
    auto kern = fast_qv_kernel<__nv_bfloat16, K::kRmax, K::kStages, K::kMinBlocks>;
    int b = 0;
    if (!ensure_smem_limit(reinterpret_cast<const void*>(kern), K::kSmem).ok() ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kern, kThreads, K::kSmem) != cudaSuccess || b < 1) {
      (void)cudaGetLastError();
      return by_design;
    }
    return b;
  }();
  return n;
}
template <typename K>
long long wave_of() {
  return static_cast<long long>(qv_blocks_per_sm<K>()) * sm_count();
}
// One wave of the default variant of r_max's bucket (the geometry's unit).
long long one_wave(int r_max) {
  return r_max <= 32 ? wave_of<DefaultTune<32>>() : (r_max <= 64 ? wave_of<DefaultTune<64>>() : wave_of<DefaultTune<128>>());
}

// Tile geometry from the shape only (graph-safe): how many tokens one slot
// (plan) or one segment (direct: L = capacity) is expected to bring decides
// tile height vs heads per block.
Geom choose_geom(int S, int H, int L, long long capacity, int r_max) {
  Geom g;
  const long long slots = std::max<long long>(1, std::min<long long>(L, capacity));
  const long long per_slot = S / slots;
  g.hg = per_slot >= 48 ? 1 : (per_slot >= 24 ? 2 : 4);
  // A batch one tile high (S <= 16): with four heads per block the v side
  // has only H/4 blocks, each streaming all of A and four heads' B_vc (T=1
  // at TP=8: 4 blocks). One head per block spreads that over H blocks;
  // worth it while the q+v grid, q split 4 ways, still fits one wave
  // (PERF.md, version 4: T=1 TP=8 r=128 21.5 -> 17.7 us; at TP=1 it is not).
  if (S <= 16 && 5LL * H <= one_wave(r_max) && !geometry_v3()) g.hg = 1;
  // MLALORA_FAST_HEADS_PER_BLOCK=1|2|4 forces the block shape (A/B runs).
  if (const char* e = std::getenv("MLALORA_FAST_HEADS_PER_BLOCK")) {
    const int f = std::atoi(e);
    if (f == 1 || f == 2 || f == 4) g.hg = f;
  }
  while (g.hg > 1 && g.hg > H) g.hg /= 2;
  g.ts = kWarps / g.hg;
  g.tm = 16 * g.ts;
  return g;
}

// Tiling of a call, from the shape only (graph-safe):
//  plan:   the plan kernel groups rows by slot (decode: one-token segments
//          of a few adapters share a tile and its weight reads);
//  direct: no plan kernel; tiles are (segment, tm tokens) and every block
//          finds its own (find_tile). Saves the plan's launch and its
//          completion wait (2-8 us measured, PERF.md version 4; chunked
//          r = 128 at TP = 1 lost 2%), loses only the merging of
//          same-slot segments, which does not matter when segments are long
//          (prefill, chunked: >= 32 tokens each on average) or the batch is
//          one tile high (S <= 16). Few segments keep find_tile's scan short.
// MLALORA_FAST_TILING=plan|direct forces one (tests, A/B runs).
constexpr long long kDirectMaxSegments = 256;
bool choose_direct(long long S, long long capacity) {
  const char* e = std::getenv("MLALORA_FAST_TILING");
  if (e != nullptr && std::strcmp(e, "plan") == 0) return false;
  if (e != nullptr && std::strcmp(e, "direct") == 0) return true;
  return capacity <= kDirectMaxSegments && (S <= 16 || S >= 32 * capacity);
}
// The geometry of a call: per slot (plan) or per segment (direct).
Geom choose_layout(long long S, int H, int L, long long capacity, int r_max, bool direct) {
  return direct ? choose_geom(static_cast<int>(S), H, static_cast<int>(std::min<long long>(capacity, 1LL << 30)),
                              capacity, r_max)
                : choose_geom(static_cast<int>(S), H, L, capacity, r_max);
}

long long max_tiles_for(int S, int L, long long nseg, int max_seg_len, int tm) {
  if (S <= 0 || nseg <= 0 || max_seg_len <= 0) return 0;
  const long long a = nseg * ((static_cast<long long>(max_seg_len) + tm - 1) / tm);
  const long long b = (static_cast<long long>(S) + tm - 1) / tm + std::min<long long>(L, nseg);
  return std::min(a, b);
}

struct PlanLayout {
  size_t cursor = 0, seg_pos = 0, seg_incl = 0, base = 0, num = 0, seg_first = 0, seg_slot = 0, tile_meta = 0,
         rows = 0, bytes = 0;
};
size_t align16(size_t x) { return (x + 15) & ~size_t{15}; }
PlanLayout plan_layout(int L, long long capacity, long long max_tiles, int tm) {
  PlanLayout pl;
  size_t off = 0;
  const size_t l = static_cast<size_t>(L), c = static_cast<size_t>(capacity);
  pl.cursor = off, off = align16(off + sizeof(unsigned long long) * l);
  pl.seg_pos = off, off = align16(off + sizeof(unsigned long long) * c);
  pl.seg_incl = off, off = align16(off + sizeof(long long) * c);
  pl.base = off, off = align16(off + sizeof(int) * (l + 1));
  pl.num = off, off = align16(off + sizeof(int));
  pl.seg_first = off, off = align16(off + sizeof(int) * c);
  pl.seg_slot = off, off = align16(off + sizeof(int) * c);
  pl.tile_meta = off, off = align16(off + sizeof(TileMeta) * static_cast<size_t>(max_tiles));
  pl.rows = off, off = align16(off + sizeof(int) * static_cast<size_t>(max_tiles) * static_cast<size_t>(tm));
  pl.bytes = off;
  return pl;
}

// Workspace of the plan for any block shape (tiles of 16, 32 or 64 rows):
// the size a caller allocates must not depend on the geometry choice or on
// the A/B knobs (a graph sized under one setting, captured under another).
size_t plan_bytes_any_geometry(int S, int L, long long capacity, int max_seg_len) {
  size_t m = 0;
  for (int tm : {16, 32, 64})
    m = std::max(m, plan_layout(L, capacity, max_tiles_for(S, L, capacity, max_seg_len, tm), tm).bytes);
  return m;
}

}  // namespace

bool fast_dims_eligible(const ProblemShape& shape, Side side) {
  const Dims& d = shape.dims;
  if (shape.dtype == DType::f32) return false;
  if (d.r_max < 1 || d.r_max > kMaxRank || d.R_kv % kChunk != 0 || d.R_kv <= 0) return false;
  if (d.H > 65535 || d.S > (1LL << 30)) return false;
  return side == Side::q ? (d.D_qk % 16 == 0 && d.D_qk > 0) : (d.D_v % kChunk == 0 && d.D_v > 0);
}

size_t fast_workspace_size(const ProblemShape& shape, Side side) {
  if (!fast_dims_eligible(shape, side)) return 0;
  const Dims& d = shape.dims;
  // Direct tiling needs no workspace, but the size must not depend on the
  // tiling either (same reason), so it is always the plan's, or the
  // small-batch kernels' intermediates when larger (whether or not they run).
  return std::max(plan_bytes_any_geometry(static_cast<int>(d.S), static_cast<int>(d.L), shape.segment_capacity,
                                          static_cast<int>(shape.max_segment_len)),
                  small_workspace_size(shape));
}

FastPathLayout fast_layout(const ProblemShape& shape) {
  const Dims& d = shape.dims;
  FastPathLayout f;
  f.direct = choose_direct(d.S, shape.segment_capacity);
  const Geom g = choose_layout(d.S, static_cast<int>(d.H), static_cast<int>(d.L), shape.segment_capacity,
                               static_cast<int>(d.r_max), f.direct);
  f.heads_per_block = g.hg;
  f.tile_tokens = g.tm;
  f.small_batch = small_batch_applies(shape);
  return f;
}

bool fast_eligible(const ProblemShape& shape, const KParams& p, Side side) {
  if (!fast_dims_eligible(shape, side)) return false;
  if (!aligned16(p.x) || !aligned16(p.out) || !aligned16(p.A) || !aligned16(p.B)) return false;
  if (!stride_ok(p.xs0, p.S) || !stride_ok(p.xs1, p.H) || !stride_ok(p.os0, p.S) || !stride_ok(p.os1, p.H))
    return false;
  if (!stride_ok(p.As0, p.L) || !stride_ok(p.As1, p.r_max) || !stride_ok(p.Bs0, p.L)) return false;
  return stride_ok(p.Bs1, static_cast<long long>(p.H) * (p.D_qk + p.D_v));
}

namespace {

// Workspace views and launch geometry of one call (shape-derived, graph-safe).
struct Prepared {
  Plan plan;
  Geom geo;
  long long tiles = 0;  // grid.x
};

Status prepare(const ProblemShape& shape, const KParams& p, void* workspace, size_t workspace_bytes, Prepared* out) {
  const Geom base = choose_layout(p.S, p.H, p.L, shape.segment_capacity, p.r_max, false);
  const long long mt_ws = max_tiles_for(p.S, p.L, shape.segment_capacity, p.max_seg_len, base.tm);
  const PlanLayout pl = plan_layout(p.L, shape.segment_capacity, mt_ws, base.tm);
  // Checked in both tilings against the documented size (fast_workspace_size).
  const size_t need = plan_bytes_any_geometry(p.S, p.L, shape.segment_capacity, p.max_seg_len);
  if (workspace == nullptr || workspace_bytes < need)
    return Status{StatusCode::workspace_too_small,
                  "workspace: " + std::to_string(workspace_bytes) + " bytes given, " + std::to_string(need) +
                      " needed by the fused fast path's tile plan"};
  if (mt_ws > 0x7fffffffLL) return Status::NotSupported("SGMM fast path: too many tiles for one grid");
  if (choose_direct(p.S, shape.segment_capacity)) {
    out->geo = choose_layout(p.S, p.H, p.L, shape.segment_capacity, p.r_max, true);
    out->plan = Plan{};
    out->plan.direct = 1;
    out->plan.tm = out->geo.tm;
    KParams t = p;
    t.M_T = out->geo.tm;
    out->tiles = tile_slots(t);  // host mode: bounded by the host live count
    if (out->tiles > 0x7fffffffLL) return Status::NotSupported("SGMM fast path: too many tiles for one grid");
    return Status::Ok();
  }
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  Plan& plan = out->plan;
  plan.slot_cursor = reinterpret_cast<unsigned long long*>(ws + pl.cursor);
  plan.seg_pos = reinterpret_cast<unsigned long long*>(ws + pl.seg_pos);
  plan.seg_first = reinterpret_cast<int*>(ws + pl.seg_first);
  plan.seg_incl = reinterpret_cast<long long*>(ws + pl.seg_incl);
  plan.seg_slot = reinterpret_cast<int*>(ws + pl.seg_slot);
  plan.slot_base = reinterpret_cast<int*>(ws + pl.base);
  plan.num_tiles = reinterpret_cast<int*>(ws + pl.num);
  plan.tile_meta = reinterpret_cast<TileMeta*>(ws + pl.tile_meta);
  plan.tile_rows = reinterpret_cast<int*>(ws + pl.rows);
  plan.max_tiles = static_cast<int>(mt_ws);
  plan.tm = base.tm;
  out->geo = base;
  // Grid: tiles of this launch (host mode: bounded by the host live count).
  const long long nseg = p.nseg_dev != nullptr ? shape.segment_capacity : p.nseg_host;
  out->tiles = std::min(mt_ws, max_tiles_for(p.S, p.L, nseg, p.max_seg_len, base.tm));
  return Status::Ok();
}

Status run_plan(const KParams& p, const Prepared& pr, cudaStream_t stream) {
  if (pr.tiles <= 0 || pr.plan.direct) return Status::Ok();
  plan_kernel<<<1, kPlanThreads, 0, stream>>>(p, pr.plan);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return Status::DeviceError(std::string("SGMM plan kernel launch: ") + cudaGetErrorString(e));
  return Status::Ok();
}

// Launch options, read from the environment on every call (experiments and
// tests; the defaults are the measured best, optimized/PERF.md):
//   MLALORA_FAST_QV=separate  q then v as two launches (default: both sides
//                             in one launch; faster on every suite shape measured)
//   MLALORA_FAST_PDL=0        plain launches instead of programmatic
//                             dependent launch (plan -> main, q -> v)
bool qv_separate() {
  const char* e = std::getenv("MLALORA_FAST_QV");
  return e != nullptr && std::strcmp(e, "separate") == 0;
}
bool pdl_enabled() {
  const char* e = std::getenv("MLALORA_FAST_PDL");
  return !(e != nullptr && std::strcmp(e, "0") == 0);
}

// MLALORA_FAST_Q_MAX_SPLIT=N: at most N column splits (A/B runs; default: no cap).
int q_max_split() {
  const char* e = std::getenv("MLALORA_FAST_Q_MAX_SPLIT");
  const int n = e != nullptr ? std::atoi(e) : 0;
  return n >= 1 ? n : 1 << 20;
}

template <typename... KArgs, typename... Args>
Status launch_kernel(void (*kern)(KArgs...), dim3 grid, size_t smem, bool pdl, cudaStream_t stream, Args... args) {
  return launch_ex(kern, grid, dim3(kThreads), smem, pdl, stream, args...);
}

// Grid of one side: (tiles, q column splits, head blocks).
struct SideGrid {
  Geom geo;
  int nsplit = 1, head_blocks = 1;
  long long blocks(long long tiles) const { return tiles * nsplit * head_blocks; }
};
// v_blocks: blocks of the v side in the same launch (0 when the q side runs
// alone); wave: resident blocks of the kernel variant that will run.
SideGrid side_grid(const KParams& p, Side side, const Prepared& pr, long long v_blocks, long long wave) {
  SideGrid g;
  g.geo = pr.geo;
  g.head_blocks = (p.H + pr.geo.hg - 1) / pr.geo.hg;
  if (side == Side::q) {
    // Split the R_kv output columns over blocks (each split recomputes the
    // cheap X @ B_kc and re-reads B_kc) while the whole grid, q and v
    // blocks, still fits in ONE wave of resident blocks: a split that
    // spills into a second wave costs more than it saves (PERF.md, version
    // 4; version 3 split until 4 blocks per SM, 2 waves at r = 128).
    const int chunks = p.R_kv / kChunk;
    const int max_split = q_max_split();
    const long long q1 = pr.tiles * g.head_blocks;
    if (geometry_v3()) {
      const long long target = 4LL * sm_count();
      while (q1 * g.nsplit < target && chunks % (2 * g.nsplit) == 0 && 2 * g.nsplit <= max_split) g.nsplit *= 2;
    } else {
      while (q1 * 2 * g.nsplit + v_blocks <= wave && chunks % (2 * g.nsplit) == 0 && 2 * g.nsplit <= max_split)
        g.nsplit *= 2;
    }
    g.geo.cols_per_block = p.R_kv / g.nsplit;
  }
  return g;
}

// The grids of a call for a kernel variant of `wave` resident blocks.
struct CallGrid {
  SideGrid q, v;
  long long blocks = 0;  // both sides
};
CallGrid call_grid(const KParams* pq, const KParams* pv, const Prepared& pr, long long wave) {
  CallGrid g;
  if (pv != nullptr) g.v = side_grid(*pv, Side::v, pr, 0, wave);
  if (pq != nullptr) g.q = side_grid(*pq, Side::q, pr, pv != nullptr ? g.v.blocks(pr.tiles) : 0, wave);
  g.blocks = (pq != nullptr ? g.q.blocks(pr.tiles) : 0) + (pv != nullptr ? g.v.blocks(pr.tiles) : 0);
  return g;
}

// One side (pv or pq null), or both sides: in one q+v launch (unless
// MLALORA_FAST_QV=separate or the flat grid would overflow), else q then v;
// kernels of variant K.
template <typename T, typename K>
Status launch_tuned(const KParams* pq, const KParams* pv, const Prepared& pr, const CallGrid& g, cudaStream_t stream) {
  constexpr int R = K::kRmax, ST = K::kStages, MB = K::kMinBlocks;
  const bool pdl = pdl_enabled();
  const SideGrid &gq = g.q, &gv = g.v;
  if (pq != nullptr && pv != nullptr && !qv_separate()) {
    const long long qb = gq.blocks(pr.tiles), total = qb + gv.blocks(pr.tiles);
    if (total <= 0x7fffffffLL)
      return launch_kernel(fast_qv_kernel<T, R, ST, MB>, dim3(static_cast<unsigned>(total)), K::kSmem, pdl, stream,
                           *pq, *pv, gq.geo, gv.geo, pr.plan, static_cast<int>(pr.tiles), gq.nsplit,
                           static_cast<int>(qb));
  }
  if (pq != nullptr)
    MLALORA_RETURN_IF_ERROR(launch_kernel(fast_q_kernel<T, R, ST, MB>,
                                          dim3(static_cast<unsigned>(pr.tiles), static_cast<unsigned>(gq.nsplit),
                                               static_cast<unsigned>(gq.head_blocks)),
                                          K::kSmem, pdl, stream, *pq, gq.geo, pr.plan));
  if (pv != nullptr)
    MLALORA_RETURN_IF_ERROR(launch_kernel(fast_v_kernel<T, R, ST, MB>,
                                          dim3(static_cast<unsigned>(pr.tiles), 1u,
                                               static_cast<unsigned>(gv.head_blocks)),
                                          K::kSmem, pdl, stream, *pv, gv.geo, pr.plan));
  return Status::Ok();
}

// MLALORA_FAST_TUNE=default|wide forces the variant of the buckets that
// have two (tests, A/B runs); otherwise the grid decides.
const char* tune_forced() {
  const char* e = std::getenv("MLALORA_FAST_TUNE");
  if (e != nullptr && (std::strcmp(e, "default") == 0 || std::strcmp(e, "wide") == 0)) return e;
  return nullptr;
}
// Many waves: the wide variant's extra resident block hides more of each
// block's latency than its shallower ring and lower register cap cost
// (PERF.md, v9.1, v9.3). In graph mode the grid is shape-derived, so the
// choice is graph-safe.
bool wide_applies(int rmax_bucket, int r_max, long long blocks, long long default_wave) {
  const char* forced = tune_forced();
  if (forced != nullptr) return std::strcmp(forced, "wide") == 0;
  if (rmax_bucket == 32 && r_max <= 16) return false;
  return blocks >= MLALORA_FAST_WIDE_WAVES * default_wave;
}

template <typename T, int RMAX>
Status launch_sides(const KParams* pq, const KParams* pv, const Prepared& pr, cudaStream_t stream) {
  using D = DefaultTune<RMAX>;
  using W = typename WideTuneOf<RMAX>::type;
  const long long wave = wave_of<D>();
  const CallGrid g = call_grid(pq, pv, pr, wave);
  if constexpr (!std::is_void_v<W>) {
    const int r_max = (pq != nullptr ? pq : pv)->r_max;
    if (wide_applies(RMAX, r_max, g.blocks, wave))
      return launch_tuned<T, W>(pq, pv, pr, call_grid(pq, pv, pr, wave_of<W>()), stream);
  }
  return launch_tuned<T, D>(pq, pv, pr, g, stream);
}

template <typename T>
Status launch_typed(const KParams* pq, const KParams* pv, int r_max, const Prepared& pr, cudaStream_t stream) {
  if (r_max <= 32) return launch_sides<T, 32>(pq, pv, pr, stream);
  if (r_max <= 64) return launch_sides<T, 64>(pq, pv, pr, stream);
  return launch_sides<T, 128>(pq, pv, pr, stream);
}

Status run_main(const KParams* pq, const KParams* pv, DType dt, const Prepared& pr, cudaStream_t stream) {
  if (pr.tiles <= 0) return Status::Ok();
  const int r_max = (pq != nullptr ? pq : pv)->r_max;
  if (dt == DType::bf16) return launch_typed<__nv_bfloat16>(pq, pv, r_max, pr, stream);
  if (dt == DType::f16) return launch_typed<__half>(pq, pv, r_max, pr, stream);
  return Status::NotSupported("SGMM fast path: f32");
}

}  // namespace

Status launch_fast(const ProblemShape& shape, const KParams& p, DType dt, Side side, void* workspace,
                   size_t workspace_bytes, cudaStream_t stream, bool plan_prebuilt) {
  if (small_batch_applies(shape))
    return launch_small(shape, side == Side::q ? &p : nullptr, side == Side::v ? &p : nullptr, dt, workspace,
                        workspace_bytes, stream);
  Prepared pr;
  MLALORA_RETURN_IF_ERROR(prepare(shape, p, workspace, workspace_bytes, &pr));
  if (!plan_prebuilt) MLALORA_RETURN_IF_ERROR(run_plan(p, pr, stream));
  KParams k = p;
  k.M_T = pr.geo.tm;  // find_tile's tile height (direct tiling)
  return run_main(side == Side::q ? &k : nullptr, side == Side::v ? &k : nullptr, dt, pr, stream);
}

Status launch_fast_both(const ProblemShape& shape, const KParams& pq, const KParams& pv, DType dt, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream, bool plan_prebuilt) {
  if (small_batch_applies(shape)) {
    if (!qv_separate()) return launch_small(shape, &pq, &pv, dt, workspace, workspace_bytes, stream);
    MLALORA_RETURN_IF_ERROR(launch_small(shape, &pq, nullptr, dt, workspace, workspace_bytes, stream));
    return launch_small(shape, nullptr, &pv, dt, workspace, workspace_bytes, stream);
  }
  // The plan depends only on the index data and the shape, which the two
  // sides share: build it once, then run both sides from it.
  Prepared pr;
  MLALORA_RETURN_IF_ERROR(prepare(shape, pq, workspace, workspace_bytes, &pr));
  if (!plan_prebuilt) MLALORA_RETURN_IF_ERROR(run_plan(pq, pr, stream));
  KParams kq = pq, kv = pv;
  kq.M_T = kv.M_T = pr.geo.tm;  // find_tile's tile height (direct tiling)
  return run_main(&kq, &kv, dt, pr, stream);
}

Status build_fast_plan(const ProblemShape& shape, const KParams& p, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream) {
  if (small_batch_applies(shape)) return Status::Ok();  // the small-batch kernels need no plan
  Prepared pr;
  MLALORA_RETURN_IF_ERROR(prepare(shape, p, workspace, workspace_bytes, &pr));
  return run_plan(p, pr, stream);  // nothing for direct tiling or an empty grid
}

}  // namespace mlalora::optimized::detail

namespace mlalora::optimized {

bool fast_trace_compiled() { return MLALORA_FAST_TRACE != 0; }

Status fast_trace_reset(cudaStream_t stream) {
#if MLALORA_FAST_TRACE
  void* a = nullptr;
  cudaError_t e = cudaGetSymbolAddress(&a, detail::g_fast_trace);
  if (e == cudaSuccess) e = cudaMemsetAsync(a, 0, sizeof(detail::TraceSlot) * kFastTraceBlocks, stream);
  if (e != cudaSuccess) return Status::DeviceError(std::string("fast_trace_reset: ") + cudaGetErrorString(e));
  return detail::small_trace_reset(stream);
#else
  (void)stream;
  return Status::NotSupported("fast-path trace: this build has no MLALORA_FAST_TRACE (scripts/trace_build.sh)");
#endif
}

Status fast_trace_read(std::vector<FastTraceRecord>* out) {
  if (out == nullptr) return Status::Invalid("fast_trace_read: out is null");
#if MLALORA_FAST_TRACE
  std::vector<detail::TraceSlot> slots(kFastTraceBlocks);
  const cudaError_t e = cudaMemcpyFromSymbol(slots.data(), detail::g_fast_trace, sizeof(detail::TraceSlot) * slots.size());
  if (e != cudaSuccess) return Status::DeviceError(std::string("fast_trace_read: ") + cudaGetErrorString(e));
  out->clear();
  for (int b = 0; b < kFastTraceBlocks; ++b) {
    const detail::TraceSlot& s = slots[static_cast<size_t>(b)];
    if (s.ns[0] == 0) continue;  // block not launched (or past the traced range)
    FastTraceRecord r;
    r.block = b, r.side = s.side, r.smid = s.smid, r.resolved = s.resolved != 0;
    for (int k = 0; k < kFastTraceMarks; ++k) r.ns[k] = s.ns[k], r.cycles[k] = s.cycles[k];
    out->push_back(r);
  }
  return detail::small_trace_read(out);
#else
  return Status::NotSupported("fast-path trace: this build has no MLALORA_FAST_TRACE (scripts/trace_build.sh)");
#endif
}

}  // namespace mlalora::optimized
