#include "mlalora/optimized/staging_probe.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda_status.hpp"
#include "sgmm_ptx.cuh"

namespace mlalora::optimized {
namespace {

constexpr int kMaxBytesPerBlock = 160 * 1024;
constexpr size_t kRegionAlign = size_t{64} << 10;

Status cuda_check(cudaError_t e, const char* call) { return detail::cuda_status(e, "staging_probe", call); }

// The pattern word at 32-bit index i (host and device agree on it).
__host__ __device__ inline uint32_t pattern_word(uint64_t i, uint32_t seed) {
  uint32_t x = static_cast<uint32_t>(i) * 0x9E3779B9u ^ static_cast<uint32_t>(i >> 32) ^ seed;
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

__global__ void fill_kernel(uint32_t* w, size_t words, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < words;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    w[i] = pattern_word(i, seed);
}

// Every block copies its region's pieces to shared memory: all cp.async
// issued, one commit, one wait (the shape of the fast path's stage 1 with
// nothing else in it).
__global__ void stage_kernel(const char* __restrict__ src, size_t region_stride, int bytes, int row_bytes,
                             int row_pitch, int share, int rotate, int checksum, uint32_t* __restrict__ results) {
  extern __shared__ uint4 staged[];
  __shared__ uint32_t block_sum;
  const char* base = src + (blockIdx.x / share) * region_stride;
  const int pieces = bytes / 16, per_row = row_bytes / 16;
  const int first = rotate ? static_cast<int>((blockIdx.x % share) * static_cast<long long>(pieces) / share) : 0;
  if (threadIdx.x == 0) block_sum = 0u;
  for (int k = static_cast<int>(threadIdx.x); k < pieces; k += static_cast<int>(blockDim.x)) {
    const int i = k + first < pieces ? k + first : k + first - pieces;
    const int row = i / per_row, col = i - row * per_row;
    detail::ptx::cp_async16(staged + i, base + static_cast<size_t>(row) * row_pitch + 16 * col);
  }
  detail::ptx::cp_async_commit();
  detail::ptx::cp_async_wait<0>();
  __syncthreads();
  if (checksum) {
    const uint32_t* w = reinterpret_cast<const uint32_t*>(staged);
    uint32_t s = 0u;
    for (int i = static_cast<int>(threadIdx.x); i < bytes / 4; i += static_cast<int>(blockDim.x)) s += w[i];
    atomicAdd(&block_sum, s);
    __syncthreads();
    if (threadIdx.x == 0) results[blockIdx.x] = block_sum;
  } else if (threadIdx.x == 0) {
    results[blockIdx.x] = pieces > 0 ? staged[0].x : 0u;
  }
}

// L2-cached reads of the whole buffer; the store never happens for a real
// buffer but keeps the loads alive.
__global__ void sweep_kernel(const uint4* __restrict__ buf, size_t n, uint32_t* never) {
  uint32_t s = 0u;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint4 v = __ldcg(buf + i);
    s ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (s == 0x9E3779B9u && never) *never = s;
}

int layout_row_bytes(const StagingCase& c) { return c.row_bytes > 0 ? c.row_bytes : c.bytes_per_block; }
int layout_row_pitch(const StagingCase& c) { return c.row_bytes > 0 ? c.row_pitch : c.bytes_per_block; }

Status check_case(const StagingCase& c) {
  auto bad = [](const std::string& arg, long long v, const char* want) {
    return Status::Invalid("StagingCase." + arg + " = " + std::to_string(v) + ": " + want);
  };
  if (c.blocks < 1 || c.blocks > 65535) return bad("blocks", c.blocks, "must be in 1..65535");
  if (c.threads < 32 || c.threads > 1024 || c.threads % 32) return bad("threads", c.threads, "must be a multiple of 32 in 32..1024");
  if (c.bytes_per_block < 0 || c.bytes_per_block > kMaxBytesPerBlock || c.bytes_per_block % 16)
    return bad("bytes_per_block", c.bytes_per_block, "must be a multiple of 16 in 0..163840");
  if (c.row_bytes < 0 || c.row_bytes % 16) return bad("row_bytes", c.row_bytes, "must be 0 or a positive multiple of 16");
  if (c.row_bytes > 0) {
    if (c.row_pitch < c.row_bytes || c.row_pitch % 16)
      return bad("row_pitch", c.row_pitch, "must be a multiple of 16 and at least row_bytes");
    if (c.bytes_per_block % c.row_bytes)
      return bad("bytes_per_block", c.bytes_per_block, "must be a whole number of rows (row_bytes)");
  }
  if (c.share < 1 || c.share > c.blocks) return bad("share", c.share, "must be in 1..blocks");
  return Status::Ok();
}

}  // namespace

std::string StagingCase::name() const {
  std::string n = "b" + std::to_string(blocks) + ".t" + std::to_string(threads) + "." + std::to_string(bytes_per_block) + "B";
  if (row_bytes > 0) n += ".r" + std::to_string(row_bytes) + "p" + std::to_string(row_pitch);
  if (share > 1) n += ".s" + std::to_string(share) + (rotate ? "rot" : "");
  if (clean_l2) n += ".clean";
  return n;
}

size_t StagingProbe::region_stride(const StagingCase& c) {
  const int rb = layout_row_bytes(c);
  const size_t rows = rb > 0 ? static_cast<size_t>(c.bytes_per_block / rb) : 0;
  const size_t extent = rows * static_cast<size_t>(layout_row_pitch(c));
  return std::max(kRegionAlign, (extent + kRegionAlign - 1) / kRegionAlign * kRegionAlign);
}

StagingProbe::~StagingProbe() {
  if (src_) cudaFree(src_);
  if (results_) cudaFree(results_);
}

Status StagingProbe::init(size_t bytes, uint64_t seed) {
  if (bytes == 0) bytes = size_t{256} << 20;
  if (bytes < (size_t{1} << 20))
    return Status::Invalid("bytes = " + std::to_string(bytes) + ": the staging probe needs at least 1 MiB");
  if (src_ || results_) return Status::Invalid("StagingProbe::init called twice");
  bytes = bytes / 16 * 16;
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaMalloc(&src_, bytes), "cudaMalloc(source)"));
  max_blocks_ = 65535;
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaMalloc(&results_, sizeof(uint32_t) * max_blocks_), "cudaMalloc(results)"));
  bytes_ = bytes;
  seed_ = seed;
  fill_kernel<<<1024, 256>>>(static_cast<uint32_t*>(src_), bytes / 4, static_cast<uint32_t>(seed));
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaGetLastError(), "fill_kernel launch"));
  return cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize(fill)");
}

Status StagingProbe::launch(const StagingCase& c, bool checksum, cudaStream_t stream) const {
  if (!src_) return Status::Invalid("StagingProbe::launch before init");
  MLALORA_RETURN_IF_ERROR(check_case(c));
  const size_t stride = region_stride(c);
  const size_t regions = static_cast<size_t>((c.blocks + c.share - 1) / c.share);
  if (stride * regions > bytes_)
    return Status::Invalid("StagingCase.blocks = " + std::to_string(c.blocks) + ": " + std::to_string(regions) +
                           " regions of " + std::to_string(stride) + " bytes exceed the " + std::to_string(bytes_) +
                           "-byte source buffer");
  MLALORA_RETURN_IF_ERROR(cuda_check(
      cudaFuncSetAttribute(stage_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxBytesPerBlock),
      "cudaFuncSetAttribute"));
  stage_kernel<<<c.blocks, c.threads, static_cast<size_t>(c.bytes_per_block), stream>>>(
      static_cast<const char*>(src_), stride, c.bytes_per_block, layout_row_bytes(c), layout_row_pitch(c), c.share,
      c.rotate ? 1 : 0, checksum ? 1 : 0, results_);
  return cuda_check(cudaGetLastError(), "stage_kernel launch");
}

Status StagingProbe::results(int blocks, std::vector<uint32_t>* out, cudaStream_t stream) const {
  if (!results_ || !out) return Status::Invalid("StagingProbe::results before init or with a null out");
  if (blocks < 0 || blocks > max_blocks_)
    return Status::Invalid("blocks = " + std::to_string(blocks) + " must be in 0..65535");
  out->assign(static_cast<size_t>(blocks), 0u);
  MLALORA_RETURN_IF_ERROR(cuda_check(cudaMemcpyAsync(out->data(), results_, sizeof(uint32_t) * static_cast<size_t>(blocks),
                                                     cudaMemcpyDeviceToHost, stream),
                                     "cudaMemcpyAsync(results)"));
  return cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize(results)");
}

uint32_t StagingProbe::expected_sum(const StagingCase& c, int block) const {
  const int rb = layout_row_bytes(c), pitch = layout_row_pitch(c);
  if (c.bytes_per_block <= 0 || rb <= 0) return 0u;
  const size_t base = static_cast<size_t>(block / std::max(1, c.share)) * region_stride(c);
  uint32_t s = 0u;
  for (int row = 0; row < c.bytes_per_block / rb; ++row)
    for (int k = 0; k < rb / 4; ++k)
      s += pattern_word((base + static_cast<size_t>(row) * pitch + 4 * static_cast<size_t>(k)) / 4,
                        static_cast<uint32_t>(seed_));
  return s;
}

Status sweep_l2_clean(const void* buf, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return Status::Ok();
  if (buf == nullptr) return Status::Invalid("sweep_l2_clean: buf is null");
  sweep_kernel<<<1024, 256, 0, stream>>>(static_cast<const uint4*>(buf), bytes / 16, nullptr);
  return cuda_check(cudaGetLastError(), "sweep_kernel launch");
}

}  // namespace mlalora::optimized
