// mlalora check: judge an outside implementation's outputs (a candidate
// file) against a golden file, with a named rounding model.
#include <cinttypes>
#include <cstdio>

#include "commands.hpp"
#include "mlalora/harness/golden.hpp"
#include "mlalora/harness/report.hpp"

namespace mlalora::cli {

namespace {

struct CheckOptions {
  std::string golden;
  std::string candidate;
  std::string model = "factored-tc";
  std::string out;
  std::string name;
};

int code_of(const Status& st) { return st.code == StatusCode::io_error ? 3 : 2; }

void print_mismatch(const char* label, const harness::Mismatch& m) {
  std::printf("    %s: %s at (t=%" PRId64 ", h=%" PRId64 ", n=%" PRId64 "): got %.9g, want %.9g, bound %.3g\n", label,
              m.why.c_str(), m.t, m.h, m.n, m.got, m.want, m.bound);
}

int run_check(const CheckOptions& o, const Context& ctx) {
  using namespace mlalora::harness;
  Golden g;
  Status st = read_golden(o.golden, &g);
  if (!st.ok()) return fail(code_of(st), st.message);
  const DType dt = g.test_case.problem.shape.dtype;
  auto model = golden_rounding_model(o.model, dt);
  if (!model) return fail(2, "--model: '" + o.model + "' is not one of " + kGoldenModelNames);
  Candidate c;
  st = read_candidate(o.candidate, g, &c);
  if (!st.ok()) return fail(code_of(st), st.message);
  if (!o.name.empty()) c.name = o.name;

  GoldenVerdict v = judge_candidate(g, c, *model);
  std::printf("golden:    %s\n           %s\n", o.golden.c_str(), g.test_case.problem.summary().c_str());
  std::printf("candidate: %s (name %s; q_nope_out %s, attn_bmm_out %s)\n", o.candidate.c_str(), c.name.c_str(),
              c.q_form == CandidateForm::storage ? "full storage" : "logical (S,H,N)",
              c.v_form == CandidateForm::storage ? "full storage" : "logical (S,H,N)");
  std::printf("model:     %s (%s)\n", o.model.c_str(), model->describe().c_str());
  if (v.outcome.disposition == Disposition::failed) {
    std::printf("FAILED: %s\n", v.outcome.message.c_str());
  } else {
    for (Side side : kBothSides) {
      const SideVerdict& s = side == Side::q ? v.outcome.q : v.outcome.v;
      std::printf("%s-side (%s): %s\n", side_name(side), tensor_name(output_of(side)),
                  s.passed() ? "passed" : "FAILED");
      std::printf("    max err/bound %.4g, max abs err %.4g, rel frobenius %.4g\n", s.max_error_bound_ratio,
                  s.max_abs_error, s.rel_frobenius_error);
      std::printf("    checked %" PRId64 " elements against the bound, %" PRId64 " bitwise-unchanged\n",
                  s.elements_checked, s.elements_untouched);
      std::printf("    bad %" PRId64 ": bound violations %" PRId64 ", NaN/Inf introduced %" PRId64 ", NaN/Inf lost %" PRId64
                  ", written outside segments %" PRId64 "\n",
                  s.bad_count, s.bound_violations, s.nonfinite_introduced, s.nonfinite_lost, s.written_outside);
      if (!s.passed()) {
        print_mismatch("first bad", s.first_bad);
        print_mismatch("last bad ", s.last_bad);
      }
    }
  }
  if (!o.out.empty()) {
    ErrorReport report;
    add_to_report(report, 0, g, v);
    uint64_t seed = g.test_case.data_seed;
    Provenance prov = Provenance::collect("error-report", ctx.command_line, seed);
    Status ws = report.write(o.out, prov);
    if (!ws.ok()) return fail(3, "writing " + o.out + ": " + ws.message);
    std::printf("report:    %s (2 rows, kind error-report)\n", o.out.c_str());
  }
  std::printf("%s\n", v.passed() ? "PASSED" : "FAILED");
  return v.passed() ? 0 : 1;
}

}  // namespace

Action add_check(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<CheckOptions>();
  CLI::App* sub = app.add_subcommand(
      "check", "Judge an outside implementation's outputs (candidate HDF5) against a golden file; exit 0 if passed, 1 "
               "if not");
  sub->add_option("--golden", o->golden, "Golden file (datasets/golden/golden_<i>_<dtype>.h5)")->required();
  sub->add_option("--candidate", o->candidate,
                  "Candidate file: datasets /q_nope_out and /attn_bmm_out (float32, full storage or (S,H,N)); "
                  "optional root attributes name, dtype")
      ->required();
  sub->add_option("--model", o->model,
                  "Rounding model: factored (fp32 round-to-nearest accumulation), factored-tc (tensor cores), "
                  "materialized (dW = B@A rounded, as cuBLAS naive), output-only (exact math, output rounded)")
      ->capture_default_str();
  sub->add_option("--out", o->out, "Write an HDF5 error report (kind error-report, rows q and v)");
  sub->add_option("--name", o->name, "Implementation name for the report (default: the candidate's name attribute "
                                     "or file stem)");
  return [o, &ctx] { return run_check(*o, ctx); };
}

}  // namespace mlalora::cli
