// The throughput report's probe sections (write_bench_report): the latency
// probe's attributes and /latency_chain, the staging probe's /staging_probe
// table, each column as written and readable by the project's HDF5 reader,
// and absent when the run measured nothing (a report of an older run).
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "mlalora/harness/bench.hpp"
#include "mlalora/harness/fma_model.hpp"
#include "mlalora/harness/hdf5_file.hpp"
#include "test_files.hpp"

using namespace mlalora;
using namespace mlalora::harness;

TEST_CASE("bench report: the probes' attributes and tables round-trip", "[report]") {
  test::TempDir tmp{"bench-report"};
  BenchResult br;
  br.copy_bytes_per_second = 4.2e12;
  br.dependent_load_chain_us = {{0, 3.1}, {4, 4.5}};
  br.graph_launch_floor_us = 3.1, br.dependent_load_us = 0.35, br.graph_launch_wide_us = 3.3;
  BenchResult::StagingRow a, b;
  a.name = "b132.t128.0B", a.blocks = 132, a.threads = 128, a.median_us = 3.5;
  b.name = "b132.t128.32768B.r32p256.s8rot.clean", b.blocks = 132, b.threads = 128, b.bytes_per_block = 32768;
  b.row_bytes = 32, b.row_pitch = 256, b.share = 8, b.rotate = true, b.clean_l2 = true;
  b.median_us = 6.5, b.staging_us = 3.0, b.gbps_per_block = 32768 / 3.0e3;
  br.staging = {a, b};
  REQUIRE(write_bench_report(tmp("probes.h5"), br, "test", 7).ok());

  H5Reader r;
  REQUIRE(r.open(tmp("probes.h5")).ok());
  double v = 0;
  REQUIRE(r.read_attr_double("/", "graph_launch_floor_us", &v).ok());
  CHECK(v == 3.1);
  REQUIRE(r.read_attr_double("/", "dependent_load_us", &v).ok());
  CHECK(v == 0.35);
  std::vector<int64_t> loads;
  REQUIRE(r.read_vector("/latency_chain/loads", &loads, 2).ok());
  CHECK(loads == std::vector<int64_t>{0, 4});
  std::vector<std::string> cases;
  REQUIRE(r.read_strings("/staging_probe/case", &cases, 2).ok());
  CHECK(cases == std::vector<std::string>{a.name, b.name});
  struct IntCol {
    const char* name;
    std::vector<int64_t> want;
  };
  for (const IntCol& c : {IntCol{"blocks", {132, 132}}, IntCol{"threads", {128, 128}},
                          IntCol{"bytes_per_block", {0, 32768}}, IntCol{"row_bytes", {0, 32}},
                          IntCol{"row_pitch", {0, 256}}, IntCol{"share", {1, 8}}, IntCol{"rotate", {0, 1}},
                          IntCol{"clean_l2", {0, 1}}}) {
    INFO("column " << c.name);
    std::vector<int64_t> got;
    REQUIRE(r.read_vector(std::string("/staging_probe/") + c.name, &got, 2).ok());
    CHECK(got == c.want);
  }
  std::vector<double> stage;
  REQUIRE(r.read_vector("/staging_probe/staging_us", &stage, 2).ok());
  CHECK(stage == std::vector<double>{0.0, 3.0});

  // A run without probes writes neither section.
  BenchResult plain;
  plain.copy_bytes_per_second = 4.2e12;
  REQUIRE(write_bench_report(tmp("plain.h5"), plain, "test", 7).ok());
  H5Reader p;
  REQUIRE(p.open(tmp("plain.h5")).ok());
  CHECK_FALSE(p.exists("/staging_probe"));
  CHECK_FALSE(p.exists("/latency_chain"));
  CHECK_FALSE(p.has_attr("/", "graph_launch_floor_us"));
}

// Every committed suite (datasets/suites/*.txt) parses, expands to at least one
// shape, and names only models of datasets/models.txt whose head count its tp
// divides: a typo in a suite file fails here, in CI, not on the device.
TEST_CASE("bench suites: every committed suite loads against models.txt", "[report]") {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(MLALORA_SOURCE_DIR) / "datasets";
  std::vector<ModelConfig> models;
  REQUIRE(load_model_configs((root / "models.txt").string(), &models).ok());
  int files = 0;
  for (const auto& e : fs::directory_iterator(root / "suites")) {
    if (e.path().extension() != ".txt") continue;
    ++files;
    std::vector<BenchShape> shapes;
    const Status st = load_suite(e.path().string(), &shapes);
    INFO(e.path().filename().string() << ": " << st.message);
    REQUIRE(st.ok());
    CHECK_FALSE(shapes.empty());
    for (const BenchShape& s : shapes) {
      INFO(s.name());
      const ModelConfig* m = find_model(models, s.model);
      REQUIRE(m != nullptr);
      CHECK(m->H % s.tp == 0);
      CHECK(s.rank >= 1);
    }
  }
  CHECK(files >= 10);  // the suites the README and PERF.md name
}

// A shape's routing draw: by index (base + i, the reports so far) or by name
// (the same problem wherever the shape stands in a suite).
TEST_CASE("bench suites: --draw-by name gives a shape the same problem in every suite", "[report]") {
  std::vector<BenchShape> a, b;
  REQUIRE(parse_suite("model=DeepSeek-V3 tp=1 rank=64,128 workload=decode tokens=256 adapters=8", "a", &a).ok());
  REQUIRE(parse_suite("model=DeepSeek-V3 tp=1 rank=128 workload=decode tokens=256 adapters=8", "b", &b).ok());
  REQUIRE(a.size() == 2);
  REQUIRE(b.size() == 1);
  REQUIRE(a[1].name() == b[0].name());
  const uint64_t base = 20261903;
  CHECK(bench_shape_seed(base, a[1], 1, DrawBy::index) == base + 1);
  CHECK(bench_shape_seed(base, b[0], 0, DrawBy::index) == base);
  CHECK(bench_shape_seed(base, a[1], 1, DrawBy::name) == bench_shape_seed(base, b[0], 0, DrawBy::name));
  CHECK(bench_shape_seed(base, a[0], 0, DrawBy::name) != bench_shape_seed(base, a[1], 1, DrawBy::name));
  CHECK(bench_shape_seed(base + 1, b[0], 0, DrawBy::name) != bench_shape_seed(base, b[0], 0, DrawBy::name));
  // The problems themselves: identical routing by name, different by index (a Zipf-free
  // 8-adapter draw of 256 tokens repeats with probability 8^-256).
  std::vector<ModelConfig> models;
  REQUIRE(load_model_configs(std::string(MLALORA_SOURCE_DIR) + "/datasets/models.txt", &models).ok());
  const ModelConfig* m = find_model(models, "DeepSeek-V3");
  REQUIRE(m != nullptr);
  Problem pa, pb, pi;
  REQUIRE(make_bench_problem(a[1], *m, DType::bf16, bench_shape_seed(base, a[1], 1, DrawBy::name), &pa).ok());
  REQUIRE(make_bench_problem(b[0], *m, DType::bf16, bench_shape_seed(base, b[0], 0, DrawBy::name), &pb).ok());
  REQUIRE(make_bench_problem(b[0], *m, DType::bf16, bench_shape_seed(base, b[0], 0, DrawBy::index), &pi).ok());
  CHECK(pa.weight_indices == pb.weight_indices);
  CHECK(pa.seg_indptr == pb.seg_indptr);
  CHECK(pa.weight_indices != pi.weight_indices);
}
