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

// Case transformations used by the properties (also tested on the reference).
// Drop the permutation: logical row i of the result holds physical row perm[i]
// of the original, so results must match row for row.
harness::Case without_permutation(const harness::Case& c, const ProblemTensors& in, ProblemTensors* out_tensors);

}  // namespace mlalora::test
