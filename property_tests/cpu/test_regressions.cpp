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

TEST_CASE("outputs recorded in reproducers are judged again under today's error model", "[regression]") {
  // A reproducer written from a GPU run carries what the implementation
  // produced (got_<output>). Re-judging it here needs no GPU: a rounding-model
  // change that claims to cover an observed failure is checked against the
  // very outputs that failed.
  int judged = 0;
  for (const auto& path : stored_reproducers()) {
    harness::Reproducer r;
    Status s = harness::load_reproducer(path, &r);
    INFO(path << ": " << s.message);
    REQUIRE(s.ok());
    auto impl_name = r.attributes.find("implementation");
    if (impl_name == r.attributes.end()) continue;
    auto impl = harness::make_implementation(impl_name->second);
    if (!impl) continue;  // e.g. a mutant or an implementation this binary lacks
    harness::Case c;
    c.problem = r.problem;
    harness::Testbed tb(c, r.tensors);
    for (Side side : kBothSides) {
      auto got = r.extras.find(std::string("got_") + tensor_name(output_of(side)));
      if (got == r.extras.end()) continue;
      HostTensor out = r.tensors.of(output_of(side));
      REQUIRE(got->second.data.size() == out.data.size());
      out.data = got->second.data;
      harness::SideVerdict v = harness::verify_side(r.problem, r.tensors, out, side, tb.expectation(side),
                                                    impl->rounding_model(r.problem, side));
      INFO(path << " [" << impl_name->second << "] recorded output: " << v.describe());
      CHECK(v.passed());
      ++judged;
    }
  }
  std::printf("re-judged %d recorded outputs\n", judged);
}
