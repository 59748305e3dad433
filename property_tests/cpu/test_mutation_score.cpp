// Mutation score of the implementation-level property suite: every mutant of
// the CPU kernel simulation (mutants/catalogue.cpp) must be caught by
// check_implementation_on_case within a budget of sampled cases, while the
// correct simulation ("cpu-kernel-sim") passes.
//
//   MLALORA_SEED              base seed (printed; case i uses seed base+i)
//   MLALORA_MUTATION_CASES    case budget per mutant (default 300)
//   MLALORA_SIM_CASES         cases for the correct simulation (default 200)
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <string>
#include <vector>

#include "impl_properties.hpp"
#include "mutants/catalogue.hpp"
#include "test_config.hpp"

using namespace mlalora;

namespace {

// Sizes sweep 10..100 in a scrambled order, so small and bigger problems
// both appear early.
int size_for(int i) { return 10 + (i * 37) % 91; }

harness::Case case_for(int i) {
  return harness::sample_case(harness::GenConfig::cpu_default(), test::base_seed() + static_cast<uint64_t>(i),
                              size_for(i));
}

std::string one_line(std::string s, size_t max_len = 160) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r') ch = ' ';
  if (s.size() > max_len) s = s.substr(0, max_len - 3) + "...";
  return s;
}

// The testbed's message is "q-side: ... | v-side: ..."; keep the failing side.
std::string failing_part(const std::string& msg) {
  size_t bar = msg.find(" | ");
  if (bar == std::string::npos) return msg;
  std::string a = msg.substr(0, bar), b = msg.substr(bar + 3);
  return a.find("FAILED") != std::string::npos ? a : b;
}

// Which rule of the verdict fired: the componentwise bound, the
// bitwise-untouched rule or NaN/Inf placement (from SideVerdict::describe()).
std::string which_rule(const std::string& detail) {
  auto count_after = [&](const char* key) -> long {
    size_t at = detail.find(key);
    return at == std::string::npos ? 0 : std::strtol(detail.c_str() + at + std::strlen(key), nullptr, 10);
  };
  std::string rules;
  if (count_after("(bound ") > 0) rules += "bound";
  if (count_after("introduced ") > 0 || count_after("lost ") > 0) rules += rules.empty() ? "nonfinite" : "+nonfinite";
  if (count_after("outside ") > 0) rules += rules.empty() ? "untouched" : "+untouched";
  return rules;
}

}  // namespace

TEST_CASE("cpu-kernel-sim (the correct kernel simulation) passes the property suite", "[mutation]") {
  test::register_mutants();
  const int n = test::env_int("MLALORA_SIM_CASES", 200);
  std::printf("cpu-kernel-sim: %d cases, MLALORA_SEED=%llu (case i: sample_case(cpu_default, seed+i, size %s))\n", n,
              static_cast<unsigned long long>(test::base_seed()), "10+(37*i)%91");
  auto impl = harness::make_implementation("cpu-kernel-sim");
  REQUIRE(impl != nullptr);
  int not_supported_count = 0;
  for (int i = 0; i < n; ++i) {
    const harness::Case c = case_for(i);
    bool ns = false;
    auto f = test::check_implementation_on_case(*impl, c, &ns);
    not_supported_count += ns;
    INFO("case " << i << " (seed " << test::base_seed() + i << ", size " << size_for(i) << "): " << c);
    if (f) FAIL_CHECK(f->property << ": " << f->detail);
  }
  CHECK(not_supported_count == 0);
}

TEST_CASE("every mutant of the kernel simulation is detected by the property suite", "[mutation]") {
  test::register_mutants();
  const int budget = test::env_int("MLALORA_MUTATION_CASES", 300);
  const auto names = test::mutant_names();
  REQUIRE(names.size() >= 14);
  std::printf("mutation testing: %zu mutants, budget %d cases each, MLALORA_SEED=%llu "
              "(case i: sample_case(cpu_default, seed+i, size 10+(37*i)%%91))\n",
              names.size(), budget, static_cast<unsigned long long>(test::base_seed()));

  // Cases are shared by all mutants; draw them lazily and keep them.
  std::vector<harness::Case> cases;
  auto get_case = [&](int i) -> const harness::Case& {
    while (static_cast<int>(cases.size()) <= i) cases.push_back(case_for(static_cast<int>(cases.size())));
    return cases[static_cast<size_t>(i)];
  };

  struct Row {
    std::string name, description;
    bool detected = false;
    int cases_needed = 0;
    std::string property, detail;
    std::string also = "";  // other properties that fail on the same case
    double seconds = 0;
  };
  std::vector<Row> rows;
  const auto t_all = std::chrono::steady_clock::now();
  for (const auto& name : names) {
    auto impl = harness::make_implementation(name);
    REQUIRE(impl != nullptr);
    Row row;
    row.name = name;
    row.description = impl->description();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < budget; ++i) {
      auto f = test::check_implementation_on_case(*impl, get_case(i));
      if (f) {
        row.detected = true;
        row.cases_needed = i + 1;
        const std::string part = failing_part(f->detail);
        const std::string rule = which_rule(part);
        row.property = rule.empty() ? f->property : f->property + "/" + rule;
        row.detail = one_line(part);
        // The other properties, each on its own, on the detecting case.
        const harness::Case& dc = get_case(i);
        if (test::prop_permutation_equivariance(*impl, dc)) row.also += "perm,";
        if (test::prop_scaling_linearity(*impl, dc)) row.also += "scal,";
        if (test::prop_head_independence(*impl, dc)) row.also += "head,";
        if (!row.also.empty()) row.also.pop_back();
        break;
      }
    }
    if (!row.detected) row.cases_needed = budget;
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows.push_back(row);
  }
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();

  int detected = 0;
  std::printf("%-34s %-8s %-5s %-28s %-14s %s\n", "mutant", "detected", "cases", "property (first to fail)",
              "also fails", "detail");
  for (const Row& r : rows) {
    detected += r.detected;
    std::printf("%-34s %-8s %-5d %-28s %-14s %s\n", r.name.c_str(), r.detected ? "yes" : "NO", r.cases_needed,
                r.detected ? r.property.c_str() : "-", r.also.empty() ? "-" : r.also.c_str(),
                r.detected ? r.detail.c_str() : r.description.c_str());
  }
  std::printf("(property: error-bound/bound = componentwise bound, /untouched = bitwise-untouched rule, "
              "/nonfinite = NaN/Inf placement; also fails: perm = permutation-equivariance, scal = "
              "scaling-linearity, head = head-independence, each run alone on the detecting case)\n");
  const int total = static_cast<int>(rows.size());
  std::printf("mutation score: %d/%d (%.1f%%)  [MLALORA_SEED=%llu, budget %d, %.1f s]\n", detected, total,
              total ? 100.0 * detected / total : 0.0, static_cast<unsigned long long>(test::base_seed()), budget,
              total_s);
  std::fflush(stdout);
  for (const Row& r : rows) {
    INFO(r.name << ": " << r.description);
    CHECK(r.detected);
  }
  REQUIRE(detected == total);
}
