// The visible skip every GPU test case starts with: without a usable device
// the case warns "SKIPPED: no GPU: <reason>" and returns, so CI (no GPU)
// passes while the log shows what did not run.
#pragma once
#include <catch2/catch.hpp>

#include <string>

#include "mlalora/harness/gpu_implementations.hpp"

#define MLALORA_SKIP_WITHOUT_GPU()                            \
  do {                                                        \
    std::string mlalora_no_gpu_why;                           \
    if (!mlalora::harness::gpu_available(&mlalora_no_gpu_why)) { \
      WARN("SKIPPED: no GPU: " << mlalora_no_gpu_why);        \
      return;                                                 \
    }                                                         \
  } while (0)
