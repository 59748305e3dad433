// FMA and memory-traffic accounting: the factored LoRA correction versus
// naive materialisation of dW = B @ A (SPEC "Where it comes from").
//
// Per layer, for T tokens, n_used distinct adapters of rank r, H heads (after
// tensor parallelism), F = D_qk + D_v:
//
//   naive    = materialise  n_used * H*F*r*R_kv
//            + apply        T*H*(D_qk*R_kv + R_kv*D_v)
//   factored = T*H*r*(D_qk + 2*R_kv + D_v)
//
// Bytes (element size e, bf16 = 2 by default):
//   activations (both sides, minimal traffic): each input read once, each
//     output read and written once:
//       T*H*(D_qk + R_kv)  +  2*T*H*(R_kv + D_v)
//   adapter weights of each used slot read once: n_used*(r*R_kv + H*F*r)
//   naive additionally writes dW once and reads it once: 2*n_used*H*F*R_kv
//   factored = activations + weights; naive = activations + weights + dW.
// A forward step multiplies the per-layer counts by num_layers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mlalora/status.hpp"

namespace mlalora::harness {

struct ModelConfig {
  std::string name;
  int64_t H = 0;  // heads at TP = 1
  int64_t D_qk = 0;
  int64_t D_v = 0;
  int64_t R_kv = 0;
  int64_t num_layers = 0;
  std::string comment;  // trailing '#' comment of the line, if any
};

// Text format: one model per line, whitespace-separated
//   name H D_qk D_v R_kv num_layers   [# comment]
// '#' starts a comment; blank lines are ignored. Errors name file:line.
Status parse_model_configs(const std::string& text, const std::string& source_name, std::vector<ModelConfig>* out);
Status load_model_configs(const std::string& path, std::vector<ModelConfig>* out);
const ModelConfig* find_model(const std::vector<ModelConfig>& models, const std::string& name);

struct Workload {
  int64_t tokens = 0;      // T
  int64_t n_used = 0;      // distinct adapters used in the batch
  int64_t rank = 0;        // r
  int64_t H = 0;           // heads after tensor parallelism
  int64_t D_qk = 0;
  int64_t D_v = 0;
  int64_t R_kv = 0;
  int64_t num_layers = 1;
  int64_t elem_bytes = 2;  // bf16
  int64_t F() const { return D_qk + D_v; }
};

// Checks ranges (dims >= 1, tokens/n_used/rank >= 0, n_used <= tokens when
// tokens > 0, elem_bytes in {1,2,4,8}) and that the counts fit int64.
Status validate_workload(const Workload& w);
// A workload for a model at tensor-parallel degree tp (H must divide by tp).
Status make_workload(const ModelConfig& m, int64_t tp, int64_t tokens, int64_t n_used, int64_t rank,
                     Workload* out, int64_t elem_bytes = 2);

struct Cost {
  int64_t fmas = 0;
  int64_t bytes = 0;
};

struct NaiveCost {
  int64_t materialise_fmas = 0;  // n_used * H*F*r*R_kv
  int64_t apply_fmas = 0;        // T*H*(D_qk*R_kv + R_kv*D_v)
  int64_t weight_bytes = 0;      // A and B of used slots
  int64_t dw_bytes = 0;          // dW written once and read once
  int64_t activation_bytes = 0;
  Cost total() const { return {materialise_fmas + apply_fmas, weight_bytes + dw_bytes + activation_bytes}; }
};

struct FactoredCost {
  int64_t fmas = 0;  // T*H*r*(D_qk + 2*R_kv + D_v)
  int64_t weight_bytes = 0;
  int64_t activation_bytes = 0;
  Cost total() const { return {fmas, weight_bytes + activation_bytes}; }
};

// Per-layer counts (call validate_workload first; values are unchecked here).
NaiveCost naive_cost_per_layer(const Workload& w);
FactoredCost factored_cost_per_layer(const Workload& w);
int64_t materialise_fmas_per_slot(int64_t H, int64_t F, int64_t r, int64_t R_kv);  // H*F*r*R_kv

struct FmaReport {
  Workload workload;
  NaiveCost naive_layer;
  FactoredCost factored_layer;
  Cost naive_step;     // x num_layers
  Cost factored_step;  // x num_layers
  double fma_ratio = 0;    // naive / factored FMAs (inf if factored is 0 and naive > 0; 1 if both 0)
  double bytes_ratio = 0;  // naive / factored bytes
};

Status compute_fma_report(const Workload& w, FmaReport* out);
// One readable line per report, e.g. for the CLI.
std::string format_fma_report(const FmaReport& r);

}  // namespace mlalora::harness
