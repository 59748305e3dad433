// An implementation under test: anything that applies the LoRA correction to
// host tensors (CPU references, deliberately broken mutants in the test tree,
// GPU kernels behind an upload/launch/download adapter).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mlalora/host_tensors.hpp"
#include "mlalora/problem.hpp"
#include "mlalora/reference/error_bound.hpp"
#include "mlalora/status.hpp"

namespace mlalora::harness {

class Implementation {
 public:
  virtual ~Implementation() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  virtual bool needs_gpu() const { return false; }
  // Ok, or not_supported with the reason (dtype, layout, ...). Called before run().
  virtual Status supports(const Problem& p) const = 0;
  // The rounding points this implementation has, for the error bound.
  virtual reference::RoundingModel rounding_model(const Problem& p, Side side) const = 0;
  // Apply the correction in place to io.q_nope_out and io.attn_bmm_out (both
  // sides). Inputs are read-only; everything outside the two outputs' covered
  // rows must stay bitwise unchanged.
  virtual Status run(const Problem& p, ProblemTensors& io) = 0;
};

using ImplementationFactory = std::function<std::unique_ptr<Implementation>()>;

struct RegisteredImplementation {
  std::string name;
  std::string description;
  bool needs_gpu;
  ImplementationFactory make;
};

// All implementations linked into this binary (CPU always; GPU ones when the
// CUDA library was built). Order is stable.
const std::vector<RegisteredImplementation>& registered_implementations();
// Add one (used by the GPU library's registration and by the test tree for mutants).
void register_implementation(RegisteredImplementation r);
// nullptr if unknown.
std::unique_ptr<Implementation> make_implementation(const std::string& name);

}  // namespace mlalora::harness
