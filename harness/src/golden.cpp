#include "mlalora/harness/golden.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <set>
#include <sstream>

#include "mlalora/dtype.hpp"
#include "mlalora/harness/hdf5_file.hpp"
#include "mlalora/harness/reproducer.hpp"

#ifndef MLALORA_VERSION
#define MLALORA_VERSION "unknown"
#endif
#include "mlalora/build_info.hpp"

namespace mlalora::harness {

namespace {



int64_t side_N(const Dims& d, Side s) { return s == Side::q ? d.R_kv : d.D_v; }

std::string fmt3(int64_t a, int64_t b, int64_t c) {
  return "(" + std::to_string(a) + "," + std::to_string(b) + "," + std::to_string(c) + ")";
}

std::string num(double x) {
  std::ostringstream o;
  o.precision(17);
  o << x;
  return o.str();
}

bool parse_u64(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  unsigned __int128 v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + static_cast<unsigned>(ch - '0');
  }
  if (v > UINT64_MAX) return false;
  *out = static_cast<uint64_t>(v);
  return true;
}

std::string file_stem(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = base.find_last_of('.');
  if (dot != std::string::npos && dot > 0) base = base.substr(0, dot);
  return base;
}

// The covered physical rows of a problem with their slots, ascending by row
// (the order of reference::SideDelta::rows).
std::vector<std::pair<int64_t, int32_t>> covered_rows(const Problem& p) {
  std::vector<std::pair<int64_t, int32_t>> rs;
  for_each_covered_row(p, [&](int64_t, int64_t, int64_t t, int32_t l) { rs.emplace_back(t, l); });
  std::sort(rs.begin(), rs.end());
  return rs;
}

// Every logical element of t must be NaN or representable in dtype.
Status check_values(const HostTensor& t, DType dtype, const std::string& where) {
  for (int64_t i = 0; i < t.shape[0]; ++i)
    for (int64_t j = 0; j < t.shape[1]; ++j)
      for (int64_t k = 0; k < t.shape[2]; ++k) {
        const float x = t.at(i, j, k);
        if (std::isnan(x)) continue;
        if (round_to(dtype, x) != x)
          return Status::Invalid(where + " element " + fmt3(i, j, k) + " = " + num(x) + " is not representable in " +
                                 dtype_name(dtype) + " (round the outputs to the problem's dtype)");
      }
  return Status::Ok();
}

// Compare a stored side with a fresh expectation: |stored - fresh| <= tol * P.
// Returns the worst ratio (inf for non-finite disagreement) and describes it.
double side_discrepancy(const GoldenSide& st, const SideExpectation& fresh, std::string* where) {
  double worst = 0;
  const auto& fd = fresh.delta;
  const auto& fp = fresh.abs_prod;
  if (st.delta.values.size() != fd.values.size() || st.abs_prod.values.size() != fp.values.size() ||
      st.delta.rows != fd.rows) {
    if (where) *where = "the stored rows differ from the problem's covered rows";
    return INFINITY;
  }
  const size_t per_row = static_cast<size_t>(fd.H * fd.N);
  for (size_t k = 0; k < fd.values.size(); ++k) {
    const double P = fp.values[k];
    const double pairs[2][2] = {{st.delta.values[k], fd.values[k]}, {st.abs_prod.values[k], P}};
    for (int which = 0; which < 2; ++which) {
      const double a = pairs[which][0], b = pairs[which][1];
      double ratio;
      if (!std::isfinite(a) || !std::isfinite(b)) {
        const bool same = (std::isnan(a) && std::isnan(b)) || a == b;  // same NaN-ness or the same infinity
        ratio = same ? 0.0 : INFINITY;
      } else {
        const double diff = std::fabs(a - b);
        const double scale = std::isfinite(P) ? std::fabs(P) : 0.0;
        ratio = diff == 0 ? 0.0 : (scale > 0 ? diff / scale : INFINITY);
      }
      if (ratio > worst) {
        worst = ratio;
        if (where) {
          const size_t row_pos = per_row ? k / per_row : 0;
          const size_t rem = per_row ? k % per_row : 0;
          std::ostringstream o;
          o << (which == 0 ? "delta" : "abs_product") << " at (t=" << fd.rows[row_pos]
            << ", h=" << rem / static_cast<size_t>(fd.N) << ", n=" << rem % static_cast<size_t>(fd.N)
            << "): stored " << num(a) << ", recomputed " << num(b) << ", P " << num(P);
          *where = o.str();
        }
      }
    }
  }
  return worst;
}

Status write_golden_impl(const std::string& path, const Golden& g) {
  const Problem& p = g.test_case.problem;
  Reproducer rep;
  rep.problem = p;
  rep.tensors = g.tensors;
  rep.attributes = g.attributes;
  Status chk = check_reproducer(rep);
  if (!chk.ok()) return Status{chk.code, "write_golden " + path + ": " + chk.message};
  const Dims& d = p.dims();
  const auto covered = covered_rows(p);
  for (Side side : kBothSides) {
    const GoldenSide& gs = g.stored(side);
    const size_t n = covered.size() * static_cast<size_t>(d.H * side_N(d, side));
    if (gs.delta.rows.size() != covered.size() || gs.delta.values.size() != n || gs.abs_prod.values.size() != n ||
        gs.delta.slots.size() != covered.size())
      return Status::Invalid("write_golden " + path + ": the " + side_name(side) +
                             "-side expectation does not match the problem's covered rows");
  }

  H5Writer w;
  MLALORA_RETURN_IF_ERROR(w.open(path));
  // The reproducer schema (datasets/regressions/README.md), version 1, then the golden marker.
  MLALORA_RETURN_IF_ERROR(write_reproducer_contents(w, rep));
  MLALORA_RETURN_IF_ERROR(w.write_attr_int("/", "mlalora_golden_version", kGoldenVersion));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "kind", "golden"));

  // The golden part.
  const std::string gg = "/golden";
  MLALORA_RETURN_IF_ERROR(w.create_group(gg));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string(gg, "data_seed", std::to_string(g.test_case.data_seed)));
  MLALORA_RETURN_IF_ERROR(w.write_attr_int(gg, "nonfinite", g.test_case.nonfinite ? 1 : 0));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string(gg, "tensors_fnv1a64", golden_tensor_hash(g.tensors)));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string(
      gg, "reference", "float64 factored reference (mlalora::reference::delta_factored), s included"));
  for (Side side : kBothSides) {
    const GoldenSide& gs = g.stored(side);
    const std::string sp = gg + "/" + side_name(side);
    MLALORA_RETURN_IF_ERROR(w.create_group(sp));
    MLALORA_RETURN_IF_ERROR(w.write_attr_string(sp, "output", tensor_name(output_of(side))));
    MLALORA_RETURN_IF_ERROR(w.write_vector<int64_t>(sp + "/rows", gs.delta.rows));
    MLALORA_RETURN_IF_ERROR(w.write_vector<int32_t>(sp + "/slots", gs.delta.slots));
    const std::vector<int64_t> shape{static_cast<int64_t>(gs.delta.rows.size()), d.H, side_N(d, side)};
    MLALORA_RETURN_IF_ERROR(w.write_array<double>(sp + "/delta", gs.delta.values.data(), shape));
    MLALORA_RETURN_IF_ERROR(w.write_array<double>(sp + "/abs_product", gs.abs_prod.values.data(), shape));
  }
  return w.commit();
}

Status read_golden_impl(const std::string& path, Golden* out, const GoldenReadOptions& opt) {
  auto bad = [&](const std::string& what) { return Status::Invalid("golden " + path + ": " + what); };
  H5Reader rd;
  MLALORA_RETURN_IF_ERROR(rd.open(path));
  if (!rd.has_attr("/", "mlalora_golden_version"))
    return bad("no root attribute mlalora_golden_version: not a golden file (golden files are written by "
               "`mlalora golden`)");
  int64_t version = 0;
  MLALORA_RETURN_IF_ERROR(rd.read_attr_int("/", "mlalora_golden_version", &version));
  if (version != kGoldenVersion)
    return bad("mlalora_golden_version = " + std::to_string(version) + ", this build reads version " +
               std::to_string(kGoldenVersion));

  // Problem and tensors: the reproducer schema, validated by its loader.
  Reproducer rep;
  {
    Status st = load_reproducer(path, &rep);
    if (!st.ok()) return Status{st.code, "golden file: " + st.message};
  }
  Golden g;
  g.path = path;
  g.test_case.problem = std::move(rep.problem);
  g.tensors = std::move(rep.tensors);
  g.attributes = std::move(rep.attributes);
  const Problem& p = g.test_case.problem;
  const Dims& d = p.dims();

  const std::string gg = "/golden";
  if (rd.kind(gg) != H5ObjectKind::group) return bad("no group /golden (the expectation)");
  std::string seed_text;
  MLALORA_RETURN_IF_ERROR(rd.read_attr_string(gg, "data_seed", &seed_text));
  if (!parse_u64(seed_text, &g.test_case.data_seed))
    return bad("/golden attribute data_seed = '" + seed_text + "' is not an unsigned 64-bit decimal integer");
  int64_t nonfinite = 0;
  MLALORA_RETURN_IF_ERROR(rd.read_attr_int(gg, "nonfinite", &nonfinite));
  if (nonfinite != 0 && nonfinite != 1)
    return bad("/golden attribute nonfinite = " + std::to_string(nonfinite) + ", expected 0 or 1");
  g.test_case.nonfinite = nonfinite == 1;
  std::string hash;
  MLALORA_RETURN_IF_ERROR(rd.read_attr_string(gg, "tensors_fnv1a64", &hash));
  const std::string actual_hash = golden_tensor_hash(g.tensors);
  if (hash != actual_hash)
    return bad("/golden attribute tensors_fnv1a64 = '" + hash + "' but the stored /tensors hash to '" + actual_hash +
               "': the tensor data was modified or corrupted");

  const auto covered = covered_rows(p);
  const int64_t n_rows = static_cast<int64_t>(covered.size());
  for (Side side : kBothSides) {
    const std::string sp = gg + "/" + side_name(side);
    const int64_t N = side_N(d, side);
    GoldenSide& gs = side == Side::q ? g.q : g.v;
    for (reference::SideDelta* sd : {&gs.delta, &gs.abs_prod}) {
      sd->side = side;
      sd->H = d.H;
      sd->N = N;
    }
    MLALORA_RETURN_IF_ERROR(rd.read_vector<int64_t>(sp + "/rows", &gs.delta.rows, n_rows));
    MLALORA_RETURN_IF_ERROR(rd.read_vector<int32_t>(sp + "/slots", &gs.delta.slots, n_rows));
    for (int64_t k = 0; k < n_rows; ++k) {
      if (gs.delta.rows[k] != covered[k].first)
        return bad(sp + "/rows[" + std::to_string(k) + "] = " + std::to_string(gs.delta.rows[k]) +
                   ", the problem's covered physical rows (ascending) give " + std::to_string(covered[k].first));
      if (gs.delta.slots[k] != covered[k].second)
        return bad(sp + "/slots[" + std::to_string(k) + "] = " + std::to_string(gs.delta.slots[k]) + ", row " +
                   std::to_string(covered[k].first) + " is covered by slot " + std::to_string(covered[k].second));
    }
    gs.abs_prod.rows = gs.delta.rows;
    gs.abs_prod.slots = gs.delta.slots;
    const std::vector<int64_t> shape{n_rows, d.H, N};
    MLALORA_RETURN_IF_ERROR(rd.read_array_shape<double>(sp + "/delta", &gs.delta.values, shape));
    MLALORA_RETURN_IF_ERROR(rd.read_array_shape<double>(sp + "/abs_product", &gs.abs_prod.values, shape));
    for (size_t k = 0; k < gs.abs_prod.values.size(); ++k)
      if (gs.abs_prod.values[k] < 0)
        return bad(sp + "/abs_product element " + std::to_string(k) + " = " + num(gs.abs_prod.values[k]) +
                   " is negative (a product of absolute values)");
  }

  g.expect_q = expect_side(p, g.tensors, Side::q, reference::RowSelection::all());
  g.expect_v = expect_side(p, g.tensors, Side::v, reference::RowSelection::all());
  if (opt.verify_expectation) {
    for (Side side : kBothSides) {
      std::string where;
      const double r = side_discrepancy(g.stored(side), g.expectation(side), &where);
      if (!(r <= opt.tolerance))
        return bad(std::string("/golden/") + side_name(side) +
                   " disagrees with the float64 reference recomputed from the stored inputs (|stored - fresh| / P "
                   "= " + num(r) + " > " + num(opt.tolerance) + "): " + where);
    }
  }
  *out = std::move(g);
  return Status::Ok();
}

Status read_candidate_impl(const std::string& path, const Golden& g, Candidate* out) {
  auto bad = [&](const std::string& what) { return Status::Invalid("candidate " + path + ": " + what); };
  H5Reader rd;
  MLALORA_RETURN_IF_ERROR(rd.open(path));
  const Problem& p = g.test_case.problem;
  const Dims& d = p.dims();
  const DType dt = p.shape.dtype;
  Candidate c;
  c.path = path;
  c.name = file_stem(path);
  if (rd.has_attr("/", "name")) {
    std::string name;
    MLALORA_RETURN_IF_ERROR(rd.read_attr_string("/", "name", &name));
    if (name.find('\0') != std::string::npos) return bad("root attribute name contains a NUL character");
    if (!name.empty()) c.name = name;
  }
  if (rd.has_attr("/", "dtype")) {
    MLALORA_RETURN_IF_ERROR(rd.read_attr_string("/", "dtype", &c.dtype));
    auto cdt = parse_dtype(c.dtype);
    if (!cdt) return bad("root attribute dtype = '" + c.dtype + "' is not f32, f16 or bf16");
    if (*cdt != dt)
      return bad("root attribute dtype = '" + c.dtype + "' but the golden problem's dtype is " + dtype_name(dt));
  }
  if (c.name.empty()) c.name = "candidate";
  for (Side side : kBothSides) {
    const TensorId id = output_of(side);
    const std::string dp = std::string("/") + tensor_name(id);
    const HostTensor& base = g.tensors.of(id);
    const int64_t N = side_N(d, side);
    const int64_t storage = static_cast<int64_t>(base.data.size());
    const std::string forms = "expected float32 of shape (" + std::to_string(storage) + ",) (full storage, strides " +
                              fmt3(base.strides.s0, base.strides.s1, base.strides.s2) + ") or " +
                              fmt3(d.S, d.H, N) + " (logical S,H,N)";
    H5ObjectKind kind = rd.kind(dp);
    if (kind == H5ObjectKind::unreadable)
      return Status::IoError("candidate " + path + ": " + dp + " cannot be read (corrupt file)");
    if (kind != H5ObjectKind::dataset) return bad("no dataset " + dp + "; " + forms);
    std::vector<int64_t> shape;
    MLALORA_RETURN_IF_ERROR(rd.dataset_shape(dp, &shape));
    HostTensor& o = side == Side::q ? c.q_nope_out : c.attn_bmm_out;
    CandidateForm& form = side == Side::q ? c.q_form : c.v_form;
    o = base;  // shape, strides; the base values for the logical form's gaps
    if (shape.size() == 1) {
      if (shape[0] != storage) return bad(dp + " has shape " + h5_shape_string(shape) + "; " + forms);
      MLALORA_RETURN_IF_ERROR(rd.read_vector<float>(dp, &o.data, storage));
      form = CandidateForm::storage;
    } else if (shape.size() == 3) {
      if (shape[0] != d.S || shape[1] != d.H || shape[2] != N)
        return bad(dp + " has shape " + h5_shape_string(shape) + "; " + forms);
      std::vector<float> dense;
      MLALORA_RETURN_IF_ERROR(rd.read_array_shape<float>(dp, &dense, shape));
      for (int64_t t = 0; t < d.S; ++t)
        for (int64_t h = 0; h < d.H; ++h)
          for (int64_t n = 0; n < N; ++n) o.at(t, h, n) = dense[static_cast<size_t>((t * d.H + h) * N + n)];
      form = CandidateForm::logical;
    } else {
      return bad(dp + " has rank " + std::to_string(shape.size()) + " (shape " + h5_shape_string(shape) + "); " +
                 forms);
    }
    Status vs = check_values(o, dt, dp);
    if (!vs.ok()) return bad(vs.message);
  }
  *out = std::move(c);
  return Status::Ok();
}

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const unsigned char* b = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

std::string golden_tensor_hash(const ProblemTensors& t) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (TensorId id : kAllTensors) {
    const auto& v = t.of(id).data;
    for (float x : v) {
      uint32_t bits;
      std::memcpy(&bits, &x, 4);
      const unsigned char le[4] = {static_cast<unsigned char>(bits), static_cast<unsigned char>(bits >> 8),
                                   static_cast<unsigned char>(bits >> 16), static_cast<unsigned char>(bits >> 24)};
      h = fnv1a(h, le, 4);
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Golden make_golden(const Case& c, const ProblemTensors& inputs, const std::map<std::string, std::string>& attributes) {
  Golden g;
  g.test_case = c;
  g.tensors = inputs;
  g.attributes = attributes;
  g.attributes["kind"] = "golden";
  g.attributes["tool_version"] = MLALORA_VERSION;
  g.attributes["git_commit"] = MLALORA_GIT_COMMIT;
  g.attributes["data_seed"] = std::to_string(c.data_seed);
  g.attributes["summary"] = c.problem.summary();
  g.expect_q = expect_side(c.problem, inputs, Side::q, reference::RowSelection::all());
  g.expect_v = expect_side(c.problem, inputs, Side::v, reference::RowSelection::all());
  g.q = {g.expect_q.delta, g.expect_q.abs_prod};
  g.v = {g.expect_v.delta, g.expect_v.abs_prod};
  return g;
}

Status write_golden(const std::string& path, const Golden& g) {
  try {
    return write_golden_impl(path, g);
  } catch (const std::exception& e) {
    return Status::IoError("write_golden " + path + ": " + e.what());
  }
}

Status write_golden(const std::string& path, const Case& c, const ProblemTensors& inputs,
                    const std::map<std::string, std::string>& attributes) {
  Status v = validate(c.problem);
  if (!v.ok()) return Status{v.code, "write_golden " + path + ": invalid problem: " + v.message};
  return write_golden(path, make_golden(c, inputs, attributes));
}

Status write_golden(const std::string& path, const Case& c, const std::map<std::string, std::string>& attributes) {
  Status v = validate(c.problem);
  if (!v.ok()) return Status{v.code, "write_golden " + path + ": invalid problem: " + v.message};
  return write_golden(path, c, make_tensors(c), attributes);
}

Status read_golden(const std::string& path, Golden* out, const GoldenReadOptions& opt) {
  try {
    return read_golden_impl(path, out, opt);
  } catch (const std::bad_alloc&) {
    return Status::IoError("golden " + path + ": out of memory while loading (corrupt sizes?)");
  } catch (const std::exception& e) {
    return Status::IoError("golden " + path + ": " + e.what());
  }
}

double golden_expectation_discrepancy(const Golden& g, std::string* where) {
  std::string wq, wv;
  const double rq = side_discrepancy(g.q, g.expect_q, &wq);
  const double rv = side_discrepancy(g.v, g.expect_v, &wv);
  if (where) *where = rq >= rv ? "q-side " + wq : "v-side " + wv;
  return std::max(rq, rv);
}

// --- The golden set ---------------------------------------------------------

GenConfig golden_gen_config() {
  GenConfig c = GenConfig::gpu_default();
  c.head_dims = {3, 8, 17};
  c.latent_dims = {5, 16, 31};
  c.head_counts = {1, 2, 3};
  c.max_tokens = 16;
  c.max_slots = 4;
  c.max_rank = 6;
  c.max_segments = 6;
  c.allow_inner_stride = false;
  c.inject_nonfinite = false;
  return c;
}

namespace {

struct Features {
  bool perm = false, strided = false, rank0 = false, empty_segment = false, uncovered = false, spare = false,
       mixed = false, repeated = false, live_positive = false;
};

Features features_of(const Problem& p) {
  Features f;
  const Dims& d = p.dims();
  f.perm = p.shape.has_permutation;
  const Layout contiguous = Layout::contiguous(d);
  for (TensorId id : kAllTensors) {
    const Strides3 &a = p.shape.layout.of(id), &b = contiguous.of(id);
    f.strided |= a.s0 != b.s0 || a.s1 != b.s1 || a.s2 != b.s2;
  }
  std::set<int32_t> live_ranks, slots_seen;
  for (int64_t g = 0; g < p.num_segments; ++g) {
    const int64_t len = p.seg_indptr[g + 1] - p.seg_indptr[g];
    const int32_t l = p.weight_indices[g];
    const int32_t r = p.lora_ranks[l];
    if (len == 0) f.empty_segment = true;
    if (len > 0 && r == 0) f.rank0 = true;
    if (len > 0 && r > 0) {
      f.live_positive = true;
      live_ranks.insert(r);
    }
    if (!slots_seen.insert(l).second) f.repeated = true;
  }
  f.mixed = live_ranks.size() >= 2 || (!live_ranks.empty() && *live_ranks.rbegin() < d.r_max);
  f.uncovered = p.covered_rows() < d.S;
  f.spare = p.shape.segment_capacity > p.num_segments;
  return f;
}

// Bytes a golden file of this problem needs, roughly (data only).
int64_t estimated_bytes(const Problem& p) {
  const Dims& d = p.dims();
  int64_t floats = 0;
  for (TensorId id : kAllTensors) floats += storage_elems(tensor_shape(d, id), p.shape.layout.of(id));
  const int64_t rows = p.covered_rows();
  return 4 * floats + 2 * 8 * rows * d.H * (d.R_kv + d.D_v);
}

}  // namespace

std::string golden_features(const Problem& p) {
  const Features f = features_of(p);
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (on) s += (s.empty() ? "" : ",") + std::string(name);
  };
  add(f.perm, "perm");
  add(f.strided, "strided");
  add(f.rank0, "rank0");
  add(f.empty_segment, "empty-segment");
  add(f.uncovered, "uncovered-rows");
  add(f.spare, "spare-capacity");
  add(f.mixed, "mixed-ranks");
  add(f.repeated, "repeated-slot");
  return s.empty() ? "none" : s;
}

Case golden_case(uint64_t seed, int64_t index, uint64_t* draw_seed) {
  GenConfig cfg = golden_gen_config();
  cfg.dtypes = {kAllDTypes[static_cast<size_t>(index % 3)]};
  constexpr int64_t kBudget = 60 * 1024;
  const uint64_t start = seed * 1000003ULL + static_cast<uint64_t>(index) * 100003ULL;
  // The first draw meeting every requirement; failing that (not seen for the
  // shipped seeds), the first draw meeting the most of them.
  Case best;
  int best_score = -1;
  uint64_t best_seed = start;
  for (uint64_t k = 0; k < 100000; ++k) {
    Case c = sample_case(cfg, start + k, 100);
    const Problem& p = c.problem;
    const Features f = features_of(p);
    if (!f.live_positive || estimated_bytes(p) > kBudget) continue;
    const bool layout_ok = index % 2 == 0 ? f.perm : (f.strided && !f.perm);
    const int score = (p.dims().S >= 8) + (p.dims().H >= 2) + layout_ok + f.rank0 + f.empty_segment + f.uncovered +
                      f.mixed;
    if (score > best_score) {
      best = c;
      best_score = score;
      best_seed = start + k;
    }
    if (score == 7) break;
  }
  if (draw_seed) *draw_seed = best_seed;
  return best;
}

// --- Candidates ---------------------------------------------------------

Status read_candidate(const std::string& path, const Golden& g, Candidate* out) {
  try {
    return read_candidate_impl(path, g, out);
  } catch (const std::bad_alloc&) {
    return Status::IoError("candidate " + path + ": out of memory while loading (corrupt sizes?)");
  } catch (const std::exception& e) {
    return Status::IoError("candidate " + path + ": " + e.what());
  }
}

Status write_candidate(const std::string& path, const Golden& g, const HostTensor& q_nope_out,
                       const HostTensor& attn_bmm_out, const std::string& name, CandidateForm form) {
  const Dims& d = g.test_case.problem.dims();
  H5Writer w;
  MLALORA_RETURN_IF_ERROR(w.open(path));
  MLALORA_RETURN_IF_ERROR(w.write_attr_int("/", "mlalora_candidate_version", kCandidateVersion));
  if (!name.empty()) MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "name", name));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "dtype", dtype_name(g.test_case.problem.shape.dtype)));
  for (Side side : kBothSides) {
    const HostTensor& t = side == Side::q ? q_nope_out : attn_bmm_out;
    const HostTensor& base = g.tensors.of(output_of(side));
    const std::string dp = std::string("/") + tensor_name(output_of(side));
    if (t.shape != base.shape || t.data.size() != base.data.size())
      return Status::Invalid("write_candidate " + path + ": " + dp + " does not have the golden problem's shape");
    if (form == CandidateForm::storage) {
      MLALORA_RETURN_IF_ERROR(w.write_vector<float>(dp, t.data));
    } else {
      const int64_t N = side_N(d, side);
      std::vector<float> dense(static_cast<size_t>(d.S * d.H * N));
      for (int64_t s = 0; s < d.S; ++s)
        for (int64_t h = 0; h < d.H; ++h)
          for (int64_t n = 0; n < N; ++n) dense[static_cast<size_t>((s * d.H + h) * N + n)] = t.at(s, h, n);
      MLALORA_RETURN_IF_ERROR(w.write_array<float>(dp, dense.data(), {d.S, d.H, N}));
    }
  }
  return w.commit();
}

// --- Judging --------------------------------------------------------------

std::optional<reference::RoundingModel> golden_rounding_model(const std::string& name, DType dtype) {
  if (name == "factored") return reference::RoundingModel::factored(dtype, false);
  if (name == "factored-tc") return reference::RoundingModel::factored(dtype, true);
  if (name == "materialized") return reference::RoundingModel::materialized(dtype, true);
  if (name == "output-only") return reference::RoundingModel::output_only(dtype);
  return std::nullopt;
}

GoldenVerdict judge_candidate(const Golden& g, const Candidate& c, const reference::RoundingModel& model) {
  GoldenVerdict v;
  RunOutcome& o = v.outcome;
  o.implementation = c.name;
  o.q.side = Side::q;
  o.v.side = Side::v;
  for (Side side : kBothSides) {
    const HostTensor& base = g.tensors.of(output_of(side));
    const HostTensor& out = c.out(side);
    if (out.data.size() != base.data.size() || out.shape != base.shape) {
      o.disposition = Disposition::failed;
      o.message = std::string("candidate ") + tensor_name(output_of(side)) + " does not match the golden problem's shape";
      return v;
    }
  }
  const Problem& p = g.test_case.problem;
  o.q = verify_side(p, g.tensors, c.q_nope_out, Side::q, g.expect_q, model);
  o.v = verify_side(p, g.tensors, c.attn_bmm_out, Side::v, g.expect_v, model);
  o.disposition = (o.q.passed() && o.v.passed()) ? Disposition::passed : Disposition::incorrect;
  o.message = o.q.describe() + " | " + o.v.describe();
  return v;
}

}  // namespace mlalora::harness
