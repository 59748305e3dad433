#include "mlalora/harness/testbed.hpp"

#include <chrono>
#include <sys/stat.h>

#include "mlalora/harness/reproducer.hpp"

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

Testbed::Testbed(Case c, ProblemTensors inputs, reference::RowSelection rows)
    : case_(std::move(c)), rows_(std::move(rows)), inputs_(std::move(inputs)) {
  q_ = expect_side(case_.problem, inputs_, Side::q, rows_);
  v_ = expect_side(case_.problem, inputs_, Side::v, rows_);
}

RunOutcome Testbed::run(Implementation& impl, ProblemTensors* outputs) {
  RunOutcome o;
  o.implementation = impl.name();
  o.q.side = Side::q;
  o.v.side = Side::v;
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
    const int64_t n = static_cast<int64_t>(a.size());
    int64_t changed = 0;
#pragma omp parallel for reduction(+ : changed) schedule(static)
    for (int64_t k = 0; k < n; ++k)
      changed += to_bits(p.shape.dtype, a[static_cast<size_t>(k)]) != to_bits(p.shape.dtype, b[static_cast<size_t>(k)]);
    for (size_t k = 0; changed > 0 && k < a.size(); ++k)
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

std::string dump_reproducer(const std::string& dir, const Testbed& tb, const RunOutcome& o, const ProblemTensors& got,
                            std::string* why, const std::string& file_name) {
  const Case& c = tb.test_case();
  const Problem& p = c.problem;
  ::mkdir(dir.c_str(), 0755);
  std::string path = dir + "/" + o.implementation + "_" + dtype_name(p.shape.dtype) + "_S" + std::to_string(p.dims().S) +
                     "_H" + std::to_string(p.dims().H) + "_seed" + std::to_string(c.data_seed) + ".h5";
  if (!file_name.empty()) path = dir + "/" + file_name;
  Reproducer r;
  r.problem = p;
  r.tensors = tb.inputs();
  for (Side side : kBothSides) {
    const SideExpectation& ex = tb.expectation(side);
    FloatArray want;
    want.shape = {static_cast<int64_t>(ex.delta.rows.size()), ex.delta.H, ex.delta.N};
    want.data.assign(ex.delta.values.begin(), ex.delta.values.end());
    r.extras[std::string("expected_") + side_name(side) + "_delta"] = std::move(want);
    std::vector<float> rows(ex.delta.rows.begin(), ex.delta.rows.end());
    r.extras[std::string("expected_") + side_name(side) + "_rows"] = float_array(std::move(rows));
    r.extras[std::string("got_") + tensor_name(output_of(side))] = float_array(got.of(output_of(side)).data);
  }
  r.attributes["implementation"] = o.implementation;
  r.attributes["disposition"] = disposition_name(o.disposition);
  r.attributes["data_seed"] = std::to_string(c.data_seed);
  r.attributes["nonfinite"] = c.nonfinite ? "1" : "0";
  r.attributes["message"] = o.message;
  Status s = save_reproducer(path, r);
  if (!s.ok()) {
    if (why) *why = s.message;
    return "";
  }
  return path;
}

}  // namespace mlalora::harness
