#include "storage_conversion.hpp"

#include <cstdint>
#include <cstring>

namespace mlalora::harness {

std::vector<unsigned char> to_storage(DType dt, const std::vector<float>& v) {
  const size_t eb = static_cast<size_t>(dtype_bytes(dt));
  std::vector<unsigned char> out(v.size() * eb);
  const int64_t n = static_cast<int64_t>(v.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t b = to_bits(dt, v[static_cast<size_t>(i)]);
    if (eb == 4) {
      std::memcpy(&out[static_cast<size_t>(i) * 4], &b, 4);
    } else {
      const uint16_t h = static_cast<uint16_t>(b);
      std::memcpy(&out[static_cast<size_t>(i) * 2], &h, 2);
    }
  }
  return out;
}

void from_storage(DType dt, const std::vector<unsigned char>& in, std::vector<float>& v) {
  const size_t eb = static_cast<size_t>(dtype_bytes(dt));
  const int64_t n = static_cast<int64_t>(v.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b = 0;
    if (eb == 4) {
      std::memcpy(&b, &in[static_cast<size_t>(i) * 4], 4);
    } else {
      uint16_t h;
      std::memcpy(&h, &in[static_cast<size_t>(i) * 2], 2);
      b = h;
    }
    v[static_cast<size_t>(i)] = from_bits(dt, b);
  }
}

}  // namespace mlalora::harness
