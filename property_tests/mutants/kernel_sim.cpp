#include "mutants/kernel_sim.hpp"

#include <algorithm>
#include <vector>

namespace mlalora::test {

namespace {

int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Index data entries a kernel would load; out-of-range positions read as 0
// (a real kernel reads in-bounds garbage, never out of bounds).
int32_t load(const std::vector<int32_t>& v, int64_t i) {
  return i >= 0 && i < static_cast<int64_t>(v.size()) ? v[static_cast<size_t>(i)] : 0;
}

}  // namespace

Status KernelSim::supports(const Problem& p) const { return validate(p); }

reference::RoundingModel KernelSim::rounding_model(const Problem& p, Side) const {
  return reference::RoundingModel::factored(p.shape.dtype, /*tensor_core=*/false);
}

Status KernelSim::run(const Problem& p, ProblemTensors& io) {
  MLALORA_RETURN_IF_ERROR(validate(p));
  run_side(p, io, Side::q);
  if (!bugs_.v_side_skipped) run_side(p, io, Side::v);
  return Status::Ok();
}

void KernelSim::run_side(const Problem& p, ProblemTensors& io, Side side) const {
  const Dims& d = p.dims();
  const DType dt = p.shape.dtype;
  const KernelBugs& bug = bugs_;
  const bool q = side == Side::q;
  const HostTensor& x = io.of(input_of(side));
  HostTensor& out = io.of(output_of(side));
  const HostTensor& A = io.A;
  const HostTensor& B = io.B;
  const int64_t S = d.S, H = d.H, F = d.F();
  const int64_t K1 = q ? d.D_qk : d.R_kv;  // stage-1 reduction length
  const int64_t N = q ? d.R_kv : d.D_v;    // output features
  if (S == 0 || H == 0 || N == 0 || d.L == 0) return;

  const DType mid_dt = bug.intermediate_fp16 ? DType::f16 : dt;
  auto acc_add = [&](float acc, float prod) {
    float r = acc + prod;
    return bug.accumulate_bf16 ? round_to(DType::bf16, r) : r;
  };

  // Rows of B a kernel addresses for head h (clamped into the tensor).
  auto b_row_k = [&](int64_t h, int64_t dd) {  // row of B_kc[h][dd]
    int64_t row = bug.b_head_offset_dqk ? h * d.D_qk + dd : bug.swap_kv_halves ? h * F + d.D_v + dd : h * F + dd;
    return clamp64(row, 0, H * F - 1);
  };
  auto b_row_v = [&](int64_t h, int64_t n) {  // row of B_vc[h][n]
    int64_t row = bug.b_head_offset_dqk ? h * d.D_qk + d.D_qk + n : bug.swap_kv_halves ? h * F + n : h * F + d.D_qk + n;
    return clamp64(row, 0, H * F - 1);
  };

  // Input element read (optionally assuming unit inner stride).
  auto x_at = [&](int64_t t, int64_t h, int64_t k) -> float {
    if (!bug.ignore_inner_stride) return x.at(t, h, k);
    int64_t off = t * x.strides.s0 + h * x.strides.s1 + k;
    off = clamp64(off, 0, static_cast<int64_t>(x.data.size()) - 1);
    return x.data[static_cast<size_t>(off)];
  };
  // Output storage offset (optionally with the input's strides); -1 = skipped.
  auto out_off = [&](int64_t t, int64_t h, int64_t n) -> int64_t {
    int64_t off = bug.output_input_strides ? t * x.strides.s0 + h * x.strides.s1 + n * x.strides.s2 : out.offset(t, h, n);
    return off >= 0 && off < static_cast<int64_t>(out.data.size()) ? off : -1;
  };

  // Inverse permutation (for the perm_inverted mutant only).
  std::vector<int64_t> inv;
  if (bug.perm_inverted && p.shape.has_permutation) {
    inv.resize(static_cast<size_t>(S));
    for (int64_t i = 0; i < S; ++i) inv[i] = i;
    for (int64_t j = 0; j < S; ++j) {
      int64_t t = load(p.permutation, j);
      if (t >= 0 && t < S) inv[t] = j;
    }
  }
  auto rows_of = [&](int64_t i, int64_t* t_in, int64_t* t_out) {
    int64_t t = i;
    if (p.shape.has_permutation && !bug.ignore_permutation) {
      t = bug.perm_inverted ? inv[i] : load(p.permutation, i);
    }
    t = clamp64(t, 0, S - 1);
    *t_in = t;
    *t_out = bug.perm_output_logical ? i : t;
  };

  std::vector<float> y(static_cast<size_t>(std::max<int64_t>(d.r_max, 1)));
  const int64_t H_loop = bug.head_loop_short ? H - 1 : H;

  // One (segment, slot) "CTA row": logical rows [start, end) with slot l.
  auto process = [&](int64_t start, int64_t end, int64_t l) {
    l = clamp64(l, 0, d.L - 1);
    const int32_t rank = load(p.lora_ranks, l);
    int64_t r = clamp64(rank, 0, d.r_max);
    if (bug.rank0_as_r_max && r == 0) r = d.r_max;
    if (r == 0 && !bug.rank0_not_skipped) return;
    if (bug.use_r_max) r = d.r_max;
    if (start >= end) return;
    const float s0 = l < static_cast<int64_t>(p.scalings.size()) ? p.scalings[static_cast<size_t>(l)] : 0.f;
    const float s = bug.ignore_scaling ? 1.f : bug.scaling_twice ? s0 * s0 : s0;
    for (int64_t tile = start; tile < end; tile += kRowTile) {
      const int64_t tile_end = std::min(tile + kRowTile, end);
      if (bug.drop_partial_tile && tile_end - tile < kRowTile) break;
      for (int64_t h = 0; h < H_loop; ++h) {
        for (int64_t i = tile; i < tile_end; ++i) {
          int64_t t_in, t_out;
          rows_of(i, &t_in, &t_out);
          // Stage 1: rank-r intermediate, fp32 accumulation, rounded.
          for (int64_t k = 0; k < r; ++k) {
            float acc = 0.f;
            if (q) {
              for (int64_t dd = 0; dd < K1; ++dd) acc = acc_add(acc, x_at(t_in, h, dd) * B.at(l, b_row_k(h, dd), k));
            } else {
              for (int64_t j = 0; j < K1; ++j) acc = acc_add(acc, x_at(t_in, h, j) * A.at(l, k, j));
            }
            y[static_cast<size_t>(k)] = round_to(mid_dt, acc);
          }
          // Stage 2 and the scaled accumulate, output columns in tiles.
          for (int64_t n0 = 0; n0 < N; n0 += kColTile) {
            const int64_t n1 = std::min(n0 + kColTile, N);
            for (int64_t n = n0; n < n1; ++n) {
              if (bug.drop_last_column && N % kColTile != 0 && n == N - 1) continue;
              float z = 0.f;
              for (int64_t k = 0; k < r; ++k)
                z = acc_add(z, y[static_cast<size_t>(k)] * (q ? A.at(l, k, n) : B.at(l, b_row_v(h, n), k)));
              const int64_t off = out_off(t_out, h, n);
              if (off < 0) continue;
              float& o = out.data[static_cast<size_t>(off)];
              const float v = bug.overwrite_base ? s * z : o + s * z;
              o = round_to(dt, v);
            }
          }
        }
      }
    }
  };

  const int64_t nseg = bug.stale_segment_count ? p.shape.segment_capacity : p.num_segments;
  for (int64_t g = 0; g < nseg; ++g) {
    const int64_t start = clamp64(load(p.seg_indptr, g), 0, S);
    int64_t end = clamp64(load(p.seg_indptr, g + 1), 0, S);
    if (bug.seg_end_off_by_one) end = std::min(end + 1, S);
    const int64_t l = bug.first_weight_index ? load(p.weight_indices, 0) : load(p.weight_indices, g);
    process(start, end, l);
  }
  if (bug.write_uncovered_rows) {
    // The launch covers every token row; rows past the last live segment fall
    // back to the first segment's slot instead of exiting.
    const int64_t covered = p.num_segments > 0 ? clamp64(load(p.seg_indptr, p.num_segments), 0, S) : 0;
    process(covered, S, load(p.weight_indices, 0));
  }
}

}  // namespace mlalora::test
