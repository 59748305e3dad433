// Host copies of the six dense tensors of a problem, in the problem's strided
// layout. Values are float32 and exactly representable in the problem's dtype
// (see dtype.hpp). Storage elements that no logical index maps to (the gaps of
// a non-contiguous layout) are real memory a kernel must not write: the
// harness poisons them and checks them afterwards.
#pragma once
#include <cstdint>
#include <vector>

#include "mlalora/problem.hpp"

namespace mlalora {

struct HostTensor {
  Shape3 shape{0, 0, 0};
  Strides3 strides;
  std::vector<float> data;  // storage_elems(shape, strides) elements

  int64_t offset(int64_t i, int64_t j, int64_t k) const { return i * strides.s0 + j * strides.s1 + k * strides.s2; }
  float& at(int64_t i, int64_t j, int64_t k) { return data[static_cast<size_t>(offset(i, j, k))]; }
  float at(int64_t i, int64_t j, int64_t k) const { return data[static_cast<size_t>(offset(i, j, k))]; }
  int64_t numel() const { return shape[0] * shape[1] * shape[2]; }
  // true for storage elements that some logical index maps to.
  std::vector<bool> logical_mask() const;
};

struct ProblemTensors {
  HostTensor q_nope, q_nope_out, attn_latent, attn_bmm_out, A, B;
  HostTensor& of(TensorId id);
  const HostTensor& of(TensorId id) const;
};

// Allocate all six tensors for the shape, every storage element set to `fill`.
ProblemTensors allocate_tensors(const ProblemShape& s, float fill = 0.f);

}  // namespace mlalora
