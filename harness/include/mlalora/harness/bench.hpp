// Benchmark suites and the throughput benchmark (mlalora bench).
//
// A suite (datasets/suites/NAME.txt) lists shapes built from real model
// configs (datasets/models.txt). Each shape becomes a seeded Problem; each
// implementation is first verified on it against the float64 reference (a
// wrong kernel gets no time), then timed with CUDA events over many
// repetitions with the L2 flushed before each one, optionally through a CUDA
// graph. The device copy bandwidth is measured in the same run and every
// speed is quoted as a fraction of it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mlalora/harness/fma_model.hpp"
#include "mlalora/harness/generators.hpp"
#include "mlalora/problem.hpp"
#include "mlalora/status.hpp"

namespace mlalora::harness {

enum class WorkloadKind : int {
  decode = 0,   // `tokens` one-token segments, slots drawn from `adapters` (uniform or Zipf)
  chunked = 1,  // tokens grouped by adapter through a permutation (csgmv): one segment per used adapter
  prefill = 2,  // `tokens` in `segments` long segments
  mixed = 3,    // half the tokens as one-token decode segments, half as one prefill segment
};
const char* workload_name(WorkloadKind w);

struct BenchShape {
  std::string model;
  int64_t tp = 1;
  int64_t rank = 16;
  WorkloadKind workload = WorkloadKind::decode;
  int64_t tokens = 1;
  int64_t adapters = 1;
  bool zipf = false;      // adapter popularity Zipf(1.0) instead of uniform
  int64_t segments = 1;   // prefill only
  std::string name() const;  // e.g. "DeepSeek-V3/tp1/r64/decode/T256/A8/zipf"
};

// Suite text: one shape per line, whitespace-separated key=value fields
//   model=DeepSeek-V3 tp=1 rank=64 workload=decode tokens=256 adapters=8 popularity=zipf
//   model=Kimi-K2 tp=8 rank=16 workload=prefill tokens=4096 adapters=2 segments=2
// Lists expand: tp=1,8 rank=16,32,64,128 tokens=1,64,512 yields their product.
// '#' starts a comment. Errors name file:line and the field.
Status parse_suite(const std::string& text, const std::string& source, std::vector<BenchShape>* out);
Status load_suite(const std::string& path, std::vector<BenchShape>* out);

// The problem a shape stands for: S = tokens, H = model.H / tp, L = adapters,
// every slot of rank `rank`, contiguous layout, routing drawn from `seed`.
Status make_bench_problem(const BenchShape& s, const ModelConfig& m, DType dtype, uint64_t seed, Problem* out);

// The seed a suite's shape is drawn from: by its index in the suite
// (base + index: the default, what every committed report used) or by its
// name (base + a stable 64-bit hash of name(): the same shape gets the same
// routing in every suite, so times compare across suites; decode times
// depend on the draw, optimized/PERF.md "A trap in comparing runs").
enum class DrawBy { index, name };
uint64_t bench_shape_seed(uint64_t base, const BenchShape& s, size_t index, DrawBy by);

// Minimal traffic of one call doing both sides: each input read once, each
// output read and written once (covered rows only), A and B of each used slot once.
int64_t minimal_bytes(const Problem& p);
// FMAs of the factored computation (both sides) and of naive materialisation.
int64_t factored_fmas(const Problem& p);
int64_t naive_fmas(const Problem& p);

struct BenchOptions {
  std::vector<std::string> implementations{"cuda-fused", "cuda-split", "cublas-naive"};
  DType dtype = DType::bf16;
  int repetitions = 50;
  int warmup = 5;
  bool graphs = true;          // also time SGMM paths through a captured CUDA graph
  // Decoy run (SGMM paths only): after each L2 flush, run the same launch
  // once on a second copy of the inputs (other buffers) before the timed
  // one. The kernel's code, the launch path and the constant banks are then
  // warm while the timed call's data stays cold: set against a normal run,
  // it measures what fetching the kernel's code from DRAM costs.
  bool decoy = false;
  // Trace (builds with MLALORA_FAST_TRACE only): after timing cuda-fused on a
  // shape, one more L2-cold call (graph mode when timed) whose per-block
  // phase timestamps go to trace_dir/<shape>.csv (optimized/fast_trace.hpp).
  std::string trace_dir;
  int64_t verify_rows = 24;    // covered rows judged against the reference per shape
  uint64_t seed = 1;
  DrawBy draw_by = DrawBy::index;
  bool progress = true;
  // Called after each shape with everything measured so far (the CLI writes
  // the report then, so a run cut short still leaves its rows on disk).
  std::function<void(const struct BenchResult&)> checkpoint;
};

struct BenchRow {
  BenchShape shape;
  std::string implementation;
  std::string mode;         // "stream" or "graph"
  std::string disposition;  // passed / incorrect / failed / not-supported
  std::string message;
  int64_t S = 0, H = 0, D_qk = 0, D_v = 0, R_kv = 0, covered_rows = 0, num_segments = 0;
  double median_us = 0, min_us = 0, max_us = 0, p10_us = 0, p90_us = 0;
  int64_t bytes = 0;
  double gbps = 0, frac_copy_bw = 0, byte_floor_us = 0;
  int64_t fmas_factored = 0, fmas_naive = 0;
  double speedup_vs_naive = 0;  // naive median / this median (same shape, best naive mode)
};

struct BenchResult {
  double copy_bytes_per_second = 0;
  // Latency floor of a graph-launched kernel, timed like the shapes
  // (optimized/latency_probe.hpp): median us of one kernel doing k dependent
  // DRAM loads, for each k; the least-squares line through them gives the
  // launch floor (intercept) and the cost of one dependent load (slope).
  std::vector<std::pair<int, double>> dependent_load_chain_us;
  double graph_launch_floor_us = 0, dependent_load_us = 0;
  // The same, for an empty kernel of 2 blocks per SM x 128 threads x 81 KiB of
  // dynamic shared memory (the fast path's r = 128 ring): launch floor of a
  // kernel shaped like ours.
  double graph_launch_wide_us = 0;
  bool decoy = false;  // timed with BenchOptions::decoy
  // The staging probe (optimized/staging_probe.hpp), timed like the shapes:
  // one row per case; staging_us = median_us - the median of the same grid
  // with 0 bytes (same blocks, threads and L2 state), gbps_per_block =
  // bytes_per_block / staging_us.
  struct StagingRow {
    std::string name;
    int64_t blocks = 0, threads = 0, bytes_per_block = 0, row_bytes = 0, row_pitch = 0, share = 1;
    bool rotate = false, clean_l2 = false;
    double median_us = 0, staging_us = 0, gbps_per_block = 0;
  };
  std::vector<StagingRow> staging;
  std::vector<BenchRow> rows;
};

// Runs the suite on the GPU (only in CUDA builds; otherwise not_supported).
Status run_bench(const std::vector<BenchShape>& suite, const std::vector<ModelConfig>& models,
                 const BenchOptions& opt, BenchResult* out);

Status write_bench_report(const std::string& path, const BenchResult& r, const std::string& command_line,
                          uint64_t seed);

}  // namespace mlalora::harness
