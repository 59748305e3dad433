#include "mlalora/harness/testbed.hpp"

#include <chrono>

namespace mlalora::harness {

const char* disposition_name(Disposition d) {
  switch (d) {
    case Disposition::passed: return "passed";
    case Disposition::incorrect: return "incorrect";
    case Disposition::failed: return "failed";
    case Disposition::not_supported: return "not-supported";
  }
  return "?";
}

Testbed::Testbed(Case c, reference::RowSelection rows) : case_(std::move(c)), rows_(std::move(rows)) {
  inputs_ = make_tensors(case_);
  q_ = expect_side(case_.problem, inputs_, Side::q, rows_);
  v_ = expect_side(case_.problem, inputs_, Side::v, rows_);
}

RunOutcome Testbed::run(Implementation& impl, ProblemTensors* outputs) {
  RunOutcome o;
  o.implementation = impl.name();
  const Problem& p = case_.problem;
  Status sup = impl.supports(p);
  if (!sup.ok()) {
    o.disposition = sup.code == StatusCode::not_supported ? Disposition::not_supported : Disposition::failed;
    o.message = sup.message;
    return o;
  }
  ProblemTensors io = inputs_;
  auto t0 = std::chrono::steady_clock::now();
  Status st = impl.run(p, io);
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!st.ok()) {
    o.disposition = st.code == StatusCode::not_supported ? Disposition::not_supported : Disposition::failed;
    o.message = std::string(status_code_name(st.code)) + ": " + st.message;
    if (outputs) *outputs = std::move(io);
    return o;
  }
  // Inputs must be untouched too: an implementation that scribbles on them is wrong.
  for (TensorId id : {TensorId::q_nope, TensorId::attn_latent, TensorId::A, TensorId::B}) {
    const auto& a = inputs_.of(id).data;
    const auto& b = io.of(id).data;
    for (size_t k = 0; k < a.size(); ++k)
      if (to_bits(p.shape.dtype, a[k]) != to_bits(p.shape.dtype, b[k])) {
        o.disposition = Disposition::incorrect;
        o.message = std::string("input tensor ") + tensor_name(id) + " was modified at storage element " +
                    std::to_string(k);
        if (outputs) *outputs = std::move(io);
        return o;
      }
  }
  o.q = verify_side(p, inputs_, io.q_nope_out, Side::q, *q_, impl.rounding_model(p, Side::q));
  o.v = verify_side(p, inputs_, io.attn_bmm_out, Side::v, *v_, impl.rounding_model(p, Side::v));
  o.disposition = (o.q.passed() && o.v.passed()) ? Disposition::passed : Disposition::incorrect;
  o.message = o.q.describe() + " | " + o.v.describe();
  if (outputs) *outputs = std::move(io);
  return o;
}

}  // namespace mlalora::harness
