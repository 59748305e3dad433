// The one definition of the operation's problem (../SPEC "Shapes and dtypes",
// "Routing"): dimensions, dtype, strides, and the routing index data.
//
// ProblemShape is what a kernel must know on the host to validate its
// arguments and size its launch; it carries no index data, because in
// CUDA-graph mode that data lives (and changes) on the device.
// Problem adds host copies of the index data: the reference, the harness and
// the generators work on it.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mlalora/dtype.hpp"
#include "mlalora/status.hpp"

namespace mlalora {

struct Dims {
  int64_t S = 0;      // tokens
  int64_t H = 0;      // heads
  int64_t D_qk = 0;   // q/k nope head dim (128 for DeepSeek)
  int64_t D_v = 0;    // v head dim
  int64_t R_kv = 0;   // kv_lora_rank (512 for DeepSeek)
  int64_t L = 0;      // adapter slots
  int64_t r_max = 0;  // stacked LoRA rank capacity
  int64_t F() const { return D_qk + D_v; }
};

// Element strides of a rank-3 tensor (outermost first).
struct Strides3 {
  int64_t s0 = 0, s1 = 0, s2 = 0;
  int64_t operator[](int i) const { return i == 0 ? s0 : i == 1 ? s1 : s2; }
};
using Shape3 = std::array<int64_t, 3>;

// The six dense tensors of the operation.
enum class TensorId : int { q_nope = 0, q_nope_out, attn_latent, attn_bmm_out, A, B };
inline constexpr TensorId kAllTensors[] = {TensorId::q_nope,      TensorId::q_nope_out, TensorId::attn_latent,
                                           TensorId::attn_bmm_out, TensorId::A,          TensorId::B};
const char* tensor_name(TensorId id);

struct Layout {
  Strides3 q_nope, q_nope_out, attn_latent, attn_bmm_out, A, B;
  const Strides3& of(TensorId id) const;
  Strides3& of(TensorId id);
  static Layout contiguous(const Dims& d);
};

// Logical shape of a tensor: q_nope (S,H,D_qk), q_nope_out (S,H,R_kv),
// attn_latent (S,H,R_kv), attn_bmm_out (S,H,D_v), A (L,r_max,R_kv), B (L,H*F,r_max).
Shape3 tensor_shape(const Dims& d, TensorId id);
// Elements a buffer needs to hold the tensor with these strides (0 if empty).
int64_t storage_elems(const Shape3& shape, const Strides3& strides);

enum class Side : int { q = 0, v = 1 };
inline constexpr Side kBothSides[] = {Side::q, Side::v};
const char* side_name(Side s);
inline TensorId input_of(Side s) { return s == Side::q ? TensorId::q_nope : TensorId::attn_latent; }
inline TensorId output_of(Side s) { return s == Side::q ? TensorId::q_nope_out : TensorId::attn_bmm_out; }

struct ProblemShape {
  Dims dims;
  DType dtype = DType::bf16;  // act and weight dtype (the same in one call)
  Layout layout;
  int64_t segment_capacity = 0;  // weight_indices.shape[0]; seg_indptr has capacity+1 entries
  int64_t max_segment_len = 0;   // bound on the length of any live segment (launch sizing); <= S
  bool has_permutation = false;
};

struct Problem {
  ProblemShape shape;
  std::vector<int32_t> lora_ranks;      // L
  std::vector<float> scalings;          // L
  std::vector<int32_t> seg_indptr;      // segment_capacity + 1 (entries past num_segments+1 are ignored)
  std::vector<int32_t> weight_indices;  // segment_capacity (entries past num_segments are ignored)
  int64_t num_segments = 0;             // live segment count (<= segment_capacity)
  std::vector<int32_t> permutation;     // S entries iff shape.has_permutation

  const Dims& dims() const { return shape.dims; }
  int64_t covered_rows() const { return num_segments > 0 ? seg_indptr[num_segments] : 0; }
  // Physical token row of logical row i.
  int64_t physical_row(int64_t i) const { return shape.has_permutation ? permutation[i] : i; }
  // One-line human description (dims, dtype, segments) for logs and reports.
  std::string summary() const;
};

// --- Validation: the SPEC's invariants, in one place. ---------------------
// Each returns the first violation, with a message that names the field.

// Dims, dtype, strides (non-negative; outputs must not overlap themselves),
// capacity and max_segment_len. No index data is looked at.
Status validate_shape(const ProblemShape& s);
// Host copies of the index data against the shape: sizes, seg_indptr
// monotone from 0 to <= S, live segments within capacity and
// max_segment_len, weight_indices in [0,L), ranks in [0,r_max], finite
// scalings, permutation a permutation of [0,S) on the covered rows.
Status validate_index_data(const Problem& p);
Status validate(const Problem& p);  // both

// Visit every covered logical row: f(segment g, logical row i, physical row t, slot l).
void for_each_covered_row(const Problem& p,
                          const std::function<void(int64_t g, int64_t i, int64_t t, int32_t l)>& f);
// slot_of_row[t] = slot covering physical row t, or -1 if uncovered (after validate()).
std::vector<int32_t> slot_of_physical_row(const Problem& p);

}  // namespace mlalora
