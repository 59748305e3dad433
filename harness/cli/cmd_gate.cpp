// mlalora gate: the regression gate over one report (and optionally a
// baseline of the same kind). Library: harness/include/mlalora/harness/gate.hpp.
#include <cinttypes>
#include <cstdio>
#include <map>

#include "commands.hpp"
#include "mlalora/harness/gate.hpp"

namespace mlalora::cli {

namespace {

struct GateCliOptions {
  std::string new_path;
  std::string baseline;
  std::string policy;
  std::vector<std::string> sets;
  int64_t max_rows = 20;
  bool print_policy = false;
};

std::string fmt_value(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

int run_gate_cli(const GateCliOptions& o) {
  using namespace mlalora::harness;
  GatePolicy pol;
  if (!o.policy.empty()) {
    Status st = GatePolicy::load(o.policy, &pol);
    if (!st.ok()) return fail(2, "--policy: " + st.message);
  }
  for (size_t i = 0; i < o.sets.size(); ++i) {
    Status st = GatePolicy::parse(o.sets[i], "--set #" + std::to_string(i + 1), &pol);
    if (!st.ok()) return fail(2, st.message);
  }
  if (o.print_policy) {
    std::printf("%s", pol.to_text().c_str());
    if (o.new_path.empty()) return 0;
  }
  if (o.new_path.empty()) return fail(2, "gate: the report to check (NEW.h5) is required (see --help)");

  GateReport nw, base;
  Status st = load_gate_report(o.new_path, &nw);
  if (!st.ok()) return fail(3, st.message);
  if (!o.baseline.empty()) {
    st = load_gate_report(o.baseline, &base);
    if (!st.ok()) return fail(3, "--baseline: " + st.message);
  }
  GateResult res;
  st = run_gate(nw, o.baseline.empty() ? nullptr : &base, pol, &res);
  if (!st.ok()) return fail(2, st.message);

  std::printf("gate: NEW      %s (%s, %" PRId64 " rows, device '%s', commit %s, %s)\n", nw.path.c_str(),
              gate_report_kind_name(nw.kind), nw.num_rows(), nw.device.c_str(), nw.git_commit.c_str(),
              nw.time_utc.c_str());
  if (!o.baseline.empty())
    std::printf("      BASELINE %s (%" PRId64 " rows, device '%s', commit %s, %s)\n", base.path.c_str(),
                base.num_rows(), base.device.c_str(), base.git_commit.c_str(), base.time_utc.c_str());
  std::printf("      policy   %s", o.policy.empty() ? "defaults" : o.policy.c_str());
  std::printf(": max_error_bound_ratio=%g error_growth_factor=%g error_growth_floor=%g throughput_drop_percent=%g "
              "throughput_min_delta_us=%g compare_throughput_across_devices=%s allow_empty_report=%s\n",
              pol.max_error_bound_ratio, pol.error_growth_factor, pol.error_growth_floor, pol.throughput_drop_percent,
              pol.throughput_min_delta_us, pol.compare_throughput_across_devices ? "true" : "false",
              pol.allow_empty_report ? "true" : "false");
  std::printf("\ncompared:\n");
  for (const auto& c : res.compared) std::printf("  - %s\n", c.c_str());
  if (!res.skipped.empty()) {
    std::printf("skipped:\n");
    for (const auto& s : res.skipped) std::printf("  - %s\n", s.c_str());
  }

  const size_t total = res.violations.size();
  if (total > 0) {
    const size_t shown = o.max_rows <= 0 ? total : std::min<size_t>(total, static_cast<size_t>(o.max_rows));
    std::printf("\nviolations, worst first (%zu of %zu shown):\n", shown, total);
    std::printf("%4s  %-20s %-22s %-44s %11s %11s  %s\n", "#", "rule", "implementation", "key", "value", "limit",
                "detail");
    for (size_t i = 0; i < shown; ++i) {
      const auto& v = res.violations[i];
      std::printf("%4zu  %-20s %-22s %-44s %11s %11s  %s\n", i + 1, v.rule.c_str(), clip(v.implementation, 22).c_str(),
                  clip(v.key, 44).c_str(), fmt_value(v.value).c_str(), fmt_value(v.limit).c_str(),
                  clip(v.detail, 200).c_str());
    }
    if (shown < total) std::printf("  ... %zu more (--max-rows 0 shows all)\n", total - shown);
    // Counts per rule and implementation.
    std::map<std::string, std::map<std::string, int64_t>> by;
    for (const auto& v : res.violations) ++by[v.rule][v.implementation];
    std::printf("by rule:\n");
    for (const auto& [rule, impls] : by) {
      int64_t n = 0;
      std::string parts;
      for (const auto& [impl, c] : impls) n += c, parts += (parts.empty() ? "" : ", ") + impl + " " + std::to_string(c);
      std::printf("  %-20s %6" PRId64 "  (%s)\n", rule.c_str(), n, parts.c_str());
    }
  }

  std::string what = std::string(gate_report_kind_name(nw.kind)) + " " + nw.path +
                     (o.baseline.empty() ? ", no baseline" : ", baseline " + base.path);
  if (res.passed()) {
    std::printf("\ngate: PASS (%s; %zu check group(s), %zu skipped)\n", what.c_str(), res.compared.size(),
                res.skipped.size());
    return 0;
  }
  const auto& w = res.violations.front();
  std::printf("\ngate: FAIL (%zu violation%s) %s; worst: %s %s %s: %s\n", total, total == 1 ? "" : "s",
              what.c_str(), w.rule.c_str(), w.implementation.c_str(), w.key.c_str(), clip(w.detail, 100).c_str());
  return 1;
}

}  // namespace

Action add_gate(CLI::App& app, Context&) {
  auto o = std::make_shared<GateCliOptions>();
  CLI::App* sub = app.add_subcommand(
      "gate", "Regression gate: check an error or throughput report (and compare it with a baseline)");
  sub->footer(
      "Rules on NEW alone: no row with disposition incorrect/failed; error reports also need every row's\n"
      "max_error_bound_ratio <= max_error_bound_ratio and nonfinite_introduced = nonfinite_lost =\n"
      "written_outside = 0; an empty report fails unless allow_empty_report.\n"
      "With --baseline (same kind): error reports, per (implementation, dtype, side), the largest ratio over\n"
      "passed rows may not exceed max(error_growth_factor x baseline's, error_growth_floor); throughput\n"
      "reports, per (shape, implementation, mode), median_us may not exceed (1 + throughput_drop_percent/100)\n"
      "x baseline's -- only when both reports' `device` attributes are equal, unless\n"
      "compare_throughput_across_devices = true (otherwise the comparison is listed as skipped), and\n"
      "not for implementations in throughput_skip_implementations (default cublas-naive: the yardstick,\n"
      "whose small-shape medians move by up to 2x between runs).\n"
      "Policy file: 'key = value' lines, '#' comments; --print-policy shows every key with its default.\n"
      "Exit: 0 pass, 1 violations, 2 bad usage / policy / kinds differ, 3 a report cannot be read.\n"
      "Example: mlalora gate out/verify.h5 --baseline reports/verify-h200-2026-11-28.h5 --max-rows 10");
  sub->add_option("NEW", o->new_path, "The report to check (error-report from verify, throughput-report from bench)");
  sub->add_option("--baseline", o->baseline, "An older report of the same kind to compare against");
  sub->add_option("--policy", o->policy, "Policy file (key = value); keys not given keep their defaults");
  sub->add_option("--set", o->sets, "Override one policy key, e.g. --set throughput_drop_percent=15 (repeatable)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--max-rows", o->max_rows, "Violations to print (worst first; 0 = all)")->capture_default_str();
  sub->add_flag("--print-policy", o->print_policy, "Print the effective policy as a policy file (and exit if no NEW)");
  return [o] { return run_gate_cli(*o); };
}

}  // namespace mlalora::cli
