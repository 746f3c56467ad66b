// Helpers of the GPU suites: run a scheme (or a recovery) on the device through kernels/gpu_api.h
// into poisoned device buffers, whole tensor or as row ranges placed by range_layout(), and bring
// the bytes and the status back for comparison with the CPU reference (tests/kernels_test_util.h).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/gpu_api.h"
#include "kernels/numeric.h"
#include "kernels/quantize.h"
#include "kernels/recover_tensors.h"
#include "tests/kernels_test_util.h"

namespace shardquant::test {

inline constexpr uint8_t k_gpu_poison = 0xA5;

// One stream, workspace and pinned status slot per suite run.
struct gpu_ctx {
  gpu::stream s{0};
  gpu::device_buffer ws{gpu::workspace_bytes(), 0};
  gpu::pinned_buffer status{sizeof(gpu::kernel_status)};

  gpu::kernel_status read() {
    gpu::read_status(ws.data(), status.as<gpu::kernel_status>(), s);
    s.synchronize();
    return *status.as<gpu::kernel_status>();
  }
};

// Never destroyed: releasing CUDA handles from a static destructor races the runtime's own
// teardown at exit.
inline gpu_ctx& ctx() {
  static gpu_ctx* c = new gpu_ctx;
  return *c;
}

inline gpu::device_buffer upload(const void* p, size_t n) {
  gpu::device_buffer b(n ? n : 1, 0);
  if (n) gpu::copy_to_device(b.data(), p, n, ctx().s);
  ctx().s.synchronize();
  return b;
}

inline gpu::device_buffer poisoned(size_t n) {
  gpu::device_buffer b(n ? n : 1, 0);
  gpu::fill_device(b.data(), k_gpu_poison, n ? n : 1, ctx().s);
  return b;
}

inline std::vector<uint8_t> download(const gpu::device_buffer& b, size_t n) {
  std::vector<uint8_t> h(n);
  if (n) gpu::copy_to_host(h.data(), b.data(), n, ctx().s);
  ctx().s.synchronize();
  return h;
}

// A source the device quantizes: dense elements, or block FP8 recovered in the kernel.
struct gpu_source {
  bool fp8_block = false;
  dtype type = dtype::bf16;    // dense
  const void* host = nullptr;  // dense elements / FP8 codes (whole tensor)
  fp8_block_source fp8{};      // fp8_block: host pointers to codes and scale
  size_t scale_bytes = 0;
};

// Quantizes the whole tensor as row ranges split at `cuts` (empty: one launch), every range on
// the device writing into whole-tensor device buffers at the range_layout() places; per-tensor
// schemes run tensor_amax() over every range first. Returns bytes and the status.
inline run_result gpu_run(const weight_scheme& s, const gpu_source& src,
                          const std::vector<uint64_t>& shape,
                          const std::vector<uint64_t>& cuts = {}) {
  gpu_ctx& c = ctx();
  run_result r;
  uint64_t inner = 1, numel = 1;
  for (size_t k = 1; k < shape.size(); ++k) inner *= shape[k];
  for (uint64_t d : shape) numel *= d;
  const uint64_t esize = src.fp8_block ? 1 : bits(src.type) / 8;
  gpu::device_buffer in = upload(src.fp8_block ? src.fp8.weight : src.host, numel * esize);
  gpu::device_buffer scale;
  if (src.fp8_block) scale = upload(src.fp8.scale, src.scale_bytes);
  const std::vector<output_tensor> outs = output_tensors(s, shape);
  std::vector<gpu::device_buffer> dev;
  for (const output_tensor& t : outs) dev.push_back(poisoned(t.byte_size()));
  std::vector<uint64_t> bounds{0};
  for (uint64_t k : cuts) bounds.push_back(k);
  bounds.push_back(shape[0]);
  gpu::reset_workspace(c.ws.data(), c.ws.size(), c.s);
  auto view_at = [&](size_t k) {
    source_view v{src.type, shape, static_cast<const char*>(in.data()) + bounds[k] * inner * esize,
                  bounds[k], bounds[k + 1]};
    return v;
  };
  auto fp8_at = [&](size_t k) {
    fp8_block_source f = src.fp8;
    f.weight = static_cast<const uint8_t*>(in.data()) + bounds[k] * inner;
    f.scale = scale.data();
    f.row_begin = bounds[k];
    f.row_end = bounds[k + 1];
    return f;
  };
  if (needs_tensor_amax(s)) {
    for (size_t k = 0; k + 1 < bounds.size(); ++k) {
      const quant_status st = src.fp8_block
                                  ? gpu::tensor_amax(fp8_at(k), c.ws.data(), c.ws.size(), c.s)
                                  : gpu::tensor_amax(view_at(k), c.ws.data(), c.ws.size(), c.s);
      REQUIRE(st.ok());
    }
  }
  for (size_t k = 0; k + 1 < bounds.size(); ++k) {
    const std::vector<output_piece> p = range_layout(s, shape, bounds[k], bounds[k + 1]);
    quant_outputs o;
    o.weight = static_cast<char*>(dev[0].data()) + p[0].offset;
    o.weight_ld = p[0].count > 1 ? p[0].stride / 4 : 0;
    o.scale = dev.size() > 1 ? static_cast<char*>(dev[1].data()) + p[1].offset : nullptr;
    o.extra = dev.size() > 2 ? static_cast<char*>(dev[2].data()) + p[2].offset : nullptr;
    o.extra2 = dev.size() > 3 ? static_cast<char*>(dev[3].data()) + p[3].offset : nullptr;
    const quant_status st = src.fp8_block
                                ? gpu::quantize(s, fp8_at(k), o, c.ws.data(), c.ws.size(), c.s)
                                : gpu::quantize(s, view_at(k), o, c.ws.data(), c.ws.size(), c.s);
    REQUIRE(st.ok());
  }
  r.status = gpu::to_quant_status(c.read());
  for (size_t t = 0; t < outs.size(); ++t)
    r.tensors.push_back(download(dev[t], outs[t].byte_size()));
  return r;
}

// Compares a GPU run with the CPU reference: same status; same bytes when the status is ok.
inline void check_same(const run_result& cpu, const run_result& gpu_r) {
  CHECK(int(cpu.status.what) == int(gpu_r.status.what));
  CHECK(cpu.status.index == gpu_r.status.index);
  if (!cpu.status.ok() || !gpu_r.status.ok()) return;
  REQUIRE(cpu.tensors.size() == gpu_r.tensors.size());
  for (size_t t = 0; t < cpu.tensors.size(); ++t) {
    CAPTURE(t);
    const auto& a = cpu.tensors[t];
    const auto& b = gpu_r.tensors[t];
    REQUIRE(a.size() == b.size());
    size_t first = a.size();
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i] != b[i]) {
        first = i;
        break;
      }
    CAPTURE(first);
    if (first < a.size()) {
      const int cpu_byte = a[first], gpu_byte = b[first];
      CAPTURE(cpu_byte);
      CAPTURE(gpu_byte);
      CHECK(first == a.size());
    }
  }
}

// Weight generators: bit patterns of `type` (F32, BF16 or F16) for n elements drawn from a mix
// of the hard cases: normal values over many magnitudes, exact zeros and -0, ties on coarse
// grids (small integers times powers of two), source-dtype subnormals and rare outliers.
inline std::vector<uint8_t> make_weights(dtype type, uint64_t n, uint32_t seed, bool tiny = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 99), small(-16, 16), expo(-12, 4);
  const uint64_t esize = bits(type) / 8;
  std::vector<uint8_t> out(n * esize);
  for (uint64_t i = 0; i < n; ++i) {
    const int k = pick(rng);
    float x;
    if (k < 60)
      x = normal(rng) * std::ldexp(1.0f, expo(rng) / 3);
    else if (k < 67)
      x = 0.0f;
    else if (k < 72)
      x = -0.0f;
    else if (k < 87)
      x = std::ldexp(static_cast<float>(small(rng)), expo(rng));  // ties
    else if (k < 95)                                              // subnormals of the source dtype
      x = std::ldexp(static_cast<float>(small(rng)),
                     type == dtype::f16 ? -24 : (type == dtype::bf16 ? -133 : -149));
    else
      x = normal(rng) * 300.0f;  // outliers: saturation, scale rounding
    if (tiny) x = std::ldexp(x, -40);
    if (type == dtype::f32) {
      std::memcpy(&out[i * 4], &x, 4);
    } else {
      const uint16_t h = type == dtype::bf16 ? to_bf16_rne(x) : to_f16_rne(x);
      std::memcpy(&out[i * 2], &h, 2);
    }
  }
  return out;
}

}  // namespace shardquant::test
