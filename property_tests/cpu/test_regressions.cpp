// Replays every stored reproducer (datasets/regressions/*.h5) through every
// correct implementation linked into this binary: a bug once found stays fixed.
#include <catch2/catch.hpp>
#include <dirent.h>

#include <algorithm>

#include "mlalora/harness/reproducer.hpp"
#include "mlalora/harness/testbed.hpp"
#include "regression_dir.hpp"

using namespace mlalora;

namespace {
std::vector<std::string> stored_reproducers() {
  std::vector<std::string> files;
  const std::string dir = test::regressions_dir();
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 3 && n.compare(n.size() - 3, 3, ".h5") == 0) files.push_back(dir + "/" + n);
    }
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  return files;
}
}  // namespace

TEST_CASE("every stored reproducer passes every correct implementation", "[regression]") {
  const auto files = stored_reproducers();
  INFO("regressions dir: " << test::regressions_dir());
  REQUIRE(!files.empty());  // the repo ships reproducers; an empty dir means a broken checkout
  int replayed = 0;
  for (const auto& path : files) {
    harness::Reproducer r;
    Status s = harness::load_reproducer(path, &r);
    INFO(path << ": " << s.message);
    REQUIRE(s.ok());
    harness::Case c;
    c.problem = r.problem;
    c.data_seed = r.attributes.count("data_seed") ? std::strtoull(r.attributes["data_seed"].c_str(), nullptr, 10) : 0;
    c.nonfinite = r.attributes.count("nonfinite") && r.attributes["nonfinite"] == "1";
    harness::Testbed tb(c, r.tensors);
    for (const auto& reg : harness::registered_implementations()) {
      if (reg.name.rfind("mutant-", 0) == 0) continue;
      auto impl = reg.make();
      harness::RunOutcome o = tb.run(*impl);
      if (o.disposition == harness::Disposition::not_supported) continue;  // e.g. GPU adapters without a GPU
      INFO(path << " [" << reg.name << "] " << o.message);
      CHECK(o.disposition == harness::Disposition::passed);
      ++replayed;
    }
  }
  std::printf("replayed %zu reproducers, %d (reproducer, implementation) runs\n", files.size(), replayed);
}
