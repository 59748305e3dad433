// Golden files and candidate files (golden.hpp): round trip, judging of good
// and deliberately wrong candidates, clear errors on bad files, a byte-flip
// fuzz of a golden file, and the committed datasets/golden/*.h5.
#include <catch2/catch.hpp>

#include "test_files.hpp"
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <set>

#include "mlalora/dtype.hpp"
#include "mlalora/harness/golden.hpp"
#include "mlalora/harness/implementation.hpp"
#include "mlalora/harness/reproducer.hpp"
#include "test_config.hpp"

using namespace mlalora;
using namespace mlalora::harness;
namespace fs = std::filesystem;

namespace {





void drop_object(const std::string& file, const std::string& path) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  REQUIRE(H5Ldelete(f, path.c_str(), H5P_DEFAULT) >= 0);
  H5Fclose(f);
}

void put_string_attr(const std::string& file, const std::string& obj, const std::string& name,
                     const std::string& value) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t o = H5Oopen(f, obj.c_str(), H5P_DEFAULT);
  REQUIRE(o >= 0);
  if (H5Aexists(o, name.c_str()) > 0) REQUIRE(H5Adelete(o, name.c_str()) >= 0);
  // Fixed-length UTF-8, as the project's writer does (h5py writes a Python
  // str as variable-length UTF-8; both read back).
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, value.size() + 1);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(o, name.c_str(), t, sp, H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(a >= 0);
  REQUIRE(H5Awrite(a, t, value.c_str()) >= 0);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  H5Oclose(o);
  H5Fclose(f);
}


uint64_t fuzz_seed() {
  if (const char* s = std::getenv("MLALORA_FUZZ_SEED")) return std::strtoull(s, nullptr, 10);
  return mlalora::test::base_seed();
}

// The reference-factored implementation's outputs (float64 math, output
// rounded once) for a golden problem.
ProblemTensors reference_outputs(const Golden& g) {
  auto impl = make_implementation("reference-factored");
  REQUIRE(impl);
  ProblemTensors io = g.tensors;
  Status st = impl->run(g.test_case.problem, io);
  INFO(st.message);
  REQUIRE(st.ok());
  return io;
}

Candidate candidate_from(const Golden&, const ProblemTensors& out, const std::string& name = "test") {
  Candidate c;
  c.name = name;
  c.q_nope_out = out.q_nope_out;
  c.attn_bmm_out = out.attn_bmm_out;
  return c;
}

// A judged element of a side: first covered row whose slot has rank > 0.
struct Judged {
  size_t pos = 0;
  int64_t t = -1;
  int32_t slot = -1;
};
Judged first_judged(const Golden& g, Side side) {
  const SideExpectation& ex = g.expectation(side);
  for (size_t pos = 0; pos < ex.delta.rows.size(); ++pos)
    if (g.test_case.problem.lora_ranks[ex.delta.slots[pos]] > 0) return {pos, ex.delta.rows[pos], ex.delta.slots[pos]};
  return {};
}

// A golden object with uncovered rows, a live rank-0 segment, perm or strides.
Golden sample_golden(int64_t index, uint64_t seed = 7) {
  Case c = golden_case(seed, index);
  return make_golden(c, make_tensors(c), {{"test", "1"}});
}

std::string golden_on_disk(const mlalora::test::TempDir& tmp, const std::string& name, int64_t index) {
  const std::string path = tmp(name);
  Case c = golden_case(7, index);
  Status st = write_golden(path, c, {{"test", "1"}});
  INFO(st.message);
  REQUIRE(st.ok());
  return path;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

}  // namespace

TEST_CASE("golden: write/read round trip keeps every field", "[golden]") {
  mlalora::test::TempDir tmp{"golden"};
  for (int64_t index = 0; index < 3; ++index) {
    Case c = golden_case(11, index);
    INFO(c);
    const ProblemTensors t = make_tensors(c);
    const std::string path = tmp("rt_" + std::to_string(index) + ".h5");
    Status st = write_golden(path, c, t, {{"generator_seed", "123"}});
    INFO(st.message);
    REQUIRE(st.ok());
    Golden g;
    st = read_golden(path, &g);
    INFO(st.message);
    REQUIRE(st.ok());
    const Problem &a = c.problem, &b = g.test_case.problem;
    CHECK(b.summary() == a.summary());
    CHECK(b.seg_indptr == a.seg_indptr);
    CHECK(b.weight_indices == a.weight_indices);
    CHECK(b.permutation == a.permutation);
    CHECK(b.num_segments == a.num_segments);
    CHECK(b.shape.max_segment_len == a.shape.max_segment_len);
    CHECK(same_bits(b.scalings, a.scalings));
    for (TensorId id : kAllTensors) {
      CHECK(g.tensors.of(id).strides.s0 == a.shape.layout.of(id).s0);
      CHECK(g.tensors.of(id).strides.s1 == a.shape.layout.of(id).s1);
      CHECK(same_bits(g.tensors.of(id).data, t.of(id).data));
    }
    CHECK(g.test_case.data_seed == c.data_seed);
    CHECK(g.test_case.nonfinite == c.nonfinite);
    CHECK(g.attributes.at("generator_seed") == "123");
    CHECK(g.attributes.at("kind") == "golden");
    CHECK(g.attributes.count("tool_version") == 1);
    // Stored expectation == what make_golden computed, bit for bit.
    const Golden mem = make_golden(c, t);
    for (Side side : kBothSides) {
      CHECK(g.stored(side).delta.rows == mem.stored(side).delta.rows);
      CHECK(g.stored(side).delta.slots == mem.stored(side).delta.slots);
      CHECK(same_bits(g.stored(side).delta.values, mem.stored(side).delta.values));
      CHECK(same_bits(g.stored(side).abs_prod.values, mem.stored(side).abs_prod.values));
    }
    CHECK(golden_expectation_discrepancy(g) == 0.0);
    // Also a valid reproducer file.
    Reproducer r;
    CHECK(load_reproducer(path, &r).ok());
  }
}

TEST_CASE("golden: the golden set covers the contract's features and stays small", "[golden]") {
  std::set<DType> dtypes;
  bool perm = false, strided = false;
  for (int64_t i = 0; i < 6; ++i) {
    uint64_t draw = 0;
    Case c = golden_case(20261128, i, &draw);
    INFO(c << " features " << golden_features(c.problem));
    REQUIRE(validate(c.problem).ok());
    dtypes.insert(c.problem.shape.dtype);
    const std::string f = golden_features(c.problem);
    perm |= f.find("perm") != std::string::npos;
    strided |= f.find("strided") != std::string::npos;
    CHECK(f.find("rank0") != std::string::npos);
    CHECK(f.find("empty-segment") != std::string::npos);
    CHECK(f.find("uncovered-rows") != std::string::npos);
    CHECK(f.find("mixed-ranks") != std::string::npos);
    // Deterministic.
    uint64_t draw2 = 0;
    Case again = golden_case(20261128, i, &draw2);
    CHECK(draw2 == draw);
    CHECK(again.data_seed == c.data_seed);
  }
  CHECK(dtypes.size() == 3);
  CHECK(perm);
  CHECK(strided);
}

TEST_CASE("golden: the reference output passes, perturbed candidates fail", "[golden]") {
  mlalora::test::TempDir tmp{"golden"};
  for (int64_t index = 0; index < 6; ++index) {
    Golden g = sample_golden(index);
    INFO(g.test_case);
    const Problem& p = g.test_case.problem;
    const DType dt = p.shape.dtype;
    const ProblemTensors ref = reference_outputs(g);

    // Through files, both candidate forms, every model.
    for (CandidateForm form : {CandidateForm::storage, CandidateForm::logical}) {
      const std::string cpath = tmp("cand.h5");
      REQUIRE(write_candidate(cpath, g, ref.q_nope_out, ref.attn_bmm_out, "reference-factored", form).ok());
      Candidate c;
      Status st = read_candidate(cpath, g, &c);
      INFO(st.message);
      REQUIRE(st.ok());
      CHECK(c.name == "reference-factored");
      CHECK(c.q_form == form);
      for (const char* model : {"factored", "factored-tc", "materialized", "output-only"}) {
        INFO(model);
        auto m = golden_rounding_model(model, dt);
        REQUIRE(m);
        GoldenVerdict v = judge_candidate(g, c, *m);
        INFO(v.outcome.message);
        CHECK(v.passed());
        CHECK(v.outcome.q.elements_checked > 0);
        CHECK(v.outcome.q.elements_untouched > 0);
      }
    }
    CHECK_FALSE(golden_rounding_model("fast", dt).has_value());
    const auto model = *golden_rounding_model("factored", dt);

    for (Side side : kBothSides) {
      INFO(side_name(side));
      const TensorId oid = output_of(side);
      const Judged j = first_judged(g, side);
      REQUIRE(j.t >= 0);
      const SideExpectation& ex = g.expectation(side);
      const reference::BoundTerms bt = reference::bound_terms(model, p.dims(), p.lora_ranks[j.slot], side);

      {  // one element off by 10 bounds
        ProblemTensors bad = ref;
        const int64_t h = p.dims().H - 1, n = 0;
        const double base = g.tensors.of(oid).at(j.t, h, n);
        const double want = base + ex.delta.at(j.pos, h, n);
        const double bound = reference::element_bound(bt, ex.abs_prod.at(j.pos, h, n), want,
                                                      ex.second_stage_colsum[j.slot]);
        bad.of(oid).at(j.t, h, n) = round_to(dt, want + 10 * bound + 4 * unit_roundoff(dt) * std::fabs(want));
        GoldenVerdict v = judge_candidate(g, candidate_from(g, bad), model);
        const SideVerdict& s = side == Side::q ? v.outcome.q : v.outcome.v;
        INFO(s.describe());
        CHECK_FALSE(v.passed());
        CHECK(s.bound_violations == 1);
        CHECK(s.bad_count == 1);
        CHECK(s.first_bad.t == j.t);
        CHECK(s.first_bad.h == h);
        CHECK(s.first_bad.n == n);
        CHECK(s.max_error_bound_ratio > 5);
      }
      {  // a row written outside segments
        // An uncovered physical row (the golden set always has one) ...
        const std::vector<int32_t> slot_of = slot_of_physical_row(p);
        int64_t t_out = -1;
        for (int64_t t = 0; t < p.dims().S && t_out < 0; ++t)
          if (slot_of[t] < 0) t_out = t;
        REQUIRE(t_out >= 0);
        ProblemTensors bad = ref;
        bad.of(oid).at(t_out, 0, 0) = round_to(dt, bad.of(oid).at(t_out, 0, 0) + 1.0f);
        GoldenVerdict v = judge_candidate(g, candidate_from(g, bad), model);
        const SideVerdict& s = side == Side::q ? v.outcome.q : v.outcome.v;
        INFO(s.describe());
        CHECK_FALSE(v.passed());
        CHECK(s.written_outside == 1);
        CHECK(s.first_bad.t == t_out);
        // ... and a row of a rank-0 slot.
        int64_t t_rank0 = -1;
        for (int64_t t = 0; t < p.dims().S && t_rank0 < 0; ++t)
          if (slot_of[t] >= 0 && p.lora_ranks[slot_of[t]] == 0) t_rank0 = t;
        REQUIRE(t_rank0 >= 0);
        ProblemTensors bad0 = ref;
        // +0.0 on a -0.0 base flips the sign bit: visible in the bits too.
        float& x = bad0.of(oid).at(t_rank0, 0, 0);
        x = x == 0.f ? (std::signbit(x) ? 0.f : -0.f) : round_to(dt, x * 2.f);
        GoldenVerdict v0 = judge_candidate(g, candidate_from(g, bad0), model);
        const SideVerdict& s0 = side == Side::q ? v0.outcome.q : v0.outcome.v;
        INFO(s0.describe());
        CHECK(s0.written_outside == 1);
      }
      {  // NaN introduced
        ProblemTensors bad = ref;
        bad.of(oid).at(j.t, 0, 0) = std::numeric_limits<float>::quiet_NaN();
        GoldenVerdict v = judge_candidate(g, candidate_from(g, bad), model);
        const SideVerdict& s = side == Side::q ? v.outcome.q : v.outcome.v;
        INFO(s.describe());
        CHECK_FALSE(v.passed());
        CHECK(s.nonfinite_introduced == 1);
      }
      {  // a gap of a strided output overwritten (storage form only)
        const HostTensor& base = g.tensors.of(oid);
        const std::vector<bool> mask = base.logical_mask();
        size_t gap = mask.size();
        for (size_t k = 0; k < mask.size() && gap == mask.size(); ++k)
          if (!mask[k]) gap = k;
        if (gap < mask.size()) {
          ProblemTensors bad = ref;
          bad.of(oid).data[gap] = 1.0f;
          GoldenVerdict v = judge_candidate(g, candidate_from(g, bad), model);
          const SideVerdict& s = side == Side::q ? v.outcome.q : v.outcome.v;
          CHECK(s.written_outside == 1);
          CHECK(s.first_bad.n == -1);
          // The logical form cannot express gaps: the same output passes.
          const std::string cpath = tmp("gap.h5");
          REQUIRE(write_candidate(cpath, g, bad.q_nope_out, bad.attn_bmm_out, "x", CandidateForm::logical).ok());
          Candidate c;
          REQUIRE(read_candidate(cpath, g, &c).ok());
          CHECK(judge_candidate(g, c, model).passed());
        }
      }
    }
  }
}

TEST_CASE("golden: the error report has one row per side", "[golden]") {
  mlalora::test::TempDir tmp{"golden"};
  Golden g = sample_golden(1);
  ProblemTensors ref = reference_outputs(g);
  GoldenVerdict v = judge_candidate(g, candidate_from(g, ref, "mine"), *golden_rounding_model("factored-tc", DType::f16));
  ErrorReport report;
  add_to_report(report, 0, g, v);
  REQUIRE(report.rows() == 2);
  const H5Table t = report.table();
  const auto& names = std::get<std::vector<std::string>>(t.find("implementation")->data);
  CHECK(names[0] == "mine");
  const std::string out = tmp("report.h5");
  REQUIRE(report.write(out, Provenance::collect("error-report", "test", 1)).ok());
  H5Reader rd;
  REQUIRE(rd.open(out).ok());
  std::string kind;
  REQUIRE(rd.read_attr_string("/", "kind", &kind).ok());
  CHECK(kind == "error-report");
}

TEST_CASE("golden: bad golden files give clear errors", "[golden]") {
  mlalora::test::TempDir tmp{"golden"};
  const std::string good = golden_on_disk(tmp, "good.h5", 0);
  Golden g0;
  REQUIRE(read_golden(good, &g0).ok());
  const Dims d = g0.test_case.problem.dims();
  const auto nq = static_cast<hsize_t>(g0.q.delta.rows.size());

  {  // missing file
    Golden g;
    Status st = read_golden(tmp("nope.h5"), &g);
    CHECK(st.code == StatusCode::io_error);
    CHECK_THAT(st.message, Catch::Contains("nope.h5"));
  }
  {  // truncated
    std::vector<char> b = mlalora::test::read_bytes(good);
    for (size_t keep : {size_t{0}, size_t{100}, b.size() / 2, b.size() - 1}) {
      const std::string f = tmp("trunc.h5");
      mlalora::test::write_bytes(f, std::vector<char>(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(keep)));
      Golden g;
      Status st = read_golden(f, &g);
      INFO(keep << ": " << st.message);
      CHECK_FALSE(st.ok());
      CHECK_THAT(st.message, Catch::Contains("trunc.h5"));
    }
  }
  {  // a reproducer is not a golden file
    Reproducer r;
    r.problem = g0.test_case.problem;
    r.tensors = g0.tensors;
    const std::string f = tmp("repro.h5");
    REQUIRE(save_reproducer(f, r).ok());
    Golden g;
    Status st = read_golden(f, &g);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("repro.h5") && Catch::Contains("not a golden file"));
  }
  struct Mut {
    const char* what;
    std::function<void(const std::string&)> mutate;
    std::vector<const char*> expect;
  };
  const std::vector<Mut> muts = {
      {"delta stored as float32",
       [&](const std::string& f) {
         mlalora::test::replace_dataset<float>(f, "/golden/q/delta", H5T_NATIVE_FLOAT,
                            std::vector<float>(nq * d.H * d.R_kv, 0.f),
                            {nq, static_cast<hsize_t>(d.H), static_cast<hsize_t>(d.R_kv)});
       },
       {"/golden/q/delta"}},
      {"delta of the wrong shape",
       [&](const std::string& f) {
         mlalora::test::replace_dataset<double>(f, "/golden/v/delta", H5T_NATIVE_DOUBLE, std::vector<double>(nq * d.H * d.D_v + 1, 0.0),
                             {nq * d.H * d.D_v + 1});
       },
       {"/golden/v/delta"}},
      {"delta missing", [&](const std::string& f) { drop_object(f, "/golden/q/delta"); }, {"/golden/q/delta"}},
      {"golden group missing", [&](const std::string& f) { drop_object(f, "/golden"); }, {"/golden"}},
      {"a delta value changed",
       [&](const std::string& f) {
         std::vector<double> v = g0.q.delta.values;
         v[v.size() / 2] += 0.25;
         mlalora::test::replace_dataset<double>(f, "/golden/q/delta", H5T_NATIVE_DOUBLE, v,
                             {nq, static_cast<hsize_t>(d.H), static_cast<hsize_t>(d.R_kv)});
       },
       {"/golden/q", "disagrees", "stored"}},
      {"rows not the covered rows",
       [&](const std::string& f) {
         std::vector<int64_t> rows = g0.q.delta.rows;
         rows[0] += 1;
         mlalora::test::replace_dataset<int64_t>(f, "/golden/q/rows", H5T_NATIVE_INT64, rows, {nq});
       },
       {"/golden/q/rows[0]"}},
      {"rows of the wrong length",
       [&](const std::string& f) {
         std::vector<int64_t> rows = g0.q.delta.rows;
         rows.pop_back();
         mlalora::test::replace_dataset<int64_t>(f, "/golden/q/rows", H5T_NATIVE_INT64, rows, {nq - 1});
       },
       {"/golden/q/rows"}},
      {"negative abs_product",
       [&](const std::string& f) {
         std::vector<double> v(nq * d.H * d.D_v, -1.0);
         mlalora::test::replace_dataset<double>(f, "/golden/v/abs_product", H5T_NATIVE_DOUBLE, v,
                             {nq, static_cast<hsize_t>(d.H), static_cast<hsize_t>(d.D_v)});
       },
       {"/golden/v/abs_product", "negative"}},
      {"tensor data changed behind the hash",
       [&](const std::string& f) {
         std::vector<float> base = g0.tensors.q_nope_out.data;
         base[0] = base[0] == 1.f ? 2.f : 1.f;
         mlalora::test::replace_dataset<float>(f, "/tensors/q_nope_out", H5T_NATIVE_FLOAT, base, {base.size()});
       },
       {"tensors_fnv1a64"}},
      {"data_seed not a number", [&](const std::string& f) { put_string_attr(f, "/golden", "data_seed", "12x"); },
       {"data_seed"}},
      {"golden version 2", [&](const std::string& f) { mlalora::test::replace_int_attr(f, "/", "mlalora_golden_version", 2); },
       {"mlalora_golden_version"}},
      {"problem invalid (reproducer part)",
       [&](const std::string& f) { mlalora::test::replace_int_attr(f, "/problem", "has_permutation", 7); },
       {"has_permutation"}},
  };
  for (const Mut& m : muts) {
    INFO(m.what);
    const std::string f = tmp("mut.h5");
    fs::copy_file(good, f, fs::copy_options::overwrite_existing);
    m.mutate(f);
    Golden g;
    Status st = read_golden(f, &g);
    INFO(st.message);
    CHECK_FALSE(st.ok());
    CHECK_THAT(st.message, Catch::Contains("mut.h5"));
    for (const char* e : m.expect) CHECK_THAT(st.message, Catch::Contains(e));
  }
}

TEST_CASE("golden: bad candidate files give clear errors", "[golden]") {
  mlalora::test::TempDir tmp{"golden"};
  Golden g = sample_golden(2);  // bf16
  REQUIRE(g.test_case.problem.shape.dtype == DType::bf16);
  const Dims d = g.test_case.problem.dims();
  const ProblemTensors ref = reference_outputs(g);
  const std::string good = tmp("cand.h5");
  REQUIRE(write_candidate(good, g, ref.q_nope_out, ref.attn_bmm_out, "", CandidateForm::storage).ok());
  {
    Candidate c;
    REQUIRE(read_candidate(good, g, &c).ok());
    CHECK(c.name == "cand");  // the file stem when there is no name attribute
    CHECK(c.dtype == "bf16");
  }
  const auto storage_v = static_cast<hsize_t>(ref.attn_bmm_out.data.size());
  struct Mut {
    const char* what;
    std::function<void(const std::string&)> mutate;
    std::vector<const char*> expect;
  };
  const std::vector<Mut> muts = {
      {"output missing", [&](const std::string& f) { drop_object(f, "/q_nope_out"); }, {"/q_nope_out"}},
      {"stored as float64",
       [&](const std::string& f) {
         mlalora::test::replace_dataset<double>(f, "/attn_bmm_out", H5T_NATIVE_DOUBLE, std::vector<double>(storage_v, 0.0), {storage_v});
       },
       {"/attn_bmm_out", "float"}},
      {"wrong storage length",
       [&](const std::string& f) {
         mlalora::test::replace_dataset<float>(f, "/attn_bmm_out", H5T_NATIVE_FLOAT, std::vector<float>(storage_v + 3, 0.f),
                            {storage_v + 3});
       },
       {"/attn_bmm_out", "shape"}},
      {"wrong logical shape",
       [&](const std::string& f) {
         const hsize_t S = static_cast<hsize_t>(d.S), H = static_cast<hsize_t>(d.H), N = static_cast<hsize_t>(d.D_v);
         mlalora::test::replace_dataset<float>(f, "/attn_bmm_out", H5T_NATIVE_FLOAT, std::vector<float>(S * H * (N + 1), 0.f),
                            {S, H, N + 1});
       },
       {"/attn_bmm_out", "logical S,H,N"}},
      {"rank 2",
       [&](const std::string& f) {
         mlalora::test::replace_dataset<float>(f, "/attn_bmm_out", H5T_NATIVE_FLOAT, std::vector<float>(4, 0.f), {2, 2});
       },
       {"/attn_bmm_out", "rank 2"}},
      {"dtype attribute disagrees", [&](const std::string& f) { put_string_attr(f, "/", "dtype", "f16"); },
       {"dtype", "bf16"}},
      {"dtype attribute unknown", [&](const std::string& f) { put_string_attr(f, "/", "dtype", "fp8"); },
       {"dtype", "fp8"}},
      {"a value not representable in bf16",
       [&](const std::string& f) {
         std::vector<float> v = ref.q_nope_out.data;
         const Judged j = first_judged(g, Side::q);
         v[static_cast<size_t>(ref.q_nope_out.offset(j.t, 0, 0))] = 1.0f + 1.0f / 1024;
         mlalora::test::replace_dataset<float>(f, "/q_nope_out", H5T_NATIVE_FLOAT, v, {v.size()});
       },
       {"/q_nope_out", "not representable in bf16"}},
  };
  for (const Mut& m : muts) {
    INFO(m.what);
    const std::string f = tmp("badcand.h5");
    fs::copy_file(good, f, fs::copy_options::overwrite_existing);
    m.mutate(f);
    Candidate c;
    Status st = read_candidate(f, g, &c);
    INFO(st.message);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("badcand.h5"));
    for (const char* e : m.expect) CHECK_THAT(st.message, Catch::Contains(e));
  }
  {  // missing and truncated candidate files
    Candidate c;
    Status st = read_candidate(tmp("absent.h5"), g, &c);
    CHECK(st.code == StatusCode::io_error);
    CHECK_THAT(st.message, Catch::Contains("absent.h5"));
    std::vector<char> b = mlalora::test::read_bytes(good);
    const std::string f = tmp("trunc_cand.h5");
    mlalora::test::write_bytes(f, std::vector<char>(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(b.size() / 2)));
    st = read_candidate(f, g, &c);
    CHECK_FALSE(st.ok());
    CHECK_THAT(st.message, Catch::Contains("trunc_cand.h5"));
  }
}

TEST_CASE("golden: byte-flip fuzz of a golden file never crashes", "[golden]") {
  const uint64_t seed = fuzz_seed();
  const int iters = mlalora::test::env_int("MLALORA_FUZZ_ITERS", 150);
  std::printf("[golden] golden fuzz: MLALORA_FUZZ_SEED=%llu MLALORA_FUZZ_ITERS=%d\n",
              static_cast<unsigned long long>(seed), iters);
  std::fflush(stdout);
  INFO("MLALORA_FUZZ_SEED=" << seed);
  mlalora::test::TempDir tmp{"golden"};
  const std::string good = golden_on_disk(tmp, "good.h5", static_cast<int64_t>(seed % 6));
  Golden g0;
  REQUIRE(read_golden(good, &g0).ok());
  mlalora::test::byte_flip_fuzz("golden fuzz", seed, iters, good, tmp, [](const std::string& f) {
    Golden g;
    Status st = read_golden(f, &g);
    if (st.ok()) {
      // Whatever loads is a valid, self-consistent golden problem that can be judged.
      REQUIRE(validate(g.test_case.problem).ok());
      for (TensorId id : kAllTensors)
        REQUIRE(static_cast<int64_t>(g.tensors.of(id).data.size()) ==
                storage_elems(tensor_shape(g.test_case.problem.dims(), id), g.test_case.problem.shape.layout.of(id)));
      REQUIRE(golden_expectation_discrepancy(g) <= kGoldenExpectationTolerance);
      ProblemTensors out = reference_outputs(g);
      GoldenVerdict v =
          judge_candidate(g, candidate_from(g, out), *golden_rounding_model("factored", g.test_case.problem.shape.dtype));
      CHECK(v.passed());
    }
    return st;
  });
}

TEST_CASE("golden: every committed datasets/golden/*.h5 loads and matches a fresh reference", "[golden]") {
  const fs::path dir = fs::path(MLALORA_SOURCE_DIR) / "datasets" / "golden";
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".h5") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  INFO("directory " << dir.string());
  REQUIRE(!files.empty());
  std::set<DType> dtypes;
  for (const fs::path& f : files) {
    INFO(f.string());
    Golden g;
    Status st = read_golden(f.string(), &g);  // includes the 1e-12 * P agreement with a fresh factored reference
    INFO(st.message);
    REQUIRE(st.ok());
    const Problem& p = g.test_case.problem;
    dtypes.insert(p.shape.dtype);
    std::string where;
    const double disc = golden_expectation_discrepancy(g, &where);
    INFO(where);
    CHECK(disc <= kGoldenExpectationTolerance);
    // The inputs are the ones the seed draws.
    CHECK(golden_tensor_hash(g.tensors) == golden_tensor_hash(make_tensors(g.test_case)));
    // And the independent (materialising) float64 reference agrees too.
    for (Side side : kBothSides) {
      const reference::SideDelta mat = reference::delta_materialized(p, g.tensors, side);
      const GoldenSide& gs = g.stored(side);
      REQUIRE(mat.rows == gs.delta.rows);
      double worst = 0;
      for (size_t k = 0; k < mat.values.size(); ++k) {
        const double P = gs.abs_prod.values[k];
        const double diff = std::fabs(mat.values[k] - gs.delta.values[k]);
        worst = std::max(worst, diff == 0 ? 0.0 : diff / P);
      }
      CHECK(worst <= 1e-12);
    }
    // The reference output passes under the factored model.
    ProblemTensors out = reference_outputs(g);
    GoldenVerdict v = judge_candidate(g, candidate_from(g, out), *golden_rounding_model("factored", p.shape.dtype));
    INFO(v.outcome.message);
    CHECK(v.passed());
  }
  CHECK(dtypes.size() == 3);
}
