// mlalora verify: generated problems through the float64 reference and the
// named implementations; an HDF5 error report; reproducers for failures.
#include <cinttypes>
#include <cstdio>
#include <sstream>

#include "commands.hpp"
#include "mlalora/harness/generators.hpp"
#include "mlalora/harness/implementation.hpp"
#include "mlalora/harness/report.hpp"
#include "mlalora/harness/testbed.hpp"
#include "progress.hpp"

namespace mlalora::cli {

namespace {

struct VerifyOptions {
  std::string impls = "reference-factored";
  bool list = false;
  int64_t cases = 100;
  uint64_t seed = 1;
  std::string out;
  std::string config = "cpu";
  std::string dtype = "all";
  std::string dump_dir;
  int64_t sample_rows = 0;
  bool quiet = false;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) parts.push_back(item);
  return parts;
}

int run_verify(const VerifyOptions& o, const Context& ctx) {
  using namespace mlalora::harness;
  if (o.list) {
    std::printf("%-24s %-5s %s\n", "implementation", "gpu", "description");
    for (const auto& r : registered_implementations())
      std::printf("%-24s %-5s %s\n", r.name.c_str(), r.needs_gpu ? "yes" : "no", r.description.c_str());
    return 0;
  }
  if (o.out.empty()) return fail(2, "--out FILE.h5 is required (or --list)");
  std::vector<std::unique_ptr<Implementation>> impls;
  for (const std::string& name : split(o.impls, ',')) {
    auto impl = make_implementation(name);
    if (!impl) {
      std::string known;
      for (const auto& r : registered_implementations()) known += " " + r.name;
      return fail(2, "--impl: unknown implementation '" + name + "'; available:" + known);
    }
    impls.push_back(std::move(impl));
  }
  if (impls.empty()) return fail(2, "--impl: no implementation named");
  GenConfig cfg;
  if (o.config == "cpu") cfg = GenConfig::cpu_default();
  else if (o.config == "gpu") cfg = GenConfig::gpu_default();
  else if (o.config == "model") cfg = GenConfig::model_scale();
  else return fail(2, "--config: '" + o.config + "' is not one of cpu, gpu, model");
  if (o.dtype != "all") {
    auto dt = parse_dtype(o.dtype);
    if (!dt) return fail(2, "--dtype: '" + o.dtype + "' is not one of all, f32, f16, bf16");
    cfg.dtypes = {*dt};
  }
  for (const auto& impl : impls)
    if (impl->needs_gpu()) cfg.allow_inner_stride = false;  // CUDA kernels require unit inner stride

  ErrorReport report;
  Progress bar("verify", o.cases, !o.quiet);
  int64_t dumped = 0;
  for (int64_t i = 0; i < o.cases; ++i) {
    const int size = static_cast<int>(10 + (90 * i) / std::max<int64_t>(o.cases, 1));
    Case c = sample_case(cfg, o.seed + static_cast<uint64_t>(i), size);
    reference::RowSelection rows = o.sample_rows > 0
                                       ? reference::RowSelection::sample(c.problem, o.sample_rows, o.seed + i)
                                       : reference::RowSelection::all();
    Testbed tb(c, rows);
    for (auto& impl : impls) {
      ProblemTensors got;
      RunOutcome out = tb.run(*impl, &got);
      report.add(i, c, out);
      if (out.disposition == Disposition::incorrect || out.disposition == Disposition::failed) {
        std::fprintf(stderr, "\n[%s] case %" PRId64 " (seed %" PRIu64 "): %s\n  %s\n", impl->name().c_str(), i,
                     o.seed + i, disposition_name(out.disposition), out.message.c_str());
        std::ostringstream cs;
        cs << c;
        std::fprintf(stderr, "  case: %s\n  replay: mlalora verify --impl %s --seed %" PRIu64 " --cases 1 --config %s\n",
                     cs.str().c_str(), impl->name().c_str(), o.seed + i, o.config.c_str());
        if (!o.dump_dir.empty()) {
          std::string why;
          std::string path = dump_reproducer(o.dump_dir, tb, out, got, &why);
          std::fprintf(stderr, "  reproducer: %s\n", path.empty() ? ("not written: " + why).c_str() : path.c_str());
          dumped += !path.empty();
        }
      }
    }
    bar.tick(i + 1);
  }
  Provenance prov = Provenance::collect("error-report", ctx.command_line, o.seed);
  Status st = report.write(o.out, prov);
  if (!st.ok()) return fail(3, "writing " + o.out + ": " + st.message);

  // Summary table, last: per implementation, rows by disposition and worst ratio.
  harness::H5Table t = report.table();
  std::printf("\n%-24s %8s %9s %7s %13s %16s\n", "implementation", "passed", "incorrect", "failed", "not-supported",
              "max err/bound");
  bool bad = false;
  for (auto& impl : impls) {
    int64_t n[4] = {0, 0, 0, 0};
    double worst = 0;
    const auto& names = std::get<std::vector<std::string>>(t.find("implementation")->data);
    const auto& disp = std::get<std::vector<std::string>>(t.find("disposition")->data);
    const auto& ratio = std::get<std::vector<double>>(t.find("max_error_bound_ratio")->data);
    for (size_t k = 0; k < names.size(); ++k) {
      if (names[k] != impl->name()) continue;
      for (int d = 0; d < 4; ++d)
        if (disp[k] == disposition_name(static_cast<Disposition>(d))) ++n[d];
      worst = std::max(worst, ratio[k]);
    }
    bad |= n[1] > 0 || n[2] > 0;
    std::printf("%-24s %8" PRId64 " %9" PRId64 " %7" PRId64 " %13" PRId64 " %16.3g\n", impl->name().c_str(), n[0],
                n[1], n[2], n[3], worst);
  }
  std::printf("report: %s (%" PRId64 " rows, one per case x implementation x side)%s\n", o.out.c_str(), report.rows(),
              dumped ? (", " + std::to_string(dumped) + " reproducers in " + o.dump_dir).c_str() : "");
  return bad ? 1 : 0;
}

}  // namespace

Action add_verify(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<VerifyOptions>();
  CLI::App* sub = app.add_subcommand("verify", "Run generated problems through the float64 reference and "
                                               "implementations; write an HDF5 error report");
  sub->add_option("--impl", o->impls, "Comma-separated implementations (see --list)")->capture_default_str();
  sub->add_flag("--list", o->list, "List the implementations linked into this binary and exit");
  sub->add_option("--cases", o->cases, "Number of generated problems")->check(CLI::Range(int64_t{1}, int64_t{100000000}))->capture_default_str();
  sub->add_option("--seed", o->seed, "Base seed; case i uses seed+i (printed on failure for replay)")->capture_default_str();
  sub->add_option("--out", o->out, "HDF5 error report to write (written to a temp name, then renamed)");
  sub->add_option("--config", o->config, "Problem generator: cpu (small, any stride), gpu (tile edges), model (D=128, R_kv=512)")->capture_default_str();
  sub->add_option("--dtype", o->dtype, "Restrict to one dtype: f32, f16, bf16 (default all)")->capture_default_str();
  sub->add_option("--dump-dir", o->dump_dir, "Write an HDF5 reproducer per failing (case, implementation) here");
  sub->add_option("--sample-rows", o->sample_rows, "Judge a seeded sample of at most N covered rows per case (large S)");
  sub->add_flag("--quiet", o->quiet, "No progress bar");
  return [o, &ctx] { return run_verify(*o, ctx); };
}

}  // namespace mlalora::cli
