#include "mlalora/harness/generators.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

namespace mlalora::harness {

GenConfig GenConfig::gpu_default() {
  GenConfig c;
  c.head_dims = {1, 3, 8, 16, 17, 32, 64, 72, 128, 130};
  c.latent_dims = {1, 5, 16, 31, 64, 130, 256};
  c.head_counts = {1, 2, 3, 5, 8};
  c.max_tokens = 70;
  c.max_rank = 40;
  c.max_segments = 8;
  c.allow_inner_stride = false;
  return c;
}

GenConfig GenConfig::gpu_fast_path() {
  // Model head dims (MiniCPM3 64, DeepSeek 128, GLM-5 192/256) and latent
  // widths, ranks up to the fast path's 128, more tokens and segments so
  // tiles of 16..64 rows fill, split and pad; strides padded by whole
  // 16-byte units so the 16-byte-alignment requirement holds.
  GenConfig c;
  c.dtypes = {DType::bf16, DType::f16};
  c.head_dims = {64, 128, 192, 256};
  c.latent_dims = {64, 128, 256, 512};
  c.head_counts = {1, 2, 3, 4, 5, 8, 16};
  c.max_tokens = 160;
  c.max_slots = 6;
  c.max_rank = 128;
  // r_max in multiples of 8 (a contiguous B then has 16-byte rows, which the
  // fast path's cp.async needs); per-slot ranks stay any value in [0, r_max].
  c.r_max_choices = {8, 16, 24, 32, 40, 64, 80, 96, 112, 128};
  c.max_segments = 24;
  c.allow_inner_stride = false;
  c.aligned_strides = true;
  return c;
}

GenConfig GenConfig::model_scale() {
  GenConfig c;
  c.head_dims = {128};
  c.latent_dims = {512};
  c.head_counts = {1, 8, 16};
  c.max_tokens = 96;
  c.max_rank = 64;
  c.max_segments = 8;
  c.allow_inner_stride = false;
  return c;
}

std::ostream& operator<<(std::ostream& os, const Case& c) {
  const Problem& p = c.problem;
  os << p.summary() << " data_seed=" << c.data_seed << (c.nonfinite ? " nonfinite" : "") << " seg_indptr=[";
  for (int64_t g = 0; g <= p.num_segments; ++g) os << (g ? "," : "") << p.seg_indptr[g];
  os << "] weight_indices=[";
  for (int64_t g = 0; g < p.num_segments; ++g) os << (g ? "," : "") << p.weight_indices[g];
  os << "]";
  return os;
}

namespace {

// Strides for a (d0,d1,d2) tensor: contiguous, or padded at each level.
Strides3 make_strides(const Shape3& s, int64_t inner, int64_t pad1, int64_t pad0) {
  Strides3 st;
  st.s2 = inner;
  st.s1 = s[2] * inner + pad1;
  st.s0 = s[1] * st.s1 + pad0;
  return st;
}

}  // namespace

rc::Gen<Case> gen_case(const GenConfig& cfg) {
  using namespace rc;
  // Stage 1: the dims. Stage 2 (mapcat): everything whose range depends on them.
  auto gen_dims = gen::exec([cfg] {
    Dims d;
    d.S = *gen::inRange<int64_t>(0, cfg.max_tokens + 1);
    d.H = *gen::elementOf(cfg.head_counts);
    d.D_qk = *gen::elementOf(cfg.head_dims);
    d.D_v = *gen::elementOf(cfg.head_dims);
    d.R_kv = *gen::elementOf(cfg.latent_dims);
    d.L = *gen::inRange<int64_t>(1, cfg.max_slots + 1);
    d.r_max = cfg.r_max_choices.empty() ? *gen::inRange<int64_t>(1, cfg.max_rank + 1)
                                        : *gen::elementOf(cfg.r_max_choices);
    return d;
  });
  return gen::mapcat(gen_dims, [cfg](const Dims& d) {
    return gen::exec([cfg, d] {
      Case c;
      Problem& p = c.problem;
      p.shape.dims = d;
      p.shape.dtype = *gen::elementOf(cfg.dtypes);
      // Slots: ranks include 0 and r_max above every rank (mixed ranks).
      p.lora_ranks.resize(d.L);
      p.scalings.resize(d.L);
      for (int64_t l = 0; l < d.L; ++l) {
        p.lora_ranks[l] = *gen::weightedOneOf<int32_t>(
            {{1, gen::just<int32_t>(0)}, {6, gen::inRange<int32_t>(1, static_cast<int32_t>(d.r_max) + 1)}});
        p.scalings[l] = *gen::elementOf(std::vector<float>{1.0f, 0.5f, 2.0f, -1.5f, 0.125f, 3.0f});
      }
      // Segments: lengths include 0; together they cover a prefix of the
      // logical rows, the rest stays uncovered.
      int64_t nseg = *gen::inRange<int64_t>(0, cfg.max_segments + 1);
      std::vector<int32_t> indptr{0};
      int64_t used = 0, max_len = 0;
      for (int64_t g = 0; g < nseg; ++g) {
        int64_t room = d.S - used;
        int64_t len = *gen::weightedOneOf<int64_t>({{1, gen::just<int64_t>(0)},
                                                    {1, gen::just<int64_t>(int64_t{std::min<int64_t>(1, room)})},
                                                    {1, gen::just<int64_t>(int64_t{room})},  // all the rest in one
                                                    {4, gen::inRange<int64_t>(0, room + 1)}});
        used += len;
        max_len = std::max(max_len, len);
        indptr.push_back(static_cast<int32_t>(used));
      }
      std::vector<int32_t> widx;
      for (int64_t g = 0; g < nseg; ++g) widx.push_back(*gen::inRange<int32_t>(0, static_cast<int32_t>(d.L)));
      // Spare capacity (CUDA-graph style): garbage past the live count must be ignored.
      int64_t spare = cfg.allow_spare_capacity ? *gen::inRange<int64_t>(0, 3) : 0;
      for (int64_t k = 0; k < spare; ++k) {
        indptr.push_back(static_cast<int32_t>(d.S + 1000 + k));
        widx.push_back(static_cast<int32_t>(d.L + 7 + k));
      }
      p.seg_indptr = indptr;
      p.weight_indices = widx;
      p.num_segments = nseg;
      p.shape.segment_capacity = nseg + spare;
      bool tight = *gen::arbitrary<bool>();
      p.shape.max_segment_len = tight ? max_len : d.S;
      // Permutation: logical row -> physical token row.
      p.shape.has_permutation = cfg.allow_permutation && d.S > 0 && *gen::arbitrary<bool>();
      if (p.shape.has_permutation) {
        std::vector<int32_t> perm(d.S);
        std::iota(perm.begin(), perm.end(), 0);
        uint64_t perm_seed = *gen::arbitrary<uint64_t>();
        std::mt19937_64 rng(perm_seed);
        std::shuffle(perm.begin(), perm.end(), rng);
        p.permutation = perm;
      }
      // Layout: contiguous, or padded outer strides (views into bigger tensors).
      p.shape.layout = Layout::contiguous(d);
      if (cfg.allow_strides && *gen::arbitrary<bool>()) {
        for (TensorId id : kAllTensors) {
          if (!*gen::arbitrary<bool>()) continue;
          Shape3 s = tensor_shape(d, id);
          int64_t inner = cfg.allow_inner_stride ? *gen::elementOf(std::vector<int64_t>{1, 1, 2}) : 1;
          int64_t pad1 = *gen::elementOf(cfg.aligned_strides ? std::vector<int64_t>{0, 8, 64}
                                                             : std::vector<int64_t>{0, 1, 8, 64});
          int64_t pad0 = *gen::elementOf(cfg.aligned_strides ? std::vector<int64_t>{0, 8, 16}
                                                             : std::vector<int64_t>{0, 3, 8});
          p.shape.layout.of(id) = make_strides(s, inner, pad1, pad0);
        }
      }
      c.data_seed = *gen::arbitrary<uint64_t>();
      c.nonfinite = cfg.inject_nonfinite && *gen::weightedOneOf<bool>({{1, gen::just(true)}, {3, gen::just(false)}});
      return c;
    });
  });
}

Case sample_case(const GenConfig& cfg, uint64_t seed, int size) {
  return gen_case(cfg)(rc::Random(seed), size).value();
}

namespace {

// splitmix64: the per-row seeds, so every (tensor, row) stream is independent
// of thread count and of the other rows (rows can be filled in parallel).
uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Rows (i, j) of a tensor: per-row magnitude 2^[-5,5] for activations, N(0,1/16) weights.
void fill_tensor(HostTensor& h, DType dt, uint64_t seed, bool activation, bool nonzero) {
  const int64_t rows = h.shape[0] * h.shape[1];
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t i = row / h.shape[1], j = row % h.shape[1];
    std::mt19937_64 rng(splitmix(seed ^ splitmix(static_cast<uint64_t>(row))));
    std::normal_distribution<float> normal(0.f, 1.f);
    const float scale = activation ? std::ldexp(1.f, static_cast<int>(rng() % 11) - 5) : 0.25f;
    if (nonzero && rng() % 8 == 0) {
      // A base-output row of -0.0 (about one in 8): adding anything, even
      // +0.0, to it is visible in the bits, so a kernel that runs a rank-0
      // slot or an uncovered row through its accumulate path cannot hide.
      for (int64_t k = 0; k < h.shape[2]; ++k) h.at(i, j, k) = -0.f;
      continue;
    }
    for (int64_t k = 0; k < h.shape[2]; ++k) {
      float v = round_to(dt, normal(rng) * scale);
      if (nonzero && v == 0.f) v = round_to(dt, scale);
      h.at(i, j, k) = v;
    }
  }
}

}  // namespace

ProblemTensors make_tensors(const Case& c) {
  const Problem& p = c.problem;
  const DType dt = p.shape.dtype;
  float gap;
  std::memcpy(&gap, &kGapSentinelBits, 4);
  ProblemTensors t = allocate_tensors(p.shape, gap);
  const uint64_t s = splitmix(c.data_seed);
  fill_tensor(t.q_nope, dt, s + 1, true, false);
  fill_tensor(t.attn_latent, dt, s + 2, true, false);
  fill_tensor(t.q_nope_out, dt, s + 3, true, true);
  fill_tensor(t.attn_bmm_out, dt, s + 4, true, true);
  fill_tensor(t.A, dt, s + 5, false, false);
  fill_tensor(t.B, dt, s + 6, false, false);
  if (c.nonfinite) {
    // One NaN or Inf in an input activation or a weight; it must propagate to
    // the rows it touches and nowhere else.
    std::mt19937_64 rng(s + 7);
    const float bad = rng() % 2 ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    HostTensor* targets[] = {&t.q_nope, &t.attn_latent, &t.A, &t.B};
    HostTensor& h = *targets[rng() % 4];
    if (h.numel() > 0) {
      const int64_t a = static_cast<int64_t>(rng() % h.shape[0]), b = static_cast<int64_t>(rng() % h.shape[1]),
                    e = static_cast<int64_t>(rng() % h.shape[2]);
      h.at(a, b, e) = bad;
    }
  }
  return t;
}

Problem make_problem(const Dims& d, DType dtype, std::vector<int32_t> ranks, std::vector<float> scalings,
                     std::vector<int32_t> seg_indptr, std::vector<int32_t> weight_indices,
                     std::vector<int32_t> permutation) {
  Problem p;
  p.shape.dims = d;
  p.shape.dtype = dtype;
  p.shape.layout = Layout::contiguous(d);
  p.lora_ranks = std::move(ranks);
  p.scalings = std::move(scalings);
  p.num_segments = static_cast<int64_t>(weight_indices.size());
  p.shape.segment_capacity = p.num_segments;
  p.seg_indptr = std::move(seg_indptr);
  p.weight_indices = std::move(weight_indices);
  int64_t max_len = 0;
  for (int64_t g = 0; g + 1 < static_cast<int64_t>(p.seg_indptr.size()); ++g)
    max_len = std::max<int64_t>(max_len, p.seg_indptr[g + 1] - p.seg_indptr[g]);
  p.shape.max_segment_len = std::min<int64_t>(std::max<int64_t>(max_len, 0), d.S);
  p.shape.has_permutation = !permutation.empty();
  p.permutation = std::move(permutation);
  return p;
}

}  // namespace mlalora::harness
