// A small, defensive layer over the HDF5 C API, used for reports and
// reproducer files.
//
// - Every function returns a Status (never throws, never aborts on a bad
//   file); messages name the file and the object path, plus the innermost
//   HDF5 error description when the library gave one.
// - HDF5's automatic error-stack printing is silenced.
// - Objects are addressed by absolute paths ("/", "/problem",
//   "/problem/lora_ranks"); the writer creates missing intermediate groups.
// - H5Writer writes to "<path>.tmp.<pid>" and only commit() renames it onto
//   <path> (std::rename, atomic on POSIX within one filesystem). A writer
//   destroyed without commit() removes its temporary file, so a crash or an
//   error never leaves a half-written report and never clobbers an existing one.
// - Files are written with the 1.8+ file format (superblock v2, object
//   header v2), whose metadata carries checksums: a corrupted header is
//   reported as an error rather than decoded.
// - Readers check the stored type class, element size, signedness, rank and
//   extent before reading; a mismatch is invalid_argument naming the path and
//   what was expected. Datasets whose claimed size exceeds what the file holds
//   are refused before any allocation.
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "mlalora/status.hpp"

namespace mlalora::harness {

// Element types of numeric datasets: int64_t, int32_t, double, float, uint8_t.
template <typename T>
struct H5Supported : std::false_type {};
template <> struct H5Supported<int64_t> : std::true_type {};
template <> struct H5Supported<int32_t> : std::true_type {};
template <> struct H5Supported<double> : std::true_type {};
template <> struct H5Supported<float> : std::true_type {};
template <> struct H5Supported<uint8_t> : std::true_type {};

enum class H5StringKind { variable, fixed };

// A table: a group whose datasets are equal-length 1-D columns. The group
// carries attributes mlalora_table = 1, num_rows, and columns (the column
// names joined by ','), so the column order survives the round trip.
struct H5Table {
  using ColumnData = std::variant<std::vector<int64_t>, std::vector<double>, std::vector<std::string>>;
  struct Column {
    std::string name;
    ColumnData data;
  };
  std::vector<Column> columns;

  void add(std::string name, std::vector<int64_t> v) { columns.push_back({std::move(name), std::move(v)}); }
  void add(std::string name, std::vector<double> v) { columns.push_back({std::move(name), std::move(v)}); }
  void add(std::string name, std::vector<std::string> v) { columns.push_back({std::move(name), std::move(v)}); }
  const Column* find(const std::string& name) const;
  static int64_t column_length(const ColumnData& d);
  // Row count, or -1 if the columns have different lengths (0 for no columns).
  int64_t rows() const;
};

class H5Writer {
 public:
  H5Writer();
  ~H5Writer();  // without commit(): closes and removes the temporary file
  H5Writer(const H5Writer&) = delete;
  H5Writer& operator=(const H5Writer&) = delete;

  // Create "<path>.tmp.<pid>" (truncating a stale one). The parent directory
  // must exist. Nothing at <path> is touched until commit().
  Status open(const std::string& path);
  bool is_open() const { return file_ >= 0; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_path_; }

  // Flush, close, and atomically rename the temporary file onto path().
  Status commit();
  // Close and delete the temporary file (also what the destructor does).
  void discard();

  // A group (and its missing parents); ok if it already exists.
  Status create_group(const std::string& group_path);

  // Scalar attributes on an existing object ("/" is the root group);
  // an attribute of the same name is replaced. Strings are stored
  // fixed-length (in the checksummed object header).
  Status write_attr_string(const std::string& obj_path, const std::string& name, const std::string& value);
  Status write_attr_int(const std::string& obj_path, const std::string& name, int64_t value);
  Status write_attr_double(const std::string& obj_path, const std::string& name, double value);

  // N-D dataset of `shape` (row-major, product(shape) elements at `data`).
  // A zero-size shape is allowed (data may be null then).
  template <typename T>
  Status write_array(const std::string& path, const T* data, const std::vector<int64_t>& shape);
  // 1-D dataset.
  template <typename T>
  Status write_vector(const std::string& path, const std::vector<T>& v) {
    return write_array<T>(path, v.data(), {static_cast<int64_t>(v.size())});
  }
  // 1-D dataset of strings (variable-length UTF-8, or fixed-length padded to
  // the longest). Strings must not contain NUL characters.
  Status write_strings(const std::string& path, const std::vector<std::string>& v,
                       H5StringKind kind = H5StringKind::variable);
  // A table group (see H5Table). Column names must be non-empty and contain
  // neither '/' nor ','; columns must have equal lengths. String columns are
  // variable-length.
  Status write_table(const std::string& group_path, const H5Table& t);

 private:
  Status fail(const std::string& obj_path, const std::string& what) const;
  Status ensure_parent(const std::string& path);
  Status write_dataset_raw(const std::string& path, int64_t file_type, int64_t mem_type, const void* data,
                           const std::vector<int64_t>& shape);

  int64_t file_ = -1;  // hid_t
  std::string path_, tmp_path_;
};

// unreadable: a link or object header on the way could not be decoded
// (corrupt file); reads of it fail with io_error and HDF5's reason.
enum class H5ObjectKind { missing, group, dataset, other, unreadable };

class H5Reader {
 public:
  H5Reader();
  ~H5Reader();
  H5Reader(const H5Reader&) = delete;
  H5Reader& operator=(const H5Reader&) = delete;

  // Open read-only. io_error with a clear message if the file is missing,
  // unreadable, not HDF5, or truncated/corrupt.
  Status open(const std::string& path);
  void close();
  bool is_open() const { return file_ >= 0; }
  const std::string& path() const { return path_; }

  // Refuse datasets with more elements than this (default 2^33) on top of
  // the check against the bytes the file actually stores.
  void set_max_elements(int64_t n) { max_elements_ = n; }

  H5ObjectKind kind(const std::string& obj_path) const;
  bool exists(const std::string& obj_path) const { return kind(obj_path) != H5ObjectKind::missing; }
  bool has_attr(const std::string& obj_path, const std::string& name) const;
  // Names of the members of a group, in the file's (alphabetical) order.
  Status list_members(const std::string& group_path, std::vector<std::string>* names) const;
  // Names of the attributes of an object.
  Status list_attrs(const std::string& obj_path, std::vector<std::string>* names) const;

  // Scalar (or single-element) attributes. String attributes may be fixed or
  // variable length; int attributes any integer type that fits int64; double
  // attributes any float type.
  Status read_attr_string(const std::string& obj_path, const std::string& name, std::string* out) const;
  Status read_attr_int(const std::string& obj_path, const std::string& name, int64_t* out) const;
  Status read_attr_double(const std::string& obj_path, const std::string& name, double* out) const;

  // Shape of a dataset.
  Status dataset_shape(const std::string& path, std::vector<int64_t>* shape) const;

  // N-D dataset whose stored element type must be exactly T (class, size,
  // sign). shape receives the dataset's extent.
  template <typename T>
  Status read_array(const std::string& path, std::vector<T>* data, std::vector<int64_t>* shape) const;
  // Same, and the shape must equal expected_shape.
  template <typename T>
  Status read_array_shape(const std::string& path, std::vector<T>* data,
                          const std::vector<int64_t>& expected_shape) const;
  // 1-D dataset; expected_len >= 0 also checks its length.
  template <typename T>
  Status read_vector(const std::string& path, std::vector<T>* data, int64_t expected_len = -1) const;
  // 1-D dataset of fixed or variable-length strings.
  Status read_strings(const std::string& path, std::vector<std::string>* out, int64_t expected_len = -1) const;
  // A table written by write_table (or any group of 1-D int64/double/string
  // datasets); all columns must have equal length (and match num_rows).
  Status read_table(const std::string& group_path, H5Table* out) const;

 private:
  Status fail(StatusCode code, const std::string& obj_path, const std::string& what) const;
  Status open_dataset_checked(const std::string& path, int64_t* dset, std::vector<int64_t>* shape,
                              int64_t* nelems) const;
  // Opens, type-checks and sizes a numeric dataset, then reads it through
  // alloc(nelems) (which returns the destination buffer).
  struct NumericType;
  Status read_numeric(const std::string& path, const NumericType& t, void* (*alloc)(void* ctx, size_t n),
                      void* ctx, std::vector<int64_t>* shape) const;

  int64_t file_ = -1;  // hid_t
  std::string path_;
  int64_t max_elements_ = int64_t{1} << 33;
};

// Product of a shape's extents (1 for rank 0), or -1 on negative extents or
// overflow.
int64_t h5_shape_elements(const std::vector<int64_t>& shape);
std::string h5_shape_string(const std::vector<int64_t>& shape);

}  // namespace mlalora::harness
