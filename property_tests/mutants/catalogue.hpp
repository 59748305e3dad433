// The mutant catalogue: "cpu-kernel-sim" (the correct CPU simulation of the
// CUDA kernels) and one "mutant-<bug>" per realistic kernel regression, all
// the same code (kernel_sim.cpp) with one KernelBugs switch turned on.
// test_mutation_score.cpp requires the property suite to detect every mutant.
#pragma once
#include <string>
#include <vector>

namespace mlalora::test {

// Names of every registered mutant ("mutant-..."), in catalogue order.
std::vector<std::string> mutant_names();
// Register "cpu-kernel-sim" and every mutant with harness::register_implementation
// (idempotent; also run by a static initializer of catalogue.cpp).
void register_mutants();

}  // namespace mlalora::test
