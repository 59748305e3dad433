#include "mlalora/problem.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "mlalora/host_tensors.hpp"

namespace mlalora {

const char* status_code_name(StatusCode c) {
  switch (c) {
    case StatusCode::ok: return "ok";
    case StatusCode::invalid_argument: return "invalid_argument";
    case StatusCode::not_supported: return "not_supported";
    case StatusCode::workspace_too_small: return "workspace_too_small";
    case StatusCode::device_error: return "device_error";
    case StatusCode::io_error: return "io_error";
  }
  return "unknown";
}

const char* tensor_name(TensorId id) {
  switch (id) {
    case TensorId::q_nope: return "q_nope";
    case TensorId::q_nope_out: return "q_nope_out";
    case TensorId::attn_latent: return "attn_latent";
    case TensorId::attn_bmm_out: return "attn_bmm_out";
    case TensorId::A: return "A";
    case TensorId::B: return "B";
  }
  return "?";
}

const char* side_name(Side s) { return s == Side::q ? "q" : "v"; }

// The member of a per-tensor struct (Layout, ProblemTensors: one member
// per TensorId, same names) that belongs to tensor `id`; const follows `s`.
namespace {
template <typename PerTensor>
auto& member_of(PerTensor& s, TensorId id) {
  switch (id) {
    case TensorId::q_nope: return s.q_nope;
    case TensorId::q_nope_out: return s.q_nope_out;
    case TensorId::attn_latent: return s.attn_latent;
    case TensorId::attn_bmm_out: return s.attn_bmm_out;
    case TensorId::A: return s.A;
    case TensorId::B: return s.B;
  }
  return s.q_nope;
}
}  // namespace

const Strides3& Layout::of(TensorId id) const { return member_of(*this, id); }
Strides3& Layout::of(TensorId id) { return member_of(*this, id); }

Shape3 tensor_shape(const Dims& d, TensorId id) {
  switch (id) {
    case TensorId::q_nope: return {d.S, d.H, d.D_qk};
    case TensorId::q_nope_out: return {d.S, d.H, d.R_kv};
    case TensorId::attn_latent: return {d.S, d.H, d.R_kv};
    case TensorId::attn_bmm_out: return {d.S, d.H, d.D_v};
    case TensorId::A: return {d.L, d.r_max, d.R_kv};
    case TensorId::B: return {d.L, d.H * d.F(), d.r_max};
  }
  return {0, 0, 0};
}

Layout Layout::contiguous(const Dims& d) {
  Layout l;
  for (TensorId id : kAllTensors) {
    Shape3 s = tensor_shape(d, id);
    l.of(id) = Strides3{s[1] * s[2], s[2], 1};
  }
  return l;
}

int64_t storage_elems(const Shape3& shape, const Strides3& st) {
  for (int i = 0; i < 3; ++i)
    if (shape[i] <= 0) return 0;
  return 1 + (shape[0] - 1) * st.s0 + (shape[1] - 1) * st.s1 + (shape[2] - 1) * st.s2;
}

std::string Problem::summary() const {
  const Dims& d = shape.dims;
  std::ostringstream o;
  o << "S=" << d.S << " H=" << d.H << " D_qk=" << d.D_qk << " D_v=" << d.D_v << " R_kv=" << d.R_kv << " L=" << d.L
    << " r_max=" << d.r_max << " dtype=" << dtype_name(shape.dtype) << " segments=" << num_segments << "/"
    << shape.segment_capacity << " perm=" << (shape.has_permutation ? 1 : 0) << " ranks=[";
  for (size_t i = 0; i < lora_ranks.size(); ++i) o << (i ? "," : "") << lora_ranks[i];
  o << "]";
  return o.str();
}

namespace {

std::string fmt_strides(const Strides3& s) {
  std::ostringstream o;
  o << "(" << s.s0 << "," << s.s1 << "," << s.s2 << ")";
  return o.str();
}

// Outputs must not alias themselves: with dims sorted by stride, each stride
// must be at least the span of everything inside it.
bool non_overlapping(const Shape3& shape, const Strides3& st) {
  std::array<std::pair<int64_t, int64_t>, 3> dims{{{st.s0, shape[0]}, {st.s1, shape[1]}, {st.s2, shape[2]}}};
  std::sort(dims.begin(), dims.end());
  int64_t span = 1;  // elements covered by the inner dims so far
  for (auto& [stride, extent] : dims) {
    if (extent <= 1) continue;
    if (stride < span) return false;
    span = stride * (extent - 1) + span;
  }
  return true;
}

}  // namespace

Status validate_shape(const ProblemShape& s) {
  const Dims& d = s.dims;
  struct NamedDim { const char* name; int64_t v; int64_t min; };
  const NamedDim dims[] = {{"S", d.S, 0},       {"H", d.H, 1},   {"D_qk", d.D_qk, 1}, {"D_v", d.D_v, 1},
                           {"R_kv", d.R_kv, 1}, {"L", d.L, 1},   {"r_max", d.r_max, 1}};
  for (const auto& nd : dims) {
    if (nd.v < nd.min)
      return Status::Invalid(std::string("dims.") + nd.name + " = " + std::to_string(nd.v) + " must be >= " +
                             std::to_string(nd.min));
    if (nd.v > (int64_t{1} << 30))
      return Status::Invalid(std::string("dims.") + nd.name + " = " + std::to_string(nd.v) + " is implausibly large");
  }
  if (static_cast<int>(s.dtype) < 0 || static_cast<int>(s.dtype) > 2)
    return Status::Invalid("dtype = " + std::to_string(static_cast<int>(s.dtype)) + " is not f32, f16 or bf16");
  for (TensorId id : kAllTensors) {
    const Strides3& st = s.layout.of(id);
    Shape3 sh = tensor_shape(d, id);
    if (st.s0 < 0 || st.s1 < 0 || st.s2 < 0)
      return Status::Invalid(std::string("layout.") + tensor_name(id) + " strides " + fmt_strides(st) +
                             " must be non-negative");
    int64_t n = storage_elems(sh, st);
    if (n > (int64_t{1} << 40))
      return Status::Invalid(std::string("layout.") + tensor_name(id) + " spans " + std::to_string(n) +
                             " elements: too large");
    bool is_output = id == TensorId::q_nope_out || id == TensorId::attn_bmm_out;
    if (is_output && !non_overlapping(sh, st))
      return Status::Invalid(std::string("layout.") + tensor_name(id) + " strides " + fmt_strides(st) +
                             " make distinct output elements alias each other");
  }
  if (s.segment_capacity < 0)
    return Status::Invalid("segment_capacity = " + std::to_string(s.segment_capacity) + " must be >= 0");
  if (s.segment_capacity > (int64_t{1} << 30))
    return Status::Invalid("segment_capacity = " + std::to_string(s.segment_capacity) + " is implausibly large");
  if (s.max_segment_len < 0 || s.max_segment_len > d.S)
    return Status::Invalid("max_segment_len = " + std::to_string(s.max_segment_len) + " must be in [0, S=" +
                           std::to_string(d.S) + "]");
  return Status::Ok();
}

Status validate_index_data(const Problem& p) {
  const ProblemShape& s = p.shape;
  const Dims& d = s.dims;
  auto sz = [](const char* name, size_t got, int64_t want) -> Status {
    if (static_cast<int64_t>(got) != want)
      return Status::Invalid(std::string(name) + " has " + std::to_string(got) + " entries, expected " +
                             std::to_string(want));
    return Status::Ok();
  };
  MLALORA_RETURN_IF_ERROR(sz("lora_ranks", p.lora_ranks.size(), d.L));
  MLALORA_RETURN_IF_ERROR(sz("scalings", p.scalings.size(), d.L));
  MLALORA_RETURN_IF_ERROR(sz("weight_indices", p.weight_indices.size(), s.segment_capacity));
  MLALORA_RETURN_IF_ERROR(sz("seg_indptr", p.seg_indptr.size(), s.segment_capacity + 1));
  MLALORA_RETURN_IF_ERROR(sz("permutation", p.permutation.size(), s.has_permutation ? d.S : 0));
  if (p.num_segments < 0 || p.num_segments > s.segment_capacity)
    return Status::Invalid("num_segments = " + std::to_string(p.num_segments) + " must be in [0, segment_capacity=" +
                           std::to_string(s.segment_capacity) + "]");
  for (int64_t l = 0; l < d.L; ++l) {
    if (p.lora_ranks[l] < 0 || p.lora_ranks[l] > d.r_max)
      return Status::Invalid("lora_ranks[" + std::to_string(l) + "] = " + std::to_string(p.lora_ranks[l]) +
                             " must be in [0, r_max=" + std::to_string(d.r_max) + "]");
    if (!std::isfinite(p.scalings[l]))
      return Status::Invalid("scalings[" + std::to_string(l) + "] is not finite");
  }
  if (p.seg_indptr[0] != 0)
    return Status::Invalid("seg_indptr[0] = " + std::to_string(p.seg_indptr[0]) + " must be 0");
  for (int64_t g = 0; g < p.num_segments; ++g) {
    int64_t b = p.seg_indptr[g], e = p.seg_indptr[g + 1];
    if (e < b)
      return Status::Invalid("seg_indptr[" + std::to_string(g + 1) + "] = " + std::to_string(e) + " < seg_indptr[" +
                             std::to_string(g) + "] = " + std::to_string(b) + ": must be non-decreasing");
    if (e > d.S)
      return Status::Invalid("seg_indptr[" + std::to_string(g + 1) + "] = " + std::to_string(e) + " exceeds S = " +
                             std::to_string(d.S));
    if (e - b > s.max_segment_len)
      return Status::Invalid("segment " + std::to_string(g) + " has length " + std::to_string(e - b) +
                             " > max_segment_len = " + std::to_string(s.max_segment_len));
    if (p.weight_indices[g] < 0 || p.weight_indices[g] >= d.L)
      return Status::Invalid("weight_indices[" + std::to_string(g) + "] = " + std::to_string(p.weight_indices[g]) +
                             " must be in [0, L=" + std::to_string(d.L) + ")");
  }
  if (s.has_permutation) {
    std::vector<char> seen(static_cast<size_t>(d.S), 0);
    for (int64_t i = 0; i < p.covered_rows(); ++i) {
      int32_t t = p.permutation[i];
      if (t < 0 || t >= d.S)
        return Status::Invalid("permutation[" + std::to_string(i) + "] = " + std::to_string(t) + " must be in [0, S=" +
                               std::to_string(d.S) + ")");
      if (seen[t]++)
        return Status::Invalid("permutation[" + std::to_string(i) + "] = " + std::to_string(t) +
                               " repeats an earlier entry: two segments would write one token row");
    }
  }
  return Status::Ok();
}

Status validate(const Problem& p) {
  MLALORA_RETURN_IF_ERROR(validate_shape(p.shape));
  return validate_index_data(p);
}

void for_each_covered_row(const Problem& p,
                          const std::function<void(int64_t, int64_t, int64_t, int32_t)>& f) {
  for (int64_t g = 0; g < p.num_segments; ++g) {
    int32_t l = p.weight_indices[g];
    for (int64_t i = p.seg_indptr[g]; i < p.seg_indptr[g + 1]; ++i) f(g, i, p.physical_row(i), l);
  }
}

std::vector<int32_t> slot_of_physical_row(const Problem& p) {
  std::vector<int32_t> slot(static_cast<size_t>(p.dims().S), -1);
  for_each_covered_row(p, [&](int64_t, int64_t, int64_t t, int32_t l) { slot[t] = l; });
  return slot;
}

// --- host tensors -----------------------------------------------------------

std::vector<bool> HostTensor::logical_mask() const {
  std::vector<bool> m(data.size(), false);
  for (int64_t i = 0; i < shape[0]; ++i)
    for (int64_t j = 0; j < shape[1]; ++j)
      for (int64_t k = 0; k < shape[2]; ++k) m[static_cast<size_t>(offset(i, j, k))] = true;
  return m;
}

HostTensor& ProblemTensors::of(TensorId id) { return member_of(*this, id); }
const HostTensor& ProblemTensors::of(TensorId id) const { return member_of(*this, id); }

ProblemTensors allocate_tensors(const ProblemShape& s, float fill) {
  ProblemTensors t;
  for (TensorId id : kAllTensors) {
    HostTensor& h = t.of(id);
    h.shape = tensor_shape(s.dims, id);
    h.strides = s.layout.of(id);
    h.data.assign(static_cast<size_t>(storage_elems(h.shape, h.strides)), fill);
  }
  return t;
}

}  // namespace mlalora
