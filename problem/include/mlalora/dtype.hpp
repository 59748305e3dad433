// Element types the operation is defined for (SPEC "Shapes and dtypes"), and
// host-side helpers to round values into them.
//
// The host keeps every tensor as float32 values that are exactly representable
// in the tensor's dtype; device code converts to the storage type on upload.
// This keeps one host representation for the reference, the harness and the
// kernels' test adapters, and makes the float64 reference see exactly the
// values the kernels see.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace mlalora {

enum class DType : int32_t { f32 = 0, f16 = 1, bf16 = 2 };

inline constexpr DType kAllDTypes[] = {DType::f32, DType::f16, DType::bf16};

const char* dtype_name(DType t);                          // "f32" | "f16" | "bf16"
std::optional<DType> parse_dtype(const std::string& name); // accepts the names above and fp32/fp16/float32/...
int dtype_bytes(DType t);

// Unit roundoff (half an ulp at 1.0) of round-to-nearest in the dtype.
double unit_roundoff(DType t);
// Largest finite value of the dtype.
double dtype_max(DType t);

// Round a value to the nearest value of the dtype (ties to even), returned as
// float. For f32 this is the identity.
float round_to(DType t, float x);
float round_to(DType t, double x);

// Raw storage bits <-> float (bf16/f16 use the low 16 bits).
uint32_t to_bits(DType t, float x);   // x must already be representable
float from_bits(DType t, uint32_t bits);

}  // namespace mlalora
