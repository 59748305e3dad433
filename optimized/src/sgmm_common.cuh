// Device-side pieces shared by every SGMM kernel: the launch parameters, the
// element-type helpers and the segment -> tile lookup that makes the launch
// geometry independent of the batch (CUDA-graph mode).
//
// Tiles. A tile is (segment g, token block tb, head block hb): tokens
// [seg_begin + tb*M_T, min(seg_end, seg_begin + (tb+1)*M_T)) of segment g and
// heads [hb*H_T, min(H, (hb+1)*H_T)). Tiles are numbered segment by segment
// in order of g, counting only *processable* segments (see below). The grid
// has  min(capacity * ceil(max_segment_len / M_T),  floor(S / M_T) + capacity)
// tile slots (an upper bound of the tile count of any valid batch, so it
// depends only on the shape) times ceil(H / H_T) head blocks; a block whose
// tile slot is past the live tile count exits at once.
//
// Garbage index data (the documented behaviour, see sgmm.hpp): a segment g
// below the live count is processed only when
//     0 <= seg_indptr[g] <= seg_indptr[g+1] <= S,
//     seg_indptr[g+1] - seg_indptr[g] <= max_segment_len,
//     0 <= weight_indices[g] < L,   1 <= lora_ranks[slot] <= r_max;
// otherwise it is skipped (writes nothing). A covered logical row whose
// permutation entry is outside [0, S) is skipped. Nothing is ever read or
// written outside the tensors' extents; with inconsistent (but in-range) data,
// e.g. overlapping segments or repeated permutation entries, rows may be
// updated more than once, never out of bounds.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_scan.cuh>

namespace mlalora::optimized::detail {

// Everything a kernel needs, by value. Strides in elements; inner strides are 1.
struct KParams {
  const void* x = nullptr;  // side input: q_nope (q) / attn_latent (v)
  void* out = nullptr;      // side output: q_nope_out (q) / attn_bmm_out (v)
  long long xs0 = 0, xs1 = 0, os0 = 0, os1 = 0;
  const void* A = nullptr;
  long long As0 = 0, As1 = 0;
  const void* B = nullptr;
  long long Bs0 = 0, Bs1 = 0;
  const int32_t* ranks = nullptr;
  const float* scalings = nullptr;
  const int32_t* seg_indptr = nullptr;
  const int32_t* weight_indices = nullptr;
  const int32_t* perm = nullptr;      // null: identity
  const int32_t* nseg_dev = nullptr;  // graph mode live count (null: nseg_host)
  int nseg_host = 0;
  int capacity = 0;
  int S = 0, H = 0, D_qk = 0, D_v = 0, R_kv = 0, L = 0, r_max = 0, max_seg_len = 0;
  int K1 = 0;  // contraction length of stage 1: D_qk (q) / R_kv (v)
  int N2 = 0;  // output features of stage 2:   R_kv (q) / D_v (v)
  int M_T = 1, H_T = 1, n_hb = 1;  // tile: tokens, heads; head blocks
  int vec = 0;                     // 16-byte global accesses allowed (alignment checked on the host)
  void* inter = nullptr;           // split path: (S, H, r_max) contiguous, act dtype, by logical row
};

// Per-tile facts, resolved by find_tile.
struct TileInfo {
  int seg;        // segment index g
  int slot;       // weight_indices[g]
  int rank;       // lora_ranks[slot], in [1, r_max]
  float scale;    // scalings[slot]
  int tok_begin;  // first logical row of the tile
  int tok_count;  // rows of the tile, in [1, M_T]
};

// ---- element types ---------------------------------------------------------
template <typename T>
struct Elem;
template <>
struct Elem<float> {
  static __device__ __forceinline__ float to_f(float x) { return x; }
  static __device__ __forceinline__ float from_f(float x) { return x; }
};
template <>
struct Elem<__half> {
  static __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_f(float x) { return __float2half_rn(x); }
};
template <>
struct Elem<__nv_bfloat16> {
  static __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_f(float x) { return __float2bfloat16_rn(x); }
};
template <typename T>
__device__ __forceinline__ float round_through(float x) {
  return Elem<T>::to_f(Elem<T>::from_f(x));
}

// Live segment count: the device value clamped to [0, capacity] in graph
// mode, else the (host-validated) host value.
__device__ __forceinline__ int live_segments(const KParams& p) {
  if (p.nseg_dev != nullptr) {
    int n = *p.nseg_dev;
    return n < 0 ? 0 : (n > p.capacity ? p.capacity : n);
  }
  return p.nseg_host;
}

// Every slot's rank and scale in shared memory, when the block has a thread
// per slot (L <= NT): thread t loads slot t's entry (load) in the same round
// as its other independent index loads, stores it (publish) before the
// block's next barrier, and any thread reads any slot after it (get). With
// more slots than threads, get() loads the slot's entry from global memory
// (a dependent round of its own, as before the table).
struct SlotEntry {
  int rank;
  float scale;
};
template <int NT>
struct SlotTable {
  int rank[NT];
  float scale[NT];
  __device__ __forceinline__ SlotEntry load(const KParams& p) const {
    const int t = static_cast<int>(threadIdx.x);
    if (p.L > NT || t >= p.L) return SlotEntry{0, 0.f};
    return SlotEntry{__ldg(p.ranks + t), __ldg(p.scalings + t)};
  }
  __device__ __forceinline__ void publish(const KParams& p, SlotEntry e) {
    const int t = static_cast<int>(threadIdx.x);
    if (p.L <= NT && t < p.L) rank[t] = e.rank, scale[t] = e.scale;
  }
  // slot in [0, p.L), after the barrier that follows publish.
  __device__ __forceinline__ SlotEntry get(const KParams& p, int slot) const {
    if (p.L <= NT) return SlotEntry{rank[slot], scale[slot]};
    return SlotEntry{__ldg(p.ranks + slot), __ldg(p.scalings + slot)};
  }
};

// Resolve tile number `tile` (block-uniform) into *info (shared memory).
// Returns false (block-uniformly) when the tile slot is past the batch's
// tiles. Must be called by all NT threads of the block.
// Latency: the index loads of a chunk are issued for every g < capacity
// before the live count is known (they stay inside the arrays, which hold
// capacity entries). When the block has a thread per slot (L <= NT), every
// slot's rank and scale is loaded in the same round as the first chunk's
// segment data and read from shared memory (SlotTable), so a block knows
// its tile after two dependent loads (count, segment bounds and the slot
// table, then the caller's permutation entries); with more slots, the
// found slot's rank and scale are a round of their own.
// `scratch`: shared memory for the slot table (sizeof(SlotTable<NT>) bytes,
// 4-byte aligned), free until find_tile returns (the caller's staging
// area: nothing reads the table after the barrier find_tile returns behind).
template <int NT>
__device__ bool find_tile(const KParams& p, long long tile, TileInfo* info, void* scratch) {
  using Scan = cub::BlockScan<long long, NT>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ long long s_chunk_total;
  __shared__ int s_found;
  SlotTable<NT>& slots = *static_cast<SlotTable<NT>*>(scratch);
  const int tid = static_cast<int>(threadIdx.x);
  // Round 1, all independent: the first chunk's segment data, the slot table, the live count.
  int b = 0, e = 0, wi = 0;
  if (tid < p.capacity) {  // not g < n: these loads do not wait for the live count
    b = __ldg(p.seg_indptr + tid);
    e = __ldg(p.seg_indptr + tid + 1);
    wi = __ldg(p.weight_indices + tid);
  }
  const SlotEntry own = slots.load(p);
  const int n = live_segments(p);
  slots.publish(p, own);
  if (tid == 0) s_found = 0;
  __syncthreads();
  long long base = 0;
  for (int c0 = 0; c0 < p.capacity; c0 += NT) {
    const int g = c0 + tid;
    long long cnt = 0;
    int rank = 0;
    float scale = 0.f;
    if (c0 > 0) {
      b = e = wi = 0;
      if (g < p.capacity) {
        b = __ldg(p.seg_indptr + g);
        e = __ldg(p.seg_indptr + g + 1);
        wi = __ldg(p.weight_indices + g);
      }
    }
    bool ok = g < n && b >= 0 && e >= b && e <= p.S && (e - b) <= p.max_seg_len && wi >= 0 && wi < p.L;
    if (ok) {
      const SlotEntry se = slots.get(p, wi);
      rank = se.rank;
      scale = se.scale;
      ok = rank >= 1 && rank <= p.r_max;
    }
    if (ok) cnt = (e - b + p.M_T - 1) / p.M_T;
    long long incl;
    Scan(scan_tmp).InclusiveSum(cnt, incl);
    const long long excl = incl - cnt;
    if (cnt > 0 && tile >= base + excl && tile < base + incl) {
      const int tb = static_cast<int>(tile - base - excl);
      info->seg = g;
      info->slot = wi;
      info->rank = rank;
      info->scale = scale;
      info->tok_begin = b + tb * p.M_T;
      const int rem = e - info->tok_begin;
      info->tok_count = rem < p.M_T ? rem : p.M_T;
      s_found = 1;
    }
    if (threadIdx.x == NT - 1) s_chunk_total = incl;
    __syncthreads();
    if (s_found) return true;
    if (c0 + NT >= n) return false;  // no live segment left
    base += s_chunk_total;
    if (tile < base) return false;  // cannot happen (tile would have been found); defensive
    __syncthreads();                // scan_tmp / s_chunk_total reuse
  }
  return false;
}

// Physical row of logical row i (-1 when the permutation entry is out of range).
__device__ __forceinline__ int physical_row(const KParams& p, int i) {
  if (p.perm == nullptr) return i;
  const int t = __ldg(p.perm + i);
  return (t >= 0 && t < p.S) ? t : -1;
}

__device__ __forceinline__ long long ceil_div_ll(long long a, long long b) { return (a + b - 1) / b; }

}  // namespace mlalora::optimized::detail
