#include "mlalora/harness/fma_model.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

namespace mlalora::harness {

namespace {

bool parse_int(const std::string& tok, int64_t* v) {
  if (tok.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(tok.c_str(), &end, 10);
  if (errno != 0 || end != tok.c_str() + tok.size()) return false;
  *v = x;
  return true;
}

}  // namespace

Status parse_model_configs(const std::string& text, const std::string& source_name, std::vector<ModelConfig>* out) {
  out->clear();
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  std::vector<ModelConfig> models;
  while (std::getline(in, line)) {
    ++lineno;
    std::string where = source_name + ":" + std::to_string(lineno);
    std::string comment;
    size_t hash = line.find('#');
    if (hash != std::string::npos) {
      comment = line.substr(hash + 1);
      line = line.substr(0, hash);
      size_t b = comment.find_first_not_of(" \t");
      size_t e = comment.find_last_not_of(" \t\r");
      comment = b == std::string::npos ? "" : comment.substr(b, e - b + 1);
    }
    std::istringstream ls(line);
    std::vector<std::string> tok;
    for (std::string t; ls >> t;) tok.push_back(t);
    if (tok.empty()) continue;
    if (tok.size() != 6)
      return Status::Invalid(where + ": expected 6 fields 'name H D_qk D_v R_kv num_layers', found " +
                             std::to_string(tok.size()));
    ModelConfig m;
    m.name = tok[0];
    m.comment = comment;
    const char* fields[] = {"H", "D_qk", "D_v", "R_kv", "num_layers"};
    int64_t* dst[] = {&m.H, &m.D_qk, &m.D_v, &m.R_kv, &m.num_layers};
    for (int i = 0; i < 5; ++i) {
      if (!parse_int(tok[i + 1], dst[i]))
        return Status::Invalid(where + ": " + fields[i] + " = '" + tok[i + 1] + "' is not an integer");
      if (*dst[i] < 1 || *dst[i] > (int64_t{1} << 20))
        return Status::Invalid(where + ": " + fields[i] + " = " + tok[i + 1] + " must be in [1, 2^20]");
    }
    for (const ModelConfig& o : models)
      if (o.name == m.name) return Status::Invalid(where + ": duplicate model name '" + m.name + "'");
    models.push_back(std::move(m));
  }
  *out = std::move(models);
  return Status::Ok();
}

Status load_model_configs(const std::string& path, std::vector<ModelConfig>* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IoError("cannot open model config file " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status::IoError("cannot read model config file " + path);
  return parse_model_configs(ss.str(), path, out);
}

const ModelConfig* find_model(const std::vector<ModelConfig>& models, const std::string& name) {
  for (const ModelConfig& m : models)
    if (m.name == name) return &m;
  return nullptr;
}

int64_t materialise_fmas_per_slot(int64_t H, int64_t F, int64_t r, int64_t R_kv) { return H * F * r * R_kv; }

NaiveCost naive_cost_per_layer(const Workload& w) {
  const int64_t T = w.tokens, H = w.H, F = w.F(), r = w.rank, e = w.elem_bytes;
  NaiveCost c;
  c.materialise_fmas = w.n_used * materialise_fmas_per_slot(H, F, r, w.R_kv);
  c.apply_fmas = T * H * (w.D_qk * w.R_kv + w.R_kv * w.D_v);
  c.weight_bytes = w.n_used * (r * w.R_kv + H * F * r) * e;
  c.dw_bytes = 2 * w.n_used * H * F * w.R_kv * e;
  c.activation_bytes = (T * H * (w.D_qk + w.R_kv) + 2 * T * H * (w.R_kv + w.D_v)) * e;
  return c;
}

FactoredCost factored_cost_per_layer(const Workload& w) {
  const int64_t T = w.tokens, H = w.H, F = w.F(), r = w.rank, e = w.elem_bytes;
  FactoredCost c;
  c.fmas = T * H * r * (w.D_qk + 2 * w.R_kv + w.D_v);
  c.weight_bytes = w.n_used * (r * w.R_kv + H * F * r) * e;
  c.activation_bytes = (T * H * (w.D_qk + w.R_kv) + 2 * T * H * (w.R_kv + w.D_v)) * e;
  return c;
}

Status validate_workload(const Workload& w) {
  const std::pair<const char*, int64_t> dims[] = {{"H", w.H}, {"D_qk", w.D_qk}, {"D_v", w.D_v}, {"R_kv", w.R_kv},
                                                  {"num_layers", w.num_layers}};
  for (const auto& [name, v] : dims)
    if (v < 1 || v > (int64_t{1} << 20))
      return Status::Invalid(std::string("workload.") + name + " = " + std::to_string(v) + " must be in [1, 2^20]");
  const std::pair<const char*, int64_t> counts[] = {{"tokens", w.tokens}, {"n_used", w.n_used}, {"rank", w.rank}};
  for (const auto& [name, v] : counts)
    if (v < 0 || v > (int64_t{1} << 24))
      return Status::Invalid(std::string("workload.") + name + " = " + std::to_string(v) + " must be in [0, 2^24]");
  if (w.tokens > 0 && w.n_used > w.tokens)
    return Status::Invalid("workload.n_used = " + std::to_string(w.n_used) + " exceeds tokens = " +
                           std::to_string(w.tokens) + ": each used adapter serves at least one token");
  if (w.elem_bytes != 1 && w.elem_bytes != 2 && w.elem_bytes != 4 && w.elem_bytes != 8)
    return Status::Invalid("workload.elem_bytes = " + std::to_string(w.elem_bytes) + " must be 1, 2, 4 or 8");
  // Overflow guard: evaluate the largest terms in long double.
  long double T = w.tokens, H = w.H, F = static_cast<long double>(w.F()), r = w.rank, R = w.R_kv, n = w.n_used,
              L = w.num_layers, e = w.elem_bytes;
  long double worst = L * (n * H * F * r * R + T * H * (w.D_qk * R + R * w.D_v) + T * H * r * (w.D_qk + 2 * R + w.D_v) +
                           e * (2 * n * H * F * R + n * (r * R + H * F * r) + 3 * T * H * (w.D_qk + 2 * R + w.D_v)));
  if (worst > static_cast<long double>(std::numeric_limits<int64_t>::max()) / 2)
    return Status::Invalid("workload counts overflow int64");
  return Status::Ok();
}

Status make_workload(const ModelConfig& m, int64_t tp, int64_t tokens, int64_t n_used, int64_t rank, Workload* out,
                     int64_t elem_bytes) {
  if (tp < 1 || m.H % tp != 0)
    return Status::Invalid("tensor-parallel degree " + std::to_string(tp) + " must divide " + m.name + "'s H = " +
                           std::to_string(m.H));
  Workload w;
  w.tokens = tokens;
  w.n_used = n_used;
  w.rank = rank;
  w.H = m.H / tp;
  w.D_qk = m.D_qk;
  w.D_v = m.D_v;
  w.R_kv = m.R_kv;
  w.num_layers = m.num_layers;
  w.elem_bytes = elem_bytes;
  MLALORA_RETURN_IF_ERROR(validate_workload(w));
  *out = w;
  return Status::Ok();
}

namespace {
double ratio(int64_t a, int64_t b) {
  if (b == 0) return a == 0 ? 1.0 : std::numeric_limits<double>::infinity();
  return static_cast<double>(a) / static_cast<double>(b);
}
}  // namespace

Status compute_fma_report(const Workload& w, FmaReport* out) {
  MLALORA_RETURN_IF_ERROR(validate_workload(w));
  FmaReport r;
  r.workload = w;
  r.naive_layer = naive_cost_per_layer(w);
  r.factored_layer = factored_cost_per_layer(w);
  Cost nl = r.naive_layer.total(), fl = r.factored_layer.total();
  r.naive_step = {nl.fmas * w.num_layers, nl.bytes * w.num_layers};
  r.factored_step = {fl.fmas * w.num_layers, fl.bytes * w.num_layers};
  r.fma_ratio = ratio(nl.fmas, fl.fmas);
  r.bytes_ratio = ratio(nl.bytes, fl.bytes);
  *out = r;
  return Status::Ok();
}

std::string format_fma_report(const FmaReport& r) {
  const Workload& w = r.workload;
  std::ostringstream o;
  o << "T=" << w.tokens << " n_used=" << w.n_used << " r=" << w.rank << " H=" << w.H << " D_qk=" << w.D_qk
    << " D_v=" << w.D_v << " R_kv=" << w.R_kv << " layers=" << w.num_layers << " elem_bytes=" << w.elem_bytes
    << " | per layer: naive " << r.naive_layer.total().fmas << " FMA (materialise " << r.naive_layer.materialise_fmas
    << " + apply " << r.naive_layer.apply_fmas << "), " << r.naive_layer.total().bytes << " B; factored "
    << r.factored_layer.fmas << " FMA, " << r.factored_layer.total().bytes << " B | per step: naive "
    << r.naive_step.fmas << " FMA, " << r.naive_step.bytes << " B; factored " << r.factored_step.fmas << " FMA, "
    << r.factored_step.bytes << " B | ratio FMA " << std::setprecision(4) << r.fma_ratio << "x, bytes "
    << r.bytes_ratio << "x";
  return o.str();
}

}  // namespace mlalora::harness
