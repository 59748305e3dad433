// FMA / byte accounting of the factored LoRA correction versus naive
// materialisation (harness/include/mlalora/harness/fma_model.hpp).
#include <catch2/catch.hpp>

#include <fstream>

#include "mlalora/harness/fma_model.hpp"

using namespace mlalora;
using namespace mlalora::harness;

namespace {
Workload make(int64_t T, int64_t n_used, int64_t r, int64_t H, int64_t D_qk, int64_t D_v, int64_t R_kv,
              int64_t layers = 1, int64_t e = 2) {
  Workload w;
  w.tokens = T;
  w.n_used = n_used;
  w.rank = r;
  w.H = H;
  w.D_qk = D_qk;
  w.D_v = D_v;
  w.R_kv = R_kv;
  w.num_layers = layers;
  w.elem_bytes = e;
  return w;
}
}  // namespace

TEST_CASE("fma: materialising one DeepSeek-V3 slot costs 268,435,456 FMAs", "[fma]") {
  // H=128, F=256, r=16, R_kv=512: 128*256*16*512 = 2^7 * 2^8 * 2^4 * 2^9 = 2^28.
  CHECK(materialise_fmas_per_slot(128, 256, 16, 512) == 268435456);
  Workload w = make(/*T=*/1, /*n_used=*/1, 16, 128, 128, 128, 512);
  REQUIRE(validate_workload(w).ok());
  NaiveCost n = naive_cost_per_layer(w);
  CHECK(n.materialise_fmas == 268435456);
  // apply at T=1: 128 * (128*512 + 512*128) = 128 * 131072 = 16,777,216
  CHECK(n.apply_fmas == 16777216);
  // factored at T=1: 128 * 16 * (128 + 1024 + 128) = 2048 * 1280 = 2,621,440
  CHECK(factored_cost_per_layer(w).fmas == 2621440);
}

TEST_CASE("fma: tiny case computed by hand", "[fma]") {
  // T=3 tokens, n_used=2 adapters, r=2, H=2, D_qk=3, D_v=2, R_kv=4 (F=5), 10 layers, 2-byte elements.
  //   materialise = n_used*H*F*r*R_kv        = 2*2*5*2*4         = 160
  //   apply       = T*H*(D_qk*R_kv+R_kv*D_v) = 3*2*(12+8)        = 120
  //   naive FMAs  = 280
  //   factored    = T*H*r*(D_qk+2*R_kv+D_v)  = 3*2*2*(3+8+2)     = 156
  // Bytes (elements x 2):
  //   activations = T*H*(D_qk+R_kv) + 2*T*H*(R_kv+D_v) = 6*7 + 2*6*6 = 42 + 72 = 114 el = 228 B
  //   weights     = n_used*(r*R_kv + H*F*r)            = 2*(8 + 20)   = 56 el  = 112 B
  //   dW          = 2*n_used*H*F*R_kv                  = 2*2*2*5*4    = 160 el = 320 B
  //   naive = 228 + 112 + 320 = 660 B; factored = 228 + 112 = 340 B
  Workload w = make(3, 2, 2, 2, 3, 2, 4, 10, 2);
  FmaReport r;
  REQUIRE(compute_fma_report(w, &r).ok());
  CHECK(r.naive_layer.materialise_fmas == 160);
  CHECK(r.naive_layer.apply_fmas == 120);
  CHECK(r.naive_layer.total().fmas == 280);
  CHECK(r.factored_layer.fmas == 156);
  CHECK(r.naive_layer.activation_bytes == 228);
  CHECK(r.naive_layer.weight_bytes == 112);
  CHECK(r.naive_layer.dw_bytes == 320);
  CHECK(r.naive_layer.total().bytes == 660);
  CHECK(r.factored_layer.total().bytes == 340);
  CHECK(r.naive_step.fmas == 2800);
  CHECK(r.factored_step.fmas == 1560);
  CHECK(r.naive_step.bytes == 6600);
  CHECK(r.factored_step.bytes == 3400);
  CHECK(r.fma_ratio == Approx(280.0 / 156.0));
  CHECK(r.bytes_ratio == Approx(660.0 / 340.0));
  CHECK(!format_fma_report(r).empty());
}

TEST_CASE("fma: factored beats naive at T=1 decode for typical shapes; ratio formula", "[fma]") {
  for (int64_t H : {16, 32, 64, 128})
    for (int64_t r : {8, 16, 32, 64, 128})
      for (int64_t n_used : {1}) {
        Workload w = make(1, n_used, r, H, 128, 128, 512, 61);
        FmaReport rep;
        REQUIRE(compute_fma_report(w, &rep).ok());
        INFO("H=" << H << " r=" << r);
        CHECK(rep.factored_layer.fmas < rep.naive_layer.total().fmas);
        CHECK(rep.factored_layer.total().bytes < rep.naive_layer.total().bytes);
        // ratio = (n_used*H*F*r*R + T*H*(D_qk+D_v)*R) / (T*H*r*(D_qk+2R+D_v))
        //       = (n_used*F*r*R + T*F*R) / (T*r*(F+2R))   (F = D_qk + D_v)
        const double F = 256, R = 512, T = 1;
        double expect = (n_used * F * r * R + T * F * R) / (T * r * (F + 2 * R));
        CHECK(rep.fma_ratio == Approx(expect).epsilon(1e-12));
      }
  // Large prefill with one adapter: the apply term dominates; the ratio tends to
  // F*R / (r*(F+2R)) as T grows, and factored still wins for r < F*R/(F+2R) = 102.4.
  Workload w = make(1 << 16, 1, 16, 128, 128, 128, 512);
  FmaReport rep;
  REQUIRE(compute_fma_report(w, &rep).ok());
  CHECK(rep.fma_ratio > 256.0 * 512 / (16.0 * 1280));
  CHECK(rep.fma_ratio < 256.0 * 512 / (16.0 * 1280) * 1.01);
}

TEST_CASE("fma: workload validation and TP", "[fma]") {
  CHECK(validate_workload(make(1, 2, 16, 128, 128, 128, 512)).code == StatusCode::invalid_argument);  // n_used > T
  CHECK(!validate_workload(make(-1, 0, 16, 128, 128, 128, 512)).ok());
  CHECK(!validate_workload(make(1, 1, 16, 0, 128, 128, 512)).ok());
  CHECK(!validate_workload(make(1, 1, 16, 128, 128, 128, 512, 1, 3)).ok());
  CHECK(validate_workload(make(0, 0, 16, 128, 128, 128, 512)).ok());  // empty batch is fine
  FmaReport rep;
  REQUIRE(compute_fma_report(make(0, 0, 16, 128, 128, 128, 512), &rep).ok());
  CHECK(rep.naive_layer.total().fmas == 0);
  CHECK(rep.fma_ratio == 1.0);

  ModelConfig m{"DeepSeek-V3", 128, 128, 128, 512, 61, ""};
  Workload w;
  REQUIRE(make_workload(m, 8, 4, 2, 16, &w).ok());
  CHECK(w.H == 16);
  CHECK(w.num_layers == 61);
  Status st = make_workload(m, 3, 4, 2, 16, &w);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("DeepSeek-V3"));
}

TEST_CASE("fma: datasets/models.txt parses and has the documented models", "[fma]") {
  std::vector<ModelConfig> models;
  Status st = load_model_configs(std::string(MLALORA_SOURCE_DIR) + "/datasets/models.txt", &models);
  INFO(st.message);
  REQUIRE(st.ok());
  struct Want { const char* name; int64_t H, D_qk, D_v, R_kv, layers; };
  const Want want[] = {{"DeepSeek-V2-Lite", 16, 128, 128, 512, 27}, {"DeepSeek-V3", 128, 128, 128, 512, 61},
                       {"Kimi-K2", 64, 128, 128, 512, 61},          {"GLM-5", 64, 192, 256, 512, 78},
                       {"MiniCPM3", 40, 64, 64, 256, 62}};
  for (const Want& wnt : want) {
    const ModelConfig* m = find_model(models, wnt.name);
    INFO(wnt.name);
    REQUIRE(m != nullptr);
    CHECK(m->H == wnt.H);
    CHECK(m->D_qk == wnt.D_qk);
    CHECK(m->D_v == wnt.D_v);
    CHECK(m->R_kv == wnt.R_kv);
    CHECK(m->num_layers == wnt.layers);
  }
  CHECK_THAT(find_model(models, "GLM-5")->comment, Catch::Contains("ASSUMPTION"));
}

TEST_CASE("fma: model config parser errors name file:line", "[fma]") {
  std::vector<ModelConfig> models;
  REQUIRE(parse_model_configs("# c\n\nA 1 2 3 4 5 # note\n", "x.txt", &models).ok());
  REQUIRE(models.size() == 1);
  CHECK(models[0].comment == "note");
  Status st = parse_model_configs("A 1 2 3 4 5\nB 1 2 3 4\n", "x.txt", &models);
  CHECK(st.code == StatusCode::invalid_argument);
  CHECK_THAT(st.message, Catch::Contains("x.txt:2"));
  st = parse_model_configs("\n\nC 1 2 x 4 5\n", "y.txt", &models);
  CHECK_THAT(st.message, Catch::Contains("y.txt:3") && Catch::Contains("D_v"));
  st = parse_model_configs("C 1 2 3 4 0\n", "z.txt", &models);
  CHECK_THAT(st.message, Catch::Contains("z.txt:1") && Catch::Contains("num_layers"));
  st = parse_model_configs("C 1 2 3 4 5\nC 1 2 3 4 5\n", "d.txt", &models);
  CHECK_THAT(st.message, Catch::Contains("d.txt:2") && Catch::Contains("duplicate"));
  st = load_model_configs("/nonexistent/models.txt", &models);
  CHECK(st.code == StatusCode::io_error);
  CHECK_THAT(st.message, Catch::Contains("/nonexistent/models.txt"));
}
