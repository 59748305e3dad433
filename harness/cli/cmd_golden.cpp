// mlalora golden: regenerate the golden set (datasets/golden/) from seeds.
// One file per case, golden_<i>_<dtype>.h5, plus MANIFEST.txt.
#include "mlalora/build_info.hpp"
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "commands.hpp"
#include "mlalora/harness/generators.hpp"
#include "mlalora/harness/golden.hpp"

namespace mlalora::cli {

namespace {

struct GoldenOptions {
  std::string out;
  int64_t count = 6;
  uint64_t seed = 20261128;
};

int run_golden(const GoldenOptions& o, const Context&) {
  using namespace mlalora::harness;
  namespace fs = std::filesystem;
  if (o.out.empty()) return fail(2, "--out DIR is required");
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec || !fs::is_directory(o.out)) return fail(3, "--out: cannot create directory " + o.out + ": " + ec.message());

  std::string manifest =
      "# mlalora golden set: regenerate with `mlalora golden --out DIR --count " + std::to_string(o.count) +
      " --seed " + std::to_string(o.seed) + "`\n# written by mlalora " + MLALORA_VERSION + " (" + MLALORA_GIT_COMMIT +
      "); schema and usage: README.md\n# file | problem | features | data_seed | generator draw seed\n";
  std::set<std::string> written;
  for (int64_t i = 0; i < o.count; ++i) {
    uint64_t draw_seed = 0;
    Case c = golden_case(o.seed, i, &draw_seed);
    const std::string name = "golden_" + std::to_string(i) + "_" + dtype_name(c.problem.shape.dtype) + ".h5";
    const std::string path = (fs::path(o.out) / name).string();
    std::map<std::string, std::string> attrs{
        {"generator", "mlalora::harness::golden_case (golden_gen_config, sample_case size 100)"},
        {"generator_seed", std::to_string(draw_seed)},
        {"golden_set_seed", std::to_string(o.seed)},
        {"golden_index", std::to_string(i)},
        {"features", golden_features(c.problem)},
        {"regenerate", "mlalora golden --out DIR --count " + std::to_string(o.count) + " --seed " +
                           std::to_string(o.seed)},
    };
    Status st = write_golden(path, c, attrs);
    if (!st.ok()) return fail(st.code == StatusCode::io_error ? 3 : 2, st.message);
    std::error_code sec;
    const auto bytes = fs::file_size(path, sec);
    std::printf("%s  %s  [%s]  %s\n", name.c_str(), c.problem.summary().c_str(), golden_features(c.problem).c_str(),
                sec ? "?" : (std::to_string(bytes / 1024) + " KiB").c_str());
    manifest += name + " | " + c.problem.summary() + " | " + golden_features(c.problem) + " | " +
                std::to_string(c.data_seed) + " | " + std::to_string(draw_seed) + "\n";
    written.insert(name);
  }
  const std::string mpath = (fs::path(o.out) / "MANIFEST.txt").string();
  {
    const std::string tmp = mpath + ".tmp";
    std::ofstream f(tmp, std::ios::trunc);
    f << manifest;
    f.close();
    if (!f) return fail(3, "writing " + tmp + " failed");
    fs::rename(tmp, mpath, ec);
    if (ec) return fail(3, "renaming " + tmp + " to " + mpath + ": " + ec.message());
  }
  // Files of an earlier, larger set are left alone but pointed out.
  for (const auto& e : fs::directory_iterator(o.out, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("golden_", 0) == 0 && e.path().extension() == ".h5" && !written.count(n))
      std::printf("note: %s is not part of this set (not in MANIFEST.txt); delete it if it is stale\n", n.c_str());
  }
  std::printf("wrote %" PRId64 " golden files and %s\n", o.count, mpath.c_str());
  return 0;
}

}  // namespace

Action add_golden(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<GoldenOptions>();
  CLI::App* sub = app.add_subcommand("golden", "Regenerate the golden set (problem + inputs + float64 expected "
                                               "deltas, one HDF5 file per case) from seeds");
  sub->add_option("--out", o->out, "Directory to write golden_<i>_<dtype>.h5 and MANIFEST.txt into")->required();
  sub->add_option("--count", o->count, "Number of golden files (dtypes cycle f32, f16, bf16)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->capture_default_str();
  sub->add_option("--seed", o->seed, "Base seed of the set")->capture_default_str();
  return [o, &ctx] { return run_golden(*o, ctx); };
}

}  // namespace mlalora::cli
