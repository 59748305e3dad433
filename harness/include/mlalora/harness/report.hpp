// HDF5 reports (schema: reports/README.md). Every report has a provenance
// block as root attributes and one table group "/rows"; error reports carry
// one row per (case, implementation, side). Written through H5Writer: to a
// temporary name, then renamed, so a crash never leaves a corrupt report.
#pragma once
#include <string>
#include <vector>

#include "mlalora/harness/hdf5_file.hpp"
#include "mlalora/harness/testbed.hpp"

namespace mlalora::harness {

struct Provenance {
  std::string kind;          // "error-report" | "throughput-report" | "fma-report" | ...
  std::string tool_version;  // MLALORA_VERSION
  std::string git_commit;    // MLALORA_GIT_COMMIT at build time
  std::string host;
  std::string device;        // GPU name, or "none"
  std::string time_utc;      // ISO 8601
  std::string command_line;
  uint64_t seed = 0;
  static Provenance collect(const std::string& kind, const std::string& command_line, uint64_t seed);
};
Status write_provenance(H5Writer& w, const Provenance& p);
Status read_provenance(const H5Reader& r, Provenance* p);

// Name of the GPU this process sees, or "none" (with the reason in *why).
std::string gpu_device_name(std::string* why = nullptr);

class ErrorReport {
 public:
  void add(int64_t case_index, const Case& c, const RunOutcome& o);
  int64_t rows() const { return static_cast<int64_t>(case_index_.size()); }
  int64_t count(Disposition d) const;
  H5Table table() const;
  Status write(const std::string& path, const Provenance& prov) const;

 private:
  std::vector<int64_t> case_index_, S_, H_, D_qk_, D_v_, R_kv_, L_, r_max_, num_segments_, capacity_, perm_,
      strided_, nonfinite_, checked_, nonfinite_introduced_, nonfinite_lost_, written_outside_, bound_violations_,
      bad_count_, max_rank_;
  std::vector<double> max_abs_, rel_frob_, max_ratio_, seconds_;
  std::vector<std::string> impl_, side_, dtype_, disposition_, message_, data_seed_;
};

}  // namespace mlalora::harness
