// Test runner: Catch2 v2 with rapidcheck. Seeds and case counts come from the
// environment so any failure can be replayed and CI can scale the suite:
//   MLALORA_SEED   base seed (default: drawn from the clock, printed)
//   MLALORA_CASES  rapidcheck cases per property (default 100; CI sets it)
//   RC_PARAMS      passed through to rapidcheck untouched if already set
//                  (e.g. the "reproduce=..." string rapidcheck prints)
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "test_config.hpp"

int main(int argc, char* argv[]) {
  const uint64_t seed = mlalora::test::base_seed();
  const int cases = mlalora::test::case_count();
  if (!std::getenv("RC_PARAMS")) {
    std::string params = "seed=" + std::to_string(seed) + " max_success=" + std::to_string(cases) +
                         " verbose_progress=0";
    setenv("RC_PARAMS", params.c_str(), 1);
  }
  std::printf("mlalora tests: MLALORA_SEED=%llu MLALORA_CASES=%d RC_PARAMS=\"%s\"\n",
              static_cast<unsigned long long>(seed), cases, std::getenv("RC_PARAMS"));
  std::fflush(stdout);
  return Catch::Session().run(argc, argv);
}
