// The quantize node set's body behind one interface: the CPU backend runs a job in the calling
// worker and completes at once; the CUDA backend (stages/compute_gpu) enqueues H2D, kernels and
// D2H on one of its streams and completes from the driver's callback thread. Either way the
// graph's async_node gateway receives the completion, so no worker blocks on a GPU.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "stages/job.h"

namespace shardquant {

using compute_done = std::function<void(std::exception_ptr)>;

class compute_backend {
 public:
  virtual ~compute_backend() = default;
  // Runs everything between read and write for `j` (gather, recovery, cast, amax, quantize),
  // leaving the output pieces at their token positions, then calls `done` exactly once (maybe
  // before run() returns). Amax jobs leave the range's amax in j.range_amax (CPU) or in the
  // tensor's device workspace (GPU).
  virtual void run(job& j, compute_done done) = 0;
  // Waits until every started job has called its `done`.
  virtual void drain() = 0;
  // How many jobs the graph should hand over at once.
  [[nodiscard]] virtual unsigned concurrency() const noexcept = 0;
  [[nodiscard]] virtual std::string name() const = 0;
  // Device memory high-water mark in bytes (0 on the CPU).
  [[nodiscard]] virtual uint64_t peak_device_bytes() const noexcept { return 0; }
};

// CPU: kernels/quantize.h fast path (TBB-parallel inside a job); `concurrency` jobs at once.
[[nodiscard]] std::unique_ptr<compute_backend> make_cpu_backend(unsigned concurrency);

// CUDA: `streams` streams per device of `devices`, each with a device buffer of `token_bytes`
// for a job's input and outputs, and per device `tokens` + 1 workspace slots for split
// per-tensor-scheme tensors (at most that many are open at once: each holds a token, and they
// get tokens in job order). Throws gpu::unavailable_error in a build without CUDA or when a
// device is missing.
[[nodiscard]] std::unique_ptr<compute_backend> make_gpu_backend(const std::vector<int>& devices,
                                                                unsigned streams,
                                                                uint64_t token_bytes,
                                                                uint64_t tokens);

}  // namespace shardquant
