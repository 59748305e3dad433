// Golden files and candidate files: checking an outside implementation
// against frozen, seeded problems without running it inside the harness.
//
// A golden file (schema: datasets/golden/README.md) is a reproducer file
// (reproducer.hpp, same schema, readable by load_reproducer) holding one
// problem and its inputs in full storage (outputs hold their base values),
// plus
//   /golden/{q,v}/{rows,slots,delta,abs_product}: the float64 reference delta
//   (factored path, s included) and the absolute-product scale P of every
//   covered physical row, and
//   a content hash of the six tensors and provenance attributes.
//
// read_golden validates everything: the reproducer part through
// load_reproducer, then the /golden part (types, shapes, rows equal to the
// problem's covered rows, slots), the tensor hash, and finally recomputes the
// expectation from the stored inputs with this build's float64 reference and
// requires it to agree with the stored one (|stored - fresh| <= 1e-12 * P,
// elementwise). The judging then uses the fresh SideExpectation (which also
// holds the eta terms), which is thereby the stored one to 1e-12 of P.
//
// A candidate file is what an outside implementation writes: datasets
// /q_nope_out and /attn_bmm_out, float32, either the full strided storage
// (1-D, storage_elems elements, same strides as the golden file's tensors;
// gaps must then keep their bits) or the logical dense (S, H, N) arrays (the
// gaps are then taken from the base and not judged); optional root string
// attributes `name` and `dtype`. Values must be NaN or representable in the
// golden problem's dtype.
//
// Nothing here throws or aborts on a bad file; every failure is a Status
// whose message names the file and the dataset / attribute.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "mlalora/harness/generators.hpp"
#include "mlalora/harness/report.hpp"
#include "mlalora/harness/testbed.hpp"
#include "mlalora/harness/verify.hpp"
#include "mlalora/host_tensors.hpp"
#include "mlalora/reference/error_bound.hpp"
#include "mlalora/reference/reference.hpp"

namespace mlalora::harness {

inline constexpr int64_t kGoldenVersion = 1;
inline constexpr int64_t kCandidateVersion = 1;
// Agreement required between a stored expectation and a fresh reference
// computation, relative to the element's absolute-product scale P.
inline constexpr double kGoldenExpectationTolerance = 1e-12;

struct GoldenSide {
  reference::SideDelta delta;     // stored float64 delta, covered physical rows ascending
  reference::SideDelta abs_prod;  // stored |s| * |x| @ |W1| @ |W2|
};

struct Golden {
  std::string path;  // where it was read from ("" if built in memory)
  Case test_case;    // problem, data_seed, nonfinite
  ProblemTensors tensors;  // inputs in full storage; outputs hold the base values
  GoldenSide q, v;
  // Recomputed from `tensors` by read_golden (and by make_golden); what the
  // judging uses.
  SideExpectation expect_q, expect_v;
  std::map<std::string, std::string> attributes;  // provenance (/attributes): tool_version, generator_seed, ...
  const GoldenSide& stored(Side s) const { return s == Side::q ? q : v; }
  const SideExpectation& expectation(Side s) const { return s == Side::q ? expect_q : expect_v; }
};

// Build a golden object in memory: computes the expectation of both sides.
// `attributes` are stored as provenance (tool_version / git_commit are
// always added).
Golden make_golden(const Case& c, const ProblemTensors& inputs,
                   const std::map<std::string, std::string>& attributes = {});

// Write the golden file for a case (tensors drawn by make_tensors(c), or given).
Status write_golden(const std::string& path, const Case& c,
                    const std::map<std::string, std::string>& attributes = {});
Status write_golden(const std::string& path, const Case& c, const ProblemTensors& inputs,
                    const std::map<std::string, std::string>& attributes = {});
Status write_golden(const std::string& path, const Golden& g);

struct GoldenReadOptions {
  // Recompute the expectation and require agreement with the stored one.
  // (Always recomputed: the judging needs it; this only controls the check.)
  bool verify_expectation = true;
  double tolerance = kGoldenExpectationTolerance;
};
Status read_golden(const std::string& path, Golden* out, const GoldenReadOptions& opt = {});

// Largest |stored - fresh| / P over both sides (0 when all agree exactly);
// non-finite disagreement gives +inf. *where describes the worst element.
double golden_expectation_discrepancy(const Golden& g, std::string* where = nullptr);

// FNV-1a 64 over the raw float32 bytes (little-endian) of the six tensors'
// storage, in TensorId order, as 16 lowercase hex digits.
std::string golden_tensor_hash(const ProblemTensors& t);

// --- The committed golden set (mlalora golden) ----------------------------

// GenConfig::gpu_default() (unit inner stride, permutations, padded strides,
// spare capacity, rank 0, empty segments) with small dims that are not
// multiples of any tile size, so each file stays a few tens of KB.
GenConfig golden_gen_config();

// Case `index` of the golden set for base seed `seed`: dtype
// kAllDTypes[index % 3]; the first draw seed seed*1000003 + index*100003 + k
// (k = 0, 1, ...) whose case has uncovered rows, a live rank-0 segment, a
// live empty segment, mixed live ranks, at least one covered row of rank > 0,
// S >= 8, H >= 2, fits the size budget (~60 KB of data), and has a
// permutation (even index) or a padded layout and no permutation (odd
// index); failing that within 100000 draws, the first draw meeting the most
// of these. *draw_seed receives the seed that was used.
Case golden_case(uint64_t seed, int64_t index, uint64_t* draw_seed = nullptr);

// Short comma-separated list of the contract features a problem exercises:
// perm, strided, rank0, empty-segment, uncovered-rows, spare-capacity,
// mixed-ranks, repeated-slot.
std::string golden_features(const Problem& p);

// --- Candidates ---------------------------------------------------------

enum class CandidateForm { storage, logical };

struct Candidate {
  std::string path;
  std::string name;   // root attr `name`, else the file stem
  std::string dtype;  // root attr `dtype` if present ("" otherwise)
  CandidateForm q_form = CandidateForm::storage, v_form = CandidateForm::storage;
  // Outputs in the golden problem's full storage layout (the logical form is
  // scattered into a copy of the base, so its gaps keep their bits).
  HostTensor q_nope_out, attn_bmm_out;
  const HostTensor& out(Side s) const { return s == Side::q ? q_nope_out : attn_bmm_out; }
};

// Read and validate a candidate against the golden problem (dataset types,
// shapes: storage length or (S,H,N); values NaN or representable in the
// dtype; a `dtype` attribute must name the golden dtype).
Status read_candidate(const std::string& path, const Golden& g, Candidate* out);

// Write a candidate file (used by tests and tools): storage or logical form.
Status write_candidate(const std::string& path, const Golden& g, const HostTensor& q_nope_out,
                       const HostTensor& attn_bmm_out, const std::string& name,
                       CandidateForm form = CandidateForm::storage);

// --- Judging --------------------------------------------------------------

// "factored" (RoundingModel::factored(dtype, false)), "factored-tc"
// (factored(dtype, true); the default), "materialized"
// (materialized(dtype, true)), "output-only" (output_only(dtype)).
std::optional<reference::RoundingModel> golden_rounding_model(const std::string& name, DType dtype);
inline constexpr const char* kGoldenModelNames = "factored, factored-tc, materialized, output-only";

struct GoldenVerdict {
  RunOutcome outcome;  // implementation = candidate name; q, v verdicts; disposition
  bool passed() const { return outcome.disposition == Disposition::passed; }
};

GoldenVerdict judge_candidate(const Golden& g, const Candidate& c, const reference::RoundingModel& model);

// Append the two rows (q, v) of a verdict to an error report.
inline void add_to_report(ErrorReport& report, int64_t case_index, const Golden& g, const GoldenVerdict& v) {
  report.add(case_index, g.test_case, v.outcome);
}

}  // namespace mlalora::harness
