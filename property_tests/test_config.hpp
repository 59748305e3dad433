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

// Where GPU tests write reproducers of failing cases (MLALORA_DUMP_DIR).
inline std::string gpu_dump_dir() {
  if (const char* d = std::getenv("MLALORA_DUMP_DIR")) return d;
  return "gpu-failures";
}

// Sets an environment variable for one scope ("" unsets it) and restores the
// previous value: library knobs read per call (MLALORA_FAST_QV, ...) that a
// test cycles through. Tests are single-threaded.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) had_ = true, old_ = old;
    if (value != nullptr && *value != '\0') setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace mlalora::test
