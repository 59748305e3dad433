#include "mutants/catalogue.hpp"

#include <memory>

#include "mlalora/harness/implementation.hpp"
#include "mutants/kernel_sim.hpp"

namespace mlalora::test {

namespace {

struct MutantSpec {
  const char* bug;          // name is "mutant-" + bug
  const char* description;
  bool KernelBugs::*flag;
};

const std::vector<MutantSpec>& catalogue() {
  static const std::vector<MutantSpec> specs = {
      {"seg-end-off-by-one", "segment loop runs to seg_indptr[g+1] inclusive (clamped to S)",
       &KernelBugs::seg_end_off_by_one},
      {"permutation-ignored", "physical row = logical row even when a permutation is given",
       &KernelBugs::ignore_permutation},
      {"permutation-output-logical", "input read at perm[i] but output written at logical row i",
       &KernelBugs::perm_output_logical},
      {"permutation-inverted", "uses the inverse permutation (physical -> logical) for both input and output",
       &KernelBugs::perm_inverted},
      {"rank-is-r-max", "every slot runs at r_max instead of lora_ranks[slot]", &KernelBugs::use_r_max},
      {"rank0-not-skipped", "rank-0 slots go through the accumulate path (out = base + s*0: -0.0 becomes +0.0)",
       &KernelBugs::rank0_not_skipped},
      {"rank0-as-r-max", "rank 0 treated as 'full rank' (r_max) instead of 'no adapter'",
       &KernelBugs::rank0_as_r_max},
      {"b-head-offset-dqk", "per-head row offset into B is h*D_qk instead of h*(D_qk+D_v)",
       &KernelBugs::b_head_offset_dqk},
      {"b-kv-halves-swapped", "B per head read as [v; k] instead of [k; v]", &KernelBugs::swap_kv_halves},
      {"scaling-ignored", "scalings[slot] never applied (s = 1)", &KernelBugs::ignore_scaling},
      {"scaling-twice", "scaling applied in both stages (s*s)", &KernelBugs::scaling_twice},
      {"uncovered-rows-written", "rows past the last live segment processed with the first segment's slot",
       &KernelBugs::write_uncovered_rows},
      {"partial-tile-dropped", "rows of a segment past its last full 16-row tile are not processed",
       &KernelBugs::drop_partial_tile},
      {"intermediate-fp16", "rank-r intermediate rounded to fp16 whatever the dtype", &KernelBugs::intermediate_fp16},
      {"stale-segment-count", "loops over segment_capacity segments instead of the live num_segments (garbage clamped)",
       &KernelBugs::stale_segment_count},
      {"head-loop-short", "head loop stops at H-1", &KernelBugs::head_loop_short},
      {"first-weight-index", "weight_indices[0] used for every segment", &KernelBugs::first_weight_index},
      {"accumulate-bf16", "running sums rounded to bf16 after every add", &KernelBugs::accumulate_bf16},
      {"last-column-dropped", "last output column not written when N is not a multiple of the 16-column tile",
       &KernelBugs::drop_last_column},
      {"output-input-strides", "output addressed with the input tensor's strides (out-of-range writes skipped)",
       &KernelBugs::output_input_strides},
      {"input-inner-stride-ignored", "input rows read as if their inner stride were 1",
       &KernelBugs::ignore_inner_stride},
      {"base-overwritten", "out = s*z: the base output is overwritten instead of accumulated (beta = 0)",
       &KernelBugs::overwrite_base},
      {"v-side-skipped", "only the q-side kernel is launched", &KernelBugs::v_side_skipped},
  };
  return specs;
}

}  // namespace

std::vector<std::string> mutant_names() {
  std::vector<std::string> names;
  for (const auto& m : catalogue()) names.push_back(std::string("mutant-") + m.bug);
  return names;
}

void register_mutants() {
  harness::register_implementation(
      {"cpu-kernel-sim", "CPU simulation of the CUDA SGMM kernels (fp32 accumulation, rounded rank-r intermediate)",
       false, [] { return std::make_unique<KernelSim>(); }});
  for (const auto& m : catalogue()) {
    const std::string name = std::string("mutant-") + m.bug;
    const std::string desc = m.description;
    KernelBugs bugs;
    bugs.*(m.flag) = true;
    harness::register_implementation(
        {name, desc, false, [name, desc, bugs] { return std::make_unique<KernelSim>(name, desc, bugs); }});
  }
}

namespace {
// Linked directly into the test executable: registers before main().
const bool registered_at_startup = (register_mutants(), true);
}  // namespace

}  // namespace mlalora::test
