// File helpers shared by the tests that write, corrupt and re-read HDF5 files:
// a fresh temporary directory per test case, and whole-file byte I/O.
#pragma once
#include <catch2/catch.hpp>
#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "mlalora/status.hpp"

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

// One corruption of a file's bytes for the byte-flip fuzz tests: 1-8 random
// byte flips (in a quarter of the draws all within the first `head` bytes:
// superblock, root object header, attributes), and in another quarter the file
// also truncated at a random length.
inline std::vector<char> flip_bytes(const std::vector<char>& bytes, std::mt19937_64& rng, size_t head) {
  std::vector<char> m = bytes;
  const int mode = static_cast<int>(rng() % 4);
  const int flips = 1 + static_cast<int>(rng() % 8);
  for (int k = 0; k < flips; ++k) {
    size_t pos = static_cast<size_t>(rng() % m.size());
    if (mode == 0 && pos > head) pos %= head;
    m[pos] = static_cast<char>(m[pos] ^ static_cast<char>(1 + rng() % 255));
  }
  if (mode == 3) m.resize(static_cast<size_t>(rng() % m.size()));
  return m;
}

inline void write_bytes(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

// The byte-flip fuzz loop of the file readers' tests: `iters` corruptions of
// the file `good` (flip_bytes, replayed by `seed`), each written to a scratch
// file in `tmp` and handed to `load_and_check(path)`, which returns the
// reader's status and, when the file loaded, REQUIREs that what it loaded is
// valid. A refusal must carry a message. Prints the counts under `tag`.
template <typename LoadAndCheck>
void byte_flip_fuzz(const char* tag, uint64_t seed, int iters, const std::string& good, const TempDir& tmp,
                    LoadAndCheck&& load_and_check) {
  const std::vector<char> bytes = read_bytes(good);
  std::mt19937_64 rng(seed);
  int loaded = 0, refused = 0;
  for (int it = 0; it < iters; ++it) {
    const std::string f = tmp("fuzz.h5");
    write_bytes(f, flip_bytes(bytes, rng, 256));
    INFO("iteration " << it << " (the corruption is replayed by the seed)");
    const Status st = load_and_check(f);
    if (st.ok()) {
      ++loaded;
    } else {
      ++refused;
      REQUIRE(!st.message.empty());
    }
  }
  std::printf("[%s] %d loaded (valid), %d refused\n", tag, loaded, refused);
  CHECK(loaded + refused == iters);
}

// Surgery on an existing HDF5 file, for tests that feed readers mistyped or
// inconsistent files (Catch2 REQUIREs: a helper that cannot corrupt fails the test).
template <typename T>
void replace_dataset(const std::string& file, const std::string& path, hid_t type, const std::vector<T>& data,
                     std::vector<hsize_t> dims) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  if (H5Lexists(f, path.c_str(), H5P_DEFAULT) > 0) REQUIRE(H5Ldelete(f, path.c_str(), H5P_DEFAULT) >= 0);
  hid_t sp = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t d = H5Dcreate2(f, path.c_str(), type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(d >= 0);
  if (!data.empty()) REQUIRE(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(f);
}

inline void replace_int_attr(const std::string& file, const std::string& obj, const std::string& name, int64_t v) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t o = H5Oopen(f, obj.c_str(), H5P_DEFAULT);
  REQUIRE(o >= 0);
  hid_t a = H5Aopen(o, name.c_str(), H5P_DEFAULT);
  REQUIRE(a >= 0);
  REQUIRE(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
  H5Aclose(a);
  H5Oclose(o);
  H5Fclose(f);
}

}  // namespace mlalora::test
