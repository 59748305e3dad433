// A CPU simulation of what the CUDA SGMM kernels compute, as an
// Implementation ("cpu-kernel-sim"), plus switchable bugs for mutation
// testing (catalogue.cpp registers one "mutant-<bug>" per switch).
//
// Numerics, exactly RoundingModel::factored(dtype, /*tensor_core=*/false):
//   stage 1: y = x @ W1 with float (fp32) accumulation, y rounded to the dtype
//   stage 2: z = y @ W2 with float accumulation
//   out    = round_to(dtype, float(base) + s * z)
// q-side: W1 = B_kc[h] (D_qk x r), W2 = A[:r] (r x R_kv)
// v-side: W1 = A[:r]^T (R_kv x r), W2 = B_vc[h]^T (r x D_v)
//
// Structure mirrors a kernel launch: grid over (segment, row tile of 16,
// head), each tile processing its rows, output columns in tiles of 16.
// Routing follows SPEC: live segments only, empty segments and rank-0 slots
// skipped, rows outside segments never touched, permutation maps logical row
// -> physical token row, arbitrary strides through HostTensor::at.
//
// Every bug switch models a realistic kernel regression; a mutant never reads
// or writes out of bounds (indices are clamped), it only computes wrong values.
#pragma once
#include <string>
#include <utility>

#include "mlalora/harness/implementation.hpp"

namespace mlalora::test {

struct KernelBugs {
  bool seg_end_off_by_one = false;      // processes row seg_end too (clamped to S)
  bool ignore_permutation = false;      // t = i even when a permutation is given
  bool perm_output_logical = false;     // input read at perm[i], output written at logical row i
  bool perm_inverted = false;           // uses the inverse permutation (t = perm^-1[i])
  bool use_r_max = false;               // runs every slot at r_max instead of its rank
  bool rank0_not_skipped = false;       // rank-0 slots go through the add path (adds s*0)
  bool rank0_as_r_max = false;          // rank 0 treated as "full rank" (r_max)
  bool b_head_offset_dqk = false;       // B row offset of head h is h*D_qk instead of h*F
  bool swap_kv_halves = false;          // assumes B per head is [v; k] instead of [k; v]
  bool ignore_scaling = false;          // s = 1
  bool scaling_twice = false;           // s applied twice (s*s)
  bool write_uncovered_rows = false;    // rows past the covered prefix run with the first segment's slot
  bool drop_partial_tile = false;       // rows beyond the last full 16-row tile of a segment skipped
  bool intermediate_fp16 = false;       // rank-r intermediate rounded to fp16 whatever the dtype
  bool stale_segment_count = false;     // loops over segment_capacity instead of num_segments
  bool head_loop_short = false;         // head loop stops at H-1
  bool first_weight_index = false;      // weight_indices[0] used for every segment
  bool accumulate_bf16 = false;         // running sums rounded to bf16 after every add
  bool drop_last_column = false;        // last output column of a non-multiple-of-16 N not written
  bool output_input_strides = false;    // output addressed with the input tensor's strides
  bool ignore_inner_stride = false;     // input rows read as if the inner stride were 1
  bool overwrite_base = false;          // out = s*z (beta = 0): the base output is not accumulated
  bool v_side_skipped = false;          // only the q-side kernel is launched
};

class KernelSim final : public harness::Implementation {
 public:
  explicit KernelSim(std::string name = "cpu-kernel-sim",
                     std::string description = "CPU simulation of the CUDA SGMM kernels: fp32 accumulation, "
                                               "rank-r intermediate rounded to the dtype, fp32 add, output rounded",
                     KernelBugs bugs = {})
      : name_(std::move(name)), desc_(std::move(description)), bugs_(bugs) {}

  std::string name() const override { return name_; }
  std::string description() const override { return desc_; }
  Status supports(const Problem& p) const override;
  reference::RoundingModel rounding_model(const Problem& p, Side side) const override;
  Status run(const Problem& p, ProblemTensors& io) override;

  static constexpr int64_t kRowTile = 16;
  static constexpr int64_t kColTile = 16;

 private:
  void run_side(const Problem& p, ProblemTensors& io, Side side) const;

  std::string name_, desc_;
  KernelBugs bugs_;
};

}  // namespace mlalora::test
