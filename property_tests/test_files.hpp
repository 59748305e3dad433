// File helpers shared by the tests that write, corrupt and re-read HDF5 files:
// a fresh temporary directory per test case, and whole-file byte I/O.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace mlalora::test {

// A fresh directory per test case (named after `tag`, the pid and a counter), removed afterwards.
struct TempDir {
  std::filesystem::path dir;
  explicit TempDir(const std::string& tag = "files") {
    static int counter = 0;
    dir = std::filesystem::temp_directory_path() /
          ("mlalora_" + tag + "_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string operator()(const std::string& name) const { return (dir / name).string(); }
};

inline std::vector<char> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

}  // namespace mlalora::test
