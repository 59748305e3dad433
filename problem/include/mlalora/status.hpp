// Status returned by every entry point that can refuse its input. Kernels and
// the reference never throw across their API; the CLI turns a Status into a
// message and an exit code.
#pragma once
#include <string>
#include <utility>

namespace mlalora {

enum class StatusCode : int {
  ok = 0,
  invalid_argument = 1,  // violates SPEC: the message names the argument
  not_supported = 2,     // valid per SPEC, but this implementation does not handle it
  workspace_too_small = 3,
  device_error = 4,      // a CUDA / cuBLAS call failed
  io_error = 5,
};

struct Status {
  StatusCode code = StatusCode::ok;
  std::string message;

  bool ok() const { return code == StatusCode::ok; }
  static Status Ok() { return {}; }
  static Status Invalid(std::string m) { return {StatusCode::invalid_argument, std::move(m)}; }
  static Status NotSupported(std::string m) { return {StatusCode::not_supported, std::move(m)}; }
  static Status DeviceError(std::string m) { return {StatusCode::device_error, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::io_error, std::move(m)}; }
};

const char* status_code_name(StatusCode c);

}  // namespace mlalora

#define MLALORA_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::mlalora::Status _st = (expr);            \
    if (!_st.ok()) return _st;                 \
  } while (0)
