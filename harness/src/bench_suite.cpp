// Suites, bench problems and traffic / FMA counts (CPU side of the benchmark).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include "mlalora/harness/bench.hpp"
#include "mlalora/harness/report.hpp"

namespace mlalora::harness {

const char* workload_name(WorkloadKind w) {
  switch (w) {
    case WorkloadKind::decode: return "decode";
    case WorkloadKind::chunked: return "chunked";
    case WorkloadKind::prefill: return "prefill";
    case WorkloadKind::mixed: return "mixed";
  }
  return "?";
}

std::string BenchShape::name() const {
  std::ostringstream o;
  o << model << "/tp" << tp << "/r" << rank << "/" << workload_name(workload) << "/T" << tokens << "/A" << adapters;
  if (workload == WorkloadKind::prefill) o << "/seg" << segments;
  if (zipf) o << "/zipf";
  return o.str();
}

namespace {

Status parse_list(const std::string& where, const std::string& key, const std::string& v, std::vector<int64_t>* out) {
  std::stringstream ss(v);
  for (std::string item; std::getline(ss, item, ',');) {
    char* end = nullptr;
    long long x = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != 0 || x < 0)
      return Status::Invalid(where + ": " + key + "=" + v + ": '" + item + "' is not a non-negative integer");
    out->push_back(x);
  }
  if (out->empty()) return Status::Invalid(where + ": " + key + " has no value");
  return Status::Ok();
}

}  // namespace

Status parse_suite(const std::string& text, const std::string& source, std::vector<BenchShape>* out) {
  std::istringstream in(text);
  int lineno = 0;
  for (std::string line; std::getline(in, line);) {
    ++lineno;
    if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
    std::istringstream ls(line);
    std::map<std::string, std::string> kv;
    const std::string where = source + ":" + std::to_string(lineno);
    for (std::string tok; ls >> tok;) {
      auto eq = tok.find('=');
      if (eq == std::string::npos || eq == 0) return Status::Invalid(where + ": '" + tok + "' is not key=value");
      kv[tok.substr(0, eq)] = tok.substr(eq + 1);
    }
    if (kv.empty()) continue;
    static const char* known[] = {"model", "tp", "rank", "workload", "tokens", "adapters", "popularity", "segments"};
    for (auto& [k, v] : kv)
      if (std::none_of(std::begin(known), std::end(known), [&](const char* n) { return k == n; }))
        return Status::Invalid(where + ": unknown field '" + k + "'");
    for (const char* req : {"model", "rank", "workload", "tokens"})
      if (!kv.count(req)) return Status::Invalid(where + ": missing field '" + std::string(req) + "'");
    std::vector<int64_t> tps, ranks, tokens, adapters, segments;
    MLALORA_RETURN_IF_ERROR(parse_list(where, "tp", kv.count("tp") ? kv["tp"] : "1", &tps));
    MLALORA_RETURN_IF_ERROR(parse_list(where, "rank", kv["rank"], &ranks));
    MLALORA_RETURN_IF_ERROR(parse_list(where, "tokens", kv["tokens"], &tokens));
    MLALORA_RETURN_IF_ERROR(parse_list(where, "adapters", kv.count("adapters") ? kv["adapters"] : "1", &adapters));
    MLALORA_RETURN_IF_ERROR(parse_list(where, "segments", kv.count("segments") ? kv["segments"] : "1", &segments));
    WorkloadKind wk;
    const std::string& w = kv["workload"];
    if (w == "decode") wk = WorkloadKind::decode;
    else if (w == "chunked") wk = WorkloadKind::chunked;
    else if (w == "prefill") wk = WorkloadKind::prefill;
    else if (w == "mixed") wk = WorkloadKind::mixed;
    else return Status::Invalid(where + ": workload=" + w + " is not decode, chunked, prefill or mixed");
    std::vector<bool> zipfs;
    {
      std::stringstream ps(kv.count("popularity") ? kv["popularity"] : "uniform");
      for (std::string pop; std::getline(ps, pop, ',');) {
        if (pop != "uniform" && pop != "zipf")
          return Status::Invalid(where + ": popularity=" + pop + " is not uniform or zipf");
        zipfs.push_back(pop == "zipf");
      }
    }
    for (int64_t tp : tps)
      for (int64_t r : ranks)
        for (int64_t t : tokens)
          for (int64_t a : adapters)
            for (int64_t sg : segments)
              for (bool zipf : zipfs) {
              if (tp < 1 || r < 1 || t < 1 || a < 1 || sg < 1)
                return Status::Invalid(where + ": tp, rank, tokens, adapters and segments must be >= 1");
              BenchShape s;
              s.model = kv["model"], s.tp = tp, s.rank = r, s.workload = wk, s.tokens = t, s.adapters = a;
              s.zipf = zipf, s.segments = sg;
              out->push_back(s);
            }
  }
  return Status::Ok();
}

Status load_suite(const std::string& path, std::vector<BenchShape>* out) {
  std::ifstream f(path);
  if (!f) return Status::IoError("cannot open suite file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_suite(ss.str(), path, out);
}

uint64_t bench_shape_seed(uint64_t base, const BenchShape& s, size_t index, DrawBy by) {
  if (by == DrawBy::index) return base + index;
  uint64_t h = 1469598103934665603ULL;  // FNV-1a: the same on every platform and build, unlike std::hash
  for (unsigned char ch : s.name()) h = (h ^ ch) * 1099511628211ULL;
  return base + h;
}

Status make_bench_problem(const BenchShape& s, const ModelConfig& m, DType dtype, uint64_t seed, Problem* out) {
  if (m.H % s.tp != 0)
    return Status::Invalid("shape " + s.name() + ": tp=" + std::to_string(s.tp) + " does not divide H=" +
                           std::to_string(m.H));
  Dims d;
  d.S = s.tokens, d.H = m.H / s.tp, d.D_qk = m.D_qk, d.D_v = m.D_v, d.R_kv = m.R_kv;
  d.L = s.adapters, d.r_max = s.rank;
  std::mt19937_64 rng(seed);
  // Adapter popularity: uniform, or Zipf(1.0) (a few adapters take most tokens).
  std::vector<double> weight(static_cast<size_t>(s.adapters));
  for (int64_t a = 0; a < s.adapters; ++a) weight[a] = s.zipf ? 1.0 / static_cast<double>(a + 1) : 1.0;
  std::discrete_distribution<int32_t> pick(weight.begin(), weight.end());
  std::vector<int32_t> indptr{0}, widx, perm;
  auto add_segment = [&](int64_t len, int32_t slot) {
    indptr.push_back(indptr.back() + static_cast<int32_t>(len));
    widx.push_back(slot);
  };
  switch (s.workload) {
    case WorkloadKind::decode:
      for (int64_t t = 0; t < s.tokens; ++t) add_segment(1, pick(rng));
      break;
    case WorkloadKind::chunked: {
      // Each token draws an adapter; tokens are grouped by adapter through the permutation.
      std::vector<int32_t> slot_of(static_cast<size_t>(s.tokens));
      for (auto& x : slot_of) x = pick(rng);
      perm.resize(static_cast<size_t>(s.tokens));
      std::iota(perm.begin(), perm.end(), 0);
      std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return slot_of[a] < slot_of[b]; });
      for (int64_t i = 0; i < s.tokens;) {
        int64_t j = i;
        while (j < s.tokens && slot_of[perm[j]] == slot_of[perm[i]]) ++j;
        add_segment(j - i, slot_of[perm[i]]);
        i = j;
      }
      break;
    }
    case WorkloadKind::prefill: {
      const int64_t n = std::min(s.segments, s.tokens);
      for (int64_t g = 0; g < n; ++g)
        add_segment(s.tokens / n + (g < s.tokens % n ? 1 : 0), static_cast<int32_t>(g % s.adapters));
      break;
    }
    case WorkloadKind::mixed: {
      const int64_t decode = s.tokens / 2;
      for (int64_t t = 0; t < decode; ++t) add_segment(1, pick(rng));
      if (s.tokens - decode > 0) add_segment(s.tokens - decode, pick(rng));
      break;
    }
  }
  std::vector<int32_t> ranks(static_cast<size_t>(s.adapters), static_cast<int32_t>(s.rank));
  std::vector<float> scalings(static_cast<size_t>(s.adapters), 0.5f);
  *out = make_problem(d, dtype, ranks, scalings, indptr, widx, perm);
  return validate(*out);
}

namespace {
std::vector<int32_t> used_slots(const Problem& p) {
  std::vector<int32_t> used;
  for (int64_t g = 0; g < p.num_segments; ++g)
    if (p.seg_indptr[g + 1] > p.seg_indptr[g] && p.lora_ranks[p.weight_indices[g]] > 0)
      used.push_back(p.weight_indices[g]);
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  return used;
}
int64_t covered_active_rows(const Problem& p) {
  int64_t n = 0;
  for (int64_t g = 0; g < p.num_segments; ++g)
    if (p.lora_ranks[p.weight_indices[g]] > 0) n += p.seg_indptr[g + 1] - p.seg_indptr[g];
  return n;
}
}  // namespace

int64_t minimal_bytes(const Problem& p) {
  const Dims& d = p.dims();
  const int64_t e = dtype_bytes(p.shape.dtype);
  const int64_t rows = covered_active_rows(p);
  int64_t bytes = rows * d.H * (d.D_qk + d.R_kv) * e;         // inputs: q_nope, attn_latent
  bytes += 2 * rows * d.H * (d.R_kv + d.D_v) * e;              // outputs read + written
  for (int32_t l : used_slots(p)) bytes += p.lora_ranks[l] * (d.R_kv + d.H * d.F()) * e;  // A and B once
  return bytes;
}

int64_t factored_fmas(const Problem& p) {
  const Dims& d = p.dims();
  int64_t f = 0;
  for (int64_t g = 0; g < p.num_segments; ++g)
    f += (p.seg_indptr[g + 1] - p.seg_indptr[g]) * d.H * p.lora_ranks[p.weight_indices[g]] *
         (d.D_qk + 2 * d.R_kv + d.D_v);
  return f;
}

int64_t naive_fmas(const Problem& p) {
  const Dims& d = p.dims();
  int64_t f = 0;
  for (int32_t l : used_slots(p)) f += d.H * d.F() * p.lora_ranks[l] * d.R_kv;
  f += covered_active_rows(p) * d.H * (d.D_qk * d.R_kv + d.R_kv * d.D_v);
  return f;
}

Status write_bench_report(const std::string& path, const BenchResult& r, const std::string& command_line,
                          uint64_t seed) {
  H5Table t;
  std::vector<std::string> shape, model, workload, popularity, impl, mode, disp, msg, dtype;
  std::vector<int64_t> tp, rank, tokens, adapters, S, H, D_qk, D_v, R_kv, rows, nseg, bytes, ff, fn;
  std::vector<double> med, mn, mx, p10, p90, gbps, frac, floor_us, speedup;
  for (const BenchRow& b : r.rows) {
    shape.push_back(b.shape.name()), model.push_back(b.shape.model), workload.push_back(workload_name(b.shape.workload));
    popularity.push_back(b.shape.zipf ? "zipf" : "uniform"), impl.push_back(b.implementation), mode.push_back(b.mode);
    disp.push_back(b.disposition), msg.push_back(b.message);
    tp.push_back(b.shape.tp), rank.push_back(b.shape.rank), tokens.push_back(b.shape.tokens);
    adapters.push_back(b.shape.adapters), S.push_back(b.S), H.push_back(b.H), D_qk.push_back(b.D_qk);
    D_v.push_back(b.D_v), R_kv.push_back(b.R_kv), rows.push_back(b.covered_rows), nseg.push_back(b.num_segments);
    bytes.push_back(b.bytes), ff.push_back(b.fmas_factored), fn.push_back(b.fmas_naive);
    med.push_back(b.median_us), mn.push_back(b.min_us), mx.push_back(b.max_us), p10.push_back(b.p10_us);
    p90.push_back(b.p90_us), gbps.push_back(b.gbps), frac.push_back(b.frac_copy_bw);
    floor_us.push_back(b.byte_floor_us), speedup.push_back(b.speedup_vs_naive);
  }
  t.add("shape", shape), t.add("model", model), t.add("tp", tp), t.add("rank", rank), t.add("workload", workload);
  t.add("tokens", tokens), t.add("adapters", adapters), t.add("popularity", popularity);
  t.add("S", S), t.add("H", H), t.add("D_qk", D_qk), t.add("D_v", D_v), t.add("R_kv", R_kv);
  t.add("covered_rows", rows), t.add("num_segments", nseg);
  t.add("implementation", impl), t.add("mode", mode), t.add("disposition", disp);
  t.add("median_us", med), t.add("min_us", mn), t.add("max_us", mx), t.add("p10_us", p10), t.add("p90_us", p90);
  t.add("bytes", bytes), t.add("gbps", gbps), t.add("frac_copy_bw", frac), t.add("byte_floor_us", floor_us);
  t.add("fmas_factored", ff), t.add("fmas_naive", fn), t.add("speedup_vs_naive", speedup), t.add("message", msg);
  H5Writer w;
  MLALORA_RETURN_IF_ERROR(w.open(path));
  MLALORA_RETURN_IF_ERROR(write_provenance(w, Provenance::collect("throughput-report", command_line, seed)));
  MLALORA_RETURN_IF_ERROR(w.write_attr_double("/", "copy_bandwidth_bytes_per_second", r.copy_bytes_per_second));
  MLALORA_RETURN_IF_ERROR(w.write_table("/rows", t));
  MLALORA_RETURN_IF_ERROR(w.write_attr_double("/", "decoy", r.decoy ? 1.0 : 0.0));
  if (!r.dependent_load_chain_us.empty()) {
    // The latency floor of a graph-launched kernel in this run (bench.hpp).
    MLALORA_RETURN_IF_ERROR(w.write_attr_double("/", "graph_launch_floor_us", r.graph_launch_floor_us));
    MLALORA_RETURN_IF_ERROR(w.write_attr_double("/", "dependent_load_us", r.dependent_load_us));
    MLALORA_RETURN_IF_ERROR(w.write_attr_double("/", "graph_launch_wide_us", r.graph_launch_wide_us));
    H5Table chain;
    std::vector<int64_t> loads;
    std::vector<double> us;
    for (auto [k, t_us] : r.dependent_load_chain_us) loads.push_back(k), us.push_back(t_us);
    chain.add("loads", loads), chain.add("median_us", us);
    MLALORA_RETURN_IF_ERROR(w.write_table("/latency_chain", chain));
  }
  if (!r.staging.empty()) {
    // The staging probe of this run (bench.hpp, optimized/staging_probe.hpp).
    H5Table stg;
    std::vector<std::string> name;
    std::vector<int64_t> blocks, threads, bytes, row_bytes, row_pitch, share, rotate, clean;
    std::vector<double> med, stage, rate;
    for (const auto& s : r.staging) {
      name.push_back(s.name), blocks.push_back(s.blocks), threads.push_back(s.threads);
      bytes.push_back(s.bytes_per_block), row_bytes.push_back(s.row_bytes), row_pitch.push_back(s.row_pitch);
      share.push_back(s.share), rotate.push_back(s.rotate ? 1 : 0);
      clean.push_back(s.clean_l2 ? 1 : 0), med.push_back(s.median_us), stage.push_back(s.staging_us);
      rate.push_back(s.gbps_per_block);
    }
    stg.add("case", name), stg.add("blocks", blocks), stg.add("threads", threads), stg.add("bytes_per_block", bytes);
    stg.add("row_bytes", row_bytes), stg.add("row_pitch", row_pitch), stg.add("share", share);
    stg.add("rotate", rotate), stg.add("clean_l2", clean);
    stg.add("median_us", med), stg.add("staging_us", stage), stg.add("gbps_per_block", rate);
    MLALORA_RETURN_IF_ERROR(w.write_table("/staging_probe", stg));
  }
  return w.commit();
}

#ifndef MLALORA_HAVE_CUDA
Status run_bench(const std::vector<BenchShape>&, const std::vector<ModelConfig>&, const BenchOptions&, BenchResult*) {
  return Status::NotSupported("this build has no CUDA: mlalora bench needs the CUDA kernels and a GPU");
}
#endif

}  // namespace mlalora::harness
