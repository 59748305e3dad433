// mlalora premerge: what a kernel developer runs before merging.
//
// With a GPU: verify cuda-fused, cuda-split, cublas-naive (GPU property
// check), a short bench (suite "smoke"), then the gate of each report against
// the newest committed baseline of the same kind. Without a GPU: says so, runs
// verify over the two float64 references (they must pass), the mutation-score
// tests of the test binary next to the CLI if it is there, and the gate of the
// CPU verify report alone. The sub-runs are this same binary (found through
// /proc/self/exe) started as child processes, so each writes its report
// exactly as `mlalora verify` / `mlalora bench` would.
#include <sys/wait.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <regex>

#include "commands.hpp"
#include "mlalora/harness/gate.hpp"
#include "mlalora/harness/report.hpp"
#ifdef MLALORA_HAVE_CUDA
#include "mlalora/harness/gpu_implementations.hpp"
#endif

namespace mlalora::cli {

namespace {

namespace fs = std::filesystem;

struct PremergeOptions {
  int64_t cases = 0;  // 0: 500 (GPU) / 200 (CPU)
  uint64_t seed = 1;
  std::string baseline_dir = std::string(MLALORA_SOURCE_DIR) + "/reports";
  std::string out_dir = "premerge-out";
  std::string policy;
  std::string suite = "smoke";
  bool no_bench = false;
  bool no_mutation = false;
  bool force_cpu = false;
};

enum class Outcome { pass, fail, skip, error };
const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::pass: return "PASS";
    case Outcome::fail: return "FAIL";
    case Outcome::skip: return "SKIP";
    case Outcome::error: return "ERROR";
  }
  return "?";
}

struct Step {
  std::string name;
  Outcome outcome;
  std::string detail;
};

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./,=:+-") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs argv (quoted) with stdout+stderr merged; every line is echoed indented
// and passed to on_line. Returns the exit status (or -1 if it could not run /
// was killed by a signal; *why says which).
int run_child(const std::vector<std::string>& argv, const std::function<void(const std::string&)>& on_line,
              std::string* why) {
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + shell_quote(a);
  std::printf("$ %s\n", cmd.c_str());
  std::fflush(stdout);
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) {
    *why = "cannot start: " + cmd;
    return -1;
  }
  std::string line;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) {
    line += buf;
    if (!line.empty() && line.back() == '\n') {
      line.pop_back();
      std::printf("  | %s\n", line.c_str());
      std::fflush(stdout);
      if (on_line) on_line(line);
      line.clear();
    }
  }
  if (!line.empty()) {
    std::printf("  | %s\n", line.c_str());
    if (on_line) on_line(line);
  }
  int status = pclose(p);
  if (status == -1) {
    *why = "could not wait for the child";
    return -1;
  }
  if (WIFSIGNALED(status)) {
    *why = "killed by signal " + std::to_string(WTERMSIG(status));
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string self_exe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

struct GateRun {
  std::vector<harness::GateViolation> worst;  // across all gates
};

// Gate `report` (of `kind`) against `baseline` (may be empty); appends a step.
void gate_step(const std::string& label, const std::string& report, const std::string& baseline,
               const harness::GatePolicy& pol, std::vector<Step>* steps, GateRun* gr) {
  using namespace mlalora::harness;
  std::printf("\n== gate: %s\n", label.c_str());
  GateReport nw, base;
  Status st = load_gate_report(report, &nw);
  if (!st.ok()) {
    std::printf("  %s\n", st.message.c_str());
    steps->push_back({"gate " + label, Outcome::error, st.message});
    return;
  }
  if (!baseline.empty()) {
    st = load_gate_report(baseline, &base);
    if (!st.ok()) {
      std::printf("  baseline: %s\n", st.message.c_str());
      steps->push_back({"gate " + label, Outcome::error, "baseline: " + st.message});
      return;
    }
  }
  GateResult res;
  st = run_gate(nw, baseline.empty() ? nullptr : &base, pol, &res);
  if (!st.ok()) {
    steps->push_back({"gate " + label, Outcome::error, st.message});
    return;
  }
  for (const auto& c : res.compared) std::printf("  compared: %s\n", c.c_str());
  for (const auto& s : res.skipped) std::printf("  skipped:  %s\n", s.c_str());
  for (size_t i = 0; i < res.violations.size() && i < 10; ++i) {
    const auto& v = res.violations[i];
    std::printf("  violation: %-18s %-16s %-40s value %.4g limit %.4g  %s\n", v.rule.c_str(), v.implementation.c_str(),
                v.key.c_str(), v.value, v.limit, v.detail.substr(0, 160).c_str());
  }
  if (res.violations.size() > 10) std::printf("  ... %zu more violations\n", res.violations.size() - 10);
  const std::string vs = baseline.empty() ? "no baseline" : "vs " + baseline;
  if (res.passed()) {
    steps->push_back({"gate " + label, Outcome::pass, vs});
  } else {
    steps->push_back(
        {"gate " + label, Outcome::fail, std::to_string(res.violations.size()) + " violation(s), " + vs});
    for (size_t i = 0; i < res.violations.size() && i < 5; ++i) gr->worst.push_back(res.violations[i]);
  }
}

int run_premerge(const PremergeOptions& o, const Context&) {
  using namespace mlalora::harness;
  GatePolicy pol;
  if (!o.policy.empty()) {
    Status st = GatePolicy::load(o.policy, &pol);
    if (!st.ok()) return fail(2, "--policy: " + st.message);
  }
  const std::string self = self_exe();
  if (self.empty()) return fail(3, "cannot find this executable through /proc/self/exe");
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec || !fs::is_directory(o.out_dir)) return fail(3, "--out-dir " + o.out_dir + ": cannot create: " + ec.message());

  bool gpu = false;
  std::string why_not = "this build has no CUDA (configured with MLALORA_ENABLE_CUDA=OFF or without nvcc)";
#ifdef MLALORA_HAVE_CUDA
  why_not.clear();
  gpu = harness::gpu_available(&why_not);
#endif
  if (o.force_cpu && gpu) gpu = false, why_not = "--cpu-only given";

  // Baselines are chosen before anything is written, so a report of this run
  // is never its own baseline even when --out-dir is inside --baseline-dir.
  std::string base_err, base_tp;
  std::vector<std::string> notes;
  if (!gpu) {
    // The CPU verify report is gated alone: committed baselines are GPU runs.
  } else if (fs::is_directory(o.baseline_dir, ec)) {
    find_newest_report(o.baseline_dir, GateReportKind::error_report, &base_err, &notes);
    find_newest_report(o.baseline_dir, GateReportKind::throughput_report, &base_tp, &notes);
  } else {
    notes.push_back("--baseline-dir " + o.baseline_dir + " is not a directory: no baselines");
  }

  std::printf("premerge: %s\n", gpu ? ("GPU " + gpu_device_name()).c_str()
                                    : ("NO GPU (" + why_not + "): running the CPU checks only").c_str());
  std::printf("  out-dir %s, baseline-dir %s\n", o.out_dir.c_str(), o.baseline_dir.c_str());
  if (gpu)
    std::printf("  baselines: error-report %s, throughput-report %s\n", base_err.empty() ? "(none)" : base_err.c_str(),
                base_tp.empty() ? "(none)" : base_tp.c_str());
  else
    std::printf("  baselines: not used (the committed baselines are GPU runs; the CPU report is gated alone)\n");
  for (const auto& n : notes) std::printf("  note: %s\n", n.c_str());

  std::vector<Step> steps;
  GateRun gr;
  auto child_step = [&](const std::string& name, const std::vector<std::string>& argv, const std::string& report,
                        const std::function<void(const std::string&)>& on_line = nullptr) {
    std::printf("\n== %s\n", name.c_str());
    std::fflush(stdout);
    std::string why;
    int rc = run_child(argv, on_line, &why);
    Outcome out = rc == 0 ? Outcome::pass : rc == 1 ? Outcome::fail : Outcome::error;
    std::string detail = rc == 0 ? "ok" : rc == 1 ? "check failed (exit 1)" : rc < 0 ? why : "exit " + std::to_string(rc);
    if (!report.empty()) detail += ", report " + report;
    steps.push_back({name, out, detail});
    return rc;
  };
  const std::string cases = std::to_string(o.cases > 0 ? o.cases : (gpu ? 500 : 200));
  const std::string seed = std::to_string(o.seed);

  if (gpu) {
    const std::string verify_out = (fs::path(o.out_dir) / "verify.h5").string();
    child_step("verify (GPU property check)",
               {self, "verify", "--impl", "cuda-fused,cuda-split,cublas-naive", "--config", "gpu", "--cases", cases,
                "--seed", seed, "--out", verify_out, "--dump-dir", (fs::path(o.out_dir) / "failures").string(),
                "--quiet"},
               verify_out);
    if (fs::exists(verify_out)) gate_step("verify report", verify_out, base_err, pol, &steps, &gr);
    if (!o.no_bench) {
      const std::string bench_out = (fs::path(o.out_dir) / "bench.h5").string();
      child_step("bench (suite " + o.suite + ")", {self, "bench", "--suite", o.suite, "--seed", seed, "--out", bench_out},
                 bench_out);
      if (fs::exists(bench_out)) gate_step("bench report", bench_out, base_tp, pol, &steps, &gr);
    } else {
      steps.push_back({"bench", Outcome::skip, "--no-bench"});
    }
  } else {
    const std::string verify_out = (fs::path(o.out_dir) / "verify-cpu.h5").string();
    child_step("verify (float64 references)",
               {self, "verify", "--impl", "reference-factored,reference-materialized", "--config", "cpu", "--cases",
                cases, "--seed", seed, "--out", verify_out, "--dump-dir", (fs::path(o.out_dir) / "failures").string(),
                "--quiet"},
               verify_out);
    // Mutation score from the test binary next to the CLI (build/property_tests/mlalora_tests).
    const fs::path tests = fs::path(self).parent_path() / ".." / "property_tests" / "mlalora_tests";
    if (o.no_mutation) {
      steps.push_back({"mutation score", Outcome::skip, "--no-mutation"});
    } else if (!fs::exists(tests, ec)) {
      steps.push_back({"mutation score", Outcome::skip,
                       "test binary not found at " + tests.lexically_normal().string() +
                           " (build the mlalora_tests target)"});
    } else {
      std::string score;
      static const std::regex re("mutation score: ([0-9]+)/([0-9]+)");
      child_step("mutation score ([mutation] tests)", {tests.lexically_normal().string(), "[mutation]"}, "",
                 [&](const std::string& line) {
                   std::smatch m;
                   if (std::regex_search(line, m, re)) score = m[1].str() + "/" + m[2].str();
                 });
      Step& s = steps.back();
      s.detail = (score.empty() ? std::string("no score line seen") : "score " + score + " mutants detected") +
                 (s.outcome == Outcome::pass ? "" : "; " + s.detail);
      if (s.outcome == Outcome::pass && score.empty()) s.outcome = Outcome::error;
    }
    if (fs::exists(verify_out)) gate_step("CPU verify report", verify_out, "", pol, &steps, &gr);
  }

  // Summary and verdict.
  std::printf("\n%-40s %-6s %s\n", "step", "result", "detail");
  int nfail = 0, nerr = 0;
  for (const Step& s : steps) {
    std::printf("%-40s %-6s %s\n", s.name.c_str(), outcome_name(s.outcome), s.detail.c_str());
    nfail += s.outcome == Outcome::fail;
    nerr += s.outcome == Outcome::error;
  }
  std::sort(gr.worst.begin(), gr.worst.end(),
            [](const GateViolation& a, const GateViolation& b) { return a.severity > b.severity; });
  if (!gr.worst.empty()) {
    std::printf("worst offenders:\n");
    for (size_t i = 0; i < gr.worst.size() && i < 5; ++i) {
      const auto& v = gr.worst[i];
      std::printf("  %-18s %-16s %-40s %s\n", v.rule.c_str(), v.implementation.c_str(), v.key.c_str(),
                  v.detail.substr(0, 120).c_str());
    }
  }
  const std::string mode = gpu ? "GPU" : "CPU only, no GPU";
  if (nfail == 0 && nerr == 0) {
    std::printf("premerge: PASS (%zu steps, %s; reports in %s)\n", steps.size(), mode.c_str(), o.out_dir.c_str());
    return 0;
  }
  std::string names;
  for (const Step& s : steps)
    if (s.outcome == Outcome::fail || s.outcome == Outcome::error) names += (names.empty() ? "" : ", ") + s.name;
  std::printf("premerge: FAIL (%d failed, %d errored: %s; %s; reports in %s)\n", nfail, nerr, names.c_str(),
              mode.c_str(), o.out_dir.c_str());
  return nfail > 0 ? 1 : 3;
}

}  // namespace

Action add_premerge(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<PremergeOptions>();
  CLI::App* sub = app.add_subcommand("premerge", "Run before merging a kernel change: verify, bench and gate "
                                                 "(GPU), or the CPU checks when there is no GPU");
  sub->footer(
      "With a GPU: verify cuda-fused,cuda-split,cublas-naive (--config gpu) -> OUT/verify.h5, bench --suite smoke\n"
      "-> OUT/bench.h5, then gate each against the newest report of the same kind in --baseline-dir.\n"
      "Without a GPU (said plainly): verify reference-factored,reference-materialized (--config cpu) ->\n"
      "OUT/verify-cpu.h5, the [mutation] tests of ../property_tests/mlalora_tests next to this binary (if built),\n"
      "and the gate of the CPU verify report alone.\n"
      "Exit: 0 everything passed, 1 a check or gate failed, 2 bad usage, 3 a step could not run.");
  sub->add_option("--cases", o->cases, "Verify cases (default 500 on a GPU, 200 on the CPU)")
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  sub->add_option("--seed", o->seed, "Base seed of verify and bench")->capture_default_str();
  sub->add_option("--baseline-dir", o->baseline_dir, "Directory of committed reports; the newest of each kind "
                                                      "(by time_utc) is the baseline")
      ->capture_default_str();
  sub->add_option("--out-dir", o->out_dir, "Where this run's reports (and failure reproducers) go")
      ->capture_default_str();
  sub->add_option("--policy", o->policy, "Gate policy file (see mlalora gate --help)");
  sub->add_option("--suite", o->suite, "Bench suite (GPU only)")->capture_default_str();
  sub->add_flag("--no-bench", o->no_bench, "Skip the bench (GPU)");
  sub->add_flag("--no-mutation", o->no_mutation, "Skip the mutation-score tests (CPU)");
  sub->add_flag("--cpu-only", o->force_cpu, "Run the CPU checks even when a GPU is present");
  return [o, &ctx] { return run_premerge(*o, ctx); };
}

}  // namespace mlalora::cli
