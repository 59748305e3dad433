// The CPU implementations every binary has: the float64 reference paths,
// exposed as implementations whose only rounding is the final output's.
#include <mutex>

#include "mlalora/harness/implementation.hpp"
#include "mlalora/reference/reference.hpp"
#ifdef MLALORA_HAVE_CUDA
#include "mlalora/harness/gpu_implementations.hpp"
#endif

namespace mlalora::harness {

namespace {

using DeltaFn = reference::SideDelta (*)(const Problem&, const ProblemTensors&, Side, const reference::RowSelection&);

class ReferenceImplementation final : public Implementation {
 public:
  ReferenceImplementation(std::string name, std::string desc, DeltaFn fn)
      : name_(std::move(name)), desc_(std::move(desc)), fn_(fn) {}
  std::string name() const override { return name_; }
  std::string description() const override { return desc_; }
  Status supports(const Problem& p) const override { return validate(p); }
  reference::RoundingModel rounding_model(const Problem& p, Side) const override {
    return reference::RoundingModel::output_only(p.shape.dtype);
  }
  Status run(const Problem& p, ProblemTensors& io) override {
    MLALORA_RETURN_IF_ERROR(validate(p));
    for (Side side : kBothSides) {
      reference::SideDelta d = fn_(p, io, side, reference::RowSelection::all());
      HostTensor& out = io.of(output_of(side));
      for (size_t pos = 0; pos < d.rows.size(); ++pos) {
        if (p.lora_ranks[d.slots[pos]] == 0) continue;  // rank 0: nothing is written
        for (int64_t h = 0; h < d.H; ++h)
          for (int64_t n = 0; n < d.N; ++n) {
            float& o = out.at(d.rows[pos], h, n);
            o = round_to(p.shape.dtype, static_cast<double>(o) + d.at(pos, h, n));
          }
      }
    }
    return Status::Ok();
  }

 private:
  std::string name_, desc_;
  DeltaFn fn_;
};

std::vector<RegisteredImplementation>& registry() {
  static std::vector<RegisteredImplementation> r;
  return r;
}

void register_builtin() {
  register_implementation({"reference-factored", "float64 Eigen, factored (x@B)@A, output rounded once", false, [] {
                             return std::make_unique<ReferenceImplementation>(
                                 "reference-factored", "float64 Eigen, factored", &reference::delta_factored);
                           }});
  register_implementation({"reference-materialized", "float64 Eigen, materialises dW = B@A per slot", false, [] {
                             return std::make_unique<ReferenceImplementation>("reference-materialized",
                                                                              "float64 Eigen, materialised",
                                                                              &reference::delta_materialized);
                           }});
#ifdef MLALORA_HAVE_CUDA
  register_gpu_implementations();
#endif
}

}  // namespace

void register_implementation(RegisteredImplementation r) {
  for (auto& e : registry())
    if (e.name == r.name) {
      e = std::move(r);
      return;
    }
  registry().push_back(std::move(r));
}

const std::vector<RegisteredImplementation>& registered_implementations() {
  static std::once_flag once;
  std::call_once(once, register_builtin);
  return registry();
}

std::unique_ptr<Implementation> make_implementation(const std::string& name) {
  for (const auto& e : registered_implementations())
    if (e.name == name) return e.make();
  return nullptr;
}

}  // namespace mlalora::harness
