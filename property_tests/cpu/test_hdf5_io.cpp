// HDF5 layer (hdf5_file.hpp) and reproducer files (reproducer.hpp):
// round trips, atomic writes, and robustness against missing, foreign,
// truncated, mistyped and randomly corrupted files.
#include <catch2/catch.hpp>

#include "test_files.hpp"
#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <limits>
#include <random>

#include "mlalora/dtype.hpp"
#include "mlalora/harness/hdf5_file.hpp"
#include "mlalora/harness/reproducer.hpp"
#include "test_config.hpp"

using namespace mlalora;
using namespace mlalora::harness;
namespace fs = std::filesystem;

// libhdf5 (1.10.x) leaks small internal allocations on some error paths when
// it decodes corrupt files (the truncation and fuzz tests below). Under
// MLALORA_SANITIZE=ON LeakSanitizer would fail the run for leaks that are not
// ours; suppress leaks whose stack is inside libhdf5. Harmless without LSan.
extern "C" const char* __lsan_default_suppressions() { return "leak:libhdf5\n"; }

namespace {

// A fresh directory per test case, removed afterwards.



template <typename T>
bool bits_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

uint64_t seed_from_env(const char* name) {
  if (const char* s = std::getenv(name)) return std::strtoull(s, nullptr, 10);
  return mlalora::test::base_seed();
}

// A small hand-built problem: permutation, mixed ranks (one 0), an empty
// segment, a repeated slot, capacity > live segments, and non-contiguous
// strides (padding gaps, a head-major output, a column-major A).
Problem small_problem() {
  Problem p;
  ProblemShape& s = p.shape;
  s.dims = Dims{/*S=*/7, /*H=*/3, /*D_qk=*/5, /*D_v=*/4, /*R_kv=*/6, /*L=*/3, /*r_max=*/4};
  const Dims& d = s.dims;
  s.dtype = DType::bf16;
  s.layout = Layout::contiguous(d);
  s.layout.q_nope = {d.H * (d.D_qk + 2) + 1, d.D_qk + 2, 1};
  s.layout.q_nope_out = {d.R_kv, d.S * d.R_kv, 1};  // head-major
  s.layout.attn_bmm_out = {d.H * (d.D_v + 3), d.D_v + 3, 1};
  s.layout.A = {d.r_max * d.R_kv + 3, 1, d.r_max};  // column-major slots, padded
  s.layout.B = {d.H * d.F() * d.r_max + 5, d.r_max, 1};
  s.segment_capacity = 4;
  s.max_segment_len = 3;
  s.has_permutation = true;
  p.lora_ranks = {4, 0, 2};
  p.scalings = {0.5f, 1.0f, -2.0f};
  p.seg_indptr = {0, 3, 3, 6, 6};
  p.weight_indices = {0, 1, 2, 0};
  p.num_segments = 3;
  p.permutation = {4, 0, 6, 2, 5, 1, 3};
  return p;
}

Reproducer small_reproducer(uint64_t seed) {
  Reproducer r;
  r.problem = small_problem();
  REQUIRE(validate(r.problem).ok());
  r.tensors = allocate_tensors(r.problem.shape, 0.f);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (TensorId id : kAllTensors)
    for (float& x : r.tensors.of(id).data) x = round_to(DType::bf16, nd(rng));  // gaps too
  r.tensors.q_nope.at(1, 2, 3) = std::numeric_limits<float>::quiet_NaN();
  r.tensors.attn_latent.at(0, 0, 0) = -std::numeric_limits<float>::infinity();
  r.tensors.A.at(0, 0, 0) = -0.0f;
  std::vector<float> e(2 * 3 * 4);
  for (float& x : e) x = nd(rng);
  r.extras["expected_q_delta"] = FloatArray{{2, 3, 4}, e};
  r.extras["got_q_nope_out"] = float_array({1.f, -2.5f, std::numeric_limits<float>::quiet_NaN()});
  r.attributes["implementation"] = "cpu_mutant_drop_scaling";
  r.attributes["seed"] = std::to_string(seed);
  r.attributes["message"] = "delta mismatch at (t=2,h=1,k=3): got 1.5, bound 0.01 \xce\xb4";  // UTF-8
  r.attributes["empty"] = "";
  return r;
}

void require_same(const Reproducer& a, const Reproducer& b) {
  const Problem &p = a.problem, &q = b.problem;
  CHECK(p.shape.dims.S == q.shape.dims.S);
  CHECK(p.shape.dims.H == q.shape.dims.H);
  CHECK(p.shape.dims.D_qk == q.shape.dims.D_qk);
  CHECK(p.shape.dims.D_v == q.shape.dims.D_v);
  CHECK(p.shape.dims.R_kv == q.shape.dims.R_kv);
  CHECK(p.shape.dims.L == q.shape.dims.L);
  CHECK(p.shape.dims.r_max == q.shape.dims.r_max);
  CHECK(p.shape.dtype == q.shape.dtype);
  for (TensorId id : kAllTensors) {
    INFO(tensor_name(id));
    CHECK(p.shape.layout.of(id).s0 == q.shape.layout.of(id).s0);
    CHECK(p.shape.layout.of(id).s1 == q.shape.layout.of(id).s1);
    CHECK(p.shape.layout.of(id).s2 == q.shape.layout.of(id).s2);
    CHECK(a.tensors.of(id).shape == b.tensors.of(id).shape);
    CHECK(bits_equal(a.tensors.of(id).data, b.tensors.of(id).data));
  }
  CHECK(p.shape.segment_capacity == q.shape.segment_capacity);
  CHECK(p.shape.max_segment_len == q.shape.max_segment_len);
  CHECK(p.shape.has_permutation == q.shape.has_permutation);
  CHECK(p.lora_ranks == q.lora_ranks);
  CHECK(bits_equal(p.scalings, q.scalings));
  CHECK(p.seg_indptr == q.seg_indptr);
  CHECK(p.weight_indices == q.weight_indices);
  CHECK(p.num_segments == q.num_segments);
  CHECK(p.permutation == q.permutation);
  REQUIRE(a.extras.size() == b.extras.size());
  for (const auto& [name, arr] : a.extras) {
    INFO(name);
    REQUIRE(b.extras.count(name));
    CHECK(arr.shape == b.extras.at(name).shape);
    CHECK(bits_equal(arr.data, b.extras.at(name).data));
  }
  CHECK(a.attributes == b.attributes);
}

// Rewrite one dataset of an existing file through the raw C API (to build
// deliberately malformed files).


}  // namespace

TEST_CASE("hdf5: every writer function round-trips through the reader", "[hdf5]") {
  mlalora::test::TempDir tmp{"hdf5"};
  const std::string path = tmp("all.h5");
  const std::vector<int64_t> i64{0, -1, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 42};
  const std::vector<int32_t> i32{0, -7, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
  const std::vector<double> f64{0.0, -0.0, 1e-300, std::numeric_limits<double>::infinity(),
                                std::numeric_limits<double>::quiet_NaN(), 3.141592653589793};
  const std::vector<float> f32{1.5f, -0.0f, std::numeric_limits<float>::denorm_min(),
                               std::numeric_limits<float>::quiet_NaN()};
  const std::vector<uint8_t> u8{0, 1, 127, 128, 255};
  const std::vector<std::string> strs{"alpha", "", "a longer string with spaces", "\xce\xb4 utf-8"};
  std::vector<float> nd_f(2 * 3 * 4);
  std::vector<double> nd_d(5 * 2);
  std::vector<int32_t> nd_i(3 * 1 * 2 * 2);
  for (size_t i = 0; i < nd_f.size(); ++i) nd_f[i] = 0.25f * static_cast<float>(i) - 1.f;
  for (size_t i = 0; i < nd_d.size(); ++i) nd_d[i] = 1.0 / (1.0 + static_cast<double>(i));
  for (size_t i = 0; i < nd_i.size(); ++i) nd_i[i] = static_cast<int32_t>(i * i) - 5;
  H5Table table;
  table.add("impl", std::vector<std::string>{"a", "bb", ""});
  table.add("count", std::vector<int64_t>{1, 2, 3});
  table.add("max_err", std::vector<double>{0.5, std::numeric_limits<double>::quiet_NaN(), -1e10});

  {
    H5Writer w;
    REQUIRE(w.open(path).ok());
    CHECK(w.is_open());
    CHECK(w.temp_path() != path);
    REQUIRE(w.write_attr_string("/", "name", "mlalora report").ok());
    REQUIRE(w.write_attr_string("/", "empty", "").ok());
    REQUIRE(w.write_attr_int("/", "count", -123456789012345LL).ok());
    REQUIRE(w.write_attr_double("/", "pi", 3.141592653589793).ok());
    REQUIRE(w.write_attr_int("/", "count", 77).ok());  // replaces
    REQUIRE(w.create_group("/g/sub/deeper").ok());
    REQUIRE(w.create_group("/g").ok());  // idempotent
    REQUIRE(w.write_attr_string("/g/sub", "kind", "group attr").ok());
    REQUIRE(w.write_vector<int64_t>("/d/i64", i64).ok());
    REQUIRE(w.write_vector<int32_t>("/d/i32", i32).ok());
    REQUIRE(w.write_vector<double>("/d/f64", f64).ok());
    REQUIRE(w.write_vector<float>("/d/f32", f32).ok());
    REQUIRE(w.write_vector<uint8_t>("/d/u8", u8).ok());
    REQUIRE(w.write_vector<float>("/d/empty", {}).ok());
    REQUIRE(w.write_strings("/d/vstr", strs, H5StringKind::variable).ok());
    REQUIRE(w.write_strings("/d/fstr", strs, H5StringKind::fixed).ok());
    REQUIRE(w.write_strings("/d/nostr", {}, H5StringKind::variable).ok());
    REQUIRE(w.write_array<float>("/nd/f32", nd_f.data(), {2, 3, 4}).ok());
    REQUIRE(w.write_array<double>("/nd/f64", nd_d.data(), {5, 2}).ok());
    REQUIRE(w.write_array<int32_t>("/nd/i32", nd_i.data(), {3, 1, 2, 2}).ok());
    REQUIRE(w.write_attr_double("/nd/f64", "scale", -0.5).ok());  // attribute on a dataset
    REQUIRE(w.write_table("/tables/results", table).ok());
    // Writer-side errors.
    CHECK(w.write_vector<float>("/d/f32", f32).code == StatusCode::io_error);  // exists
    CHECK(w.write_attr_int("/nope", "x", 1).code == StatusCode::io_error);
    CHECK(w.write_array<float>("/nd/bad", nd_f.data(), {2, -3}).code == StatusCode::invalid_argument);
    CHECK(w.write_attr_string("/", "nul", std::string("a\0b", 3)).code == StatusCode::invalid_argument);
    H5Table uneven;
    uneven.add("a", std::vector<int64_t>{1, 2});
    uneven.add("b", std::vector<double>{1.0});
    Status st = w.write_table("/tables/uneven", uneven);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("/tables/uneven") && Catch::Contains("differ in length"));
    REQUIRE(w.commit().ok());
    CHECK(!w.is_open());
  }
  REQUIRE(fs::exists(path));
  CHECK(fs::directory_iterator(tmp.dir) != fs::directory_iterator());
  for (const auto& e : fs::directory_iterator(tmp.dir)) CHECK(e.path().string() == path);  // no temp left

  H5Reader r;
  REQUIRE(r.open(path).ok());
  std::string s;
  int64_t iv = 0;
  double dv = 0;
  REQUIRE(r.read_attr_string("/", "name", &s).ok());
  CHECK(s == "mlalora report");
  REQUIRE(r.read_attr_string("/", "empty", &s).ok());
  CHECK(s.empty());
  REQUIRE(r.read_attr_int("/", "count", &iv).ok());
  CHECK(iv == 77);
  REQUIRE(r.read_attr_double("/", "pi", &dv).ok());
  CHECK(dv == 3.141592653589793);
  REQUIRE(r.read_attr_string("/g/sub", "kind", &s).ok());
  CHECK(s == "group attr");
  REQUIRE(r.read_attr_double("/nd/f64", "scale", &dv).ok());
  CHECK(dv == -0.5);
  CHECK(r.has_attr("/", "pi"));
  CHECK(!r.has_attr("/", "nope"));
  CHECK(!r.has_attr("/missing/x", "pi"));
  std::vector<std::string> names;
  REQUIRE(r.list_attrs("/", &names).ok());
  CHECK(names == std::vector<std::string>{"count", "empty", "name", "pi"});

  CHECK(r.kind("/") == H5ObjectKind::group);
  CHECK(r.kind("/g/sub/deeper") == H5ObjectKind::group);
  CHECK(r.kind("/d/i64") == H5ObjectKind::dataset);
  CHECK(r.kind("/d/nothing") == H5ObjectKind::missing);
  CHECK(r.kind("/x/y/z") == H5ObjectKind::missing);
  REQUIRE(r.list_members("/", &names).ok());
  CHECK(names == std::vector<std::string>{"d", "g", "nd", "tables"});
  REQUIRE(r.list_members("/d", &names).ok());
  CHECK(names.size() == 9);

  std::vector<int64_t> ri64;
  std::vector<int32_t> ri32;
  std::vector<double> rf64;
  std::vector<float> rf32;
  std::vector<uint8_t> ru8;
  REQUIRE(r.read_vector<int64_t>("/d/i64", &ri64, 5).ok());
  CHECK(ri64 == i64);
  REQUIRE(r.read_vector<int32_t>("/d/i32", &ri32).ok());
  CHECK(ri32 == i32);
  REQUIRE(r.read_vector<double>("/d/f64", &rf64).ok());
  CHECK(bits_equal(rf64, f64));
  REQUIRE(r.read_vector<float>("/d/f32", &rf32).ok());
  CHECK(bits_equal(rf32, f32));
  REQUIRE(r.read_vector<uint8_t>("/d/u8", &ru8).ok());
  CHECK(ru8 == u8);
  REQUIRE(r.read_vector<float>("/d/empty", &rf32, 0).ok());
  CHECK(rf32.empty());
  std::vector<std::string> rs;
  REQUIRE(r.read_strings("/d/vstr", &rs).ok());
  CHECK(rs == strs);
  REQUIRE(r.read_strings("/d/fstr", &rs, 4).ok());
  CHECK(rs == strs);
  REQUIRE(r.read_strings("/d/nostr", &rs).ok());
  CHECK(rs.empty());

  std::vector<int64_t> shape;
  REQUIRE(r.read_array<float>("/nd/f32", &rf32, &shape).ok());
  CHECK(shape == std::vector<int64_t>{2, 3, 4});
  CHECK(bits_equal(rf32, nd_f));
  REQUIRE(r.read_array_shape<double>("/nd/f64", &rf64, {5, 2}).ok());
  CHECK(bits_equal(rf64, nd_d));
  REQUIRE(r.read_array_shape<int32_t>("/nd/i32", &ri32, {3, 1, 2, 2}).ok());
  CHECK(ri32 == nd_i);
  REQUIRE(r.dataset_shape("/nd/i32", &shape).ok());
  CHECK(shape == std::vector<int64_t>{3, 1, 2, 2});

  H5Table rt;
  REQUIRE(r.read_table("/tables/results", &rt).ok());
  REQUIRE(rt.columns.size() == 3);
  CHECK(rt.columns[0].name == "impl");  // order preserved
  CHECK(rt.columns[1].name == "count");
  CHECK(rt.rows() == 3);
  CHECK(std::get<std::vector<std::string>>(rt.find("impl")->data) == std::vector<std::string>{"a", "bb", ""});
  CHECK(std::get<std::vector<int64_t>>(rt.find("count")->data) == std::vector<int64_t>{1, 2, 3});
  CHECK(bits_equal(std::get<std::vector<double>>(rt.find("max_err")->data),
                   std::get<std::vector<double>>(table.find("max_err")->data)));
  CHECK(!r.exists("/tables/uneven/a"));  // the refused table wrote no columns
}

TEST_CASE("hdf5: type, shape and presence mismatches are invalid_argument naming path and expectation", "[hdf5]") {
  mlalora::test::TempDir tmp{"hdf5"};
  const std::string path = tmp("types.h5");
  {
    H5Writer w;
    REQUIRE(w.open(path).ok());
    REQUIRE(w.write_vector<int64_t>("/i64", {1, 2, 3}).ok());
    std::vector<float> m(6, 1.f);
    REQUIRE(w.write_array<float>("/m", m.data(), {2, 3}).ok());
    REQUIRE(w.write_attr_string("/", "s", "x").ok());
    REQUIRE(w.write_attr_double("/", "d", 1.0).ok());
    // A table group whose columns disagree in length (no table attributes).
    REQUIRE(w.write_vector<int64_t>("/badtable/a", {1, 2}).ok());
    REQUIRE(w.write_vector<double>("/badtable/b", {1.0}).ok());
    REQUIRE(w.write_vector<int64_t>("/rowtable/a", {1, 2}).ok());
    REQUIRE(w.write_attr_int("/rowtable", "num_rows", 5).ok());
    REQUIRE(w.commit().ok());
  }
  H5Reader r;
  REQUIRE(r.open(path).ok());
  std::vector<float> f;
  std::vector<int32_t> i32;
  std::vector<int64_t> i64;
  Status st = r.read_vector<float>("/i64", &f);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains(path) && Catch::Contains("/i64") && Catch::Contains("float32") &&
                             Catch::Contains("int64"));
  st = r.read_vector<int32_t>("/i64", &i32);  // same class, different width
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("int32"));
  st = r.read_vector<int64_t>("/i64", &i64, 4);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("/i64") && Catch::Contains("length 4"));
  st = r.read_vector<float>("/m", &f);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("1-D") && Catch::Contains("(2,3)"));
  st = r.read_array_shape<float>("/m", &f, {3, 2});
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("(3,2)") && Catch::Contains("(2,3)"));
  CHECK(f.empty());
  st = r.read_vector<float>("/missing", &f);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("/missing") && Catch::Contains("not found"));
  std::vector<std::string> strs;
  st = r.read_strings("/i64", &strs);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("string"));
  int64_t iv;
  st = r.read_attr_int("/", "s", &iv);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("'s'") && Catch::Contains("integer"));
  st = r.read_attr_int("/", "d", &iv);
  CHECK(st.code == StatusCode::invalid_argument);
  st = r.read_attr_int("/", "absent", &iv);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("absent") && Catch::Contains("missing"));
  std::vector<std::string> names;
  CHECK(r.list_members("/i64", &names).code == StatusCode::invalid_argument);
  H5Table t;
  st = r.read_table("/badtable", &t);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("/badtable") && Catch::Contains("differ in length"));
  st = r.read_table("/rowtable", &t);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("num_rows"));
}

TEST_CASE("hdf5: a writer without commit leaves no file and never touches an existing one", "[hdf5]") {
  mlalora::test::TempDir tmp{"hdf5"};
  const std::string path = tmp("report.h5");
  std::string temp_name;
  {
    H5Writer w;
    REQUIRE(w.open(path).ok());
    temp_name = w.temp_path();
    REQUIRE(w.write_attr_int("/", "v", 1).ok());
    REQUIRE(w.write_vector<float>("/x", {1.f, 2.f}).ok());
    CHECK(fs::exists(temp_name));
    CHECK(!fs::exists(path));
  }  // destroyed without commit
  CHECK(!fs::exists(path));
  CHECK(!fs::exists(temp_name));

  {
    H5Writer w;
    REQUIRE(w.open(path).ok());
    REQUIRE(w.write_attr_int("/", "v", 1).ok());
    REQUIRE(w.commit().ok());
  }
  const std::vector<char> before = mlalora::test::read_bytes(path);
  REQUIRE(!before.empty());
  {
    H5Writer w;
    REQUIRE(w.open(path).ok());
    REQUIRE(w.write_attr_int("/", "v", 2).ok());
    REQUIRE(w.write_vector<double>("/big", std::vector<double>(10000, 1.0)).ok());
    CHECK(mlalora::test::read_bytes(path) == before);  // not touched while writing
  }
  CHECK(mlalora::test::read_bytes(path) == before);  // not touched by the abandoned writer
  {
    H5Reader r;
    REQUIRE(r.open(path).ok());
    int64_t v = 0;
    REQUIRE(r.read_attr_int("/", "v", &v).ok());
    CHECK(v == 1);
  }
  {
    H5Writer w;
    REQUIRE(w.open(path).ok());
    REQUIRE(w.write_attr_int("/", "v", 3).ok());
    w.discard();
    CHECK(!w.is_open());
    CHECK(w.commit().code == StatusCode::io_error);  // nothing to commit
  }
  CHECK(mlalora::test::read_bytes(path) == before);
  {
    H5Writer w;
    REQUIRE(w.open(path).ok());
    REQUIRE(w.write_attr_int("/", "v", 4).ok());
    REQUIRE(w.commit().ok());
  }
  H5Reader r;
  REQUIRE(r.open(path).ok());
  int64_t v = 0;
  REQUIRE(r.read_attr_int("/", "v", &v).ok());
  CHECK(v == 4);
  for (const auto& e : fs::directory_iterator(tmp.dir)) CHECK(e.path().string() == path);

  H5Writer bad;
  Status st = bad.open(tmp("no/such/dir/x.h5"));
  CHECK(st.code == StatusCode::io_error);
  CHECK_THAT(st.message, Catch::Contains("no/such/dir/x.h5"));
}

TEST_CASE("hdf5: reproducer round trip is bit-exact", "[hdf5]") {
  const uint64_t seed = seed_from_env("MLALORA_SEED");
  std::printf("[hdf5] reproducer round trip seed=%llu (MLALORA_SEED)\n", static_cast<unsigned long long>(seed));
  INFO("seed=" << seed);
  mlalora::test::TempDir tmp{"hdf5"};
  const std::string path = tmp("repro.h5");
  Reproducer a = small_reproducer(seed);
  Status st = save_reproducer(path, a);
  INFO(st.message);
  REQUIRE(st.ok());
  Reproducer b;
  st = load_reproducer(path, &b);
  INFO(st.message);
  REQUIRE(st.ok());
  REQUIRE(validate(b.problem).ok());
  require_same(a, b);

  // Without permutation, f32, no extras, no attributes, S = 0.
  Reproducer c;
  c.problem.shape.dims = Dims{0, 2, 3, 3, 4, 1, 2};
  c.problem.shape.dtype = DType::f32;
  c.problem.shape.layout = Layout::contiguous(c.problem.shape.dims);
  c.problem.lora_ranks = {2};
  c.problem.scalings = {1.f};
  c.problem.seg_indptr = {0};
  REQUIRE(validate(c.problem).ok());
  c.tensors = allocate_tensors(c.problem.shape, 0.125f);
  REQUIRE(save_reproducer(tmp("empty.h5"), c).ok());
  Reproducer d;
  st = load_reproducer(tmp("empty.h5"), &d);
  INFO(st.message);
  REQUIRE(st.ok());
  require_same(c, d);

  // save refuses an inconsistent Reproducer and writes nothing.
  Reproducer e = a;
  e.tensors.B.data.pop_back();
  st = save_reproducer(tmp("bad.h5"), e);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("B"));
  CHECK(!fs::exists(tmp("bad.h5")));
  e = a;
  e.problem.weight_indices[0] = 9;
  CHECK(!save_reproducer(tmp("bad.h5"), e).ok());
  CHECK(!fs::exists(tmp("bad.h5")));
}

TEST_CASE("hdf5: missing, foreign and truncated files give a clear non-ok status", "[hdf5]") {
  mlalora::test::TempDir tmp{"hdf5"};
  Reproducer r;
  Status st = load_reproducer(tmp("missing.h5"), &r);
  CHECK(st.code == StatusCode::io_error);
  CHECK_THAT(st.message, Catch::Contains("missing.h5") && Catch::Contains("not found"));

  mlalora::test::write_bytes(tmp("text.h5"), std::vector<char>{'h', 'e', 'l', 'l', 'o', '\n'});
  st = load_reproducer(tmp("text.h5"), &r);
  CHECK(st.code == StatusCode::io_error);
  CHECK_THAT(st.message, Catch::Contains("text.h5") && Catch::Contains("not an HDF5 file"));
  mlalora::test::write_bytes(tmp("zero.h5"), {});
  CHECK(!load_reproducer(tmp("zero.h5"), &r).ok());
  st = load_reproducer(tmp.dir.string(), &r);  // a directory
  CHECK(!st.ok());

  const std::string good = tmp("good.h5");
  REQUIRE(save_reproducer(good, small_reproducer(1)).ok());
  const std::vector<char> bytes = mlalora::test::read_bytes(good);
  REQUIRE(bytes.size() > 2000);
  const size_t n = bytes.size();
  for (size_t cut : {size_t{1}, size_t{7}, size_t{8}, size_t{48}, size_t{100}, size_t{512}, size_t{2000}, n / 3,
                     n / 2, n - 100, n - 8, n - 1}) {
    INFO("truncated at " << cut << " of " << n);
    const std::string p = tmp("trunc.h5");
    mlalora::test::write_bytes(p, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<long>(cut)));
    st = load_reproducer(p, &r);
    CHECK(!st.ok());
    CHECK_THAT(st.message, Catch::Contains("trunc.h5"));
  }
  // A valid HDF5 file that is not a reproducer.
  {
    H5Writer w;
    REQUIRE(w.open(tmp("other.h5")).ok());
    REQUIRE(w.write_attr_string("/", "x", "y").ok());
    REQUIRE(w.commit().ok());
  }
  st = load_reproducer(tmp("other.h5"), &r);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("mlalora_reproducer_version"));
}

TEST_CASE("hdf5: reproducers with mistyped, mis-shaped or inconsistent fields are rejected", "[hdf5]") {
  mlalora::test::TempDir tmp{"hdf5"};
  const std::string good = tmp("good.h5");
  REQUIRE(save_reproducer(good, small_reproducer(2)).ok());
  const Problem p = small_problem();
  struct Case {
    const char* what;
    std::function<void(const std::string&)> mutate;
    std::vector<const char*> expect;
  };
  const std::vector<Case> cases = {
      {"lora_ranks stored as int64",
       [](const std::string& f) { mlalora::test::replace_dataset<int64_t>(f, "/problem/lora_ranks", H5T_NATIVE_INT64, {1, 0, 2}, {3}); },
       {"/problem/lora_ranks", "int32", "int64"}},
      {"scalings of the wrong length",
       [](const std::string& f) { mlalora::test::replace_dataset<float>(f, "/problem/scalings", H5T_NATIVE_FLOAT, {1.f, 2.f}, {2}); },
       {"/problem/scalings", "length 3"}},
      {"strides transposed",
       [](const std::string& f) {
         mlalora::test::replace_dataset<int64_t>(f, "/problem/strides", H5T_NATIVE_INT64, std::vector<int64_t>(18, 1), {3, 6});
       },
       {"/problem/strides", "(6,3)"}},
      {"tensor A one element short",
       [&](const std::string& f) {
         int64_t n = storage_elems(tensor_shape(p.dims(), TensorId::A), p.shape.layout.A);
         mlalora::test::replace_dataset<float>(f, "/tensors/A", H5T_NATIVE_FLOAT, std::vector<float>(n - 1, 0.f),
                                {static_cast<hsize_t>(n - 1)});
       },
       {"/tensors/A", "length"}},
      {"tensor q_nope stored as float64",
       [&](const std::string& f) {
         int64_t n = storage_elems(tensor_shape(p.dims(), TensorId::q_nope), p.shape.layout.q_nope);
         mlalora::test::replace_dataset<double>(f, "/tensors/q_nope", H5T_NATIVE_DOUBLE, std::vector<double>(n, 0.0),
                                 {static_cast<hsize_t>(n)});
       },
       {"/tensors/q_nope", "float32", "float64"}},
      {"value not representable in bf16",
       [&](const std::string& f) {
         int64_t n = storage_elems(tensor_shape(p.dims(), TensorId::B), p.shape.layout.B);
         mlalora::test::replace_dataset<float>(f, "/tensors/B", H5T_NATIVE_FLOAT, std::vector<float>(n, 1.0f + 1e-6f),
                                {static_cast<hsize_t>(n)});
       },
       {"/tensors/B", "bf16"}},
      {"seg_indptr decreasing",
       [](const std::string& f) {
         mlalora::test::replace_dataset<int32_t>(f, "/problem/seg_indptr", H5T_NATIVE_INT32, {0, 3, 2, 6, 6}, {5});
       },
       {"seg_indptr", "non-decreasing"}},
      {"weight index out of range",
       [](const std::string& f) {
         mlalora::test::replace_dataset<int32_t>(f, "/problem/weight_indices", H5T_NATIVE_INT32, {0, 1, 3, 0}, {4});
       },
       {"weight_indices[2]"}},
      {"permutation repeats a row",
       [](const std::string& f) {
         mlalora::test::replace_dataset<int32_t>(f, "/problem/permutation", H5T_NATIVE_INT32, {4, 0, 6, 2, 4, 1, 3}, {7});
       },
       {"permutation"}},
      {"dims changed so sizes no longer match", [](const std::string& f) { mlalora::test::replace_int_attr(f, "/problem", "L", 2); },
       {"lora_ranks", "length 2"}},
      {"huge stride", [](const std::string& f) {
         std::vector<int64_t> st(18, 1);
         st[0] = int64_t{1} << 60;
         mlalora::test::replace_dataset<int64_t>(f, "/problem/strides", H5T_NATIVE_INT64, st, {6, 3});
       },
       {"strides", "q_nope"}},
      {"version 2", [](const std::string& f) { mlalora::test::replace_int_attr(f, "/", "mlalora_reproducer_version", 2); },
       {"mlalora_reproducer_version"}},
      {"has_permutation not boolean", [](const std::string& f) { mlalora::test::replace_int_attr(f, "/problem", "has_permutation", 5); },
       {"has_permutation"}},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const std::string f = tmp("case.h5");
    fs::copy_file(good, f, fs::copy_options::overwrite_existing);
    c.mutate(f);
    Reproducer r;
    Status st = load_reproducer(f, &r);
    INFO(st.message);
    CHECK(st.code == StatusCode::invalid_argument);
    CHECK_THAT(st.message, Catch::Contains("case.h5"));
    for (const char* e : c.expect) CHECK_THAT(st.message, Catch::Contains(e));
  }
}

TEST_CASE("hdf5: mutation fuzz of a reproducer never crashes", "[hdf5]") {
  const uint64_t seed = seed_from_env("MLALORA_FUZZ_SEED");
  const int iters = mlalora::test::env_int("MLALORA_FUZZ_ITERS", 200);
  std::printf("[hdf5] reproducer fuzz: MLALORA_FUZZ_SEED=%llu MLALORA_FUZZ_ITERS=%d\n",
              static_cast<unsigned long long>(seed), iters);
  std::fflush(stdout);
  INFO("MLALORA_FUZZ_SEED=" << seed);
  mlalora::test::TempDir tmp{"hdf5"};
  const std::string good = tmp("good.h5");
  REQUIRE(save_reproducer(good, small_reproducer(seed)).ok());
  mlalora::test::byte_flip_fuzz("hdf5 reproducer fuzz", seed, iters, good, tmp, [](const std::string& f) {
    Reproducer r;
    Status st = load_reproducer(f, &r);
    if (st.ok()) {
      Status v = validate(r.problem);
      INFO(v.message);
      REQUIRE(v.ok());
      for (TensorId id : kAllTensors)
        REQUIRE(static_cast<int64_t>(r.tensors.of(id).data.size()) ==
                storage_elems(tensor_shape(r.problem.dims(), id), r.problem.shape.layout.of(id)));
    }
    return st;
  });
}
