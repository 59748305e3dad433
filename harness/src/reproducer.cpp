#include "mlalora/harness/reproducer.hpp"

#include <cmath>
#include <new>

#include "mlalora/dtype.hpp"
#include "mlalora/harness/hdf5_file.hpp"

#ifndef MLALORA_VERSION
#define MLALORA_VERSION "unknown"
#endif
#include "mlalora/build_info.hpp"

namespace mlalora::harness {

namespace {

constexpr const char* kStrideRows = "q_nope,q_nope_out,attn_latent,attn_bmm_out,A,B";
constexpr int64_t kMaxStorage = int64_t{1} << 40;  // same bound as validate_shape

const char* role_of(TensorId id) {
  switch (id) {
    case TensorId::q_nope:
    case TensorId::attn_latent: return "input";
    case TensorId::q_nope_out:
    case TensorId::attn_bmm_out: return "output_base";
    case TensorId::A:
    case TensorId::B: return "weight";
  }
  return "?";
}

bool usable_name(const std::string& n) {
  return !n.empty() && n.find('/') == std::string::npos && n.find('\0') == std::string::npos && n != "." &&
         n != "..";
}

// storage_elems without overflow: -1 if a stride is out of range or the span
// exceeds kMaxStorage.
int64_t safe_storage_elems(const Shape3& shape, const Strides3& st) {
  for (int i = 0; i < 3; ++i)
    if (st[i] < 0 || st[i] > kMaxStorage) return -1;
  for (int i = 0; i < 3; ++i)
    if (shape[i] <= 0) return 0;
  __int128 span = 1;
  for (int i = 0; i < 3; ++i) span += static_cast<__int128>(shape[i] - 1) * st[i];
  if (span > kMaxStorage) return -1;
  return static_cast<int64_t>(span);
}

std::string fmt3(int64_t a, int64_t b, int64_t c) {
  return "(" + std::to_string(a) + "," + std::to_string(b) + "," + std::to_string(c) + ")";
}

// Every logical element must be NaN or exactly representable in dtype.
Status check_representable(const HostTensor& t, DType dtype, const std::string& where) {
  for (int64_t i = 0; i < t.shape[0]; ++i)
    for (int64_t j = 0; j < t.shape[1]; ++j)
      for (int64_t k = 0; k < t.shape[2]; ++k) {
        float x = t.at(i, j, k);
        if (std::isnan(x)) continue;
        if (round_to(dtype, x) != x)
          return Status::Invalid(where + " element " + fmt3(i, j, k) + " = " + std::to_string(x) +
                                 " is not representable in " + dtype_name(dtype));
      }
  return Status::Ok();
}

}  // namespace

Status check_reproducer(const Reproducer& r) {
  const Problem& p = r.problem;
  for (TensorId id : kAllTensors) {
    const Strides3& st = p.shape.layout.of(id);
    if (safe_storage_elems(tensor_shape(p.shape.dims, id), st) < 0)
      return Status::Invalid(std::string("reproducer: layout.") + tensor_name(id) + " strides " +
                             fmt3(st.s0, st.s1, st.s2) + " are out of range");
  }
  Status v = validate(p);
  if (!v.ok()) return Status{v.code, "reproducer: invalid problem: " + v.message};
  for (TensorId id : kAllTensors) {
    const HostTensor& t = r.tensors.of(id);
    Shape3 want = tensor_shape(p.shape.dims, id);
    const Strides3& ws = p.shape.layout.of(id);
    if (t.shape != want)
      return Status::Invalid(std::string("reproducer: tensor ") + tensor_name(id) + " has shape " +
                             fmt3(t.shape[0], t.shape[1], t.shape[2]) + ", the problem says " +
                             fmt3(want[0], want[1], want[2]));
    if (t.strides.s0 != ws.s0 || t.strides.s1 != ws.s1 || t.strides.s2 != ws.s2)
      return Status::Invalid(std::string("reproducer: tensor ") + tensor_name(id) + " has strides " +
                             fmt3(t.strides.s0, t.strides.s1, t.strides.s2) + ", the problem's layout says " +
                             fmt3(ws.s0, ws.s1, ws.s2));
    int64_t n = storage_elems(want, ws);
    if (static_cast<int64_t>(t.data.size()) != n)
      return Status::Invalid(std::string("reproducer: tensor ") + tensor_name(id) + " holds " +
                             std::to_string(t.data.size()) + " elements, its storage needs " + std::to_string(n));
  }
  for (const auto& [name, a] : r.extras) {
    if (!usable_name(name)) return Status::Invalid("reproducer: bad extra array name '" + name + "'");
    int64_t n = h5_shape_elements(a.shape);
    if (a.shape.empty() || n < 0 || n != static_cast<int64_t>(a.data.size()))
      return Status::Invalid("reproducer: extra array '" + name + "' has shape " + h5_shape_string(a.shape) + " but " +
                             std::to_string(a.data.size()) + " elements");
  }
  for (const auto& [key, value] : r.attributes) {
    if (key.empty() || key.find('\0') != std::string::npos)
      return Status::Invalid("reproducer: bad attribute name '" + key + "'");
    if (value.find('\0') != std::string::npos)
      return Status::Invalid("reproducer: attribute '" + key + "' contains a NUL character");
  }
  return Status::Ok();
}

Status write_reproducer_contents(H5Writer& w, const Reproducer& r) {
  const Problem& p = r.problem;
  const ProblemShape& s = p.shape;
  const Dims& d = s.dims;
  MLALORA_RETURN_IF_ERROR(w.write_attr_int("/", "mlalora_reproducer_version", kReproducerVersion));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "mlalora_version", MLALORA_VERSION));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "mlalora_git_commit", MLALORA_GIT_COMMIT));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string("/", "summary", p.summary()));

  const std::string g = "/problem";
  MLALORA_RETURN_IF_ERROR(w.create_group(g));
  const std::pair<const char*, int64_t> ints[] = {
      {"S", d.S},
      {"H", d.H},
      {"D_qk", d.D_qk},
      {"D_v", d.D_v},
      {"R_kv", d.R_kv},
      {"L", d.L},
      {"r_max", d.r_max},
      {"segment_capacity", s.segment_capacity},
      {"max_segment_len", s.max_segment_len},
      {"num_segments", p.num_segments},
      {"has_permutation", s.has_permutation ? 1 : 0},
  };
  for (const auto& [name, v] : ints) MLALORA_RETURN_IF_ERROR(w.write_attr_int(g, name, v));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string(g, "dtype", dtype_name(s.dtype)));

  std::vector<int64_t> strides;
  for (TensorId id : kAllTensors) {
    const Strides3& st = s.layout.of(id);
    strides.insert(strides.end(), {st.s0, st.s1, st.s2});
  }
  MLALORA_RETURN_IF_ERROR(w.write_array<int64_t>(g + "/strides", strides.data(), {6, 3}));
  MLALORA_RETURN_IF_ERROR(w.write_attr_string(g + "/strides", "rows", kStrideRows));
  MLALORA_RETURN_IF_ERROR(w.write_vector<int32_t>(g + "/lora_ranks", p.lora_ranks));
  MLALORA_RETURN_IF_ERROR(w.write_vector<float>(g + "/scalings", p.scalings));
  MLALORA_RETURN_IF_ERROR(w.write_vector<int32_t>(g + "/seg_indptr", p.seg_indptr));
  MLALORA_RETURN_IF_ERROR(w.write_vector<int32_t>(g + "/weight_indices", p.weight_indices));
  MLALORA_RETURN_IF_ERROR(w.write_vector<int32_t>(g + "/permutation", p.permutation));

  MLALORA_RETURN_IF_ERROR(w.create_group("/tensors"));
  for (TensorId id : kAllTensors) {
    std::string tp = std::string("/tensors/") + tensor_name(id);
    MLALORA_RETURN_IF_ERROR(w.write_vector<float>(tp, r.tensors.of(id).data));
    MLALORA_RETURN_IF_ERROR(w.write_attr_string(tp, "role", role_of(id)));
    // For readers: the logical shape and strides next to the storage buffer.
    const HostTensor& t = r.tensors.of(id);
    MLALORA_RETURN_IF_ERROR(w.write_attr_string(tp, "logical_shape", fmt3(t.shape[0], t.shape[1], t.shape[2])));
    MLALORA_RETURN_IF_ERROR(w.write_attr_string(tp, "strides", fmt3(t.strides.s0, t.strides.s1, t.strides.s2)));
  }
  MLALORA_RETURN_IF_ERROR(w.create_group("/extras"));
  for (const auto& [name, a] : r.extras)
    MLALORA_RETURN_IF_ERROR(w.write_array<float>("/extras/" + name, a.data.data(), a.shape));
  MLALORA_RETURN_IF_ERROR(w.create_group("/attributes"));
  for (const auto& [key, value] : r.attributes) MLALORA_RETURN_IF_ERROR(w.write_attr_string("/attributes", key, value));
  return Status::Ok();
}

Status save_reproducer(const std::string& path, const Reproducer& r) {
  Status chk = check_reproducer(r);
  if (!chk.ok()) return Status{chk.code, "save_reproducer " + path + ": " + chk.message};
  H5Writer w;
  MLALORA_RETURN_IF_ERROR(w.open(path));
  MLALORA_RETURN_IF_ERROR(write_reproducer_contents(w, r));
  return w.commit();
}

namespace {

Status load_impl(const std::string& path, Reproducer* out) {
  H5Reader rd;
  MLALORA_RETURN_IF_ERROR(rd.open(path));
  auto bad = [&](const std::string& what) { return Status::Invalid("reproducer " + path + ": " + what); };

  int64_t version = 0;
  MLALORA_RETURN_IF_ERROR(rd.read_attr_int("/", "mlalora_reproducer_version", &version));
  if (version != kReproducerVersion)
    return bad("mlalora_reproducer_version = " + std::to_string(version) + ", this build reads version " +
               std::to_string(kReproducerVersion));

  Reproducer r;
  Problem& p = r.problem;
  ProblemShape& s = p.shape;
  Dims& d = s.dims;
  const std::string g = "/problem";
  int64_t has_perm = 0;
  const std::pair<const char*, int64_t*> ints[] = {
      {"S", &d.S},
      {"H", &d.H},
      {"D_qk", &d.D_qk},
      {"D_v", &d.D_v},
      {"R_kv", &d.R_kv},
      {"L", &d.L},
      {"r_max", &d.r_max},
      {"segment_capacity", &s.segment_capacity},
      {"max_segment_len", &s.max_segment_len},
      {"num_segments", &p.num_segments},
      {"has_permutation", &has_perm},
  };
  for (const auto& [name, dst] : ints) MLALORA_RETURN_IF_ERROR(rd.read_attr_int(g, name, dst));
  if (has_perm != 0 && has_perm != 1) return bad("/problem has_permutation = " + std::to_string(has_perm) + ", expected 0 or 1");
  s.has_permutation = has_perm == 1;
  std::string dtype;
  MLALORA_RETURN_IF_ERROR(rd.read_attr_string(g, "dtype", &dtype));
  auto dt = parse_dtype(dtype);
  if (!dt) return bad("/problem dtype = '" + dtype + "' is not f32, f16 or bf16");
  s.dtype = *dt;

  std::vector<int64_t> strides;
  MLALORA_RETURN_IF_ERROR(rd.read_array_shape<int64_t>(g + "/strides", &strides, {6, 3}));
  int row = 0;
  for (TensorId id : kAllTensors) {
    s.layout.of(id) = Strides3{strides[row * 3], strides[row * 3 + 1], strides[row * 3 + 2]};
    ++row;
  }
  // Dims and strides must be sane before any size is derived from them.
  {
    const std::pair<const char*, int64_t> dims[] = {{"S", d.S},       {"H", d.H}, {"D_qk", d.D_qk}, {"D_v", d.D_v},
                                                    {"R_kv", d.R_kv}, {"L", d.L}, {"r_max", d.r_max}};
    for (const auto& [name, v] : dims)
      if (v < 0 || v > (int64_t{1} << 30)) return bad(std::string("/problem ") + name + " = " + std::to_string(v) + " is out of range");
    for (TensorId id : kAllTensors) {
      const Strides3& st = s.layout.of(id);
      if (safe_storage_elems(tensor_shape(d, id), st) < 0)
        return bad(std::string("/problem/strides row ") + tensor_name(id) + " = " + fmt3(st.s0, st.s1, st.s2) +
                   " is negative or spans more than 2^40 elements");
    }
  }
  Status vs = validate_shape(s);
  if (!vs.ok()) return bad("invalid problem shape: " + vs.message);

  MLALORA_RETURN_IF_ERROR(rd.read_vector<int32_t>(g + "/lora_ranks", &p.lora_ranks, d.L));
  MLALORA_RETURN_IF_ERROR(rd.read_vector<float>(g + "/scalings", &p.scalings, d.L));
  MLALORA_RETURN_IF_ERROR(rd.read_vector<int32_t>(g + "/seg_indptr", &p.seg_indptr, s.segment_capacity + 1));
  MLALORA_RETURN_IF_ERROR(rd.read_vector<int32_t>(g + "/weight_indices", &p.weight_indices, s.segment_capacity));
  MLALORA_RETURN_IF_ERROR(rd.read_vector<int32_t>(g + "/permutation", &p.permutation, s.has_permutation ? d.S : 0));
  Status vp = validate(p);
  if (!vp.ok()) return bad("invalid problem: " + vp.message);

  for (TensorId id : kAllTensors) {
    HostTensor& t = r.tensors.of(id);
    t.shape = tensor_shape(d, id);
    t.strides = s.layout.of(id);
    int64_t n = storage_elems(t.shape, t.strides);
    std::string tp = std::string("/tensors/") + tensor_name(id);
    MLALORA_RETURN_IF_ERROR(rd.read_vector<float>(tp, &t.data, n));
    Status rep = check_representable(t, s.dtype, tp);
    if (!rep.ok()) return bad(rep.message);
  }

  if (rd.exists("/extras")) {
    std::vector<std::string> names;
    MLALORA_RETURN_IF_ERROR(rd.list_members("/extras", &names));
    for (const std::string& name : names) {
      if (!usable_name(name)) return bad("bad extra array name '" + name + "'");
      FloatArray a;
      MLALORA_RETURN_IF_ERROR(rd.read_array<float>("/extras/" + name, &a.data, &a.shape));
      if (a.shape.empty()) return bad("/extras/" + name + " is a scalar; expected an array");
      r.extras.emplace(name, std::move(a));
    }
  }
  if (rd.exists("/attributes")) {
    std::vector<std::string> keys;
    MLALORA_RETURN_IF_ERROR(rd.list_attrs("/attributes", &keys));
    for (const std::string& k : keys) {
      std::string v;
      MLALORA_RETURN_IF_ERROR(rd.read_attr_string("/attributes", k, &v));
      r.attributes.emplace(k, std::move(v));
    }
  }
  *out = std::move(r);
  return Status::Ok();
}

}  // namespace

Status load_reproducer(const std::string& path, Reproducer* out) {
  try {
    return load_impl(path, out);
  } catch (const std::bad_alloc&) {
    return Status::IoError("reproducer " + path + ": out of memory while loading (corrupt sizes?)");
  } catch (const std::exception& e) {
    return Status::IoError("reproducer " + path + ": " + e.what());
  }
}

}  // namespace mlalora::harness
