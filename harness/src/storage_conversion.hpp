// Host float <-> dtype storage bytes for device uploads (parallel: full-scale
// benchmark problems hold hundreds of millions of elements).
#pragma once
#include <vector>

#include "mlalora/dtype.hpp"

namespace mlalora::harness {
std::vector<unsigned char> to_storage(DType dt, const std::vector<float>& v);
void from_storage(DType dt, const std::vector<unsigned char>& in, std::vector<float>& v);
}  // namespace mlalora::harness
