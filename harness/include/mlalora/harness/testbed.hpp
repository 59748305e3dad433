// One case, judged for any number of implementations, CUTLASS-testbed style:
// initialize (draw tensors, compute the float64 expectation once), run (copy
// the tensors, hand them to the implementation), verify (error model +
// bitwise checks), with a disposition per run.
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "mlalora/harness/generators.hpp"
#include "mlalora/harness/implementation.hpp"
#include "mlalora/harness/verify.hpp"

namespace mlalora::harness {

enum class Disposition : int { passed = 0, incorrect = 1, failed = 2, not_supported = 3 };
const char* disposition_name(Disposition d);

struct RunOutcome {
  std::string implementation;
  Disposition disposition = Disposition::failed;
  std::string message;  // status message for failed / not_supported, verdict summary otherwise
  SideVerdict q, v;
  double seconds = 0;   // wall time of Implementation::run (includes transfers for GPU adapters)
};

class Testbed {
 public:
  // rows: which covered rows to judge (all by default; a sample at large S).
  explicit Testbed(Case c, reference::RowSelection rows = reference::RowSelection::all());
  // Replay: the inputs are given (a stored reproducer) instead of drawn from the seed.
  Testbed(Case c, ProblemTensors inputs, reference::RowSelection rows = reference::RowSelection::all());

  const Case& test_case() const { return case_; }
  const ProblemTensors& inputs() const { return inputs_; }
  const SideExpectation& expectation(Side s) const { return s == Side::q ? *q_ : *v_; }

  // Run and verify. If `outputs` is given it receives what the implementation wrote.
  RunOutcome run(Implementation& impl, ProblemTensors* outputs = nullptr);

 private:
  Case case_;
  reference::RowSelection rows_;
  ProblemTensors inputs_;
  std::optional<SideExpectation> q_, v_;
};

// Write a reproducer for a non-passing outcome under `dir` as
// <impl>_<dtype>_S<S>_H<H>_seed<data_seed>.h5 (inputs, expected deltas, both
// outputs); returns the path or "" if writing failed (the reason in *why).
// A non-empty file_name replaces the generated name (property runs use a fixed
// name so the last, i.e. most shrunk, failing case is what remains).
std::string dump_reproducer(const std::string& dir, const Testbed& tb, const RunOutcome& outcome,
                            const ProblemTensors& got, std::string* why, const std::string& file_name = "");

}  // namespace mlalora::harness
