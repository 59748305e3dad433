// The implementation-level property suite: what any implementation (CPU
// mutant, CUDA kernel, cuBLAS baseline) must satisfy on a generated case.
// Shared by the CPU property tests, the mutation-score test and the GPU suite.
#pragma once
#include <optional>
#include <string>

#include "mlalora/harness/generators.hpp"
#include "mlalora/harness/implementation.hpp"
#include "mlalora/harness/testbed.hpp"

namespace mlalora::test {

struct PropertyFailure {
  std::string property;  // "error-bound", "permutation-equivariance", "scaling-linearity", "head-independence", "run"
  std::string detail;
};

// Every property on one case; the first failure, or nullopt when all hold.
// Not-supported cases count as holding (the caller counts them separately).
std::optional<PropertyFailure> check_implementation_on_case(harness::Implementation& impl, const harness::Case& c,
                                                            bool* not_supported = nullptr);

// Individual properties.
std::optional<PropertyFailure> prop_error_bound(harness::Implementation& impl, const harness::Case& c);
std::optional<PropertyFailure> prop_permutation_equivariance(harness::Implementation& impl, const harness::Case& c);
std::optional<PropertyFailure> prop_scaling_linearity(harness::Implementation& impl, const harness::Case& c);
std::optional<PropertyFailure> prop_head_independence(harness::Implementation& impl, const harness::Case& c);

// One case of a GPU property suite, the loop body both GPU suites share: the
// testbed run judged by the error model, then (with_properties, and only on
// cases without NaN/Inf inputs) the permutation, scaling and head
// properties. A not-supported run is a failure only when
// not_supported_fails. On a failure the reproducer (problem, inputs, both
// outputs) is dumped to dump_dir; `reproducer` holds its path or why there is none.
struct CaseCheck {
  harness::RunOutcome outcome;
  std::optional<PropertyFailure> failure;
  std::string reproducer;
};
CaseCheck run_and_check_case(harness::Implementation& impl, const harness::Case& c, harness::Testbed& tb,
                             bool with_properties, bool not_supported_fails, const std::string& dump_dir);
// The FAIL_CHECK text of a failed CaseCheck: who, which case and seed, the
// property and its detail, the case, the reproducer.
std::string describe_failure(const std::string& who, int case_index, uint64_t case_seed, const harness::Case& c,
                             const CaseCheck& r);

// Case transformations used by the properties (also tested on the reference).
// Drop the permutation: logical row i of the result holds physical row perm[i]
// of the original, so results must match row for row.
harness::Case without_permutation(const harness::Case& c, const ProblemTensors& in, ProblemTensors* out_tensors);

}  // namespace mlalora::test
