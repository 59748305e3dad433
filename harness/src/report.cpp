#include "mlalora/build_info.hpp"
#include "mlalora/harness/report.hpp"

#include <unistd.h>

#include <algorithm>
#include <ctime>

#ifdef MLALORA_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace mlalora::harness {

std::string gpu_device_name(std::string* why) {
#ifdef MLALORA_HAVE_CUDA
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why) *why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device";
    cudaGetLastError();
    return "none";
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "unknown CUDA device";
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs)";
#else
  if (why) *why = "built without CUDA";
  return "none";
#endif
}

Provenance Provenance::collect(const std::string& kind, const std::string& command_line, uint64_t seed) {
  Provenance p;
  p.kind = kind;
  p.tool_version = MLALORA_VERSION;
  p.git_commit = MLALORA_GIT_COMMIT;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  p.host = host;
  p.device = gpu_device_name();
  std::time_t now = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  p.time_utc = buf;
  p.command_line = command_line;
  p.seed = seed;
  return p;
}

Status write_provenance(H5Writer& w, const Provenance& p) {
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "kind", p.kind));
  MLALORA_RETURN_IF_ERROR(w.write_attr_int("/", "schema_version", 1));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "tool_version", p.tool_version));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "git_commit", p.git_commit));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "host", p.host));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "device", p.device));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "time_utc", p.time_utc));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "command_line", p.command_line));
  return w.write_attr_string("/", "seed", std::to_string(p.seed));
}

Status read_provenance(const H5Reader& r, Provenance* p) {
  MLALORA_RETURN_IF_ERROR(r.read_attr_string("/", "kind", &p->kind));
  MLALORA_RETURN_IF_ERROR(r.read_attr_string("/", "tool_version", &p->tool_version));
  MLALORA_RETURN_IF_ERROR(r.read_attr_string("/", "git_commit", &p->git_commit));
  MLALORA_RETURN_IF_ERROR(r.read_attr_string("/", "host", &p->host));
  MLALORA_RETURN_IF_ERROR(r.read_attr_string("/", "device", &p->device));
  MLALORA_RETURN_IF_ERROR(r.read_attr_string("/", "time_utc", &p->time_utc));
  MLALORA_RETURN_IF_ERROR(r.read_attr_string("/", "command_line", &p->command_line));
  std::string seed;
  MLALORA_RETURN_IF_ERROR(r.read_attr_string("/", "seed", &seed));
  p->seed = std::strtoull(seed.c_str(), nullptr, 10);
  return Status::Ok();
}

void ErrorReport::add(int64_t case_index, const Case& c, const RunOutcome& o) {
  const Problem& p = c.problem;
  const Dims& d = p.dims();
  const Layout contiguous = Layout::contiguous(d);
  bool strided = false;
  for (TensorId id : kAllTensors) {
    const Strides3 &a = p.shape.layout.of(id), &b = contiguous.of(id);
    strided |= a.s0 != b.s0 || a.s1 != b.s1 || a.s2 != b.s2;
  }
  int32_t max_rank = 0;
  for (int64_t g = 0; g < p.num_segments; ++g) max_rank = std::max(max_rank, p.lora_ranks[p.weight_indices[g]]);
  for (Side side : kBothSides) {
    const SideVerdict& v = side == Side::q ? o.q : o.v;
    case_index_.push_back(case_index);
    impl_.push_back(o.implementation);
    side_.push_back(side_name(side));
    dtype_.push_back(dtype_name(p.shape.dtype));
    S_.push_back(d.S), H_.push_back(d.H), D_qk_.push_back(d.D_qk), D_v_.push_back(d.D_v), R_kv_.push_back(d.R_kv);
    L_.push_back(d.L), r_max_.push_back(d.r_max), max_rank_.push_back(max_rank);
    num_segments_.push_back(p.num_segments), capacity_.push_back(p.shape.segment_capacity);
    perm_.push_back(p.shape.has_permutation), strided_.push_back(strided), nonfinite_.push_back(c.nonfinite);
    data_seed_.push_back(std::to_string(c.data_seed));
    // A side inherits the run's disposition unless the run passed and this
    // side is what failed (per-side rows let a reader see which side broke).
    Disposition disp = o.disposition;
    if (disp == Disposition::incorrect && v.passed() && v.elements_checked + v.elements_untouched > 0)
      disp = Disposition::passed;
    disposition_.push_back(disposition_name(disp));
    checked_.push_back(v.elements_checked);
    max_abs_.push_back(v.max_abs_error);
    rel_frob_.push_back(v.rel_frobenius_error);
    max_ratio_.push_back(v.max_error_bound_ratio);
    nonfinite_introduced_.push_back(v.nonfinite_introduced);
    nonfinite_lost_.push_back(v.nonfinite_lost);
    written_outside_.push_back(v.written_outside);
    bound_violations_.push_back(v.bound_violations);
    bad_count_.push_back(v.bad_count);
    seconds_.push_back(o.seconds);
    message_.push_back(disp == Disposition::passed ? "" : (o.disposition == Disposition::incorrect ? v.describe() : o.message));
  }
}

int64_t ErrorReport::count(Disposition d) const {
  return std::count(disposition_.begin(), disposition_.end(), std::string(disposition_name(d)));
}

H5Table ErrorReport::table() const {
  H5Table t;
  t.add("case", case_index_);
  t.add("implementation", impl_);
  t.add("side", side_);
  t.add("dtype", dtype_);
  t.add("S", S_), t.add("H", H_), t.add("D_qk", D_qk_), t.add("D_v", D_v_), t.add("R_kv", R_kv_);
  t.add("L", L_), t.add("r_max", r_max_), t.add("max_live_rank", max_rank_);
  t.add("num_segments", num_segments_), t.add("segment_capacity", capacity_);
  t.add("has_permutation", perm_), t.add("strided", strided_), t.add("nonfinite_input", nonfinite_);
  t.add("data_seed", data_seed_);
  t.add("disposition", disposition_);
  t.add("elements_checked", checked_);
  t.add("max_abs_error", max_abs_);
  t.add("rel_frobenius_error", rel_frob_);
  t.add("max_error_bound_ratio", max_ratio_);
  t.add("nonfinite_introduced", nonfinite_introduced_);
  t.add("nonfinite_lost", nonfinite_lost_);
  t.add("written_outside", written_outside_);
  t.add("bound_violations", bound_violations_);
  t.add("bad_count", bad_count_);
  t.add("seconds", seconds_);
  t.add("message", message_);
  return t;
}

Status ErrorReport::write(const std::string& path, const Provenance& prov) const {
  H5Writer w;
  MLALORA_RETURN_IF_ERROR(w.open(path));
  MLALORA_RETURN_IF_ERROR(write_provenance(w, prov));
  MLALORA_RETURN_IF_ERROR(w.write_table("/rows", table()));
  return w.commit();
}

}  // namespace mlalora::harness
