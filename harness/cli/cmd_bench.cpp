// mlalora bench: verified, L2-cold, CUDA-event timings of each implementation
// on a shape suite; an HDF5 throughput report; a short table last.
#include <cinttypes>
#include <cstdio>
#include <map>

#include "commands.hpp"
#include "mlalora/harness/bench.hpp"

namespace mlalora::cli {

namespace {

struct BenchCliOptions {
  std::string suite = "smoke";
  std::string models_file = std::string(MLALORA_SOURCE_DIR) + "/datasets/models.txt";
  std::string impls = "cuda-fused,cuda-split,cublas-naive";
  std::string dtype = "bf16";
  std::string out;
  int reps = 50;
  uint64_t seed = 1;
  std::string draw_by = "index";
  bool no_graphs = false;
  bool decoy = false;
  std::string trace_dir;
  bool list = false;
};

std::string suite_path(const std::string& s) {
  if (s.find('/') != std::string::npos || s.find(".txt") != std::string::npos) return s;
  return std::string(MLALORA_SOURCE_DIR) + "/datasets/suites/" + s + ".txt";
}

int run(const BenchCliOptions& o, const Context& ctx) {
  using namespace mlalora::harness;
  std::vector<BenchShape> suite;
  Status st = load_suite(suite_path(o.suite), &suite);
  if (!st.ok()) return fail(2, "--suite: " + st.message);
  std::vector<ModelConfig> models;
  st = load_model_configs(o.models_file, &models);
  if (!st.ok()) return fail(2, "--models: " + st.message);
  for (const auto& s : suite)
    if (!find_model(models, s.model)) return fail(2, "--suite: shape " + s.name() + " names unknown model " + s.model);
  if (o.list) {
    for (const auto& s : suite) std::printf("%s\n", s.name().c_str());
    return 0;
  }
  if (o.out.empty()) return fail(2, "--out FILE.h5 is required");
  BenchOptions opt;
  opt.implementations.clear();
  for (size_t a = 0, b; a <= o.impls.size(); a = b + 1) {
    b = o.impls.find(',', a);
    if (b == std::string::npos) b = o.impls.size();
    if (b > a) opt.implementations.push_back(o.impls.substr(a, b - a));
  }
  auto dt = parse_dtype(o.dtype);
  if (!dt) return fail(2, "--dtype: '" + o.dtype + "' is not f32, f16 or bf16");
  opt.dtype = *dt;
  opt.repetitions = o.reps;
  opt.seed = o.seed;
  if (o.draw_by == "index") opt.draw_by = DrawBy::index;
  else if (o.draw_by == "name") opt.draw_by = DrawBy::name;
  else return fail(2, "--draw-by: '" + o.draw_by + "' is not index or name");
  opt.graphs = !o.no_graphs;
  opt.decoy = o.decoy;
  opt.trace_dir = o.trace_dir;
  opt.checkpoint = [&](const BenchResult& partial) {
    Status w = write_bench_report(o.out, partial, ctx.command_line, o.seed);
    if (!w.ok()) std::fprintf(stderr, "checkpoint %s: %s\n", o.out.c_str(), w.message.c_str());
  };
  BenchResult r;
  st = run_bench(suite, models, opt, &r);
  if (!st.ok()) return fail(st.code == StatusCode::invalid_argument ? 2 : 3, st.message);
  st = write_bench_report(o.out, r, ctx.command_line, o.seed);
  if (!st.ok()) return fail(3, "writing " + o.out + ": " + st.message);
  std::printf("\ncopy bandwidth %.0f GB/s; speeds as a fraction of it\n", r.copy_bytes_per_second / 1e9);
  std::printf("latency floor: graph launch %.2f us + %.3f us per dependent DRAM load (L2 flushed); "
              "empty kernel of 2 blocks per SM with 81 KiB smem: %.2f us\n",
              r.graph_launch_floor_us, r.dependent_load_us, r.graph_launch_wide_us);
  std::printf("%-52s %-13s %-6s %-9s %9s %9s %6s %8s\n", "shape", "impl", "mode", "disp", "median_us", "floor_us",
              "%copy", "vs naive");
  bool bad = false;
  for (const auto& row : r.rows) {
    bad |= row.disposition == "incorrect" || row.disposition == "failed";
    std::printf("%-52s %-13s %-6s %-9s %9.2f %9.2f %6.1f %8.2f\n", row.shape.name().c_str(),
                row.implementation.c_str(), row.mode.c_str(), row.disposition.c_str(), row.median_us,
                row.byte_floor_us, 100 * row.frac_copy_bw, row.speedup_vs_naive);
  }
  std::printf("report: %s (%zu rows)\n", o.out.c_str(), r.rows.size());
  return bad ? 1 : 0;
}

}  // namespace

Action add_bench(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<BenchCliOptions>();
  CLI::App* sub = app.add_subcommand("bench", "Verify, then time implementations on a shape suite (needs a GPU); "
                                              "HDF5 throughput report");
  sub->add_option("--suite", o->suite, "Suite name in datasets/suites/ or a path")->capture_default_str();
  sub->add_option("--models", o->models_file, "Model config file")->capture_default_str();
  sub->add_option("--impl", o->impls, "Comma-separated implementations")->capture_default_str();
  sub->add_option("--dtype", o->dtype, "f32, f16 or bf16")->capture_default_str();
  sub->add_option("--out", o->out, "HDF5 throughput report to write");
  sub->add_option("--reps", o->reps, "Timed repetitions per (shape, implementation, mode)")->check(CLI::Range(1, 100000))->capture_default_str();
  sub->add_option("--seed", o->seed, "Seed of the routing and tensor values")->capture_default_str();
  sub->add_option("--draw-by", o->draw_by,
                  "index: shape i of the suite is drawn from seed + i (reports so far); name: from seed + a hash "
                  "of the shape's name, the same routing in every suite")
      ->capture_default_str();
  sub->add_flag("--no-graphs", o->no_graphs, "Do not time the CUDA-graph mode");
  sub->add_flag("--decoy", o->decoy,
                "SGMM paths: after each L2 flush, run the call once on a second copy of the inputs before the "
                "timed one (code and launch path warm, data cold): what fetching the kernel's code costs");
  sub->add_option("--trace-dir", o->trace_dir,
                  "Builds with MLALORA_FAST_TRACE: per-block phase timestamps of one L2-cold cuda-fused call per "
                  "shape, as DIR/<shape>.csv (summarise with scripts/trace_summary.py DIR)");
  sub->add_flag("--list", o->list, "List the suite's shapes and exit");
  return [o, &ctx] { return run(*o, ctx); };
}

}  // namespace mlalora::cli
