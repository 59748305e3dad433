// Where property runs store reproducers of failing cases, and where the
// regression test replays them from: datasets/regressions/ in the source tree
// (commit new ones), overridable with MLALORA_REGRESSIONS_DIR.
#pragma once
#include <cstdlib>
#include <string>

namespace mlalora::test {
inline std::string regressions_dir() {
  if (const char* d = std::getenv("MLALORA_REGRESSIONS_DIR")) return d;
  return std::string(MLALORA_SOURCE_DIR) + "/datasets/regressions";
}
}  // namespace mlalora::test
