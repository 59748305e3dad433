// A complete failing case as one HDF5 file: the Problem (every field of its
// shape, all strides, the index data), the input tensors in full storage
// (gaps included; outputs hold their base values), optional named float
// arrays (expected / got deltas, ...) and string attributes (implementation
// name, seed, message). Schema: datasets/regressions/README.md.
//
// save_reproducer writes atomically (temporary file + rename).
// load_reproducer validates everything it reads (types, shapes, sizes against
// storage_elems of the stored shape and strides, values representable in the
// stored dtype, then mlalora::validate) and rejects an inconsistent file with
// a message naming the file and the field. It never throws or crashes.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mlalora/host_tensors.hpp"
#include "mlalora/problem.hpp"
#include "mlalora/status.hpp"

namespace mlalora::harness {

inline constexpr int64_t kReproducerVersion = 1;

struct FloatArray {
  std::vector<int64_t> shape;  // row-major; product(shape) == data.size()
  std::vector<float> data;
};

struct Reproducer {
  Problem problem;
  ProblemTensors tensors;                        // inputs; outputs hold the base values
  std::map<std::string, FloatArray> extras;      // e.g. "expected_q_delta", "got_q_nope_out"
  std::map<std::string, std::string> attributes;  // e.g. "implementation", "seed", "message"
};

// Convenience: a 1-D FloatArray.
inline FloatArray float_array(std::vector<float> v) {
  FloatArray a;
  a.shape = {static_cast<int64_t>(v.size())};
  a.data = std::move(v);
  return a;
}

// Checks a Reproducer before it is written (problem valid, tensors match the
// problem's shape/strides/storage, extras well-formed, names usable).
Status check_reproducer(const Reproducer& r);

Status save_reproducer(const std::string& path, const Reproducer& r);
// The reproducer schema written into an open writer (no check, no commit):
// formats that extend the schema (golden files) add their own groups after it.
class H5Writer;
Status write_reproducer_contents(H5Writer& w, const Reproducer& r);
Status load_reproducer(const std::string& path, Reproducer* out);

}  // namespace mlalora::harness
