// Seed and case-count knobs shared by every test file (see main.cpp).
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace mlalora::test {

inline uint64_t base_seed() {
  static const uint64_t seed = [] {
    if (const char* s = std::getenv("MLALORA_SEED")) return static_cast<uint64_t>(std::strtoull(s, nullptr, 10));
    return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000007ULL);
  }();
  return seed;
}

inline int env_int(const char* name, int fallback) {
  if (const char* s = std::getenv(name)) {
    int v = std::atoi(s);
    if (v > 0) return v;
  }
  return fallback;
}

inline int case_count() { return env_int("MLALORA_CASES", 100); }

}  // namespace mlalora::test
