#include "mlalora/dtype.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>

namespace mlalora {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
  }
  return "invalid";
}

std::optional<DType> parse_dtype(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  if (n == "f32" || n == "fp32" || n == "float32" || n == "float") return DType::f32;
  if (n == "f16" || n == "fp16" || n == "float16" || n == "half") return DType::f16;
  if (n == "bf16" || n == "bfloat16") return DType::bf16;
  return std::nullopt;
}

int dtype_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

double unit_roundoff(DType t) {
  switch (t) {
    case DType::f32: return std::ldexp(1.0, -24);
    case DType::f16: return std::ldexp(1.0, -11);
    case DType::bf16: return std::ldexp(1.0, -8);
  }
  return 0.0;
}

double dtype_max(DType t) {
  switch (t) {
    case DType::f32: return std::numeric_limits<float>::max();
    case DType::f16: return 65504.0;
    case DType::bf16: return 3.3895313892515355e38;  // (2 - 2^-7) * 2^127
  }
  return 0.0;
}

namespace {
uint32_t f32_bits(float x) { uint32_t b; std::memcpy(&b, &x, 4); return b; }
float bits_f32(uint32_t b) { float x; std::memcpy(&x, &b, 4); return x; }

uint16_t f32_to_bf16_bits(float x) {
  uint32_t b = f32_bits(x);
  if (std::isnan(x)) return static_cast<uint16_t>((b >> 16) | 0x40);  // keep quiet NaN
  uint32_t lsb = (b >> 16) & 1u;
  b += 0x7fffu + lsb;  // round to nearest even; overflows into Inf correctly
  return static_cast<uint16_t>(b >> 16);
}
}  // namespace

float round_to(DType t, float x) {
  switch (t) {
    case DType::f32: return x;
    case DType::bf16: return bits_f32(static_cast<uint32_t>(f32_to_bf16_bits(x)) << 16);
    case DType::f16: return static_cast<float>(static_cast<_Float16>(x));
  }
  return x;
}

float round_to(DType t, double x) {
  if (t == DType::f16) return static_cast<float>(static_cast<_Float16>(x));  // single rounding
  if (t == DType::f32) return static_cast<float>(x);
  // bf16: double -> f32 -> bf16 could double-round; do it directly.
  if (std::isnan(x) || std::isinf(x)) return round_to(t, static_cast<float>(x));
  float f = static_cast<float>(x);  // candidate; correct unless x was near a bf16 tie
  float r = round_to(t, f);
  // Fix double rounding: compare distances to the two neighbouring bf16 values.
  uint32_t rb = f32_bits(r);
  float up = bits_f32(rb + 0x10000u), dn = bits_f32(rb - 0x10000u);
  double dr = std::fabs(static_cast<double>(r) - x);
  if (std::isfinite(up) && std::fabs(static_cast<double>(up) - x) < dr) return up;
  if (std::isfinite(dn) && std::fabs(static_cast<double>(dn) - x) < dr) return dn;
  return r;
}

uint32_t to_bits(DType t, float x) {
  switch (t) {
    case DType::f32: return f32_bits(x);
    case DType::bf16: return f32_to_bf16_bits(x);
    case DType::f16: {
      _Float16 h = static_cast<_Float16>(x);
      uint16_t b; std::memcpy(&b, &h, 2); return b;
    }
  }
  return 0;
}

float from_bits(DType t, uint32_t bits) {
  switch (t) {
    case DType::f32: return bits_f32(bits);
    case DType::bf16: return bits_f32((bits & 0xffffu) << 16);
    case DType::f16: {
      uint16_t b = static_cast<uint16_t>(bits); _Float16 h; std::memcpy(&h, &b, 2);
      return static_cast<float>(h);
    }
  }
  return 0.f;
}

}  // namespace mlalora
