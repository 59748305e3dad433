// Mutation score of the implementation-level property suite: every mutant of
// the CPU kernel simulation (mutants/catalogue.cpp) must be caught by
// check_implementation_on_case within a budget of sampled cases, while the
// correct simulation ("cpu-kernel-sim") passes.
//
//   MLALORA_SEED              base seed (printed; case i uses seed base+i)
//   MLALORA_MUTATION_CASES    case budget per mutant (default 300)
//   MLALORA_SIM_CASES         cases for the correct simulation (default 60)
#include <catch2/catch.hpp>

#include <chrono>
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

}  // namespace

TEST_CASE("cpu-kernel-sim (the correct kernel simulation) passes the property suite", "[mutation]") {
  test::register_mutants();
  const int n = test::env_int("MLALORA_SIM_CASES", 60);
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
        row.property = f->property;
        row.detail = one_line(f->detail);
        break;
      }
    }
    if (!row.detected) row.cases_needed = budget;
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows.push_back(row);
  }
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();

  int detected = 0;
  std::printf("%-34s %-8s %-6s %-26s %s\n", "mutant", "detected", "cases", "property", "detail");
  for (const Row& r : rows) {
    detected += r.detected;
    std::printf("%-34s %-8s %-6d %-26s %s\n", r.name.c_str(), r.detected ? "yes" : "NO", r.cases_needed,
                r.detected ? r.property.c_str() : "-", r.detected ? r.detail.c_str() : r.description.c_str());
  }
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
