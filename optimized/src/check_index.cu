// check_index_data: validates the device-side index data with two small
// kernels and reports the first violation in the same order and wording as
// the host's validate_index_data (problem.cpp): live count, then lora_ranks /
// scalings by slot, then seg_indptr[0], then segment by segment (seg_indptr
// entry, length, weight_indices), then the permutation on the covered rows.
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "mlalora/optimized/sgmm.hpp"
#include "sgmm_common.cuh"

namespace mlalora::optimized {
namespace {

constexpr unsigned long long kNone = ~0ULL;

// Keys are "index * 8 + rule" so that one atomicMin finds the first violation
// in host order (lower index first, then rule order within an index).
struct CheckResult {
  unsigned long long slot_key;  // l*8 + {0: rank out of range, 1: scaling not finite}
  unsigned long long seg_key;   // g*8 + {0: e<b, 1: e>S, 2: length > max, 3: weight index}
  unsigned long long perm_key;  // i*8 + {0: out of range, 1: repeat}
  int live_raw;                 // device live count as read (or host count)
  int covered;                  // seg_indptr[live] clamped to [0, S]
  int indptr0;                  // seg_indptr[0]
  int pad;
  unsigned long long pad2[3];
};
static_assert(sizeof(CheckResult) == 64, "CheckResult layout");

struct CheckParams {
  const int32_t* ranks;
  const float* scalings;
  const int32_t* seg_indptr;
  const int32_t* weight_indices;
  const int32_t* perm;
  const int32_t* nseg_dev;
  int nseg_host, capacity, S, L, r_max, max_seg_len;
  CheckResult* res;
  int* first_idx;  // S entries, pre-filled with a large positive value
};

__device__ __forceinline__ void live_and_covered(const CheckParams& p, int* raw, int* n, int* covered) {
  int v = p.nseg_dev != nullptr ? *p.nseg_dev : p.nseg_host;
  *raw = v;
  *n = v < 0 ? 0 : (v > p.capacity ? p.capacity : v);
  int c = p.seg_indptr[*n];
  *covered = c < 0 ? 0 : (c > p.S ? p.S : c);
}

__global__ void check_kernel_1(const CheckParams p) {
  int raw, n, covered;
  live_and_covered(p, &raw, &n, &covered);
  const long long total = max(max(static_cast<long long>(p.L), static_cast<long long>(n) + 1), static_cast<long long>(covered));
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    if (i == 0) {
      p.res->live_raw = raw;
      p.res->covered = covered;
      p.res->indptr0 = p.seg_indptr[0];
    }
    if (i < p.L) {
      const int rk = p.ranks[i];
      if (rk < 0 || rk > p.r_max) atomicMin(&p.res->slot_key, static_cast<unsigned long long>(i) * 8 + 0);
      if (!isfinite(p.scalings[i])) atomicMin(&p.res->slot_key, static_cast<unsigned long long>(i) * 8 + 1);
    }
    if (i < n) {
      const int g = static_cast<int>(i);
      const int b = p.seg_indptr[g], e = p.seg_indptr[g + 1];
      const unsigned long long base = static_cast<unsigned long long>(g) * 8;
      unsigned long long key = kNone;
      if (e < b) key = base + 0;
      else if (e > p.S) key = base + 1;
      else if (static_cast<long long>(e) - b > p.max_seg_len) key = base + 2;
      else {
        const int w = p.weight_indices[g];
        if (w < 0 || w >= p.L) key = base + 3;
      }
      if (key != kNone) atomicMin(&p.res->seg_key, key);
    }
    if (i < covered && p.perm != nullptr) {
      const int t = p.perm[i];
      if (t < 0 || t >= p.S) atomicMin(&p.res->perm_key, static_cast<unsigned long long>(i) * 8 + 0);
      else atomicMin(p.first_idx + t, static_cast<int>(i));
    }
  }
}

__global__ void check_kernel_2(const CheckParams p) {
  int raw, n, covered;
  live_and_covered(p, &raw, &n, &covered);
  if (p.perm == nullptr) return;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < covered; i += stride) {
    const int t = p.perm[i];
    if (t >= 0 && t < p.S && p.first_idx[t] != static_cast<int>(i))
      atomicMin(&p.res->perm_key, static_cast<unsigned long long>(i) * 8 + 1);
  }
}

std::string str(long long v) { return std::to_string(v); }

Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status::DeviceError(std::string("check_index_data: ") + what + ": " + cudaGetErrorString(e));
}

template <typename V>
Status read_one(const V* dev, long long idx, V* out, cudaStream_t stream) {
  MLALORA_RETURN_IF_ERROR(cuda_status(cudaMemcpyAsync(out, dev + idx, sizeof(V), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync"));
  return cuda_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

Status check_ptr(const void* ptr, const char* name, int64_t count) {
  if (count <= 0) return Status::Ok();
  if (ptr == nullptr) return Status::Invalid(std::string("args.") + name + " is null");
  if (reinterpret_cast<uintptr_t>(ptr) % 4 != 0) return Status::Invalid(std::string("args.") + name + " is not 4-byte aligned");
  return Status::Ok();
}

}  // namespace

size_t check_index_data_workspace_size(const ProblemShape& shape) {
  return sizeof(CheckResult) + 4 * static_cast<size_t>(shape.dims.S > 0 ? shape.dims.S : 0);
}

Status check_index_data(const ProblemShape& shape, const DeviceArgs& a, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream) {
  MLALORA_RETURN_IF_ERROR(validate_shape(shape));
  const Dims& d = shape.dims;
  MLALORA_RETURN_IF_ERROR(check_ptr(a.lora_ranks, "lora_ranks", d.L));
  MLALORA_RETURN_IF_ERROR(check_ptr(a.scalings, "scalings", d.L));
  MLALORA_RETURN_IF_ERROR(check_ptr(a.seg_indptr, "seg_indptr", shape.segment_capacity + 1));
  MLALORA_RETURN_IF_ERROR(check_ptr(a.weight_indices, "weight_indices", shape.segment_capacity));
  if (shape.has_permutation) {
    MLALORA_RETURN_IF_ERROR(check_ptr(a.permutation, "permutation", d.S));
  } else if (a.permutation != nullptr) {
    return Status::Invalid("args.permutation is set but shape.has_permutation is false");
  }
  if (a.num_segments_device == nullptr && (a.num_segments_host < 0 || a.num_segments_host > shape.segment_capacity))
    return Status::Invalid("num_segments = " + str(a.num_segments_host) + " must be in [0, segment_capacity=" +
                           str(shape.segment_capacity) + "]");
  const size_t need = check_index_data_workspace_size(shape);
  if (workspace == nullptr || workspace_bytes < need)
    return Status{StatusCode::workspace_too_small,
                  "check_index_data workspace: " + std::to_string(workspace == nullptr ? 0 : workspace_bytes) +
                      " bytes given, " + std::to_string(need) + " needed (64 + 4*S)"};
  if (reinterpret_cast<uintptr_t>(workspace) % 16 != 0) return Status::Invalid("workspace is not 16-byte aligned");

  CheckParams p{};
  p.ranks = a.lora_ranks;
  p.scalings = a.scalings;
  p.seg_indptr = a.seg_indptr;
  p.weight_indices = a.weight_indices;
  p.perm = shape.has_permutation && d.S > 0 ? a.permutation : nullptr;
  p.nseg_dev = a.num_segments_device;
  p.nseg_host = static_cast<int>(a.num_segments_device ? 0 : a.num_segments_host);
  p.capacity = static_cast<int>(shape.segment_capacity);
  p.S = static_cast<int>(d.S);
  p.L = static_cast<int>(d.L);
  p.r_max = static_cast<int>(d.r_max);
  p.max_seg_len = static_cast<int>(shape.max_segment_len);
  p.res = static_cast<CheckResult*>(workspace);
  p.first_idx = reinterpret_cast<int*>(static_cast<char*>(workspace) + sizeof(CheckResult));

  MLALORA_RETURN_IF_ERROR(cuda_status(cudaMemsetAsync(workspace, 0xff, sizeof(CheckResult), stream), "cudaMemsetAsync"));
  if (d.S > 0)
    MLALORA_RETURN_IF_ERROR(
        cuda_status(cudaMemsetAsync(p.first_idx, 0x7f, 4 * static_cast<size_t>(d.S), stream), "cudaMemsetAsync"));
  const long long work = std::max<long long>(std::max<long long>(d.L, shape.segment_capacity + 1), d.S);
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<long long>((work + threads - 1) / threads, 4096));
  check_kernel_1<<<blocks, threads, 0, stream>>>(p);
  MLALORA_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "check kernel 1 launch"));
  check_kernel_2<<<blocks, threads, 0, stream>>>(p);
  MLALORA_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "check kernel 2 launch"));
  CheckResult r{};
  MLALORA_RETURN_IF_ERROR(
      cuda_status(cudaMemcpyAsync(&r, workspace, sizeof(CheckResult), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync"));
  MLALORA_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize"));

  const long long cap = shape.segment_capacity;
  if (r.live_raw < 0 || r.live_raw > cap)
    return Status::Invalid((a.num_segments_device ? std::string("num_segments_device = ") : std::string("num_segments = ")) +
                           str(r.live_raw) + " must be in [0, segment_capacity=" + str(cap) + "]");
  if (r.slot_key != kNone) {
    const long long l = static_cast<long long>(r.slot_key / 8);
    if (r.slot_key % 8 == 0) {
      int32_t v = 0;
      MLALORA_RETURN_IF_ERROR(read_one(a.lora_ranks, l, &v, stream));
      return Status::Invalid("lora_ranks[" + str(l) + "] = " + str(v) + " must be in [0, r_max=" + str(d.r_max) + "]");
    }
    return Status::Invalid("scalings[" + str(l) + "] is not finite");
  }
  if (r.indptr0 != 0) return Status::Invalid("seg_indptr[0] = " + str(r.indptr0) + " must be 0");
  if (r.seg_key != kNone) {
    const long long g = static_cast<long long>(r.seg_key / 8);
    const int rule = static_cast<int>(r.seg_key % 8);
    int32_t b = 0, e = 0;
    MLALORA_RETURN_IF_ERROR(read_one(a.seg_indptr, g, &b, stream));
    MLALORA_RETURN_IF_ERROR(read_one(a.seg_indptr, g + 1, &e, stream));
    switch (rule) {
      case 0:
        return Status::Invalid("seg_indptr[" + str(g + 1) + "] = " + str(e) + " < seg_indptr[" + str(g) + "] = " +
                               str(b) + ": must be non-decreasing");
      case 1:
        return Status::Invalid("seg_indptr[" + str(g + 1) + "] = " + str(e) + " exceeds S = " + str(d.S));
      case 2:
        return Status::Invalid("segment " + str(g) + " has length " + str(static_cast<long long>(e) - b) +
                               " > max_segment_len = " + str(shape.max_segment_len));
      default: {
        int32_t w = 0;
        MLALORA_RETURN_IF_ERROR(read_one(a.weight_indices, g, &w, stream));
        return Status::Invalid("weight_indices[" + str(g) + "] = " + str(w) + " must be in [0, L=" + str(d.L) + ")");
      }
    }
  }
  if (r.perm_key != kNone) {
    const long long i = static_cast<long long>(r.perm_key / 8);
    int32_t t = 0;
    MLALORA_RETURN_IF_ERROR(read_one(a.permutation, i, &t, stream));
    if (r.perm_key % 8 == 0)
      return Status::Invalid("permutation[" + str(i) + "] = " + str(t) + " must be in [0, S=" + str(d.S) + ")");
    return Status::Invalid("permutation[" + str(i) + "] = " + str(t) +
                           " repeats an earlier entry: two segments would write one token row");
  }
  return Status::Ok();
}

}  // namespace mlalora::optimized
