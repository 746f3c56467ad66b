// The per-scheme backend fallback: a device backend (CUDA) runs only the jobs whose scheme its
// kernels support (the `backends` column of the scheme table, kernels/schemes.h); the amax and
// quantize jobs of any other scheme, and of rotated tensors (--rotation), run on the CPU path of
// the same run, in the calling worker,
// exactly as the CPU backend runs them. Depends on stages/compute_backend.h and compute_cpu.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "stages/compute_backend.h"

namespace shardquant {

// Whether job `j` must take the CPU path on a backend with the kernels of `device_bit`
// (backend_cuda, ...): an amax or quantize job whose scheme that backend lacks, or that rotates
// its weight first (no device rotation kernel yet).
[[nodiscard]] bool needs_cpu_fallback(const job& j, uint8_t device_bit) noexcept;

// The CPU path a fallback job takes (run_cpu_compute; a test may observe it).
using cpu_path = std::function<void(job&)>;

// Wraps `device` (whose kernels are those of `device_bit`): jobs needs_cpu_fallback() says go to
// `cpu` (default run_cpu_compute, exactly what the CPU backend runs), everything else to
// `device`. Name, concurrency and device memory are the device's.
[[nodiscard]] std::unique_ptr<compute_backend> with_cpu_fallback(
    std::unique_ptr<compute_backend> device, uint8_t device_bit, cpu_path cpu = {});

}  // namespace shardquant
