// doctest entry point of the GPU suites: without a usable CUDA device (or in a build without
// CUDA) it prints why and returns 77, which ctest reports as skipped (SKIP_RETURN_CODE 77).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "kernels/gpu_api.h"

int main(int argc, char** argv) {
  namespace gpu = shardquant::gpu;
  if (gpu::device_count() == 0) {
    std::printf("shardquant_gpu_tests: SKIPPED, %s\n", gpu::unavailable_reason().c_str());
    return 77;
  }
  const gpu::device_properties p = gpu::properties(0);
  std::printf("shardquant_gpu_tests: device 0 = %s (sm_%d%d, %d SMs)\n", p.name.c_str(), p.cc_major,
              p.cc_minor, p.multiprocessors);
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
