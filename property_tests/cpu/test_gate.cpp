// The regression gate (harness/include/mlalora/harness/gate.hpp): policies,
// the rules on one report, baseline comparisons, and robustness against
// malformed, truncated, mistyped and randomly corrupted report files.
#include <catch2/catch.hpp>

#include "test_files.hpp"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>

#include "mlalora/harness/bench.hpp"
#include "mlalora/harness/fork_isolation.hpp"
#include "mlalora/harness/gate.hpp"
#include "mlalora/harness/generators.hpp"
#include "mlalora/harness/implementation.hpp"
#include "mlalora/harness/report.hpp"
#include "mlalora/harness/testbed.hpp"
#include "test_config.hpp"

using namespace mlalora;
using namespace mlalora::harness;
namespace fs = std::filesystem;

namespace {




void put_text(const std::string& p, const std::string& s) { mlalora::test::write_bytes(p, std::vector<char>(s.begin(), s.end())); }

// ---- crafted error reports

struct ErrRow {
  int64_t case_index = 0;
  std::string impl = "cuda-fused";
  std::string side = "q";
  std::string dtype = "bf16";
  std::string disposition = "passed";
  double ratio = 0.25;
  int64_t nonfinite_introduced = 0, nonfinite_lost = 0, written_outside = 0;
  std::string message;
};

// A healthy report: cases 0..n-1 of each implementation, both sides, ratio `ratio`.
std::vector<ErrRow> healthy_rows(int64_t n = 6, double ratio = 0.25,
                                 std::vector<std::string> impls = {"cuda-fused", "cuda-split", "cublas-naive"}) {
  std::vector<ErrRow> rows;
  for (int64_t c = 0; c < n; ++c)
    for (const auto& impl : impls)
      for (const char* side : {"q", "v"}) {
        ErrRow r;
        r.case_index = c, r.impl = impl, r.side = side, r.dtype = c % 2 ? "f16" : "bf16";
        r.ratio = ratio * (0.5 + 0.5 * static_cast<double>(c) / static_cast<double>(n));
        rows.push_back(r);
      }
  return rows;
}

H5Table error_table(const std::vector<ErrRow>& rows) {
  H5Table t;
  std::vector<int64_t> cas, dims, zero, one, checked, nf_in, nf_lost, outside, viol, badc;
  std::vector<double> max_abs, rel, ratio, secs;
  std::vector<std::string> impl, side, dtype, seed, disp, msg;
  for (const ErrRow& r : rows) {
    cas.push_back(r.case_index), dims.push_back(8), zero.push_back(0), one.push_back(1), checked.push_back(100);
    nf_in.push_back(r.nonfinite_introduced), nf_lost.push_back(r.nonfinite_lost);
    outside.push_back(r.written_outside);
    viol.push_back(r.ratio > 1 ? 3 : 0);
    badc.push_back(viol.back() + r.nonfinite_introduced + r.nonfinite_lost + r.written_outside);
    max_abs.push_back(1e-3 * r.ratio), rel.push_back(1e-4), ratio.push_back(r.ratio), secs.push_back(0.01);
    impl.push_back(r.impl), side.push_back(r.side), dtype.push_back(r.dtype), seed.push_back("17");
    disp.push_back(r.disposition), msg.push_back(r.message);
  }
  t.add("case", cas), t.add("implementation", impl), t.add("side", side), t.add("dtype", dtype);
  for (const char* d : {"S", "H", "D_qk", "D_v", "R_kv", "L", "r_max", "max_live_rank", "num_segments",
                        "segment_capacity"})
    t.add(d, dims);
  t.add("has_permutation", one), t.add("strided", zero), t.add("nonfinite_input", zero);
  t.add("data_seed", seed), t.add("disposition", disp), t.add("elements_checked", checked);
  t.add("max_abs_error", max_abs), t.add("rel_frobenius_error", rel), t.add("max_error_bound_ratio", ratio);
  t.add("nonfinite_introduced", nf_in), t.add("nonfinite_lost", nf_lost), t.add("written_outside", outside);
  t.add("bound_violations", viol), t.add("bad_count", badc), t.add("seconds", secs), t.add("message", msg);
  return t;
}

Provenance prov(const std::string& kind, const std::string& device = "NVIDIA H200 (sm_90, 132 SMs)",
                const std::string& time = "2026-12-01T10:00:00Z") {
  Provenance p = Provenance::collect(kind, "test_gate", 1);
  p.device = device;
  p.time_utc = time;
  return p;
}

void write_table_report(const std::string& path, const Provenance& p, const H5Table& t, double copy_bw = -1) {
  H5Writer w;
  REQUIRE(w.open(path).ok());
  REQUIRE(write_provenance(w, p).ok());
  if (copy_bw >= 0) REQUIRE(w.write_attr_double("/", "copy_bandwidth_bytes_per_second", copy_bw).ok());
  REQUIRE(w.write_table("/rows", t).ok());
  REQUIRE(w.commit().ok());
}

void write_error_report(const std::string& path, const std::vector<ErrRow>& rows,
                        const std::string& time = "2026-12-01T10:00:00Z") {
  write_table_report(path, prov("error-report", "NVIDIA H200 (sm_90, 132 SMs)", time), error_table(rows));
}

// ---- crafted throughput reports

struct TpRow {
  std::string shape = "DeepSeek-V3/tp1/r16/decode/T1/A8";
  std::string impl = "cuda-fused";
  std::string mode = "stream";
  std::string disposition = "passed";
  double median_us = 50;
};

std::vector<TpRow> healthy_tp(double scale = 1.0) {
  std::vector<TpRow> rows;
  int k = 0;
  for (const char* shape : {"DeepSeek-V3/tp1/r16/decode/T1/A8", "DeepSeek-V3/tp8/r64/decode/T256/A8",
                            "Kimi-K2/tp1/r32/chunked/T1024/A4/zipf"})
    for (const char* impl : {"cuda-fused", "cuda-split", "cublas-naive"})
      for (const char* mode : {"stream", "graph"}) {
        TpRow r;
        r.shape = shape, r.impl = impl, r.mode = mode;
        r.median_us = scale * (20.0 + 7.0 * k++);
        rows.push_back(r);
      }
  return rows;
}

H5Table throughput_table(const std::vector<TpRow>& rows) {
  BenchResult r;
  for (const TpRow& t : rows) {
    BenchRow b;
    b.shape.model = t.shape.substr(0, t.shape.find('/'));
    b.implementation = t.impl, b.mode = t.mode, b.disposition = t.disposition;
    b.median_us = b.min_us = b.max_us = b.p10_us = b.p90_us = t.median_us;
    b.S = 1, b.H = 128, b.D_qk = 128, b.D_v = 128, b.R_kv = 512, b.covered_rows = 1, b.num_segments = 1;
    b.bytes = 1000, b.gbps = 10, b.frac_copy_bw = 0.01, b.byte_floor_us = 0.3;
    r.rows.push_back(b);
  }
  // Same columns as write_bench_report, but with the crafted shape names.
  H5Table t;
  std::vector<std::string> shape, model, workload, popularity, impl, mode, disp, msg;
  std::vector<int64_t> ints;
  std::vector<double> med;
  for (size_t i = 0; i < rows.size(); ++i) {
    shape.push_back(rows[i].shape), model.push_back(r.rows[i].shape.model), workload.push_back("decode");
    popularity.push_back("uniform"), impl.push_back(rows[i].impl), mode.push_back(rows[i].mode);
    disp.push_back(rows[i].disposition), msg.push_back(rows[i].disposition == "passed" ? "" : "boom");
    ints.push_back(1), med.push_back(rows[i].median_us);
  }
  t.add("shape", shape), t.add("model", model), t.add("tp", ints), t.add("rank", ints), t.add("workload", workload);
  t.add("tokens", ints), t.add("adapters", ints), t.add("popularity", popularity);
  for (const char* d : {"S", "H", "D_qk", "D_v", "R_kv", "covered_rows", "num_segments"}) t.add(d, ints);
  t.add("implementation", impl), t.add("mode", mode), t.add("disposition", disp);
  for (const char* d : {"median_us", "min_us", "max_us", "p10_us", "p90_us"}) t.add(d, med);
  t.add("bytes", ints), t.add("gbps", med), t.add("frac_copy_bw", med), t.add("byte_floor_us", med);
  t.add("fmas_factored", ints), t.add("fmas_naive", ints), t.add("speedup_vs_naive", med), t.add("message", msg);
  return t;
}

void write_tp_report(const std::string& path, const std::vector<TpRow>& rows,
                     const std::string& device = "NVIDIA H200 (sm_90, 132 SMs)",
                     const std::string& time = "2026-12-01T10:00:00Z") {
  write_table_report(path, prov("throughput-report", device, time), throughput_table(rows), 4.2e12);
}

GateReport load_ok(const std::string& path) {
  GateReport r;
  Status st = load_gate_report(path, &r);
  INFO(st.message);
  REQUIRE(st.ok());
  return r;
}

GateResult gate(const std::string& nw, const std::string& base = "", const GatePolicy& pol = GatePolicy{}) {
  GateReport n = load_ok(nw), b;
  if (!base.empty()) b = load_ok(base);
  GateResult res;
  Status st = run_gate(n, base.empty() ? nullptr : &b, pol, &res);
  INFO(st.message);
  REQUIRE(st.ok());
  for (const auto& v : res.violations) UNSCOPED_INFO(v.rule << " " << v.implementation << " " << v.key << ": " << v.detail);
  return res;
}

bool any_contains(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines)
    if (l.find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace

// ---------------------------------------------------------------- policy

TEST_CASE("gate: policy defaults, overrides, round trip", "[gate]") {
  GatePolicy p;
  CHECK(p.max_error_bound_ratio == 1.0);
  CHECK(p.error_growth_factor == 2.0);
  CHECK(p.error_growth_floor == 0.05);
  CHECK(p.throughput_drop_percent == 10.0);
  CHECK(p.compare_throughput_across_devices == false);
  Status st = GatePolicy::parse("# a comment\n\n  max_error_bound_ratio = 1.5   # inline\nthroughput_drop_percent=25\n"
                                "compare_throughput_across_devices = yes\n",
                                "p.txt", &p);
  REQUIRE(st.ok());
  CHECK(p.max_error_bound_ratio == 1.5);
  CHECK(p.throughput_drop_percent == 25);
  CHECK(p.compare_throughput_across_devices);
  CHECK(p.error_growth_factor == 2.0);  // untouched
  GatePolicy q;
  REQUIRE(GatePolicy::parse(p.to_text(), "to_text", &q).ok());
  CHECK(q.max_error_bound_ratio == 1.5);
  CHECK(q.throughput_drop_percent == 25);
  CHECK(q.compare_throughput_across_devices);
  CHECK(q.throughput_skip_implementations == "cublas-naive");  // the default survives the round trip
  CHECK(GatePolicy::keys().size() == 8);
  // The implementation list: comma-separated names, "none" for the empty list.
  GatePolicy l;
  REQUIRE(GatePolicy::parse("throughput_skip_implementations = cublas-naive , my-impl\n", "p", &l).ok());
  CHECK(l.throughput_skip_implementations == "cublas-naive,my-impl");
  REQUIRE(GatePolicy::parse("throughput_skip_implementations = none\n", "p", &l).ok());
  CHECK(l.throughput_skip_implementations.empty());
  GatePolicy m;
  REQUIRE(GatePolicy::parse(l.to_text(), "to_text", &m).ok());
  CHECK(m.throughput_skip_implementations.empty());
}

TEST_CASE("gate: malformed policies are rejected naming file:line", "[gate]") {
  struct Bad {
    const char* text;
    std::vector<const char*> expect;
  };
  const std::vector<Bad> cases = {
      {"max_error_bound_ratio = 1\nmax_eror_bound_ratio = 2\n", {"pol.txt:2", "unknown key 'max_eror_bound_ratio'",
                                                                 "known: max_error_bound_ratio"}},
      {"# ok\nthroughput_drop_percent 10\n", {"pol.txt:2", "key = value"}},
      {"error_growth_factor = two\n", {"pol.txt:1", "error_growth_factor", "not a finite number"}},
      {"error_growth_factor = 0.5\n", {"pol.txt:1", ">= 1"}},
      {"max_error_bound_ratio = 0\n", {"pol.txt:1", "> 0"}},
      {"throughput_drop_percent = -3\n", {"pol.txt:1", ">= 0"}},
      {"throughput_drop_percent = nan\n", {"pol.txt:1", "finite"}},
      {"compare_throughput_across_devices = maybe\n", {"pol.txt:1", "boolean"}},
      {"error_growth_floor = 0.1\nerror_growth_floor = 0.2\n", {"pol.txt:2", "twice"}},
      {"error_growth_floor =\n", {"pol.txt:1", "no value"}},
      {"throughput_skip_implementations = a,,b\n", {"pol.txt:1", "comma-separated list"}},
      {"throughput_skip_implementations = cublas naive\n", {"pol.txt:1", "comma-separated list"}},
  };
  for (const Bad& b : cases) {
    INFO(b.text);
    GatePolicy p;
    const GatePolicy before = p;
    Status st = GatePolicy::parse(b.text, "pol.txt", &p);
    INFO(st.message);
    CHECK(st.code == StatusCode::invalid_argument);
    for (const char* e : b.expect) CHECK_THAT(st.message, Catch::Contains(e));
    CHECK(p.max_error_bound_ratio == before.max_error_bound_ratio);  // unchanged on error
  }
  mlalora::test::TempDir tmp{"gate"};
  GatePolicy p;
  Status st = GatePolicy::load(tmp("missing.txt"), &p);
  CHECK(st.code == StatusCode::io_error);
  CHECK_THAT(st.message, Catch::Contains("missing.txt"));
  put_text(tmp("bad.txt"), "\n\nfoo = 1\n");
  st = GatePolicy::load(tmp("bad.txt"), &p);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("bad.txt:3"));
  CHECK_THAT(st.message, Catch::Contains("unknown key 'foo'"));
}

// ---------------------------------------------------------------- error reports, NEW alone

TEST_CASE("gate: a healthy error report passes", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  write_error_report(tmp("new.h5"), healthy_rows());
  GateResult r = gate(tmp("new.h5"));
  CHECK(r.passed());
  CHECK(any_contains(r.compared, "36 rows"));
  CHECK(any_contains(r.skipped, "no BASELINE"));
}

TEST_CASE("gate: a real ErrorReport from the reference implementations passes", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  ErrorReport report;
  auto impl = make_implementation("reference-factored");
  REQUIRE(impl);
  for (int64_t i = 0; i < 4; ++i) {
    Case c = sample_case(GenConfig::cpu_default(), mlalora::test::base_seed() + i, 15);
    Testbed tb(c);
    report.add(i, c, tb.run(*impl));
  }
  REQUIRE(report.write(tmp("ref.h5"), Provenance::collect("error-report", "test", 1)).ok());
  GateResult r = gate(tmp("ref.h5"));
  CHECK(r.passed());
}

TEST_CASE("gate: an incorrect row fails, worst first", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  auto rows = healthy_rows();
  rows[7].disposition = "incorrect", rows[7].ratio = 4.0, rows[7].message = "3 bound violations";
  rows[3].ratio = 1.3;  // passed but over the bound: a lesser violation
  rows[9].disposition = "failed", rows[9].message = "refused: workspace_too_small";
  write_error_report(tmp("new.h5"), rows);
  GateResult r = gate(tmp("new.h5"));
  REQUIRE(r.violations.size() == 3);
  CHECK(r.violations[0].rule == "disposition");
  CHECK(r.violations[0].implementation == rows[7].impl);
  CHECK_THAT(r.violations[0].detail, Catch::Contains("incorrect"));
  CHECK_THAT(r.violations[0].detail, Catch::Contains("3 bound violations"));
  CHECK(r.violations[1].rule == "disposition");
  CHECK_THAT(r.violations[1].detail, Catch::Contains("failed"));
  CHECK(r.violations[2].rule == "error-bound");
  CHECK(r.violations[0].severity >= r.violations[1].severity);
  CHECK(r.violations[1].severity > r.violations[2].severity);
}

TEST_CASE("gate: a max error/bound ratio of 1.3 fails", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  auto rows = healthy_rows();
  rows[4].ratio = 1.3;
  write_error_report(tmp("new.h5"), rows);
  GateResult r = gate(tmp("new.h5"));
  REQUIRE(r.violations.size() == 1);
  CHECK(r.violations[0].rule == "error-bound");
  CHECK(r.violations[0].value == Approx(1.3));
  CHECK(r.violations[0].limit == 1.0);
  CHECK(r.violations[0].key == "case " + std::to_string(rows[4].case_index) + " " + rows[4].side + " " + rows[4].dtype);

  SECTION("a policy file raising the limit lets it pass") {
    put_text(tmp("policy.txt"), "# looser bound for an experimental kernel\nmax_error_bound_ratio = 1.5\n");
    GatePolicy pol;
    REQUIRE(GatePolicy::load(tmp("policy.txt"), &pol).ok());
    CHECK(gate(tmp("new.h5"), "", pol).passed());
  }
  SECTION("an infinite or NaN ratio fails as the worst of its rule") {
    rows[5].ratio = std::numeric_limits<double>::infinity();
    rows[6].ratio = std::nan("");
    write_error_report(tmp("new2.h5"), rows);
    GateResult r2 = gate(tmp("new2.h5"));
    REQUIRE(r2.violations.size() == 3);
    for (const auto& v : r2.violations) CHECK(v.rule == "error-bound");
    CHECK(r2.violations[2].value == Approx(1.3));
  }
}

TEST_CASE("gate: NaN introduced, finite lost, written outside each fail", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  for (const char* what : {"nonfinite-introduced", "nonfinite-lost", "written-outside"}) {
    INFO(what);
    auto rows = healthy_rows();
    ErrRow& b = rows[10];
    if (std::string(what) == "nonfinite-introduced") b.nonfinite_introduced = 2;
    if (std::string(what) == "nonfinite-lost") b.nonfinite_lost = 1;
    if (std::string(what) == "written-outside") b.written_outside = 5;
    write_error_report(tmp("new.h5"), rows);
    GateResult r = gate(tmp("new.h5"));
    REQUIRE(r.violations.size() == 1);
    CHECK(r.violations[0].rule == what);
    CHECK(r.violations[0].implementation == b.impl);
    CHECK(r.violations[0].limit == 0);
    CHECK(gate_rule_tier(what) == 4);
  }
}

TEST_CASE("gate: an empty report fails unless allowed", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  write_error_report(tmp("empty.h5"), {});
  GateResult r = gate(tmp("empty.h5"));
  REQUIRE(r.violations.size() == 1);
  CHECK(r.violations[0].rule == "empty-report");
  GatePolicy pol;
  pol.allow_empty_report = true;
  CHECK(gate(tmp("empty.h5"), "", pol).passed());
}

// ---------------------------------------------------------------- error reports vs baseline

TEST_CASE("gate: error growth against a baseline", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  write_error_report(tmp("base.h5"), healthy_rows(6, 0.2));
  SECTION("the same errors pass") {
    write_error_report(tmp("new.h5"), healthy_rows(6, 0.2));
    GateResult r = gate(tmp("new.h5"), tmp("base.h5"));
    CHECK(r.passed());
    CHECK(any_contains(r.compared, "12 (implementation, dtype, side) groups"));
  }
  SECTION("1.5x growth passes, 3x growth of one implementation fails") {
    auto rows = healthy_rows(6, 0.2);
    for (auto& row : rows) row.ratio *= row.impl == "cuda-split" ? 3.0 : 1.5;
    write_error_report(tmp("new.h5"), rows);
    GateResult r = gate(tmp("new.h5"), tmp("base.h5"));
    REQUIRE(r.violations.size() == 4);  // cuda-split x {bf16, f16} x {q, v}
    for (const auto& v : r.violations) {
      CHECK(v.rule == "error-growth");
      CHECK(v.implementation == "cuda-split");
      CHECK(v.value == Approx(3 * v.limit / 2));
      CHECK_THAT(v.detail, Catch::Contains("x3"));
    }
    GatePolicy pol;
    REQUIRE(GatePolicy::parse("error_growth_factor = 3.5", "inline", &pol).ok());
    CHECK(gate(tmp("new.h5"), tmp("base.h5"), pol).passed());
  }
  SECTION("growth from a tiny baseline stays under the floor") {
    write_error_report(tmp("tiny.h5"), healthy_rows(6, 0.001));
    write_error_report(tmp("new.h5"), healthy_rows(6, 0.04));  // 40x, but <= 0.05
    CHECK(gate(tmp("new.h5"), tmp("tiny.h5")).passed());
    write_error_report(tmp("new2.h5"), healthy_rows(6, 0.2));
    GateResult r = gate(tmp("new2.h5"), tmp("tiny.h5"));
    CHECK(!r.passed());
    CHECK(r.violations[0].limit == Approx(0.05));
  }
  SECTION("groups on one side only are listed as skipped; baseline's bad rows are left out") {
    auto base = healthy_rows(6, 0.2, {"cuda-fused"});
    base[0].disposition = "incorrect", base[0].ratio = 9;
    write_error_report(tmp("base2.h5"), base);
    write_error_report(tmp("new.h5"), healthy_rows(6, 0.2, {"cuda-fused", "cuda-new"}));
    GateResult r = gate(tmp("new.h5"), tmp("base2.h5"));
    CHECK(r.passed());
    CHECK(any_contains(r.skipped, "cuda-new"));
    CHECK(any_contains(r.skipped, "1 incorrect/failed"));
  }
  SECTION("a baseline of another kind is a usage error") {
    write_tp_report(tmp("tp.h5"), healthy_tp());
    write_error_report(tmp("new.h5"), healthy_rows());
    GateReport n = load_ok(tmp("new.h5")), b = load_ok(tmp("tp.h5"));
    GateResult r;
    Status st = run_gate(n, &b, GatePolicy{}, &r);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("throughput-report"));
  }
}

// ---------------------------------------------------------------- throughput reports

TEST_CASE("gate: throughput reports", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  write_tp_report(tmp("base.h5"), healthy_tp(1.0));
  SECTION("same medians pass") {
    write_tp_report(tmp("new.h5"), healthy_tp(1.0));
    GateResult r = gate(tmp("new.h5"), tmp("base.h5"));
    CHECK(r.passed());
    // cublas-naive's 6 keys are not compared under the default policy.
    CHECK(any_contains(r.compared, "12 (shape, implementation, mode) medians"));
    CHECK(any_contains(r.skipped, "6 (shape, implementation, mode) key(s) not compared"));
  }
  SECTION("a cublas-naive slowdown is not gated by default, and is once the skip list is emptied") {
    auto rows = healthy_tp(1.0);
    rows[4].median_us *= 2;  // shape 0, cublas-naive, stream
    REQUIRE(rows[4].impl == "cublas-naive");
    write_tp_report(tmp("new.h5"), rows);
    GateResult r = gate(tmp("new.h5"), tmp("base.h5"));
    CHECK(r.passed());
    CHECK(any_contains(r.skipped, "throughput_skip_implementations = cublas-naive"));
    GatePolicy pol;
    REQUIRE(GatePolicy::parse("throughput_skip_implementations = none\n", "p", &pol).ok());
    GateResult r2 = gate(tmp("new.h5"), tmp("base.h5"), pol);
    REQUIRE(r2.violations.size() == 1);
    CHECK(r2.violations[0].implementation == "cublas-naive");
    CHECK(r2.violations[0].rule == "throughput-drop");
  }
  SECTION("5% slower passes, 25% slower on the same device fails") {
    write_tp_report(tmp("new.h5"), healthy_tp(1.05));
    CHECK(gate(tmp("new.h5"), tmp("base.h5")).passed());
    auto rows = healthy_tp(1.0);
    rows[3].median_us *= 1.25;  // one (shape, impl, mode): cuda-split graph
    rows[8].median_us *= 1.5;   // cuda-split stream of the second shape
    write_tp_report(tmp("new2.h5"), rows);
    GateResult r = gate(tmp("new2.h5"), tmp("base.h5"));
    REQUIRE(r.violations.size() == 2);
    CHECK(r.violations[0].rule == "throughput-drop");
    CHECK(r.violations[0].key == rows[8].shape + " " + rows[8].mode);  // +50% is worse than +25%
    CHECK(r.violations[1].implementation == rows[3].impl);
    CHECK(r.violations[1].value == Approx(rows[3].median_us));
    CHECK(r.violations[1].limit == Approx(1.1 * rows[3].median_us / 1.25));
    CHECK_THAT(r.violations[1].detail, Catch::Contains("+25%"));
    SECTION("a policy allowing 60% lets it pass") {
      GatePolicy pol;
      REQUIRE(GatePolicy::parse("throughput_drop_percent = 60\n", "p", &pol).ok());
      CHECK(gate(tmp("new2.h5"), tmp("base.h5"), pol).passed());
    }
    SECTION("a minimum delta in microseconds filters small absolute slowdowns") {
      GatePolicy pol;
      pol.throughput_min_delta_us = 1000;
      CHECK(gate(tmp("new2.h5"), tmp("base.h5"), pol).passed());
    }
  }
  SECTION("the same 25% drop on a different device passes, with the comparison skipped") {
    auto rows = healthy_tp(1.25);
    write_tp_report(tmp("new.h5"), rows, "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)");
    GateResult r = gate(tmp("new.h5"), tmp("base.h5"));
    CHECK(r.passed());
    CHECK(any_contains(r.skipped, "devices differ"));
    CHECK(any_contains(r.skipped, "H100"));
    GatePolicy pol;
    pol.compare_throughput_across_devices = true;
    GateResult r2 = gate(tmp("new.h5"), tmp("base.h5"), pol);
    CHECK(r2.violations.size() == rows.size() - 6);  // all but cublas-naive's 6 keys (default skip list)
  }
  SECTION("incorrect or failed bench rows fail on their own") {
    auto rows = healthy_tp(1.0);
    rows[2].disposition = "incorrect";
    rows[5].disposition = "failed";
    write_tp_report(tmp("new.h5"), rows);
    GateResult r = gate(tmp("new.h5"));
    REQUIRE(r.violations.size() == 2);
    for (const auto& v : r.violations) CHECK(v.rule == "disposition");
    // Against the baseline the two keys are not timed (not passed): no drop reported for them.
    GateResult r2 = gate(tmp("new.h5"), tmp("base.h5"));
    CHECK(r2.violations.size() == 2);
    CHECK(any_contains(r2.skipped, "no passed row in NEW"));
  }
  SECTION("a report written by write_bench_report loads") {
    BenchResult br;
    BenchRow b;
    b.shape.model = "DeepSeek-V3", b.implementation = "cuda-fused", b.mode = "graph", b.disposition = "passed";
    b.median_us = 12.5;
    br.rows.push_back(b);
    br.copy_bytes_per_second = 3e12;
    REQUIRE(write_bench_report(tmp("bench.h5"), br, "test", 1).ok());
    GateReport g = load_ok(tmp("bench.h5"));
    CHECK(g.kind == GateReportKind::throughput_report);
    CHECK(g.copy_bandwidth == 3e12);
    CHECK(gate(tmp("bench.h5")).passed());
  }
}

// ---------------------------------------------------------------- malformed files

TEST_CASE("gate: unreadable, wrong-kind, truncated and mistyped reports give clear errors", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  const std::string good = tmp("good.h5");
  write_error_report(good, healthy_rows());
  auto expect_error = [&](const std::string& path, StatusCode code, std::vector<std::string> needles) {
    GateReport r;
    Status st = load_gate_report(path, &r);
    INFO(path << ": " << st.message);
    REQUIRE(!st.ok());
    CHECK(st.code == code);
    CHECK_THAT(st.message, Catch::Contains(fs::path(path).filename().string()));
    for (const auto& n : needles) CHECK_THAT(st.message, Catch::Contains(n));
  };
  expect_error(tmp("missing.h5"), StatusCode::io_error, {"not found"});
  put_text(tmp("text.h5"), "hello, not hdf5\n");
  expect_error(tmp("text.h5"), StatusCode::io_error, {"not an HDF5 file"});
  put_text(tmp("zero.h5"), "");
  expect_error(tmp("zero.h5"), StatusCode::io_error, {});
  expect_error(tmp.dir.string(), StatusCode::io_error, {});

  const std::vector<char> bytes = mlalora::test::read_bytes(good);
  for (size_t cut : {size_t{8}, size_t{100}, bytes.size() / 3, bytes.size() / 2, bytes.size() - 16}) {
    INFO("truncated to " << cut);
    mlalora::test::write_bytes(tmp("trunc.h5"), std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut)));
    GateReport r;
    Status st = load_gate_report(tmp("trunc.h5"), &r);
    CHECK(!st.ok());
    CHECK_THAT(st.message, Catch::Contains("trunc.h5"));
  }

  auto with = [&](const std::string& name, const std::function<void(H5Writer&)>& fill) {
    H5Writer w;
    REQUIRE(w.open(tmp(name)).ok());
    fill(w);
    REQUIRE(w.commit().ok());
    return tmp(name);
  };
  // Wrong kind / no kind / schema version.
  expect_error(with("fma.h5",
                    [](H5Writer& w) {
                      REQUIRE(write_provenance(w, prov("fma-report")).ok());
                      REQUIRE(w.write_table("/rows", error_table(healthy_rows()) ).ok());
                    }),
               StatusCode::invalid_argument, {"fma-report", "cannot be gated"});
  expect_error(with("nokind.h5", [](H5Writer& w) { REQUIRE(w.write_table("/rows", error_table(healthy_rows())).ok()); }),
               StatusCode::invalid_argument, {"'kind'"});
  expect_error(with("v2.h5",
                    [](H5Writer& w) {
                      REQUIRE(write_provenance(w, prov("error-report")).ok());
                      REQUIRE(w.write_attr_int("/", "schema_version", 2).ok());
                      REQUIRE(w.write_table("/rows", error_table(healthy_rows())).ok());
                    }),
               StatusCode::invalid_argument, {"schema_version", "2"});
  expect_error(with("kindint.h5",
                    [](H5Writer& w) {
                      REQUIRE(w.write_attr_int("/", "kind", 7).ok());
                      REQUIRE(w.write_table("/rows", error_table(healthy_rows())).ok());
                    }),
               StatusCode::invalid_argument, {"kind"});
  expect_error(with("norows.h5", [](H5Writer& w) { REQUIRE(write_provenance(w, prov("error-report")).ok()); }),
               StatusCode::invalid_argument, {"/rows"});
  // An error report handed over as a throughput report (kind lies about the columns).
  expect_error(with("liar.h5",
                    [](H5Writer& w) {
                      REQUIRE(write_provenance(w, prov("throughput-report")).ok());
                      REQUIRE(w.write_table("/rows", error_table(healthy_rows())).ok());
                    }),
               StatusCode::invalid_argument, {"missing column 'shape'", "throughput-report"});

  // Column problems.
  auto mutated = [&](const std::string& name, const std::function<void(H5Table&)>& change) {
    H5Table t = error_table(healthy_rows());
    change(t);
    return with(name, [&](H5Writer& w) {
      REQUIRE(write_provenance(w, prov("error-report")).ok());
      REQUIRE(w.write_table("/rows", t).ok());
    });
  };
  auto col = [](H5Table& t, const std::string& name) -> H5Table::ColumnData& {
    for (auto& c : t.columns)
      if (c.name == name) return c.data;
    FAIL("no column " << name);
    throw 0;
  };
  expect_error(mutated("nocol.h5",
                       [](H5Table& t) {
                         t.columns.erase(std::remove_if(t.columns.begin(), t.columns.end(),
                                                        [](const auto& c) { return c.name == "written_outside"; }),
                                         t.columns.end());
                       }),
               StatusCode::invalid_argument, {"missing column 'written_outside'"});
  expect_error(mutated("strratio.h5",
                       [&](H5Table& t) {
                         col(t, "max_error_bound_ratio") = std::vector<std::string>(36, "0.5");
                       }),
               StatusCode::invalid_argument, {"/rows/max_error_bound_ratio", "expected float64", "found string"});
  expect_error(mutated("dblcount.h5",
                       [&](H5Table& t) { col(t, "written_outside") = std::vector<double>(36, 0.0); }),
               StatusCode::invalid_argument, {"/rows/written_outside", "expected int64"});
  expect_error(mutated("disp.h5",
                       [&](H5Table& t) { std::get<std::vector<std::string>>(col(t, "disposition"))[5] = "fine"; }),
               StatusCode::invalid_argument, {"/rows/disposition", "row 5", "'fine'"});
  expect_error(mutated("neg.h5", [&](H5Table& t) { std::get<std::vector<int64_t>>(col(t, "nonfinite_lost"))[3] = -1; }),
               StatusCode::invalid_argument, {"/rows/nonfinite_lost", "row 3", "-1"});
  expect_error(mutated("negratio.h5",
                       [&](H5Table& t) { std::get<std::vector<double>>(col(t, "max_error_bound_ratio"))[0] = -0.5; }),
               StatusCode::invalid_argument, {"/rows/max_error_bound_ratio", "row 0"});
  expect_error(mutated("side.h5", [&](H5Table& t) { std::get<std::vector<std::string>>(col(t, "side"))[1] = "k"; }),
               StatusCode::invalid_argument, {"/rows/side", "row 1"});
  // Columns of different lengths (bypassing write_table's own check).
  expect_error(with("ragged.h5",
                    [](H5Writer& w) {
                      REQUIRE(write_provenance(w, prov("error-report")).ok());
                      H5Table t = error_table(healthy_rows());
                      REQUIRE(w.create_group("/rows").ok());
                      std::string names;
                      for (auto& c : t.columns) {
                        names += (names.empty() ? "" : ",") + c.name;
                        if (auto* v = std::get_if<std::vector<int64_t>>(&c.data)) {
                          if (c.name == "bad_count") v->pop_back();
                          REQUIRE(w.write_vector("/rows/" + c.name, *v).ok());
                        } else if (auto* d = std::get_if<std::vector<double>>(&c.data)) {
                          REQUIRE(w.write_vector("/rows/" + c.name, *d).ok());
                        } else {
                          REQUIRE(w.write_strings("/rows/" + c.name, std::get<std::vector<std::string>>(c.data)).ok());
                        }
                      }
                      REQUIRE(w.write_attr_int("/rows", "mlalora_table", 1).ok());
                      REQUIRE(w.write_attr_string("/rows", "columns", names).ok());
                    }),
               StatusCode::invalid_argument, {"length", "bad_count"});
  // Throughput: a passed row without a finite median.
  {
    auto rows = healthy_tp();
    rows[3].median_us = std::nan("");
    write_tp_report(tmp("nanmed.h5"), rows);
    expect_error(tmp("nanmed.h5"), StatusCode::invalid_argument, {"/rows/median_us", "row 3"});
  }
}

namespace {
void fuzz_report(const std::string& label, const std::string& good, uint64_t seed, int iters) {
  const std::vector<char> bytes = mlalora::test::read_bytes(good);
  REQUIRE(!bytes.empty());
  GateReport pristine = load_ok(good);
  std::mt19937_64 rng(seed);
  int loaded = 0, refused = 0, gated_pass = 0, crashed = 0;
  const std::string f = good + ".fuzz.h5";
  for (int it = 0; it < iters; ++it) {
    const std::vector<char> m = mlalora::test::flip_bytes(bytes, rng, 512);
    mlalora::test::write_bytes(f, m);
    INFO(label << " iteration " << it << " (the corruption is replayed by the seed)");
    GateReport r;
    Status st = load_gate_report(f, &r, /*timeout_seconds=*/3);
    if (!st.ok()) {
      ++refused;
      REQUIRE(!st.message.empty());
      REQUIRE(st.message.find(f) != std::string::npos);
      crashed += st.message.find("corrupt file:") != std::string::npos;
      continue;
    }
    ++loaded;
    GateResult res;
    Status g = run_gate(r, &pristine, GatePolicy{}, &res);
    if (r.kind == pristine.kind) {
      REQUIRE(g.ok());
      gated_pass += res.passed();
    } else {
      REQUIRE(g.code == StatusCode::invalid_argument);
    }
  }
  std::printf("[gate] %s fuzz: %d loaded (%d of them pass the gate), %d refused with a clear error "
              "(%d of them: libhdf5 crashed or hung in the isolated decoder)\n",
              label.c_str(), loaded, gated_pass, refused, crashed);
  CHECK(loaded + refused == iters);
}
}  // namespace

TEST_CASE("gate: byte-flip fuzz of an error report and a throughput report never crashes", "[gate]") {
  const char* env_seed = std::getenv("MLALORA_FUZZ_SEED");
  const uint64_t seed = env_seed ? std::strtoull(env_seed, nullptr, 10) : mlalora::test::base_seed();
  const int iters = mlalora::test::env_int("MLALORA_FUZZ_ITERS", 150);
  std::printf("[gate] report fuzz: MLALORA_FUZZ_SEED=%llu MLALORA_FUZZ_ITERS=%d\n",
              static_cast<unsigned long long>(seed), iters);
  std::fflush(stdout);
  INFO("MLALORA_FUZZ_SEED=" << seed);
  mlalora::test::TempDir tmp{"gate"};
  auto rows = healthy_rows(4, 0.3);
  rows[2].ratio = 1.2;  // one violation, so a flip can also change the verdict
  write_error_report(tmp("err.h5"), rows);
  write_tp_report(tmp("tp.h5"), healthy_tp());
  fuzz_report("error-report", tmp("err.h5"), seed, iters);
  fuzz_report("throughput-report", tmp("tp.h5"), seed + 1, iters);
}

// ---------------------------------------------------------------- baselines and committed reports

TEST_CASE("gate: find_newest_report picks the newest of a kind", "[gate]") {
  mlalora::test::TempDir tmp{"gate"};
  write_error_report(tmp("a-old.h5"), healthy_rows(), "2026-11-01T00:00:00Z");
  write_error_report(tmp("z-older.h5"), healthy_rows(), "2026-10-01T00:00:00Z");
  write_error_report(tmp("m-new.h5"), healthy_rows(), "2026-12-24T00:00:00Z");
  write_tp_report(tmp("tp.h5"), healthy_tp(), "NVIDIA H200 (sm_90, 132 SMs)", "2027-01-01T00:00:00Z");
  put_text(tmp("junk.h5"), "garbage");
  put_text(tmp("notes.txt"), "not a report");
  std::string found;
  std::vector<std::string> notes;
  REQUIRE(find_newest_report(tmp.dir.string(), GateReportKind::error_report, &found, &notes).ok());
  CHECK(fs::path(found).filename() == "m-new.h5");
  CHECK(any_contains(notes, "junk.h5"));
  REQUIRE(find_newest_report(tmp.dir.string(), GateReportKind::throughput_report, &found).ok());
  CHECK(fs::path(found).filename() == "tp.h5");
  mlalora::test::TempDir empty{"gate"};
  REQUIRE(find_newest_report(empty.dir.string(), GateReportKind::error_report, &found).ok());
  CHECK(found.empty());
  CHECK(!find_newest_report(tmp("nope"), GateReportKind::error_report, &found).ok());
}

TEST_CASE("gate: the committed H200 reports load and gate", "[gate]") {
  const std::string dir = std::string(MLALORA_SOURCE_DIR) + "/reports/";
  const std::string bench = dir + "bench-h200-2026-11-28.h5";
  const std::string verify = dir + "verify-h200-2026-11-28.h5";
  if (!fs::exists(bench)) {
    WARN("SKIPPED: " << bench << " not present");
    return;
  }
  GateReport b = load_ok(bench);
  CHECK(b.kind == GateReportKind::throughput_report);
  CHECK(b.num_rows() > 0);
  CHECK(b.copy_bandwidth > 1e12);
  CHECK_THAT(b.device, Catch::Contains("H200"));
  GateResult r = gate(bench, bench);  // against itself: nothing can have regressed
  CHECK(r.passed());
  CHECK(any_contains(r.compared, "throughput vs BASELINE"));
  if (fs::exists(verify)) {
    GateReport v = load_ok(verify);
    CHECK(v.kind == GateReportKind::error_report);
    // A decoder that does not finish in time is killed and reported (the guard against libhdf5 looping).
    GateReport late;
    Status st = load_gate_report(verify, &late, /*timeout_seconds=*/1e-6);
    CHECK(st.code == StatusCode::io_error);
    CHECK_THAT(st.message, Catch::Contains("did not finish"));
    // The committed H200 run (fast-path kernels, current rounding model):
    // 12000 rows, none incorrect, every error within its bound.
    CHECK(v.num_rows() == 12000);
    GateResult rv = gate(verify);
    CHECK(rv.violations.empty());
    CHECK(rv.passed());
  }
}

TEST_CASE("gate: a forked helper dies with its parent (no orphan keeps spinning)", "[gate]") {
  // The report decoder is a forked child that forks the HDF5 probe in turn;
  // when the decoder is killed on timeout the probe must die too. Model:
  // A forks B (B calls die_with_parent(A) and would wait forever), A exits;
  // B must be gone (or a zombie) shortly after.
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t a = ::fork();
  REQUIRE(a >= 0);
  if (a == 0) {
    ::close(fds[0]);
    const pid_t parent = ::getpid();
    const pid_t b = ::fork();
    if (b == 0) {
      mlalora::harness::detail::die_with_parent(parent);
      for (;;) ::pause();
    }
    (void)!::write(fds[1], &b, sizeof b);
    ::_exit(0);
  }
  ::close(fds[1]);
  pid_t b = -1;
  REQUIRE(::read(fds[0], &b, sizeof b) == static_cast<ssize_t>(sizeof b));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(a, &status, 0);
  REQUIRE(b > 0);
  auto alive = [&] {
    std::ifstream st("/proc/" + std::to_string(b) + "/stat");
    std::string line;
    if (!std::getline(st, line)) return false;  // gone
    const size_t close_paren = line.rfind(')');
    return close_paren != std::string::npos && close_paren + 2 < line.size() && line[close_paren + 2] != 'Z';
  };
  bool gone = false;
  for (int i = 0; i < 300 && !(gone = !alive()); ++i) ::usleep(10000);
  if (!gone) ::kill(b, SIGKILL);  // do not leave it behind even when the test fails
  CHECK(gone);
}
