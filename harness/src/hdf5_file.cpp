#include "mlalora/harness/hdf5_file.hpp"

#include "mlalora/harness/fork_isolation.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <vector>
#include <sstream>
#include <type_traits>

namespace mlalora::harness {

static_assert(std::is_same<hid_t, int64_t>::value, "HDF5 >= 1.10 is required (hid_t must be int64_t)");

namespace {

void silence_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// RAII for an hid_t with its close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer c) : id_(id), close_(c) {}
  ~Handle() { reset(); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t get() const { return id_; }
  hid_t release() {
    hid_t id = id_;
    id_ = -1;
    return id;
  }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

Handle plist(hid_t id) { return Handle(id, H5Pclose); }
Handle space(hid_t id) { return Handle(id, H5Sclose); }
Handle dtype(hid_t id) { return Handle(id, H5Tclose); }
Handle dset(hid_t id) { return Handle(id, H5Dclose); }
Handle attr(hid_t id) { return Handle(id, H5Aclose); }
Handle group(hid_t id) { return Handle(id, H5Gclose); }
Handle object(hid_t id) { return Handle(id, H5Oclose); }

herr_t collect_error(unsigned, const H5E_error2_t* e, void* data) {
  auto* v = static_cast<std::vector<std::string>*>(data);
  if (e && e->desc && *e->desc) v->push_back(e->desc);
  return 0;
}

// The innermost descriptions of the current HDF5 error stack, then clear it.
std::string hdf5_detail() {
  std::vector<std::string> v;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &v);
  H5Eclear2(H5E_DEFAULT);
  if (v.empty()) return "";
  std::string s = " [HDF5: " + v.back();
  if (v.size() >= 2 && v[v.size() - 2] != v.back()) s += "; " + v[v.size() - 2];
  return s + "]";
}

bool valid_path(const std::string& p) { return !p.empty() && p[0] == '/'; }

std::string parent_of(const std::string& p) {
  size_t k = p.find_last_of('/');
  if (k == std::string::npos || k == 0) return "/";
  return p.substr(0, k);
}

std::string join_path(const std::string& g, const std::string& name) {
  return g == "/" ? "/" + name : g + "/" + name;
}

std::vector<std::string> split_path(const std::string& p) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : p) {
    if (c == '/') {
      if (!cur.empty()) parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) parts.push_back(cur);
  return parts;
}

// Kind of the object at an absolute path, without HDF5 errors for missing parents.
H5ObjectKind object_kind(hid_t file, const std::string& path) {
  if (file < 0 || !valid_path(path)) return H5ObjectKind::missing;
  std::string prefix;
  for (const std::string& part : split_path(path)) {
    prefix += "/" + part;
    htri_t ex = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    if (ex < 0) return H5ObjectKind::unreadable;  // error stack kept for the caller's message
    if (ex == 0) {
      H5Eclear2(H5E_DEFAULT);
      return H5ObjectKind::missing;
    }
  }
  Handle o = object(H5Oopen(file, path.c_str(), H5P_DEFAULT));
  if (!o.valid()) return H5ObjectKind::unreadable;
  switch (H5Iget_type(o.get())) {
    case H5I_GROUP: return H5ObjectKind::group;
    case H5I_DATASET: return H5ObjectKind::dataset;
    default: return H5ObjectKind::other;
  }
}

// A Status for kinds that make an object unusable (missing / unreadable),
// else Ok. `what` names what was expected ("dataset", "group", "object").
Status kind_status(H5ObjectKind k, const std::string& prefix, const char* what) {
  if (k == H5ObjectKind::missing) return Status::Invalid(prefix + std::string(what) + " not found");
  if (k == H5ObjectKind::unreadable)
    return Status::IoError(prefix + "cannot decode the " + std::string(what) + " (corrupt file)" + hdf5_detail());
  return Status::Ok();
}

std::string describe_type(hid_t t) {
  H5T_class_t c = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  std::string bits = std::to_string(size * 8);
  switch (c) {
    case H5T_INTEGER: return (H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int") + bits;
    case H5T_FLOAT: return "float" + bits;
    case H5T_STRING: return H5Tis_variable_str(t) > 0 ? "variable-length string" : "fixed-length string";
    case H5T_COMPOUND: return "compound";
    case H5T_ARRAY: return "array";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "vlen";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    case H5T_BITFIELD: return "bitfield";
    case H5T_TIME: return "time";
    default: return "unknown type";
  }
}

Handle fixed_string_type(size_t len) {
  Handle t = dtype(H5Tcopy(H5T_C_S1));
  if (!t.valid()) return t;
  H5Tset_size(t.get(), len == 0 ? 1 : len);
  H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

Handle vlen_string_type() {
  Handle t = dtype(H5Tcopy(H5T_C_S1));
  if (!t.valid()) return t;
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

// Turn a fixed-length string buffer into a std::string per its padding.
std::string trim_fixed(const char* p, size_t n, H5T_str_t pad) {
  size_t len = 0;
  while (len < n && p[len] != '\0') ++len;
  std::string s(p, len);
  if (pad == H5T_STR_SPACEPAD)
    while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

void reclaim_vlen(hid_t mem_type, hid_t sp, void* buf) {
#if H5_VERSION_GE(1, 12, 0)
  H5Treclaim(mem_type, sp, H5P_DEFAULT, buf);
#else
  H5Dvlen_reclaim(mem_type, sp, H5P_DEFAULT, buf);
#endif
}

template <typename T>
struct TypeInfo;
template <>
struct TypeInfo<int64_t> {
  static hid_t file() { return H5T_STD_I64LE; }
  static hid_t mem() { return H5T_NATIVE_INT64; }
  static constexpr H5T_class_t cls = H5T_INTEGER;
  static constexpr H5T_sign_t sign = H5T_SGN_2;
  static constexpr const char* name = "int64";
};
template <>
struct TypeInfo<int32_t> {
  static hid_t file() { return H5T_STD_I32LE; }
  static hid_t mem() { return H5T_NATIVE_INT32; }
  static constexpr H5T_class_t cls = H5T_INTEGER;
  static constexpr H5T_sign_t sign = H5T_SGN_2;
  static constexpr const char* name = "int32";
};
template <>
struct TypeInfo<uint8_t> {
  static hid_t file() { return H5T_STD_U8LE; }
  static hid_t mem() { return H5T_NATIVE_UINT8; }
  static constexpr H5T_class_t cls = H5T_INTEGER;
  static constexpr H5T_sign_t sign = H5T_SGN_NONE;
  static constexpr const char* name = "uint8";
};
template <>
struct TypeInfo<double> {
  static hid_t file() { return H5T_IEEE_F64LE; }
  static hid_t mem() { return H5T_NATIVE_DOUBLE; }
  static constexpr H5T_class_t cls = H5T_FLOAT;
  static constexpr H5T_sign_t sign = H5T_SGN_ERROR;  // not checked
  static constexpr const char* name = "float64";
};
template <>
struct TypeInfo<float> {
  static hid_t file() { return H5T_IEEE_F32LE; }
  static hid_t mem() { return H5T_NATIVE_FLOAT; }
  static constexpr H5T_class_t cls = H5T_FLOAT;
  static constexpr H5T_sign_t sign = H5T_SGN_ERROR;
  static constexpr const char* name = "float32";
};

}  // namespace

// --- shapes -------------------------------------------------------------------

int64_t h5_shape_elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t e : shape) {
    if (e < 0) return -1;
    if (e != 0 && n > std::numeric_limits<int64_t>::max() / e) return -1;
    n *= e;
  }
  return n;
}

std::string h5_shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ",";
  return s + ")";
}

// --- table --------------------------------------------------------------------

const H5Table::Column* H5Table::find(const std::string& name) const {
  for (const Column& c : columns)
    if (c.name == name) return &c;
  return nullptr;
}

int64_t H5Table::column_length(const ColumnData& d) {
  return std::visit([](const auto& v) { return static_cast<int64_t>(v.size()); }, d);
}

int64_t H5Table::rows() const {
  if (columns.empty()) return 0;
  int64_t n = column_length(columns[0].data);
  for (const Column& c : columns)
    if (column_length(c.data) != n) return -1;
  return n;
}

// --- writer -------------------------------------------------------------------

H5Writer::H5Writer() { silence_hdf5(); }

H5Writer::~H5Writer() { discard(); }

Status H5Writer::fail(const std::string& obj_path, const std::string& what) const {
  return Status::IoError("HDF5 write " + path_ + ":" + obj_path + ": " + what + hdf5_detail());
}

Status H5Writer::open(const std::string& path) {
  silence_hdf5();
  discard();
  if (path.empty()) return Status::Invalid("H5Writer: empty output path");
  path_ = path;
  tmp_path_ = path + ".tmp." + std::to_string(static_cast<long>(::getpid()));
  Handle fapl = plist(H5Pcreate(H5P_FILE_ACCESS));
  if (!fapl.valid()) return fail("/", "cannot create file access property list");
  // 1.8+ format: checksummed superblock and object headers.
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST);
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  H5Eclear2(H5E_DEFAULT);
  hid_t f = H5Fcreate(tmp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (f < 0) {
    Status st = Status::IoError("cannot create HDF5 file " + tmp_path_ + " (temporary for " + path_ +
                                "): " + std::strerror(errno) + hdf5_detail());
    std::remove(tmp_path_.c_str());
    tmp_path_.clear();
    return st;
  }
  file_ = f;
  return Status::Ok();
}

void H5Writer::discard() {
  if (file_ >= 0) {
    H5Fclose(file_);
    H5Eclear2(H5E_DEFAULT);
    file_ = -1;
  }
  if (!tmp_path_.empty()) {
    std::remove(tmp_path_.c_str());
    tmp_path_.clear();
  }
}

Status H5Writer::commit() {
  if (file_ < 0) return Status::IoError("HDF5 write " + path_ + ": commit() without an open file");
  H5Eclear2(H5E_DEFAULT);
  if (H5Fflush(file_, H5F_SCOPE_GLOBAL) < 0) {
    Status st = fail("/", "flush failed");
    discard();
    return st;
  }
  herr_t rc = H5Fclose(file_);
  file_ = -1;
  if (rc < 0) {
    Status st = fail("/", "close failed");
    discard();
    return st;
  }
  // Make the bytes durable before they become visible under the final name.
  int fd = ::open(tmp_path_.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    Status st = Status::IoError("cannot rename " + tmp_path_ + " to " + path_ + ": " + std::strerror(errno));
    discard();
    return st;
  }
  tmp_path_.clear();
  return Status::Ok();
}

Status H5Writer::ensure_parent(const std::string& path) {
  if (!valid_path(path) || path == "/")
    return Status::Invalid("HDF5 write " + path_ + ": object path '" + path + "' must be absolute and not '/'");
  std::string parent = parent_of(path);
  if (parent == "/") return Status::Ok();
  return create_group(parent);
}

Status H5Writer::create_group(const std::string& group_path) {
  if (file_ < 0) return Status::IoError("HDF5 write " + path_ + ":" + group_path + ": file is not open");
  if (!valid_path(group_path))
    return Status::Invalid("HDF5 write " + path_ + ": group path '" + group_path + "' must be absolute");
  H5ObjectKind k = object_kind(file_, group_path);
  if (k == H5ObjectKind::group) return Status::Ok();
  if (k == H5ObjectKind::unreadable) return fail(group_path, "cannot decode object");
  if (k != H5ObjectKind::missing) return fail(group_path, "exists and is not a group");
  std::string prefix;
  for (const std::string& part : split_path(group_path)) {
    prefix += "/" + part;
    H5ObjectKind pk = object_kind(file_, prefix);
    if (pk == H5ObjectKind::group) continue;
    if (pk == H5ObjectKind::unreadable) return fail(prefix, "cannot decode object");
    if (pk != H5ObjectKind::missing) return fail(prefix, "exists and is not a group");
    Handle g = group(H5Gcreate2(file_, prefix.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (!g.valid()) return fail(prefix, "cannot create group");
  }
  return Status::Ok();
}

namespace {

// Open obj_path, (re)create attribute `name` with the given type, write it.
Status write_scalar_attr(hid_t file, const std::string& fpath, const std::string& obj_path, const std::string& name,
                         hid_t file_type, hid_t mem_type, const void* value) {
  auto err = [&](const std::string& what) {
    return Status::IoError("HDF5 write " + fpath + ":" + obj_path + " attribute '" + name + "': " + what +
                           hdf5_detail());
  };
  if (file < 0) return err("file is not open");
  if (name.empty()) return Status::Invalid("HDF5 write " + fpath + ":" + obj_path + ": empty attribute name");
  H5ObjectKind k = object_kind(file, obj_path);
  if (k == H5ObjectKind::missing) return err("object does not exist");
  if (k == H5ObjectKind::unreadable) return err("cannot decode object");
  Handle o = object(H5Oopen(file, obj_path.c_str(), H5P_DEFAULT));
  if (!o.valid()) return err("cannot open object");
  htri_t ex = H5Aexists(o.get(), name.c_str());
  if (ex > 0 && H5Adelete(o.get(), name.c_str()) < 0) return err("cannot replace existing attribute");
  Handle sp = space(H5Screate(H5S_SCALAR));
  Handle a = attr(H5Acreate2(o.get(), name.c_str(), file_type, sp.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!a.valid()) return err("cannot create attribute");
  if (H5Awrite(a.get(), mem_type, value) < 0) return err("cannot write attribute");
  return Status::Ok();
}

}  // namespace

Status H5Writer::write_attr_string(const std::string& obj_path, const std::string& name, const std::string& value) {
  if (value.find('\0') != std::string::npos)
    return Status::Invalid("HDF5 write " + path_ + ":" + obj_path + " attribute '" + name +
                           "': string contains a NUL character");
  Handle t = fixed_string_type(value.size());
  std::string buf = value.empty() ? std::string(1, '\0') : value;
  return write_scalar_attr(file_, path_, obj_path, name, t.get(), t.get(), buf.data());
}

Status H5Writer::write_attr_int(const std::string& obj_path, const std::string& name, int64_t value) {
  return write_scalar_attr(file_, path_, obj_path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

Status H5Writer::write_attr_double(const std::string& obj_path, const std::string& name, double value) {
  return write_scalar_attr(file_, path_, obj_path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

Status H5Writer::write_dataset_raw(const std::string& path, int64_t file_type, int64_t mem_type, const void* data,
                                   const std::vector<int64_t>& shape) {
  if (file_ < 0) return Status::IoError("HDF5 write " + path_ + ":" + path + ": file is not open");
  MLALORA_RETURN_IF_ERROR(ensure_parent(path));
  if (shape.size() > 32)
    return Status::Invalid("HDF5 write " + path_ + ":" + path + ": rank " + std::to_string(shape.size()) + " > 32");
  int64_t n = h5_shape_elements(shape);
  if (n < 0) return Status::Invalid("HDF5 write " + path_ + ":" + path + ": invalid shape " + h5_shape_string(shape));
  if (n > 0 && data == nullptr)
    return Status::Invalid("HDF5 write " + path_ + ":" + path + ": null data for shape " + h5_shape_string(shape));
  if (object_kind(file_, path) != H5ObjectKind::missing) return fail(path, "an object already exists at this path");
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle sp = space(shape.empty() ? H5Screate(H5S_SCALAR)
                                  : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  if (!sp.valid()) return fail(path, "cannot create dataspace " + h5_shape_string(shape));
  Handle d = dset(H5Dcreate2(file_, path.c_str(), file_type, sp.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!d.valid()) return fail(path, "cannot create dataset");
  if (n > 0 && H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    return fail(path, "cannot write dataset");
  return Status::Ok();
}

template <typename T>
Status H5Writer::write_array(const std::string& path, const T* data, const std::vector<int64_t>& shape) {
  static_assert(H5Supported<T>::value, "unsupported HDF5 element type");
  return write_dataset_raw(path, TypeInfo<T>::file(), TypeInfo<T>::mem(), data, shape);
}

template Status H5Writer::write_array<int64_t>(const std::string&, const int64_t*, const std::vector<int64_t>&);
template Status H5Writer::write_array<int32_t>(const std::string&, const int32_t*, const std::vector<int64_t>&);
template Status H5Writer::write_array<double>(const std::string&, const double*, const std::vector<int64_t>&);
template Status H5Writer::write_array<float>(const std::string&, const float*, const std::vector<int64_t>&);
template Status H5Writer::write_array<uint8_t>(const std::string&, const uint8_t*, const std::vector<int64_t>&);

Status H5Writer::write_strings(const std::string& path, const std::vector<std::string>& v, H5StringKind kind) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i].find('\0') != std::string::npos)
      return Status::Invalid("HDF5 write " + path_ + ":" + path + ": string " + std::to_string(i) +
                             " contains a NUL character");
  std::vector<int64_t> shape{static_cast<int64_t>(v.size())};
  if (kind == H5StringKind::variable) {
    Handle t = vlen_string_type();
    std::vector<const char*> ptrs;
    ptrs.reserve(v.size());
    for (const std::string& s : v) ptrs.push_back(s.c_str());
    return write_dataset_raw(path, t.get(), t.get(), ptrs.empty() ? nullptr : ptrs.data(), shape);
  }
  size_t width = 1;
  for (const std::string& s : v) width = std::max(width, s.size());
  std::vector<char> buf;
  try {
    buf.assign(width * v.size(), '\0');
  } catch (const std::bad_alloc&) {
    return fail(path, "out of memory");
  }
  for (size_t i = 0; i < v.size(); ++i) std::memcpy(buf.data() + i * width, v[i].data(), v[i].size());
  Handle t = fixed_string_type(width);
  return write_dataset_raw(path, t.get(), t.get(), buf.empty() ? nullptr : buf.data(), shape);
}

Status H5Writer::write_table(const std::string& group_path, const H5Table& t) {
  int64_t rows = t.rows();
  if (rows < 0) {
    std::string lens;
    for (const auto& c : t.columns)
      lens += (lens.empty() ? "" : ", ") + c.name + "=" + std::to_string(H5Table::column_length(c.data));
    return Status::Invalid("HDF5 write " + path_ + ":" + group_path + ": table columns differ in length (" + lens +
                           ")");
  }
  std::string names;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    const std::string& n = t.columns[i].name;
    if (n.empty() || n.find_first_of("/,") != std::string::npos || n.find('\0') != std::string::npos)
      return Status::Invalid("HDF5 write " + path_ + ":" + group_path + ": bad column name '" + n +
                             "' (must be non-empty, without '/' or ',')");
    for (size_t j = 0; j < i; ++j)
      if (t.columns[j].name == n)
        return Status::Invalid("HDF5 write " + path_ + ":" + group_path + ": duplicate column '" + n + "'");
    names += (i ? "," : "") + n;
  }
  MLALORA_RETURN_IF_ERROR(create_group(group_path));
  for (const auto& c : t.columns) {
    std::string p = join_path(group_path, c.name);
    if (const auto* vi = std::get_if<std::vector<int64_t>>(&c.data)) {
      MLALORA_RETURN_IF_ERROR(write_vector<int64_t>(p, *vi));
    } else if (const auto* vd = std::get_if<std::vector<double>>(&c.data)) {
      MLALORA_RETURN_IF_ERROR(write_vector<double>(p, *vd));
    } else {
      MLALORA_RETURN_IF_ERROR(write_strings(p, std::get<std::vector<std::string>>(c.data), H5StringKind::variable));
    }
  }
  MLALORA_RETURN_IF_ERROR(write_attr_int(group_path, "mlalora_table", 1));
  MLALORA_RETURN_IF_ERROR(write_attr_int(group_path, "num_rows", rows));
  MLALORA_RETURN_IF_ERROR(write_attr_string(group_path, "columns", names));
  return Status::Ok();
}

// --- reader -------------------------------------------------------------------

struct H5Reader::NumericType {
  H5T_class_t cls;
  size_t size;
  H5T_sign_t sign;  // H5T_SGN_ERROR: not checked
  const char* name;
  hid_t mem;
};

H5Reader::H5Reader() { silence_hdf5(); }

H5Reader::~H5Reader() { close(); }

void H5Reader::close() {
  if (file_ >= 0) {
    H5Fclose(file_);
    H5Eclear2(H5E_DEFAULT);
    file_ = -1;
  }
}

Status H5Reader::fail(StatusCode code, const std::string& obj_path, const std::string& what) const {
  return Status{code, "HDF5 read " + path_ + ":" + obj_path + ": " + what + hdf5_detail()};
}

namespace {

// ---- crash isolation ----------------------------------------------------------
// libhdf5 1.10 can crash (H5T__conv_vlen -> H5HG_read) or loop forever on
// some corrupted files, which no status check can prevent. So before a file is
// read in this process, a forked child reads every object and attribute of
// it; only a file the child got through cleanly is opened here. A crash or a
// hang in the child becomes a clear io_error. Cost: the file is read twice.

herr_t probe_read_attr(hid_t loc, const char* name, const H5A_info_t*, void*) {
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
  hssize_t n = H5Sget_simple_extent_npoints(sp);
  herr_t rc = 0;
  if (n < 0 || n > (hssize_t{1} << 24)) rc = -1;
  else if (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0) {
    std::vector<char*> v(static_cast<size_t>(n) + 1, nullptr);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(t));
    if (H5Aread(a, mt, v.data()) < 0) rc = -1;
    else H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, v.data());
    H5Tclose(mt);
  } else {
    size_t sz = H5Tget_size(t);
    std::vector<unsigned char> buf(static_cast<size_t>(n) * (sz ? sz : 1) + 16);
    if (sz == 0 || H5Aread(a, t, buf.data()) < 0) rc = -1;
  }
  H5Sclose(sp), H5Tclose(t), H5Aclose(a);
  return rc;
}

herr_t probe_visit(hid_t root, const char* name, const H5O_info_t* info, void*) {
  hid_t o = H5Oopen(root, name, H5P_DEFAULT);
  if (o < 0) return -1;
  herr_t rc = H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr, probe_read_attr, nullptr) < 0 ? -1 : 0;
  if (rc == 0 && info->type == H5O_TYPE_DATASET) {
    hid_t t = H5Dget_type(o), sp = H5Dget_space(o);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    if (n < 0 || n > (hssize_t{1} << 31)) rc = -1;
    else if (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0) {
      std::vector<char*> v(static_cast<size_t>(n) + 1, nullptr);
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      H5Tset_cset(mt, H5Tget_cset(t));
      if (H5Dread(o, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0) rc = -1;
      else H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, v.data());
      H5Tclose(mt);
    } else {
      size_t sz = H5Tget_size(t);
      std::vector<unsigned char> buf;
      try {
        buf.resize(static_cast<size_t>(n) * (sz ? sz : 1) + 16);
      } catch (...) {
        rc = -1;
      }
      if (rc == 0 && (sz == 0 || H5Dread(o, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)) rc = -1;
    }
    H5Sclose(sp), H5Tclose(t);
  }
  H5Oclose(o);
  return rc;
}

// 0: the child read everything; 1: a read failed cleanly (the caller's own
// checks will say what); -1: the child crashed or hung (message in *why).
int probe_in_child(const std::string& path, int timeout_s, std::string* why) {
  std::fflush(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return 0;  // cannot isolate: read in-process as before
  if (pid == 0) {
    detail::die_with_parent(parent);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) _exit(1);
    int rc = H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, probe_visit, nullptr, H5O_INFO_BASIC) < 0 ? 1 : 0;
    _exit(rc);
  }
  int status = 0;
  for (int waited_ms = 0;; waited_ms += 10) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return 0;
    if (waited_ms >= timeout_s * 1000) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      *why = "reading it did not finish within " + std::to_string(timeout_s) + " s (corrupt metadata?)";
      return -1;
    }
    usleep(10000);
  }
  if (WIFSIGNALED(status)) {
    *why = std::string("libhdf5 crashed reading it (signal ") + std::to_string(WTERMSIG(status)) + ")";
    return -1;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

}  // namespace

Status H5Reader::open(const std::string& path) {
  silence_hdf5();
  close();
  path_ = path;
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0)
    return Status::IoError("cannot open HDF5 file " + path + ": " +
                           (errno == ENOENT ? std::string("file not found") : std::string(std::strerror(errno))));
  if (!S_ISREG(sb.st_mode)) return Status::IoError("cannot open HDF5 file " + path + ": not a regular file");
  if (::access(path.c_str(), R_OK) != 0)
    return Status::IoError("cannot open HDF5 file " + path + ": " + std::strerror(errno));
  H5Eclear2(H5E_DEFAULT);
  htri_t is = H5Fis_hdf5(path.c_str());
  if (is <= 0)
    return Status::IoError("cannot open HDF5 file " + path + ": not an HDF5 file (no valid HDF5 signature, size " +
                           std::to_string(static_cast<long long>(sb.st_size)) + " bytes)" + hdf5_detail());
  std::string why;
  // Valid files read in milliseconds; allow 10 s plus 1 s per 50 MB.
  const int probe_timeout_s = 10 + static_cast<int>(sb.st_size / (50LL << 20));
  if (probe_in_child(path, probe_timeout_s, &why) < 0)
    return Status::IoError("cannot read HDF5 file " + path + ": corrupt file: " + why);
  Handle fapl = plist(H5Pcreate(H5P_FILE_ACCESS));
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (f < 0)
    return Status::IoError("cannot open HDF5 file " + path + " (" + std::to_string(static_cast<long long>(sb.st_size)) +
                           " bytes): truncated or corrupt" + hdf5_detail());
  file_ = f;
  return Status::Ok();
}

H5ObjectKind H5Reader::kind(const std::string& obj_path) const { return object_kind(file_, obj_path); }

bool H5Reader::has_attr(const std::string& obj_path, const std::string& name) const {
  H5ObjectKind k = kind(obj_path);
  if (k == H5ObjectKind::missing || k == H5ObjectKind::unreadable) return false;
  htri_t r = H5Aexists_by_name(file_, obj_path.c_str(), name.c_str(), H5P_DEFAULT);
  H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

Status H5Reader::list_members(const std::string& group_path, std::vector<std::string>* names) const {
  names->clear();
  if (file_ < 0) return fail(StatusCode::io_error, group_path, "file is not open");
  H5ObjectKind k = kind(group_path);
  Status ks = kind_status(k, "HDF5 read " + path_ + ":" + group_path + ": ", "group");
  if (!ks.ok()) return ks;
  if (k != H5ObjectKind::group) return fail(StatusCode::invalid_argument, group_path, "is not a group");
  Handle g = group(H5Gopen2(file_, group_path.c_str(), H5P_DEFAULT));
  if (!g.valid()) return fail(StatusCode::io_error, group_path, "cannot open group");
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) return fail(StatusCode::io_error, group_path, "cannot read group info");
  if (info.nlinks > (hsize_t{1} << 24))
    return fail(StatusCode::io_error, group_path, "implausible member count " + std::to_string(info.nlinks));
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t len = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0 || len > (1 << 20)) return fail(StatusCode::io_error, group_path, "cannot read member name");
    std::string buf(static_cast<size_t>(len) + 1, '\0');
    if (H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf[0], buf.size(), H5P_DEFAULT) < 0)
      return fail(StatusCode::io_error, group_path, "cannot read member name");
    buf.resize(static_cast<size_t>(len));
    names->push_back(buf);
  }
  return Status::Ok();
}

namespace {
herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}
}  // namespace

Status H5Reader::list_attrs(const std::string& obj_path, std::vector<std::string>* names) const {
  names->clear();
  if (file_ < 0) return fail(StatusCode::io_error, obj_path, "file is not open");
  Status ks = kind_status(kind(obj_path), "HDF5 read " + path_ + ":" + obj_path + ": ", "object");
  if (!ks.ok()) return ks;
  Handle o = object(H5Oopen(file_, obj_path.c_str(), H5P_DEFAULT));
  if (!o.valid()) return fail(StatusCode::io_error, obj_path, "cannot open object");
  hsize_t idx = 0;
  if (H5Aiterate2(o.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, names) < 0)
    return fail(StatusCode::io_error, obj_path, "cannot list attributes");
  return Status::Ok();
}

namespace {

// Open attribute `name` of obj_path, check it holds exactly one element of the
// given class. On failure returns a Status; on success *a and *t are set.
Status open_scalar_attr(hid_t file, const std::string& fpath, const std::string& obj_path, const std::string& name,
                        H5T_class_t want, const char* want_name, Handle* a, Handle* t) {
  auto err = [&](StatusCode c, const std::string& what) {
    return Status{c, "HDF5 read " + fpath + ":" + obj_path + " attribute '" + name + "': " + what + hdf5_detail()};
  };
  if (file < 0) return err(StatusCode::io_error, "file is not open");
  Status ks = kind_status(object_kind(file, obj_path),
                          "HDF5 read " + fpath + ":" + obj_path + " attribute '" + name + "': ", "object");
  if (!ks.ok()) return ks;
  htri_t ex = H5Aexists_by_name(file, obj_path.c_str(), name.c_str(), H5P_DEFAULT);
  if (ex < 0) return err(StatusCode::io_error, "cannot look up attribute");
  if (ex == 0) return err(StatusCode::invalid_argument, "missing (expected " + std::string(want_name) + ")");
  *a = attr(H5Aopen_by_name(file, obj_path.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  if (!a->valid()) return err(StatusCode::io_error, "cannot open attribute");
  *t = dtype(H5Aget_type(a->get()));
  if (!t->valid()) return err(StatusCode::io_error, "cannot read attribute type");
  Handle sp = space(H5Aget_space(a->get()));
  hssize_t np = sp.valid() ? H5Sget_simple_extent_npoints(sp.get()) : -1;
  if (np != 1)
    return err(StatusCode::invalid_argument,
               "expected a single " + std::string(want_name) + " value, found " + std::to_string(np) + " elements");
  if (H5Tget_class(t->get()) != want)
    return err(StatusCode::invalid_argument,
               "expected " + std::string(want_name) + ", found " + describe_type(t->get()));
  return Status::Ok();
}

}  // namespace

Status H5Reader::read_attr_string(const std::string& obj_path, const std::string& name, std::string* out) const {
  Handle a, t;
  MLALORA_RETURN_IF_ERROR(open_scalar_attr(file_, path_, obj_path, name, H5T_STRING, "string", &a, &t));
  auto err = [&](const std::string& what) {
    return fail(StatusCode::io_error, obj_path, "attribute '" + name + "': " + what);
  };
  // Read with the stored character set (h5py writes bytes as ASCII, str as
  // UTF-8): HDF5 has no conversion path between the two.
  const H5T_cset_t cset = H5Tget_cset(t.get());
  if (H5Tis_variable_str(t.get()) > 0) {
    Handle mt = vlen_string_type();
    if (cset >= 0) H5Tset_cset(mt.get(), cset);
    char* p = nullptr;
    if (H5Aread(a.get(), mt.get(), &p) < 0) return err("cannot read string");
    *out = p ? std::string(p) : std::string();
    Handle sp = space(H5Screate(H5S_SCALAR));
    reclaim_vlen(mt.get(), sp.get(), &p);
    return Status::Ok();
  }
  size_t n = H5Tget_size(t.get());
  if (n == 0 || n > (size_t{1} << 30)) return err("implausible string size " + std::to_string(n));
  H5T_str_t pad = H5Tget_strpad(t.get());
  Handle mt = fixed_string_type(n);
  if (cset >= 0) H5Tset_cset(mt.get(), cset);
  std::vector<char> buf(n + 1, '\0');
  if (H5Aread(a.get(), mt.get(), buf.data()) < 0) return err("cannot read string");
  *out = trim_fixed(buf.data(), n, pad);
  return Status::Ok();
}

Status H5Reader::read_attr_int(const std::string& obj_path, const std::string& name, int64_t* out) const {
  Handle a, t;
  MLALORA_RETURN_IF_ERROR(open_scalar_attr(file_, path_, obj_path, name, H5T_INTEGER, "integer", &a, &t));
  size_t sz = H5Tget_size(t.get());
  bool is_unsigned = H5Tget_sign(t.get()) == H5T_SGN_NONE;
  if (sz > 8) return fail(StatusCode::invalid_argument, obj_path, "attribute '" + name + "': integer wider than 64 bits");
  if (is_unsigned && sz == 8) {
    uint64_t u = 0;
    if (H5Aread(a.get(), H5T_NATIVE_UINT64, &u) < 0)
      return fail(StatusCode::io_error, obj_path, "attribute '" + name + "': cannot read");
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fail(StatusCode::invalid_argument, obj_path, "attribute '" + name + "': value does not fit int64");
    *out = static_cast<int64_t>(u);
    return Status::Ok();
  }
  int64_t v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0)
    return fail(StatusCode::io_error, obj_path, "attribute '" + name + "': cannot read");
  *out = v;
  return Status::Ok();
}

Status H5Reader::read_attr_double(const std::string& obj_path, const std::string& name, double* out) const {
  Handle a, t;
  MLALORA_RETURN_IF_ERROR(open_scalar_attr(file_, path_, obj_path, name, H5T_FLOAT, "float", &a, &t));
  if (H5Tget_size(t.get()) > 8)
    return fail(StatusCode::invalid_argument, obj_path, "attribute '" + name + "': float wider than 64 bits");
  double v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0)
    return fail(StatusCode::io_error, obj_path, "attribute '" + name + "': cannot read");
  *out = v;
  return Status::Ok();
}

Status H5Reader::open_dataset_checked(const std::string& path, int64_t* dset_out, std::vector<int64_t>* shape,
                                      int64_t* nelems) const {
  if (file_ < 0) return fail(StatusCode::io_error, path, "file is not open");
  H5ObjectKind k = kind(path);
  Status ks = kind_status(k, "HDF5 read " + path_ + ":" + path + ": ", "dataset");
  if (!ks.ok()) return ks;
  if (k != H5ObjectKind::dataset) return fail(StatusCode::invalid_argument, path, "is not a dataset");
  hid_t d = H5Dopen2(file_, path.c_str(), H5P_DEFAULT);
  if (d < 0) return fail(StatusCode::io_error, path, "cannot open dataset");
  Handle dh = dset(d);
  Handle sp = space(H5Dget_space(d));
  if (!sp.valid()) return fail(StatusCode::io_error, path, "cannot read dataspace");
  H5S_class_t sc = H5Sget_simple_extent_type(sp.get());
  shape->clear();
  if (sc == H5S_SIMPLE) {
    int rank = H5Sget_simple_extent_ndims(sp.get());
    if (rank < 0 || rank > 32) return fail(StatusCode::io_error, path, "invalid rank");
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (rank > 0 && H5Sget_simple_extent_dims(sp.get(), dims.data(), nullptr) < 0)
      return fail(StatusCode::io_error, path, "cannot read extent");
    for (hsize_t e : dims) {
      if (e > static_cast<hsize_t>(std::numeric_limits<int64_t>::max()))
        return fail(StatusCode::io_error, path, "extent too large");
      shape->push_back(static_cast<int64_t>(e));
    }
  } else if (sc != H5S_SCALAR) {
    return fail(StatusCode::invalid_argument, path, "dataset has a null dataspace");
  }
  int64_t n = h5_shape_elements(*shape);
  if (n < 0 || n > max_elements_)
    return fail(StatusCode::invalid_argument, path,
                "shape " + h5_shape_string(*shape) + " has too many elements (limit " + std::to_string(max_elements_) +
                    ")");
  *nelems = n;
  *dset_out = dh.release();  // ownership passes to the caller
  return Status::Ok();
}

Status H5Reader::read_numeric(const std::string& path, const NumericType& nt, void* (*alloc)(void*, size_t),
                              void* ctx, std::vector<int64_t>* shape) const {
  int64_t d_id = -1, n = 0;
  std::vector<int64_t> local_shape;
  std::vector<int64_t>& sh = shape ? *shape : local_shape;
  MLALORA_RETURN_IF_ERROR(open_dataset_checked(path, &d_id, &sh, &n));
  Handle d = dset(d_id);
  Handle t = dtype(H5Dget_type(d.get()));
  if (!t.valid()) return fail(StatusCode::io_error, path, "cannot read element type");
  H5T_class_t cls = H5Tget_class(t.get());
  size_t size = H5Tget_size(t.get());
  bool ok = cls == nt.cls && size == nt.size;
  if (ok && nt.cls == H5T_INTEGER) ok = H5Tget_sign(t.get()) == nt.sign;
  if (!ok)
    return fail(StatusCode::invalid_argument, path,
                "expected a " + std::string(nt.name) + " dataset, found " + describe_type(t.get()));
  // The bytes a contiguous/compact dataset stores must cover its extent.
  Handle dcpl = plist(H5Dget_create_plist(d.get()));
  H5D_layout_t layout = dcpl.valid() ? H5Pget_layout(dcpl.get()) : H5D_LAYOUT_ERROR;
  if (layout == H5D_LAYOUT_ERROR) return fail(StatusCode::io_error, path, "cannot read storage layout");
  if (n > 0 && (layout == H5D_CONTIGUOUS || layout == H5D_COMPACT)) {
    hsize_t stored = H5Dget_storage_size(d.get());
    if (stored < static_cast<hsize_t>(n) * size)
      return fail(StatusCode::io_error, path,
                  "shape " + h5_shape_string(sh) + " needs " + std::to_string(static_cast<hsize_t>(n) * size) +
                      " bytes but the file stores " + std::to_string(stored));
  }
  void* buf = nullptr;
  try {
    buf = alloc(ctx, static_cast<size_t>(n));
  } catch (const std::bad_alloc&) {
    return fail(StatusCode::io_error, path, "out of memory for " + std::to_string(n) + " elements");
  } catch (const std::length_error&) {
    return fail(StatusCode::io_error, path, "too many elements: " + std::to_string(n));
  }
  if (n > 0 && H5Dread(d.get(), nt.mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    return fail(StatusCode::io_error, path, "cannot read data (truncated or corrupt file?)");
  return Status::Ok();
}

template <typename T>
Status H5Reader::read_array(const std::string& path, std::vector<T>* data, std::vector<int64_t>* shape) const {
  static_assert(H5Supported<T>::value, "unsupported HDF5 element type");
  NumericType nt{TypeInfo<T>::cls, sizeof(T), TypeInfo<T>::sign, TypeInfo<T>::name, TypeInfo<T>::mem()};
  auto alloc = [](void* ctx, size_t n) -> void* {
    auto* v = static_cast<std::vector<T>*>(ctx);
    v->assign(n, T{});
    return v->data();
  };
  data->clear();
  Status st = read_numeric(path, nt, alloc, data, shape);
  if (!st.ok()) data->clear();
  return st;
}

template <typename T>
Status H5Reader::read_array_shape(const std::string& path, std::vector<T>* data,
                                  const std::vector<int64_t>& expected_shape) const {
  std::vector<int64_t> shape;
  // Check the shape before reading the data.
  if (file_ >= 0 && kind(path) == H5ObjectKind::dataset) {
    Status st = dataset_shape(path, &shape);
    if (st.ok() && shape != expected_shape)
      return fail(StatusCode::invalid_argument, path,
                  "expected shape " + h5_shape_string(expected_shape) + ", found " + h5_shape_string(shape));
  }
  MLALORA_RETURN_IF_ERROR(read_array<T>(path, data, &shape));
  if (shape != expected_shape) {
    data->clear();
    return fail(StatusCode::invalid_argument, path,
                "expected shape " + h5_shape_string(expected_shape) + ", found " + h5_shape_string(shape));
  }
  return Status::Ok();
}

template <typename T>
Status H5Reader::read_vector(const std::string& path, std::vector<T>* data, int64_t expected_len) const {
  std::vector<int64_t> shape;
  if (file_ >= 0 && kind(path) == H5ObjectKind::dataset) {
    Status st = dataset_shape(path, &shape);
    if (st.ok()) {
      if (shape.size() != 1)
        return fail(StatusCode::invalid_argument, path,
                    "expected a 1-D " + std::string(TypeInfo<T>::name) + " dataset" +
                        (expected_len >= 0 ? " of length " + std::to_string(expected_len) : std::string()) +
                        ", found shape " + h5_shape_string(shape));
      if (expected_len >= 0 && shape[0] != expected_len)
        return fail(StatusCode::invalid_argument, path,
                    "expected length " + std::to_string(expected_len) + ", found " + std::to_string(shape[0]));
    }
  }
  MLALORA_RETURN_IF_ERROR(read_array<T>(path, data, &shape));
  if (shape.size() != 1 || (expected_len >= 0 && shape[0] != expected_len)) {
    data->clear();
    return fail(StatusCode::invalid_argument, path, "unexpected shape " + h5_shape_string(shape));
  }
  return Status::Ok();
}

#define MLALORA_H5_INSTANTIATE(T)                                                                             \
  template Status H5Reader::read_array<T>(const std::string&, std::vector<T>*, std::vector<int64_t>*) const; \
  template Status H5Reader::read_array_shape<T>(const std::string&, std::vector<T>*,                        \
                                                const std::vector<int64_t>&) const;                          \
  template Status H5Reader::read_vector<T>(const std::string&, std::vector<T>*, int64_t) const;
MLALORA_H5_INSTANTIATE(int64_t)
MLALORA_H5_INSTANTIATE(int32_t)
MLALORA_H5_INSTANTIATE(double)
MLALORA_H5_INSTANTIATE(float)
MLALORA_H5_INSTANTIATE(uint8_t)
#undef MLALORA_H5_INSTANTIATE

Status H5Reader::dataset_shape(const std::string& path, std::vector<int64_t>* shape) const {
  int64_t d_id = -1, n = 0;
  MLALORA_RETURN_IF_ERROR(open_dataset_checked(path, &d_id, shape, &n));
  H5Dclose(d_id);
  return Status::Ok();
}

Status H5Reader::read_strings(const std::string& path, std::vector<std::string>* out, int64_t expected_len) const {
  out->clear();
  int64_t d_id = -1, n = 0;
  std::vector<int64_t> shape;
  MLALORA_RETURN_IF_ERROR(open_dataset_checked(path, &d_id, &shape, &n));
  Handle d = dset(d_id);
  if (shape.size() != 1 || (expected_len >= 0 && shape[0] != expected_len))
    return fail(StatusCode::invalid_argument, path,
                "expected a 1-D string dataset" +
                    (expected_len >= 0 ? " of length " + std::to_string(expected_len) : std::string()) +
                    ", found shape " + h5_shape_string(shape));
  Handle t = dtype(H5Dget_type(d.get()));
  if (!t.valid()) return fail(StatusCode::io_error, path, "cannot read element type");
  if (H5Tget_class(t.get()) != H5T_STRING)
    return fail(StatusCode::invalid_argument, path, "expected a string dataset, found " + describe_type(t.get()));
  if (n == 0) return Status::Ok();
  try {
    if (H5Tis_variable_str(t.get()) > 0) {
      Handle mt = vlen_string_type();
      std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
      if (H5Dread(d.get(), mt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0)
        return fail(StatusCode::io_error, path, "cannot read strings");
      out->reserve(static_cast<size_t>(n));
      for (char* p : ptrs) out->push_back(p ? std::string(p) : std::string());
      Handle sp = space(H5Dget_space(d.get()));
      reclaim_vlen(mt.get(), sp.get(), ptrs.data());
      return Status::Ok();
    }
    size_t w = H5Tget_size(t.get());
    if (w == 0 || w > (size_t{1} << 20)) return fail(StatusCode::io_error, path, "implausible string width");
    hsize_t stored = H5Dget_storage_size(d.get());
    if (stored < static_cast<hsize_t>(n) * w)
      return fail(StatusCode::io_error, path, "file stores fewer bytes than the dataset's extent needs");
    H5T_str_t pad = H5Tget_strpad(t.get());
    Handle mt = fixed_string_type(w);
    std::vector<char> buf(static_cast<size_t>(n) * w);
    if (H5Dread(d.get(), mt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
      return fail(StatusCode::io_error, path, "cannot read strings");
    out->reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out->push_back(trim_fixed(buf.data() + i * w, w, pad));
  } catch (const std::bad_alloc&) {
    out->clear();
    return fail(StatusCode::io_error, path, "out of memory");
  }
  return Status::Ok();
}

Status H5Reader::read_table(const std::string& group_path, H5Table* out) const {
  out->columns.clear();
  std::vector<std::string> names;
  if (has_attr(group_path, "columns")) {
    std::string joined;
    MLALORA_RETURN_IF_ERROR(read_attr_string(group_path, "columns", &joined));
    std::string cur;
    for (char c : joined) {
      if (c == ',') {
        names.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    if (!joined.empty()) names.push_back(cur);
  } else {
    MLALORA_RETURN_IF_ERROR(list_members(group_path, &names));
  }
  int64_t rows = -1;
  bool has_rows = has_attr(group_path, "num_rows");
  if (has_rows) MLALORA_RETURN_IF_ERROR(read_attr_int(group_path, "num_rows", &rows));
  for (const std::string& name : names) {
    std::string p = join_path(group_path, name);
    if (name.empty() || name.find('/') != std::string::npos)
      return fail(StatusCode::invalid_argument, group_path, "bad column name '" + name + "'");
    int64_t d_id = -1, n = 0;
    std::vector<int64_t> shape;
    MLALORA_RETURN_IF_ERROR(open_dataset_checked(p, &d_id, &shape, &n));
    Handle d = dset(d_id);
    Handle t = dtype(H5Dget_type(d.get()));
    H5T_class_t cls = t.valid() ? H5Tget_class(t.get()) : H5T_NO_CLASS;
    d.reset();
    H5Table::Column col;
    col.name = name;
    if (cls == H5T_INTEGER) {
      std::vector<int64_t> v;
      MLALORA_RETURN_IF_ERROR(read_vector<int64_t>(p, &v));
      col.data = std::move(v);
    } else if (cls == H5T_FLOAT) {
      std::vector<double> v;
      MLALORA_RETURN_IF_ERROR(read_vector<double>(p, &v));
      col.data = std::move(v);
    } else if (cls == H5T_STRING) {
      std::vector<std::string> v;
      MLALORA_RETURN_IF_ERROR(read_strings(p, &v));
      col.data = std::move(v);
    } else {
      return fail(StatusCode::invalid_argument, p,
                  "table column must be int64, float64 or string, found " +
                      (t.valid() ? describe_type(t.get()) : std::string("unknown type")));
    }
    out->columns.push_back(std::move(col));
  }
  int64_t n = out->rows();
  if (n < 0) {
    std::string lens;
    for (const auto& c : out->columns)
      lens += (lens.empty() ? "" : ", ") + c.name + "=" + std::to_string(H5Table::column_length(c.data));
    out->columns.clear();
    return fail(StatusCode::invalid_argument, group_path, "table columns differ in length (" + lens + ")");
  }
  if (has_rows && !out->columns.empty() && rows != n) {
    out->columns.clear();
    return fail(StatusCode::invalid_argument, group_path,
                "num_rows attribute is " + std::to_string(rows) + " but the columns have " + std::to_string(n));
  }
  return Status::Ok();
}

}  // namespace mlalora::harness
