#include "mlalora/harness/gate.hpp"

#include "mlalora/harness/fork_isolation.hpp"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mlalora::harness {

namespace {

std::string fmt(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// "a, b, c and N more" for long lists.
std::string summarize(const std::vector<std::string>& items, size_t show = 4) {
  std::string s;
  for (size_t i = 0; i < items.size() && i < show; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > show) s += " and " + std::to_string(items.size() - show) + " more";
  return s;
}

const std::vector<std::string>& known_dispositions() {
  static const std::vector<std::string> d{"passed", "incorrect", "failed", "not-supported"};
  return d;
}

bool is_bad_disposition(const std::string& d) { return d == "incorrect" || d == "failed"; }

// ---------------------------------------------------------------- policy

enum class KeyType { number, boolean, names };
struct PolicyKey {
  const char* name;
  KeyType type;
  double GatePolicy::*num;
  bool GatePolicy::*flag;
  double min;        // numbers: smallest allowed value
  bool min_exclusive;
  const char* help;
  std::string GatePolicy::*text = nullptr;  // names: comma-separated list
};

const std::vector<PolicyKey>& policy_keys() {
  static const std::vector<PolicyKey> k{
      {"max_error_bound_ratio", KeyType::number, &GatePolicy::max_error_bound_ratio, nullptr, 0, true,
       "a row's max error/bound may not exceed this (error reports)"},
      {"error_growth_factor", KeyType::number, &GatePolicy::error_growth_factor, nullptr, 1, false,
       "per (implementation, dtype, side): NEW max ratio <= factor x BASELINE max ratio"},
      {"error_growth_floor", KeyType::number, &GatePolicy::error_growth_floor, nullptr, 0, false,
       "... NEW ratios at or below this floor never count as growth"},
      {"throughput_drop_percent", KeyType::number, &GatePolicy::throughput_drop_percent, nullptr, 0, false,
       "per (shape, implementation, mode): NEW median_us <= (1 + pct/100) x BASELINE median_us"},
      {"throughput_min_delta_us", KeyType::number, &GatePolicy::throughput_min_delta_us, nullptr, 0, false,
       "... and a slowdown of fewer microseconds than this is ignored as noise"},
      {"compare_throughput_across_devices", KeyType::boolean, nullptr, &GatePolicy::compare_throughput_across_devices,
       0, false, "compare medians even when the reports' `device` attributes differ"},
      {"allow_empty_report", KeyType::boolean, nullptr, &GatePolicy::allow_empty_report, 0, false,
       "a report with no rows passes (otherwise it is an empty-report violation)"},
      {"throughput_skip_implementations", KeyType::names, nullptr, nullptr, 0, false,
       "implementations whose medians are not compared with BASELINE (comma-separated, or none)",
       &GatePolicy::throughput_skip_implementations},
  };
  return k;
}

bool parse_bool(const std::string& v, bool* out) {
  std::string l;
  for (char c : v) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "true" || l == "1" || l == "yes" || l == "on") return *out = true, true;
  if (l == "false" || l == "0" || l == "no" || l == "off") return *out = false, true;
  return false;
}

// ---------------------------------------------------------------- report schema

enum class ColType { i64, f64, str };
const char* col_type_name(ColType t) { return t == ColType::i64 ? "int64" : t == ColType::f64 ? "float64" : "string"; }
ColType actual_type(const H5Table::ColumnData& d) {
  if (std::holds_alternative<std::vector<int64_t>>(d)) return ColType::i64;
  if (std::holds_alternative<std::vector<double>>(d)) return ColType::f64;
  return ColType::str;
}

struct ColSpec {
  const char* name;
  ColType type;
};

const std::vector<ColSpec>& error_columns() {
  static const std::vector<ColSpec> c{
      {"case", ColType::i64}, {"implementation", ColType::str}, {"side", ColType::str}, {"dtype", ColType::str},
      {"S", ColType::i64}, {"H", ColType::i64}, {"D_qk", ColType::i64}, {"D_v", ColType::i64}, {"R_kv", ColType::i64},
      {"L", ColType::i64}, {"r_max", ColType::i64}, {"max_live_rank", ColType::i64}, {"num_segments", ColType::i64},
      {"segment_capacity", ColType::i64}, {"has_permutation", ColType::i64}, {"strided", ColType::i64},
      {"nonfinite_input", ColType::i64}, {"data_seed", ColType::str}, {"disposition", ColType::str},
      {"elements_checked", ColType::i64}, {"max_abs_error", ColType::f64}, {"rel_frobenius_error", ColType::f64},
      {"max_error_bound_ratio", ColType::f64}, {"nonfinite_introduced", ColType::i64},
      {"nonfinite_lost", ColType::i64}, {"written_outside", ColType::i64}, {"bound_violations", ColType::i64},
      {"bad_count", ColType::i64}, {"seconds", ColType::f64}, {"message", ColType::str},
  };
  return c;
}

const std::vector<ColSpec>& throughput_columns() {
  static const std::vector<ColSpec> c{
      {"shape", ColType::str}, {"model", ColType::str}, {"tp", ColType::i64}, {"rank", ColType::i64},
      {"workload", ColType::str}, {"tokens", ColType::i64}, {"adapters", ColType::i64}, {"popularity", ColType::str},
      {"S", ColType::i64}, {"H", ColType::i64}, {"D_qk", ColType::i64}, {"D_v", ColType::i64}, {"R_kv", ColType::i64},
      {"covered_rows", ColType::i64}, {"num_segments", ColType::i64}, {"implementation", ColType::str},
      {"mode", ColType::str}, {"disposition", ColType::str}, {"median_us", ColType::f64}, {"min_us", ColType::f64},
      {"max_us", ColType::f64}, {"p10_us", ColType::f64}, {"p90_us", ColType::f64}, {"bytes", ColType::i64},
      {"gbps", ColType::f64}, {"frac_copy_bw", ColType::f64}, {"byte_floor_us", ColType::f64},
      {"fmas_factored", ColType::i64}, {"fmas_naive", ColType::i64}, {"speedup_vs_naive", ColType::f64},
      {"message", ColType::str},
  };
  return c;
}

// Integer columns that are counts or sizes (must be >= 0) and 0/1 flags.
const std::vector<const char*> kErrorCounts{"case", "S", "H", "D_qk", "D_v", "R_kv", "L", "r_max", "max_live_rank",
                                            "num_segments", "segment_capacity", "elements_checked",
                                            "nonfinite_introduced", "nonfinite_lost", "written_outside",
                                            "bound_violations", "bad_count"};
const std::vector<const char*> kErrorFlags{"has_permutation", "strided", "nonfinite_input"};
// Float columns that may be +inf/NaN (a broken kernel) but never negative.
const std::vector<const char*> kErrorNonNeg{"max_abs_error", "rel_frobenius_error", "max_error_bound_ratio",
                                            "seconds"};
const std::vector<const char*> kThroughputCounts{"tp", "rank", "tokens", "adapters", "S", "H", "D_qk", "D_v", "R_kv",
                                                 "covered_rows", "num_segments", "bytes", "fmas_factored",
                                                 "fmas_naive"};
const std::vector<const char*> kThroughputNonNeg{"median_us", "min_us", "max_us", "p10_us", "p90_us", "gbps",
                                                 "frac_copy_bw", "byte_floor_us", "speedup_vs_naive"};

Status bad(const std::string& path, const std::string& where, const std::string& what) {
  return Status::Invalid(path + ": " + where + ": " + what);
}

// Prefix the file name unless the message already names it.
Status with_path(Status st, const std::string& path) {
  if (!st.ok() && st.message.find(path) == std::string::npos) st.message = path + ": " + st.message;
  return st;
}

Status check_columns(const std::string& path, const H5Table& t, const std::vector<ColSpec>& spec,
                     const std::string& kind) {
  for (const ColSpec& c : spec) {
    const H5Table::Column* col = t.find(c.name);
    if (!col)
      return bad(path, "/rows", std::string("missing column '") + c.name + "' (required in an " + kind + ")");
    if (actual_type(col->data) != c.type)
      return bad(path, std::string("/rows/") + c.name,
                 std::string("expected ") + col_type_name(c.type) + " column, found " +
                     col_type_name(actual_type(col->data)));
  }
  if (t.rows() < 0) return bad(path, "/rows", "columns differ in length");
  return Status::Ok();
}

// Row rule helpers.
struct RowHit {
  std::string rule;
  double value, limit;
  std::string what;
};

double severity_of(const std::string& rule, double value, double limit) {
  double tier = gate_rule_tier(rule);
  double excess;
  if (std::isnan(value)) excess = std::numeric_limits<double>::infinity();
  else if (limit > 0) excess = value / limit - 1;
  else excess = value - limit;
  if (!(excess > 0)) excess = 0;
  double frac = std::isinf(excess) ? 0.999999 : std::min(0.999999, 1.0 - 1.0 / (1.0 + excess));
  return tier + frac;
}

GateViolation make_violation(const std::string& rule, const std::string& impl, const std::string& key, double value,
                             double limit, const std::string& detail) {
  GateViolation v;
  v.rule = rule, v.implementation = impl, v.key = key, v.value = value, v.limit = limit, v.detail = detail;
  v.severity = severity_of(rule, value, limit);
  return v;
}

std::string clip(const std::string& s, size_t n = 160) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

std::string describe_report(const GateReport& r) {
  return r.path + " (" + gate_report_kind_name(r.kind) + ", " + std::to_string(r.num_rows()) + " rows, device '" +
         r.device + "', commit " + r.git_commit + ", " + r.time_utc + ")";
}

// ---------------------------------------------------------------- error reports

void gate_error_rows(const GateReport& r, const GatePolicy& pol, GateResult* out) {
  const auto& impl = r.strings("implementation");
  const auto& side = r.strings("side");
  const auto& dtype = r.strings("dtype");
  const auto& disp = r.strings("disposition");
  const auto& msg = r.strings("message");
  const auto& cas = r.ints("case");
  const auto& ratio = r.doubles("max_error_bound_ratio");
  const auto& nf_in = r.ints("nonfinite_introduced");
  const auto& nf_lost = r.ints("nonfinite_lost");
  const auto& outside = r.ints("written_outside");
  const auto& badc = r.ints("bad_count");
  std::map<std::string, std::map<std::string, int64_t>> counts;  // impl -> disposition -> rows
  for (size_t i = 0; i < impl.size(); ++i) {
    ++counts[impl[i]][disp[i]];
    std::vector<RowHit> hits;
    if (is_bad_disposition(disp[i]))
      hits.push_back({"disposition", disp[i] == "incorrect" ? static_cast<double>(std::max<int64_t>(badc[i], 1)) : 1.0,
                      0, disp[i]});
    if (nf_in[i] > 0)
      hits.push_back({"nonfinite-introduced", static_cast<double>(nf_in[i]), 0,
                      std::to_string(nf_in[i]) + " NaN/Inf where the reference is finite"});
    if (nf_lost[i] > 0)
      hits.push_back({"nonfinite-lost", static_cast<double>(nf_lost[i]), 0,
                      std::to_string(nf_lost[i]) + " finite where the reference is NaN/Inf"});
    if (outside[i] > 0)
      hits.push_back({"written-outside", static_cast<double>(outside[i]), 0,
                      std::to_string(outside[i]) + " elements outside live rows changed"});
    if (disp[i] != "not-supported" && !(ratio[i] <= pol.max_error_bound_ratio))
      hits.push_back({"error-bound", ratio[i], pol.max_error_bound_ratio,
                      "max error/bound " + fmt(ratio[i]) + " > " + fmt(pol.max_error_bound_ratio)});
    if (hits.empty()) continue;
    size_t worst = 0;
    for (size_t h = 1; h < hits.size(); ++h)
      if (severity_of(hits[h].rule, hits[h].value, hits[h].limit) >
          severity_of(hits[worst].rule, hits[worst].value, hits[worst].limit))
        worst = h;
    std::string detail;
    for (size_t h = 0; h < hits.size(); ++h) detail += (h ? "; " : "") + hits[h].what;
    if (!msg[i].empty()) detail += " -- " + clip(msg[i]);
    std::string key = "case " + std::to_string(cas[i]) + " " + side[i] + " " + dtype[i];
    out->violations.push_back(
        make_violation(hits[worst].rule, impl[i], key, hits[worst].value, hits[worst].limit, detail));
  }
  std::vector<std::string> per_impl;
  for (const auto& [name, by] : counts) {
    std::string s = name + ":";
    for (const auto& [d, n] : by) s += " " + std::to_string(n) + " " + d;
    per_impl.push_back(s);
  }
  out->compared.push_back("rules on NEW: " + std::to_string(impl.size()) + " rows (" + summarize(per_impl, 8) +
                          "); no incorrect/failed rows, max error/bound <= " + fmt(pol.max_error_bound_ratio) +
                          ", nonfinite_introduced = nonfinite_lost = written_outside = 0");
}

void gate_error_growth(const GateReport& nw, const GateReport& base, const GatePolicy& pol, GateResult* out) {
  struct Agg {
    double max_ratio = 0;
    int64_t rows = 0;
    int64_t at_case = -1;
  };
  using Key = std::tuple<std::string, std::string, std::string>;  // impl, dtype, side
  auto collect = [](const GateReport& r, int64_t* ignored) {
    std::map<Key, Agg> m;
    const auto& impl = r.strings("implementation");
    const auto& side = r.strings("side");
    const auto& dtype = r.strings("dtype");
    const auto& disp = r.strings("disposition");
    const auto& ratio = r.doubles("max_error_bound_ratio");
    const auto& cas = r.ints("case");
    for (size_t i = 0; i < impl.size(); ++i) {
      if (disp[i] != "passed") {
        if (is_bad_disposition(disp[i])) ++*ignored;
        continue;
      }
      Agg& a = m[{impl[i], dtype[i], side[i]}];
      ++a.rows;
      double v = std::isnan(ratio[i]) ? std::numeric_limits<double>::infinity() : ratio[i];
      if (a.at_case < 0 || v > a.max_ratio) a.max_ratio = v, a.at_case = cas[i];
    }
    return m;
  };
  int64_t new_bad = 0, base_bad = 0;
  std::map<Key, Agg> n = collect(nw, &new_bad), b = collect(base, &base_bad);
  std::vector<std::string> only_new, only_base;
  int64_t compared = 0;
  for (const auto& [k, a] : n) {
    const auto& [impl, dtype, side] = k;
    auto it = b.find(k);
    if (it == b.end()) {
      only_new.push_back(impl + " " + dtype + " " + side);
      continue;
    }
    ++compared;
    const double limit = std::max(pol.error_growth_factor * it->second.max_ratio, pol.error_growth_floor);
    if (a.max_ratio > limit) {
      const double growth = it->second.max_ratio > 0 ? a.max_ratio / it->second.max_ratio : INFINITY;
      out->violations.push_back(make_violation(
          "error-growth", impl, dtype + " " + side, a.max_ratio, limit,
          "max error/bound " + fmt(a.max_ratio) + " (case " + std::to_string(a.at_case) + ", " +
              std::to_string(a.rows) + " passed rows) vs baseline " + fmt(it->second.max_ratio) + " (" +
              std::to_string(it->second.rows) + " rows): x" + fmt(growth) + ", allowed x" +
              fmt(pol.error_growth_factor) + " (floor " + fmt(pol.error_growth_floor) + ")"));
    }
  }
  for (const auto& [k, a] : b)
    if (!n.count(k)) only_base.push_back(std::get<0>(k) + " " + std::get<1>(k) + " " + std::get<2>(k));
  out->compared.push_back("error growth vs BASELINE " + describe_report(base) + ": " + std::to_string(compared) +
                          " (implementation, dtype, side) groups, passed rows only; limit max(" +
                          fmt(pol.error_growth_factor) + " x baseline max ratio, " + fmt(pol.error_growth_floor) +
                          ")");
  if (!only_new.empty())
    out->skipped.push_back(std::to_string(only_new.size()) + " group(s) of NEW have no passed rows in BASELINE: " +
                           summarize(only_new));
  if (!only_base.empty())
    out->skipped.push_back(std::to_string(only_base.size()) + " group(s) of BASELINE have no passed rows in NEW: " +
                           summarize(only_base));
  if (base_bad > 0)
    out->skipped.push_back("BASELINE has " + std::to_string(base_bad) +
                           " incorrect/failed row(s): left out of the growth comparison");
  if (compared == 0) out->skipped.push_back("error growth: no (implementation, dtype, side) group in common");
}

// ---------------------------------------------------------------- throughput reports

void gate_throughput_rows(const GateReport& r, GateResult* out) {
  const auto& shape = r.strings("shape");
  const auto& impl = r.strings("implementation");
  const auto& mode = r.strings("mode");
  const auto& disp = r.strings("disposition");
  const auto& msg = r.strings("message");
  std::map<std::string, int64_t> counts;
  for (size_t i = 0; i < shape.size(); ++i) {
    ++counts[disp[i]];
    if (!is_bad_disposition(disp[i])) continue;
    out->violations.push_back(make_violation("disposition", impl[i], shape[i] + " " + mode[i], 1, 0,
                                             disp[i] + (msg[i].empty() ? "" : " -- " + clip(msg[i]))));
  }
  std::vector<std::string> c;
  for (const auto& [d, n] : counts) c.push_back(std::to_string(n) + " " + d);
  out->compared.push_back("rules on NEW: " + std::to_string(shape.size()) + " rows (" + summarize(c, 8) +
                          "); no incorrect/failed rows");
}

void gate_throughput_drop(const GateReport& nw, const GateReport& base, const GatePolicy& pol, GateResult* out) {
  if (nw.device != base.device && !pol.compare_throughput_across_devices) {
    out->skipped.push_back("throughput vs BASELINE " + base.path + ": skipped, devices differ ('" + nw.device +
                           "' vs '" + base.device +
                           "'); set compare_throughput_across_devices = true to compare anyway");
    return;
  }
  using Key = std::tuple<std::string, std::string, std::string>;  // shape, impl, mode
  auto collect = [](const GateReport& r) {
    std::map<Key, double> m;  // best (smallest) passed median per key
    const auto& shape = r.strings("shape");
    const auto& impl = r.strings("implementation");
    const auto& mode = r.strings("mode");
    const auto& disp = r.strings("disposition");
    const auto& med = r.doubles("median_us");
    for (size_t i = 0; i < shape.size(); ++i) {
      if (disp[i] != "passed") continue;
      Key k{shape[i], impl[i], mode[i]};
      auto it = m.find(k);
      if (it == m.end() || med[i] < it->second) m[k] = med[i];
    }
    return m;
  };
  std::map<Key, double> n = collect(nw), b = collect(base);
  std::set<std::string> skip_impl;
  {
    std::istringstream items(pol.throughput_skip_implementations);
    std::string item;
    while (std::getline(items, item, ','))
      if (!item.empty()) skip_impl.insert(item);
  }
  std::vector<std::string> only_new, only_base, zero, by_policy;
  int64_t compared = 0;
  const double factor = 1 + pol.throughput_drop_percent / 100;
  for (const auto& [k, med] : n) {
    const auto& [shape, impl, mode] = k;
    if (skip_impl.count(impl)) {
      by_policy.push_back(shape + " " + impl + " " + mode);
      continue;
    }
    auto it = b.find(k);
    if (it == b.end()) {
      only_new.push_back(shape + " " + impl + " " + mode);
      continue;
    }
    if (!(it->second > 0)) {
      zero.push_back(shape + " " + impl + " " + mode);
      continue;
    }
    ++compared;
    const double limit = std::max(factor * it->second, it->second + pol.throughput_min_delta_us);
    if (med > limit) {
      const double pct = 100 * (med / it->second - 1);
      out->violations.push_back(make_violation("throughput-drop", impl, shape + " " + mode, med, limit,
                                               "median " + fmt(med) + " us vs baseline " + fmt(it->second) +
                                                   " us: +" + fmt(pct) + "% (allowed +" +
                                                   fmt(pol.throughput_drop_percent) + "%)"));
    }
  }
  if (!by_policy.empty())
    out->skipped.push_back(std::to_string(by_policy.size()) +
                           " (shape, implementation, mode) key(s) not compared (policy "
                           "throughput_skip_implementations = " + pol.throughput_skip_implementations +
                           "): " + summarize(by_policy));
  for (const auto& [k, med] : b)
    if (!n.count(k) && !skip_impl.count(std::get<1>(k))) only_base.push_back(std::get<0>(k) + " " + std::get<1>(k) + " " + std::get<2>(k));
  out->compared.push_back("throughput vs BASELINE " + describe_report(base) + ": " + std::to_string(compared) +
                          " (shape, implementation, mode) medians, passed rows only; limit +" +
                          fmt(pol.throughput_drop_percent) + "%" +
                          (nw.device != base.device ? " (devices differ; compared by policy)" : ""));
  if (!only_new.empty())
    out->skipped.push_back(std::to_string(only_new.size()) + " (shape, implementation, mode) key(s) of NEW have no "
                           "passed row in BASELINE: " + summarize(only_new));
  if (!only_base.empty())
    out->skipped.push_back(std::to_string(only_base.size()) + " key(s) of BASELINE have no passed row in NEW: " +
                           summarize(only_base));
  if (!zero.empty())
    out->skipped.push_back(std::to_string(zero.size()) + " key(s) have a zero baseline median: " + summarize(zero));
  if (compared == 0) out->skipped.push_back("throughput: no (shape, implementation, mode) key in common");
}

}  // namespace

// ---------------------------------------------------------------- public

int gate_rule_tier(const std::string& rule) {
  if (rule == "disposition" || rule == "nonfinite-introduced" || rule == "nonfinite-lost" ||
      rule == "written-outside" || rule == "empty-report")
    return 4;
  if (rule == "error-bound") return 3;
  if (rule == "error-growth") return 2;
  if (rule == "throughput-drop") return 1;
  return 0;
}

const char* gate_report_kind_name(GateReportKind k) {
  return k == GateReportKind::error_report ? "error-report" : "throughput-report";
}

std::vector<std::string> GatePolicy::keys() {
  std::vector<std::string> k;
  for (const PolicyKey& p : policy_keys()) k.push_back(p.name);
  return k;
}

Status GatePolicy::parse(const std::string& text, const std::string& source, GatePolicy* inout) {
  GatePolicy p = *inout;
  std::set<std::string> seen;
  std::istringstream in(text);
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    const std::string where = source + ":" + std::to_string(lineno) + ": ";
    if (size_t h = line.find('#'); h != std::string::npos) line.resize(h);
    line = trim(line);
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) return Status::Invalid(where + "expected 'key = value', got '" + line + "'");
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    const PolicyKey* k = nullptr;
    for (const PolicyKey& c : policy_keys())
      if (key == c.name) k = &c;
    if (!k) {
      std::string known;
      for (const PolicyKey& c : policy_keys()) known += std::string(known.empty() ? "" : ", ") + c.name;
      return Status::Invalid(where + "unknown key '" + key + "' (known: " + known + ")");
    }
    if (!seen.insert(key).second) return Status::Invalid(where + "key '" + key + "' given twice");
    if (value.empty()) return Status::Invalid(where + "key '" + key + "' has no value");
    if (k->type == KeyType::names) {
      std::string list;
      if (value != "none") {
        std::istringstream items(value);
        std::string item;
        while (std::getline(items, item, ',')) {
          item = trim(item);
          if (item.empty() || item.find_first_of(" \t") != std::string::npos)
            return Status::Invalid(where + key + ": '" + value +
                                   "' is not a comma-separated list of implementation names (or none)");
          list += (list.empty() ? "" : ",") + item;
        }
      }
      p.*(k->text) = list;
    } else if (k->type == KeyType::boolean) {
      bool b;
      if (!parse_bool(value, &b))
        return Status::Invalid(where + key + ": '" + value + "' is not a boolean (true/false)");
      p.*(k->flag) = b;
    } else {
      errno = 0;
      char* end = nullptr;
      double v = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
        return Status::Invalid(where + key + ": '" + value + "' is not a finite number");
      if (k->min_exclusive ? !(v > k->min) : !(v >= k->min))
        return Status::Invalid(where + key + ": " + value + " must be " + (k->min_exclusive ? "> " : ">= ") +
                               fmt(k->min));
      p.*(k->num) = v;
    }
  }
  *inout = p;
  return Status::Ok();
}

Status GatePolicy::load(const std::string& path, GatePolicy* inout) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return Status::IoError("policy file " + path + ": is a directory");
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IoError("cannot read policy file " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse(ss.str(), path, inout);
}

std::string GatePolicy::to_text() const {
  std::string s;
  for (const PolicyKey& k : policy_keys()) {
    s += std::string("# ") + k.help + "\n" + k.name + " = ";
    if (k.type == KeyType::names) s += (this->*(k.text)).empty() ? std::string("none") : this->*(k.text);
    else s += k.type == KeyType::boolean ? ((this->*(k.flag)) ? "true" : "false") : fmt(this->*(k.num));
    s += "\n";
  }
  return s;
}

const std::vector<int64_t>& GateReport::ints(const std::string& name) const {
  return std::get<std::vector<int64_t>>(rows.find(name)->data);
}
const std::vector<double>& GateReport::doubles(const std::string& name) const {
  return std::get<std::vector<double>>(rows.find(name)->data);
}
const std::vector<std::string>& GateReport::strings(const std::string& name) const {
  return std::get<std::vector<std::string>>(rows.find(name)->data);
}

namespace {

Status load_in_process(const std::string& path, GateReport* out) {
  GateReport r;
  r.path = path;
  H5Reader rd;
  Status st = rd.open(path);
  if (!st.ok()) return with_path(st, path);
  if (!rd.has_attr("/", "kind"))
    return bad(path, "/", "no root attribute 'kind': not an mlalora report (see reports/README.md)");
  std::string kind;
  MLALORA_RETURN_IF_ERROR(with_path(rd.read_attr_string("/", "kind", &kind), path));
  if (kind == "error-report") r.kind = GateReportKind::error_report;
  else if (kind == "throughput-report") r.kind = GateReportKind::throughput_report;
  else
    return bad(path, "/ attribute kind",
               "'" + clip(kind, 60) + "' cannot be gated (the gate reads error-report or throughput-report)");
  if (!rd.has_attr("/", "schema_version")) return bad(path, "/", "no root attribute 'schema_version'");
  int64_t version = 0;
  MLALORA_RETURN_IF_ERROR(with_path(rd.read_attr_int("/", "schema_version", &version), path));
  if (version != 1)
    return bad(path, "/ attribute schema_version",
               std::to_string(version) + " is not supported (this mlalora reads schema_version 1)");
  for (auto [name, dst] : {std::pair<const char*, std::string*>{"device", &r.device}, {"time_utc", &r.time_utc},
                           {"git_commit", &r.git_commit}, {"host", &r.host}})
    if (rd.has_attr("/", name)) MLALORA_RETURN_IF_ERROR(with_path(rd.read_attr_string("/", name, dst), path));
  if (r.kind == GateReportKind::throughput_report && rd.has_attr("/", "copy_bandwidth_bytes_per_second"))
    MLALORA_RETURN_IF_ERROR(
        with_path(rd.read_attr_double("/", "copy_bandwidth_bytes_per_second", &r.copy_bandwidth), path));
  const H5ObjectKind rows_kind = rd.kind("/rows");
  if (rows_kind == H5ObjectKind::missing) return bad(path, "/rows", "no table /rows");
  if (rows_kind != H5ObjectKind::group && rows_kind != H5ObjectKind::unreadable)
    return bad(path, "/rows", "is not a table group");
  MLALORA_RETURN_IF_ERROR(with_path(rd.read_table("/rows", &r.rows), path));

  const bool err = r.kind == GateReportKind::error_report;
  MLALORA_RETURN_IF_ERROR(check_columns(path, r.rows, err ? error_columns() : throughput_columns(), kind));
  const int64_t n = r.rows.rows();
  // Values.
  auto row_bad = [&](const std::string& col, int64_t i, const std::string& what) {
    return bad(path, "/rows/" + col, "row " + std::to_string(i) + " " + what);
  };
  const auto& disp = r.strings("disposition");
  for (int64_t i = 0; i < n; ++i) {
    const auto& k = known_dispositions();
    if (std::find(k.begin(), k.end(), disp[i]) == k.end())
      return row_bad("disposition", i, "is '" + clip(disp[i], 40) + "' (known: passed, incorrect, failed, not-supported)");
  }
  for (const char* c : {"implementation"})
    for (int64_t i = 0; i < n; ++i)
      if (r.strings(c)[i].empty()) return row_bad(c, i, "is empty");
  for (const char* c : err ? kErrorCounts : kThroughputCounts)
    for (int64_t i = 0; i < n; ++i)
      if (r.ints(c)[i] < 0) return row_bad(c, i, "is " + std::to_string(r.ints(c)[i]) + " (must be >= 0)");
  for (const char* c : err ? kErrorNonNeg : kThroughputNonNeg)
    for (int64_t i = 0; i < n; ++i)
      if (r.doubles(c)[i] < 0) return row_bad(c, i, "is " + fmt(r.doubles(c)[i]) + " (must be >= 0)");
  if (err) {
    for (const char* c : kErrorFlags)
      for (int64_t i = 0; i < n; ++i)
        if (r.ints(c)[i] != 0 && r.ints(c)[i] != 1)
          return row_bad(c, i, "is " + std::to_string(r.ints(c)[i]) + " (must be 0 or 1)");
    const auto& side = r.strings("side");
    for (int64_t i = 0; i < n; ++i)
      if (side[i] != "q" && side[i] != "v") return row_bad("side", i, "is '" + clip(side[i], 40) + "' (must be q or v)");
    for (int64_t i = 0; i < n; ++i)
      if (r.strings("dtype")[i].empty()) return row_bad("dtype", i, "is empty");
  } else {
    const auto& med = r.doubles("median_us");
    for (int64_t i = 0; i < n; ++i) {
      if (r.strings("shape")[i].empty()) return row_bad("shape", i, "is empty");
      if (r.strings("mode")[i].empty()) return row_bad("mode", i, "is empty");
      if (disp[i] == "passed" && !std::isfinite(med[i]))
        return row_bad("median_us", i, "is " + fmt(med[i]) + " in a passed row (must be finite)");
    }
    if (!(r.copy_bandwidth >= 0) || std::isinf(r.copy_bandwidth))
      return bad(path, "/ attribute copy_bandwidth_bytes_per_second", "is " + fmt(r.copy_bandwidth) +
                                                                          " (must be finite and >= 0)");
  }
  *out = std::move(r);
  return Status::Ok();
}

// ---- the decode runs in a child process
//
// libhdf5 1.10 does not bounds-check variable-length data against its global
// heap: a corrupted heap object size or vlen length makes H5Dread memcpy past
// its buffer (found by the byte-flip fuzz in property_tests/cpu/test_gate.cpp).
// A gate must never crash on a bad artifact, so the file is decoded in a
// forked child that sends the validated report (or the Status) back through a
// pipe; a child that dies is reported as a corrupt file. The parent process
// never runs libhdf5 on the file. Some corruptions make libhdf5 loop forever
// instead: the child is killed after timeout_seconds.

struct Wire {
  std::string buf;
  void u64(uint64_t v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void f64(double v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) { u64(s.size()), buf += s; }
};

struct WireIn {
  const std::string& buf;
  size_t pos = 0;
  bool ok = true;
  bool take(void* dst, size_t n) {
    if (!ok || buf.size() - pos < n) return ok = false;
    std::memcpy(dst, buf.data() + pos, n);
    pos += n;
    return true;
  }
  uint64_t u64() { uint64_t v = 0; take(&v, sizeof v); return v; }
  double f64() { double v = 0; take(&v, sizeof v); return v; }
  std::string str() {
    uint64_t n = u64();
    if (!ok || n > buf.size() - pos) return ok = false, std::string();
    std::string s = buf.substr(pos, n);
    pos += n;
    return s;
  }
};

std::string encode(const Status& st, const GateReport& r) {
  Wire w;
  w.u64(static_cast<uint64_t>(st.code)), w.str(st.message);
  if (!st.ok()) return w.buf;
  w.u64(static_cast<uint64_t>(r.kind)), w.str(r.device), w.str(r.time_utc), w.str(r.git_commit), w.str(r.host);
  w.f64(r.copy_bandwidth);
  w.u64(r.rows.columns.size());
  for (const auto& c : r.rows.columns) {
    w.str(c.name);
    if (auto* i = std::get_if<std::vector<int64_t>>(&c.data)) {
      w.u64(0), w.u64(i->size());
      for (int64_t v : *i) w.u64(static_cast<uint64_t>(v));
    } else if (auto* d = std::get_if<std::vector<double>>(&c.data)) {
      w.u64(1), w.u64(d->size());
      for (double v : *d) w.f64(v);
    } else {
      const auto& s = std::get<std::vector<std::string>>(c.data);
      w.u64(2), w.u64(s.size());
      for (const auto& v : s) w.str(v);
    }
  }
  return w.buf;
}

Status decode(const std::string& buf, const std::string& path, GateReport* out) {
  WireIn in{buf};
  Status st;
  st.code = static_cast<StatusCode>(in.u64());
  st.message = in.str();
  if (in.ok && !st.ok()) return st;
  GateReport r;
  r.path = path;
  r.kind = static_cast<GateReportKind>(in.u64());
  r.device = in.str(), r.time_utc = in.str(), r.git_commit = in.str(), r.host = in.str();
  r.copy_bandwidth = in.f64();
  const uint64_t ncols = in.u64();
  for (uint64_t c = 0; in.ok && c < ncols; ++c) {
    H5Table::Column col;
    col.name = in.str();
    const uint64_t type = in.u64(), n = in.u64();
    if (!in.ok || n > buf.size()) break;  // every element takes at least one byte
    if (type == 0) {
      std::vector<int64_t> v(n);
      for (auto& x : v) x = static_cast<int64_t>(in.u64());
      col.data = std::move(v);
    } else if (type == 1) {
      std::vector<double> v(n);
      for (auto& x : v) x = in.f64();
      col.data = std::move(v);
    } else {
      std::vector<std::string> v(n);
      for (auto& x : v) x = in.str();
      col.data = std::move(v);
    }
    r.rows.columns.push_back(std::move(col));
  }
  if (!in.ok || in.pos != buf.size())
    return Status::IoError(path + ": internal error: the report decoder's reply was cut short");
  *out = std::move(r);
  return Status::Ok();
}

}  // namespace

Status load_gate_report(const std::string& path, GateReport* out, double timeout_seconds) {
  int fds[2];
  if (::pipe(fds) != 0) return load_in_process(path, out);  // cannot isolate: decode here
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]), ::close(fds[1]);
    return load_in_process(path, out);
  }
  if (pid == 0) {
    detail::die_with_parent(parent);
    ::close(fds[0]);
    // Die quietly on a crash (a test framework's handlers would report it from the child).
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) std::signal(sig, SIG_DFL);
    if (int devnull = ::open("/dev/null", O_WRONLY); devnull >= 0) ::dup2(devnull, 2), ::close(devnull);  // glibc's "free(): ..." noise
    GateReport r;
    Status st = load_in_process(path, &r);
    const std::string msg = encode(st, r);
    size_t done = 0;
    while (done < msg.size()) {
      ssize_t k = ::write(fds[1], msg.data() + done, msg.size() - done);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) ::_exit(2);
      done += static_cast<size_t>(k);
    }
    ::close(fds[1]);
    ::_exit(0);  // no atexit handlers, no stdio flush of the parent's buffers
  }
  ::close(fds[1]);
  std::string reply;
  char chunk[65536];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    int pr = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) break;
    if (pr == 0) continue;
    ssize_t k = ::read(fds[0], chunk, sizeof chunk);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    reply.append(chunk, static_cast<size_t>(k));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", timeout_seconds);
    return Status::IoError(path + ": corrupt file: decoding it did not finish within " + secs +
                           " s (the HDF5 library looped on it)");
  }
  if (WIFSIGNALED(status))
    return Status::IoError(path + ": corrupt file: the HDF5 library crashed (signal " +
                           std::to_string(WTERMSIG(status)) + ") decoding it");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Status::IoError(path + ": corrupt file: decoding it failed (child exit status " +
                           std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  return decode(reply, path, out);
}

Status find_newest_report(const std::string& dir, GateReportKind kind, std::string* found,
                          std::vector<std::string>* notes) {
  namespace fs = std::filesystem;
  found->clear();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::IoError("baseline directory " + dir + ": not a directory");
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".h5" && it->is_regular_file(ec)) files.push_back(it->path());
  if (ec) return Status::IoError("baseline directory " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  std::string best_time;
  for (const fs::path& f : files) {
    GateReport r;
    Status st = load_gate_report(f.string(), &r);
    if (!st.ok()) {
      // Reports of other kinds (fma-report, ...) are not candidates, not problems.
      if (notes && st.message.find("cannot be gated") == std::string::npos)
        notes->push_back("skipped " + f.string() + ": " + st.message);
      continue;
    }
    if (r.kind != kind) continue;
    const std::string t = r.time_utc == "?" ? "" : r.time_utc;
    if (found->empty() || t >= best_time) *found = f.string(), best_time = t;
  }
  return Status::Ok();
}

Status run_gate(const GateReport& nw, const GateReport* baseline, const GatePolicy& pol, GateResult* out) {
  *out = GateResult{};
  out->kind = nw.kind;
  if (baseline && baseline->kind != nw.kind)
    return Status::Invalid("baseline " + baseline->path + " is of kind " + gate_report_kind_name(baseline->kind) +
                           " but " + nw.path + " is of kind " + gate_report_kind_name(nw.kind) +
                           ": a gate compares reports of one kind");
  if (nw.num_rows() == 0) {
    if (pol.allow_empty_report)
      out->skipped.push_back("NEW has no rows (allowed by allow_empty_report)");
    else
      out->violations.push_back(make_violation("empty-report", "-", "/rows", 0, 1,
                                               "the report has no rows: nothing was checked"));
  }
  if (nw.kind == GateReportKind::error_report) {
    gate_error_rows(nw, pol, out);
    if (baseline) gate_error_growth(nw, *baseline, pol, out);
  } else {
    gate_throughput_rows(nw, out);
    if (baseline) gate_throughput_drop(nw, *baseline, pol, out);
  }
  if (!baseline) out->skipped.push_back("no BASELINE given: only the rules on NEW alone were applied");
  std::stable_sort(out->violations.begin(), out->violations.end(), [](const GateViolation& a, const GateViolation& b) {
    if (a.severity != b.severity) return a.severity > b.severity;
    return std::tie(a.rule, a.implementation, a.key) < std::tie(b.rule, b.implementation, b.key);
  });
  return Status::Ok();
}

}  // namespace mlalora::harness
