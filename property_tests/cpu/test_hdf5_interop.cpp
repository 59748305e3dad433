// Files written by other tools (h5py writes `bytes` attributes as fixed-length
// ASCII, `str` as variable-length UTF-8) must read as well as our own.
#include <catch2/catch.hpp>
#include <hdf5.h>

#include <cstdio>
#include <cstring>

#include "mlalora/harness/hdf5_file.hpp"

using namespace mlalora;

namespace {
void write_string_attr(hid_t file, const char* name, const char* value, bool variable, H5T_cset_t cset) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (variable) H5Tset_size(t, H5T_VARIABLE);
  else H5Tset_size(t, std::strlen(value));
  H5Tset_cset(t, cset);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(file, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (variable) H5Awrite(a, t, &value);
  else H5Awrite(a, t, value);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}
}  // namespace

TEST_CASE("string attributes in every h5py encoding are read", "[hdf5]") {
  const std::string path = "mlalora_interop_test.h5";
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(f >= 0);
  write_string_attr(f, "fixed_ascii", "triton-kernel", false, H5T_CSET_ASCII);
  write_string_attr(f, "fixed_utf8", "sgmm-\xc3\xa9", false, H5T_CSET_UTF8);
  write_string_attr(f, "vlen_ascii", "vllm", true, H5T_CSET_ASCII);
  write_string_attr(f, "vlen_utf8", "sglang", true, H5T_CSET_UTF8);
  H5Fclose(f);
  harness::H5Reader r;
  REQUIRE(r.open(path).ok());
  std::string v;
  Status s = r.read_attr_string("/", "fixed_ascii", &v);
  INFO(s.message);
  CHECK(s.ok());
  CHECK(v == "triton-kernel");
  CHECK(r.read_attr_string("/", "fixed_utf8", &v).ok());
  CHECK(v == "sgmm-\xc3\xa9");
  CHECK(r.read_attr_string("/", "vlen_ascii", &v).ok());
  CHECK(v == "vllm");
  CHECK(r.read_attr_string("/", "vlen_utf8", &v).ok());
  CHECK(v == "sglang");
  r.close();
  std::remove(path.c_str());
}
