// Which compute backend a run gets: the CPU backend, or one CUDA backend per device of
// `--device cuda:N,M` behind the multi-device scheduler (stages/compute_multi.h), each with the
// CPU fallback for schemes without a CUDA kernel. Also the test seam that spreads a CPU run over
// several CPU backends the same way, so the multi-device path is checked without GPUs. No graph.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "pipeline/run/token_pool.h"
#include "stages/compute_backend.h"

namespace shardquant {

// Tests only; the program always uses the defaults (one CPU backend on the CPU).
struct backend_seam {
  // A CPU run's jobs go through the multi-device scheduler to this many CPU backends.
  unsigned cpu_backends = 1;
  // Makes CPU backend `index` with `streams` jobs at once; empty: make_cpu_backend(streams).
  std::function<std::unique_ptr<compute_backend>(unsigned index, unsigned streams)> make_cpu;
};

// `devices` empty: the CPU. Throws what make_gpu_backend throws.
[[nodiscard]] std::unique_ptr<compute_backend> make_run_backend(const std::vector<int>& devices,
                                                                unsigned streams,
                                                                token_geometry tokens,
                                                                const backend_seam& seam = {});

}  // namespace shardquant
