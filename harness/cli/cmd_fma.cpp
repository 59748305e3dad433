// mlalora fma: FMA and byte counts of naive materialisation vs the factored
// SGMM computation, per layer and per forward step, for model configs x TP x
// rank x workload. Needs no GPU.
#include <cinttypes>
#include <cstdio>
#include <map>
#include <sstream>
#include <tuple>

#include "commands.hpp"
#include "mlalora/harness/fma_model.hpp"
#include "mlalora/harness/report.hpp"

namespace mlalora::cli {

namespace {

struct FmaOptions {
  std::string models_file = std::string(MLALORA_SOURCE_DIR) + "/datasets/models.txt";
  std::vector<std::string> models;  // empty = all
  std::vector<int64_t> tp{1, 8};
  std::vector<int64_t> ranks{16, 32, 64, 128};
  // tokens:adapters pairs: decode batches, chunked prefill, long prefill.
  std::vector<std::string> workloads{"1:1", "64:8", "256:8", "512:64", "4096:4", "16384:1"};
  std::string out;
  std::string bench;  // throughput report to join: FMA savings next to measured time savings
  bool quiet_table = false;
};

// Measured times of one bench shape (fastest passed mode of each implementation).
struct Measured {
  std::string shape;
  double fused_us = 0, naive_us = 0;
};

// Reads a throughput report and keys its shapes by model/tp/rank/tokens/adapters.
Status load_measured(const std::string& path, std::map<std::string, Measured>* out,
                     std::vector<std::tuple<std::string, int64_t, int64_t, int64_t, int64_t>>* keys) {
  using namespace mlalora::harness;
  H5Reader r;
  MLALORA_RETURN_IF_ERROR(r.open(path));
  std::string kind;
  MLALORA_RETURN_IF_ERROR(r.read_attr_string("/", "kind", &kind));
  if (kind != "throughput-report") return Status::Invalid(path + ": kind is '" + kind + "', not throughput-report");
  H5Table t;
  MLALORA_RETURN_IF_ERROR(r.read_table("/rows", &t));
  auto strings = [&](const char* c) -> const std::vector<std::string>* {
    const H5Table::Column* col = t.find(c);
    return col ? std::get_if<std::vector<std::string>>(&col->data) : nullptr;
  };
  auto ints = [&](const char* c) -> const std::vector<int64_t>* {
    const H5Table::Column* col = t.find(c);
    return col ? std::get_if<std::vector<int64_t>>(&col->data) : nullptr;
  };
  const H5Table::Column* med_col = t.find("median_us");
  const auto* med = med_col ? std::get_if<std::vector<double>>(&med_col->data) : nullptr;
  const auto *shape = strings("shape"), *model = strings("model"), *impl = strings("implementation"),
             *disp = strings("disposition");
  const auto *tp = ints("tp"), *rank = ints("rank"), *tokens = ints("tokens"), *adapters = ints("adapters");
  if (!shape || !model || !impl || !disp || !tp || !rank || !tokens || !adapters || !med)
    return Status::Invalid(path + ": /rows lacks a column of the throughput-report schema (reports/README.md)");
  for (size_t i = 0; i < shape->size(); ++i) {
    if ((*disp)[i] != "passed" || (*med)[i] <= 0) continue;
    const std::string key = (*model)[i] + "/" + std::to_string((*tp)[i]) + "/" + std::to_string((*rank)[i]) + "/" +
                            std::to_string((*tokens)[i]) + "/" + std::to_string((*adapters)[i]);
    auto [it, fresh] = out->try_emplace(key);
    if (fresh) keys->emplace_back((*model)[i], (*tp)[i], (*rank)[i], (*tokens)[i], (*adapters)[i]);
    Measured& m = it->second;
    if (m.shape.empty()) m.shape = (*shape)[i];
    if ((*shape)[i] != m.shape) continue;  // first matching shape only (e.g. uniform before zipf)
    double& slot = (*impl)[i] == "cuda-fused" ? m.fused_us : (*impl)[i] == "cublas-naive" ? m.naive_us : m.fused_us;
    if ((*impl)[i] != "cuda-fused" && (*impl)[i] != "cublas-naive") continue;
    if (slot == 0 || (*med)[i] < slot) slot = (*med)[i];
  }
  return Status::Ok();
}

int run_fma(const FmaOptions& o, const Context& ctx) {
  using namespace mlalora::harness;
  std::vector<ModelConfig> all;
  Status st = load_model_configs(o.models_file, &all);
  if (!st.ok()) return fail(2, "--models: " + st.message);
  std::vector<ModelConfig> chosen;
  if (o.models.empty()) chosen = all;
  for (const auto& name : o.models) {
    const ModelConfig* m = find_model(all, name);
    if (!m) return fail(2, "--model: '" + name + "' is not in " + o.models_file);
    chosen.push_back(*m);
  }
  std::vector<std::pair<int64_t, int64_t>> wl;
  for (const auto& w : o.workloads) {
    int64_t t = 0, n = 0;
    char extra = 0;
    if (std::sscanf(w.c_str(), "%" SCNd64 ":%" SCNd64 "%c", &t, &n, &extra) != 2 || t < 0 || n < 0)
      return fail(2, "--workload: '" + w + "' is not TOKENS:ADAPTERS (e.g. 256:8)");
    wl.emplace_back(t, n);
  }
  std::map<std::string, Measured> measured;
  std::vector<std::tuple<std::string, int64_t, int64_t, int64_t, int64_t>> bench_keys;
  if (!o.bench.empty()) {
    Status b = load_measured(o.bench, &measured, &bench_keys);
    if (!b.ok()) return fail(b.code == StatusCode::io_error ? 3 : 2, "--bench: " + b.message);
  }
  H5Table table;
  std::vector<std::string> model_col, bench_shape_col;
  std::vector<double> fused_us_col, naive_us_col, time_ratio_col;
  std::vector<int64_t> tp_col, H_col, rank_col, tok_col, used_col, layers_col, nf_layer, ff_layer, nb_layer, fb_layer,
      nf_step, ff_step, mat_col;
  std::vector<double> fma_ratio, byte_ratio;
  if (!o.quiet_table) std::printf("%-18s %3s %4s %5s %7s %5s %14s %16s %16s %9s %9s\n", "model", "tp", "H", "rank", "tokens", "adapt",
              "materialise", "naive FMA/layer", "factored/layer", "FMA x", "bytes x");
  if (!o.quiet_table && !o.bench.empty()) std::printf("%*s %10s %10s %7s\n", 117, "", "fused us", "naive us", "time x");
  std::vector<std::tuple<const ModelConfig*, int64_t, int64_t, int64_t, int64_t>> grid;
  if (o.bench.empty()) {
    for (const auto& m : chosen)
      for (int64_t tp : o.tp)
        if (tp > 0 && m.H % tp == 0)  // this TP degree divides the heads
          for (int64_t r : o.ranks)
            for (auto [tokens, used] : wl) grid.emplace_back(&m, tp, r, tokens, used);
  } else {
    for (auto& [name, tp, r, tokens, used] : bench_keys) {
      const ModelConfig* m = find_model(all, name);
      if (m && m->H % tp == 0 && (o.models.empty() || find_model(chosen, name))) grid.emplace_back(m, tp, r, tokens, used);
    }
  }
  for (auto& [mp, tp, r, tokens, used] : grid) {
        {
          const ModelConfig& m = *mp;
          Workload w;
          Status s = make_workload(m, tp, tokens, std::min(used, std::max<int64_t>(tokens, 1)), r, &w);
          if (!s.ok()) return fail(2, "workload " + m.name + ": " + s.message);
          FmaReport rep;
          s = compute_fma_report(w, &rep);
          if (!s.ok()) return fail(2, s.message);
          model_col.push_back(m.name), tp_col.push_back(tp), H_col.push_back(w.H), rank_col.push_back(r);
          tok_col.push_back(w.tokens), used_col.push_back(w.n_used), layers_col.push_back(m.num_layers);
          nf_layer.push_back(rep.naive_layer.total().fmas), ff_layer.push_back(rep.factored_layer.total().fmas);
          nb_layer.push_back(rep.naive_layer.total().bytes), fb_layer.push_back(rep.factored_layer.total().bytes);
          nf_step.push_back(rep.naive_step.fmas), ff_step.push_back(rep.factored_step.fmas);
          mat_col.push_back(rep.naive_layer.materialise_fmas);
          fma_ratio.push_back(rep.fma_ratio), byte_ratio.push_back(rep.bytes_ratio);
          {
            const std::string key = m.name + "/" + std::to_string(tp) + "/" + std::to_string(r) + "/" +
                                    std::to_string(tokens) + "/" + std::to_string(used);
            auto it = measured.find(key);
            const Measured none;
            const Measured& me = it != measured.end() ? it->second : none;
            bench_shape_col.push_back(me.shape);
            fused_us_col.push_back(me.fused_us);
            naive_us_col.push_back(me.naive_us);
            time_ratio_col.push_back(me.fused_us > 0 && me.naive_us > 0 ? me.naive_us / me.fused_us : 0.0);
          }
          if (!o.quiet_table)
            std::printf("%-18s %3" PRId64 " %4" PRId64 " %5" PRId64 " %7" PRId64 " %5" PRId64 " %14" PRId64 " %16" PRId64
                        " %16" PRId64 " %9.2f %9.2f",
                        m.name.c_str(), tp, w.H, r, w.tokens, w.n_used, rep.naive_layer.materialise_fmas,
                        rep.naive_layer.total().fmas,
                        rep.factored_layer.total().fmas, rep.fma_ratio, rep.bytes_ratio);
          if (!o.quiet_table && !o.bench.empty())
            std::printf(" %10.1f %10.1f %7.2f", fused_us_col.back(), naive_us_col.back(), time_ratio_col.back());
          if (!o.quiet_table) std::printf("\n");
        }
    }
  table.add("model", model_col), table.add("tp", tp_col), table.add("H", H_col), table.add("rank", rank_col);
  table.add("tokens", tok_col), table.add("adapters", used_col), table.add("num_layers", layers_col);
  table.add("naive_materialise_fmas_per_layer", mat_col);
  table.add("naive_fmas_per_layer", nf_layer), table.add("factored_fmas_per_layer", ff_layer);
  table.add("naive_bytes_per_layer", nb_layer), table.add("factored_bytes_per_layer", fb_layer);
  table.add("naive_fmas_per_step", nf_step), table.add("factored_fmas_per_step", ff_step);
  table.add("fma_ratio", fma_ratio), table.add("bytes_ratio", byte_ratio);
  if (!o.bench.empty()) {
    // Joined from the throughput report: measured time of the factored CUDA
    // kernels (cuda-fused, best mode) and of cuBLAS naive materialisation.
    table.add("bench_shape", bench_shape_col), table.add("measured_fused_us", fused_us_col);
    table.add("measured_naive_us", naive_us_col), table.add("measured_time_ratio", time_ratio_col);
  }
  if (!o.out.empty()) {
    H5Writer w;
    Status s = w.open(o.out);
    if (s.ok()) s = write_provenance(w, Provenance::collect("fma-report", ctx.command_line, 0));
    if (s.ok()) s = w.write_table("/rows", table);
    if (s.ok()) s = w.commit();
    if (!s.ok()) return fail(3, "writing " + o.out + ": " + s.message);
    std::printf("report: %s (%" PRId64 " rows)\n", o.out.c_str(), table.rows());
  }
  return 0;
}

}  // namespace

Action add_fma(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<FmaOptions>();
  CLI::App* sub = app.add_subcommand("fma", "FMA and byte savings of the factored computation versus naive "
                                            "materialisation of B@A, per layer and per forward step");
  sub->add_option("--models", o->models_file, "Model config file")->capture_default_str();
  sub->add_option("--model", o->models, "Only these models (repeatable; default all)");
  sub->add_option("--tp", o->tp, "Tensor-parallel degrees")->delimiter(',')->capture_default_str();
  sub->add_option("--ranks", o->ranks, "LoRA ranks")->delimiter(',')->capture_default_str();
  sub->add_option("--workload", o->workloads, "TOKENS:ADAPTERS pairs")->delimiter(',')->capture_default_str();
  sub->add_option("--out", o->out, "HDF5 report to write");
  sub->add_option("--bench", o->bench, "Throughput report to join: rows become its measured shapes, with measured "
                                       "cuda-fused and cublas-naive times next to the counted savings");
  sub->add_flag("--no-table", o->quiet_table, "Do not print the table");
  return [o, &ctx] { return run_fma(*o, ctx); };
}

}  // namespace mlalora::cli
