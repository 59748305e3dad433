// Public C++ API of the production CUDA SGMM kernels for the absorbed-MLA
// kv_b_proj LoRA correction (../../../../SPEC: shared/SPEC.md).
//
// Framework-free: device pointers + the project's ProblemShape (dims, dtype,
// strides, capacities), a stream and a caller-owned workspace. Every entry
// point validates on the host and returns a Status; it never launches on bad
// arguments. Kernels never read or write out of bounds even when the
// device-side index data is garbage (see check_index_data for diagnosing it).
//
// Rounding model (what reference/error_bound must be told): accumulation in
// fp32; the rank-r intermediate is rounded to the activation dtype (bf16/f16:
// it feeds a tensor-core MMA; f32: stays f32) in both the split and the fused
// path; the scaled delta is added to the output in fp32 and rounded once to
// the output dtype.
//
// Kernels (optimized/src), chosen on the host per call (fused_kernel_family):
//  - fast (sgmm_fast.cu): the fused path for bf16/f16 when r_max <= 128,
//    D_qk % 16 == 0, R_kv % 64 == 0, D_v % 64 == 0 (v side), 16-byte aligned
//    pointers and outer strides in multiples of 8 elements (model shapes).
//    A one-block plan kernel groups the batch's rows BY SLOT (segments of the
//    same adapter need not be adjacent), then 4-warp tensor-core kernels run
//    tiles of one slot, so each block reads its slot's weights once for up to
//    64 tokens. Needs a workspace (the plan; workspace_size says how much).
//    Shapes with long segments (prefill, chunked) or at most 16 rows skip
//    the plan: each block finds its segment itself (fast_path_layout).
//    One-row batches at r_max >= 64, and batches of at most 16 rows at
//    r_max > 64 with at most 16 heads, run the small-batch kernels instead (sgmm_small.cu, still family
//    "fast"; fast_path_layout().small_batch; MLALORA_FAST_SMALL=0/1 turns
//    them off / on for every batch of <= 16 rows): two CUDA-core stages
//    that spread the weights thin over the grid, the rank-r intermediate
//    (fp32, both sides) in the workspace, the second stage a programmatic
//    dependent launch.
//  - mma (sgmm_mma.cu): bf16/f16 tensor cores for every other shape with
//    r_max <= 128, and the split path's steps.
//  - generic (sgmm_generic.cu): f32, and bf16/f16 with r_max > 128 (fp32 FMA).
// The fused path keeps the intermediate on chip for r_max <= 256; above that
// lora_correction(..., Path::fused, ...) runs the split path instead
// (workspace_size accounts for it; the rounding model is the same). All
// kernels need unit inner strides (else not_supported); any outer strides,
// any dims, any pointer alignment (16-byte accesses only where allowed).
//
// Garbage index data (what the kernels do; check_index_data diagnoses it):
// the live count is clamped to [0, segment_capacity]; a live segment g is
// processed only if 0 <= seg_indptr[g] <= seg_indptr[g+1] <= S, its length is
// <= max_segment_len, 0 <= weight_indices[g] < L and 1 <= lora_ranks[slot] <=
// r_max; otherwise it is skipped entirely (nothing written). Within a
// processed segment a row whose permutation entry is outside [0, S) is
// skipped. Nothing outside the tensors is ever read or written; rows of
// skipped segments are untouched. In-range but inconsistent data (overlapping
// segments, repeated permutation entries) can update a row more than once
// (a race between blocks, still in bounds).
//
// Launch geometry depends only on the shape (segment_capacity,
// max_segment_len, S, L, dims; in host mode also num_segments_host): the
// mma/generic kernels launch min(capacity*ceil(max_segment_len/M_T),
// S/M_T + capacity) token tiles times head blocks and each block locates its
// (segment, token tile) from the device index data; the fast path's plan
// kernel writes the live tile count and tile list to the workspace and its
// main kernels launch ceil(S/TM) + min(L, capacity) tiles (bounded likewise)
// and exit past the live count; without a plan (direct tiling) they launch
// the mma kernels' bound with M_T = TM.
//
// Graph capture: call once eagerly before capturing (kernels needing more
// than 48 KB of shared memory raise their limit with cudaFuncSetAttribute).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "mlalora/problem.hpp"
#include "mlalora/status.hpp"

namespace mlalora::optimized {

// Device pointers of one call. Element pointers point to storage of
// shape.dtype (2 bytes for bf16/f16, 4 for f32) laid out with shape.layout.
struct DeviceArgs {
  const void* q_nope = nullptr;
  void* q_nope_out = nullptr;
  const void* attn_latent = nullptr;
  void* attn_bmm_out = nullptr;
  const void* A = nullptr;
  const void* B = nullptr;
  const int32_t* lora_ranks = nullptr;      // L
  const float* scalings = nullptr;          // L
  const int32_t* seg_indptr = nullptr;      // segment_capacity + 1
  const int32_t* weight_indices = nullptr;  // segment_capacity
  const int32_t* permutation = nullptr;     // S entries iff shape.has_permutation
  // CUDA-graph mode: when non-null the live segment count is read from this
  // device int32 at run time (clamped to [0, segment_capacity]) and
  // num_segments_host is ignored; launch geometry then depends only on
  // shape (capacity, max_segment_len, S), so a captured launch replays
  // correctly for any live count up to capacity.
  const int32_t* num_segments_device = nullptr;
  int64_t num_segments_host = 0;
};

enum class Path : int {
  split = 0,  // step_a_* then step_b_* through a workspace intermediate
  fused = 1,  // one kernel per side, intermediate kept on chip
};
const char* path_name(Path p);

// Workspace bytes a call needs (0 allowed). Depends only on the shape. The
// split path needs the (S, H, r_max) intermediate; the fused path needs the
// fast path's tile plan when the shape is eligible for it (else 0), or for
// S <= 16 the small-batch kernels' intermediates if larger (2*S*H*r_max
// rounded up to 8, fp32), whichever kernels run.
size_t workspace_size(const ProblemShape& shape, Path path, Side side);

// Which kernel family lora_correction(..., Path::fused, ...) runs for these
// arguments: "fast" (slot-grouped tensor-core kernels, sgmm_fast.cu), "mma"
// (general tensor-core kernels), "generic" (fp32 FMA) or "split" (r_max above
// the on-chip limit). For tests and reports; no device work.
const char* fused_kernel_family(const ProblemShape& shape, const DeviceArgs& args, Side side);

// How the fast path tiles a batch of this shape (tests and reports; no
// device work; MLALORA_FAST_TILING=plan|direct overrides the choice):
// direct = no plan kernel (long segments or a batch of <= 16 rows: each
// block finds its segment from the index data); heads_per_block = 1 means
// the block's four warps are four 16-token sub-tiles of one head.
struct FastPathLayout {
  bool small_batch = false;  // S <= 16: the small-batch kernels run instead (sgmm_small.cu); the
                             // other fields then describe the tiling MLALORA_FAST_SMALL=0 would run
  bool direct = false;
  int heads_per_block = 0;
  int tile_tokens = 0;
};
FastPathLayout fast_path_layout(const ProblemShape& shape);

// The small-batch kernels' launch geometry for a shape (tests and reports;
// no device work; whether they run is fast_path_layout().small_batch).
// Roles: [0] q1 and [1] v1 (stage 1: Y = X @ B_kc, Y = X @ A^T), [2] q2 and
// [3] v2 (stage 2: out += s * Y @ A, out += s * Y @ B_vc^T). A block is one
// (head group, column chunk) of one role; its 128 threads split the
// contraction into 128 / work_units slices. ok is false when S is outside
// 1..16 or no tile fits shared memory.
struct SmallBatchRole {
  int blocks = 0;        // grid blocks of this role
  int cols = 0;          // output columns per block
  int heads = 0;         // heads per block
  int col_chunks = 0;    // column chunks per head group
  int compute_rows = 0;  // rows of a block's compute: S rounded up to a power of two, times heads
  int work_units = 0;    // threads per contraction slice (<= 128, divides 128)
};
struct SmallBatchGeometry {
  bool ok = false;
  SmallBatchRole role[4];
  int smem_bytes[2] = {0, 0};  // dynamic shared memory of stage 1 and stage 2
  int y_pitch = 0;             // row pitch of the intermediates in the workspace (r_max rounded up to 8)
};
SmallBatchGeometry small_batch_geometry(const ProblemShape& shape);

// Options of one call.
struct CallOptions {
  // The workspace already holds the fused fast path's tile plan for this
  // shape and for the index data as it is now: build_plan() ran on the same
  // stream (or one ordered before it) with the same shape, index arrays and
  // live count, and none of seg_indptr, weight_indices, lora_ranks,
  // scalings, permutation or the live count changed since. The call then
  // skips its plan kernel and reads that plan. This is how a serving
  // engine's forward step runs: one routing for every layer (60 in
  // DeepSeek-V3), so one plan, read by every layer's call and both sides.
  // Ignored where the call would build no plan (other paths, direct tiling,
  // the small-batch kernels; fast_path_layout() says which). A plan that
  // does not match the index data gives wrong rows, never an access out of
  // the tensors' bounds.
  bool plan_prebuilt = false;
};

// out += s * (routing of SPEC) for one side. Host validation first: shape
// (validate_shape), pointer non-null-ness and alignment, inner strides, dtype;
// a refused call returns invalid_argument / not_supported naming the argument.
Status lora_correction(const ProblemShape& shape, const DeviceArgs& args, Side side, Path path, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream, const CallOptions& options = {});

// Builds the fused fast path's tile plan for this shape and index data into
// the workspace (workspace_size_both(shape, Path::fused) bytes, also enough
// for either side alone) on `stream`, for later calls with
// CallOptions::plan_prebuilt. Does nothing (and returns Ok) where the fused
// path builds no plan for the shape. Graph-capturable like the calls.
Status build_plan(const ProblemShape& shape, const DeviceArgs& args, void* workspace, size_t workspace_bytes,
                  cudaStream_t stream);

// Both sides in one call (same stream): what a serving engine calls once per
// layer. The fused fast path builds its tile plan once for both sides and
// runs them in one launch (two launches in all, against four for two
// lora_correction calls; MLALORA_FAST_QV=separate runs q then v); otherwise
// it is exactly the two calls, q then v. Results are bitwise those of the two
// calls. Workspace: workspace_size_both (the larger side's).
size_t workspace_size_both(const ProblemShape& shape, Path path);
Status lora_correction_both(const ProblemShape& shape, const DeviceArgs& args, Path path, void* workspace,
                            size_t workspace_bytes, cudaStream_t stream, const CallOptions& options = {});

// The four split-path steps, exposed for testing and benchmarking. The
// intermediate has shape (S, H, r_max), contiguous, in the activation dtype,
// indexed by LOGICAL row i (before the permutation); only entries [.., :r] of
// covered rows are written / read.
Status step_a_q(const ProblemShape&, const DeviceArgs&, void* intermediate, cudaStream_t);
Status step_b_q(const ProblemShape&, const DeviceArgs&, const void* intermediate, cudaStream_t);
Status step_a_v(const ProblemShape&, const DeviceArgs&, void* intermediate, cudaStream_t);
Status step_b_v(const ProblemShape&, const DeviceArgs&, const void* intermediate, cudaStream_t);

// Device-side index-data check (synchronous on `stream`): seg_indptr[0]==0,
// monotone, <= S, segment lengths <= max_segment_len; weight_indices in
// [0,L); lora_ranks in [0,r_max]; permutation entries in [0,S) and distinct
// on covered rows; live count within capacity. On the first violation
// returns invalid_argument naming the array and index, e.g.
// "weight_indices[7] = 12 must be in [0, L=4)".
size_t check_index_data_workspace_size(const ProblemShape& shape);
Status check_index_data(const ProblemShape& shape, const DeviceArgs& args, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream);

}  // namespace mlalora::optimized
