// GPU kernel throughput of every scheme (and the recovery paths) on tensors of 64 MB and more,
// against the device-to-device copy bandwidth measured in the same run. Bytes counted honestly:
// every pass's reads (per-tensor schemes read the input twice: the amax pass, then the quantize
// pass) plus every output byte written; GB/s = bytes / median time (CUDA events, 10 runs after 2
// warm-ups). The copy counts read + write the same way. Prints one table; exits 0 with a message
// when no GPU is present.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/gpu_api.h"
#include "kernels/numeric.h"
#include "kernels/quantize.h"
#include "kernels/recover_tensors.h"
#include "kernels/schemes.h"

using namespace shardquant;

namespace {

constexpr int k_warmup = 2;
constexpr int k_runs = 10;

// Median milliseconds of `body` enqueued on `s`.
double time_ms(gpu::stream& s, const std::function<void()>& body) {
  gpu::event a(0), b(0);
  for (int i = 0; i < k_warmup; ++i) body();
  s.synchronize();
  std::vector<double> t;
  for (int i = 0; i < k_runs; ++i) {
    a.record(s);
    body();
    b.record(s);
    b.synchronize();
    t.push_back(b.elapsed_ms_since(a));
  }
  std::sort(t.begin(), t.end());
  return (t[k_runs / 2 - 1] + t[k_runs / 2]) / 2;
}

// Deterministic pseudo-random bf16/f16/f32 weights (normal-ish, never NaN/Inf) in pinned memory.
void fill_weights(void* dst, dtype t, uint64_t n, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (uint64_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const int32_t a = static_cast<int32_t>(x & 0xFFFF) - 0x8000;
    const int32_t b = static_cast<int32_t>((x >> 16) & 0xFFFF) - 0x8000;
    const float v = static_cast<float>(a + b) * (1.0f / 65536.0f) *
                    static_cast<float>(1u << ((x >> 40) & 3));  // a few magnitudes
    if (t == dtype::f32)
      static_cast<float*>(dst)[i] = v;
    else if (t == dtype::bf16)
      static_cast<uint16_t*>(dst)[i] = to_bf16_rne(v);
    else
      static_cast<uint16_t*>(dst)[i] = to_f16_rne(v);
  }
}

struct row {
  std::string what;
  double mbytes_in;
  double bytes_moved;
  double ms;
};

}  // namespace

int main() {
  if (gpu::device_count() == 0) {
    std::printf("gpu_kernel_bench: no GPU (%s); nothing to measure\n",
                gpu::unavailable_reason().c_str());
    return 0;
  }
  const gpu::device_properties p = gpu::properties(0);
  std::printf("device 0: %s, sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MiB\n", p.name.c_str(), p.cc_major,
              p.cc_minor, p.multiprocessors, p.global_memory_bytes / 1073741824.0,
              p.l2_bytes / 1048576.0);
  gpu::stream s(0);

  // The floor: a large device-to-device copy, bytes read + bytes written.
  const size_t copy_bytes = size_t{1} << 30;
  double copy_gbs = 0;
  {
    gpu::device_buffer a(copy_bytes, 0), b(copy_bytes, 0);
    gpu::fill_device(a.data(), 1, copy_bytes, s);
    const double ms = time_ms(s, [&] { gpu::copy_on_device(b.data(), a.data(), copy_bytes, s); });
    copy_gbs = 2.0 * copy_bytes / (ms * 1e6);
    std::printf("D2D copy of %zu MiB: %.3f ms, %.0f GB/s (read + write)\n\n", copy_bytes >> 20, ms,
                copy_gbs);
  }

  const uint64_t rows = 8192, cols = 8192;  // 64 Mi elements: 128 MiB BF16, 256 MiB F32
  const std::vector<uint64_t> shape{rows, cols};
  const uint64_t n = rows * cols;
  gpu::device_buffer ws(gpu::workspace_bytes(), 0);
  gpu::device_buffer in_bf16(n * 2, 0), in_f32(n * 4, 0), in_f16(n * 2, 0);
  {
    gpu::pinned_buffer h(n * 4);
    fill_weights(h.data(), dtype::bf16, n, 1);
    gpu::copy_to_device(in_bf16.data(), h.data(), n * 2, s);
    s.synchronize();
    fill_weights(h.data(), dtype::f16, n, 2);
    gpu::copy_to_device(in_f16.data(), h.data(), n * 2, s);
    s.synchronize();
    fill_weights(h.data(), dtype::f32, n, 3);
    gpu::copy_to_device(in_f32.data(), h.data(), n * 4, s);
    s.synchronize();
  }
  gpu::device_buffer out0(n * 4, 0), out1(n * 4 / 8, 0), out2(n * 4 / 8, 0);

  std::vector<row> rows_out;
  auto bench_scheme = [&](scheme_id sid, dtype t, const gpu::device_buffer& in) {
    const std::vector<output_tensor> outs = output_tensors(sid, shape);
    uint64_t written = 0;
    for (const output_tensor& o : outs) written += o.byte_size();
    const bool amax = needs_tensor_amax(info(sid).family);
    const uint64_t in_bytes = n * bits(t) / 8;
    source_view v{t, shape, in.data()};
    quant_outputs o{out0.data(), out1.data(), outs.size() > 2 ? out2.data() : nullptr};
    const double ms = time_ms(s, [&] {
      gpu::reset_workspace(ws.data(), ws.size(), s);
      if (amax && !gpu::tensor_amax(v, ws.data(), ws.size(), s).ok()) std::abort();
      if (!gpu::quantize(sid, v, o, ws.data(), ws.size(), s).ok()) std::abort();
    });
    rows_out.push_back(
        {std::string(info(sid).name) + " " + std::string(name(t)) + (amax ? " (amax+quant)" : ""),
         in_bytes / 1048576.0, double(in_bytes * (amax ? 2 : 1) + written), ms});
  };
  for (const scheme_info& si : all_schemes())
    if (backend_supports(backend_cuda, weight_scheme(si.id)))  // no CUDA kernel: not benched
      bench_scheme(si.id, dtype::bf16, in_bf16);
  for (scheme_id sid : {scheme_id::fp8, scheme_id::ptpc_fp8, scheme_id::int4_wo_128,
                        scheme_id::mxfp4, scheme_id::mxfp6_e2m3})
    bench_scheme(sid, dtype::f32, in_f32);
  for (scheme_id sid : {scheme_id::fp8, scheme_id::uint4_wo_128, scheme_id::mxfp4})
    bench_scheme(sid, dtype::f16, in_f16);

  // Block FP8 sources: fused recovery + quantization, and plain recovery to F32.
  {
    gpu::device_buffer codes(n, 0), scale((rows / 128) * (cols / 128) * 4, 0);
    {
      gpu::pinned_buffer h(n);
      uint64_t x = 77;
      for (uint64_t i = 0; i < n; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint8_t c = static_cast<uint8_t>(x);
        if ((c & 0x7F) == 0x7F) c = 0x7E;
        h.as<uint8_t>()[i] = c;
      }
      gpu::copy_to_device(codes.data(), h.data(), n, s);
      std::vector<float> sc((rows / 128) * (cols / 128));
      for (size_t i = 0; i < sc.size(); ++i) sc[i] = 1.0f / static_cast<float>(64 + i % 61);
      gpu::pinned_buffer hs(sc.size() * 4);
      std::memcpy(hs.data(), sc.data(), sc.size() * 4);
      gpu::copy_to_device(scale.data(), hs.data(), sc.size() * 4, s);
      s.synchronize();
    }
    fp8_block_source f;
    f.rows = rows;
    f.cols = cols;
    f.weight = codes.as<uint8_t>();
    f.scale = scale.data();
    f.scale_rows = rows / 128;
    f.scale_cols = cols / 128;
    for (scheme_id sid :
         {scheme_id::mxfp4, scheme_id::fp8, scheme_id::ptpc_fp8, scheme_id::int4_wo_128}) {
      const std::vector<output_tensor> outs = output_tensors(sid, shape);
      uint64_t written = 0;
      for (const output_tensor& o : outs) written += o.byte_size();
      const bool amax = needs_tensor_amax(info(sid).family);
      quant_outputs o{out0.data(), out1.data(), outs.size() > 2 ? out2.data() : nullptr};
      const double ms = time_ms(s, [&] {
        gpu::reset_workspace(ws.data(), ws.size(), s);
        if (amax && !gpu::tensor_amax(f, ws.data(), ws.size(), s).ok()) std::abort();
        if (!gpu::quantize(sid, f, o, ws.data(), ws.size(), s).ok()) std::abort();
      });
      rows_out.push_back({"fp8-block -> " + std::string(info(sid).name) + " (fused)" +
                              (amax ? " (amax+quant)" : ""),
                          n / 1048576.0,
                          double(n * (amax ? 2 : 1) + f.scale_rows * f.scale_cols * 4 + written),
                          ms});
    }
    const double ms = time_ms(s, [&] {
      gpu::reset_workspace(ws.data(), ws.size(), s);
      if (!gpu::recover_fp8_block(f, out0.as<float>(), ws.data(), ws.size(), s).ok()) std::abort();
    });
    rows_out.push_back({"recover fp8-block -> F32", n / 1048576.0, double(n + n * 4), ms});
  }
  // compressed-tensors pack-quantized int4, group 128, asymmetric.
  {
    const uint64_t wpr = cols / 8, groups = cols / 128;
    gpu::device_buffer w(rows * wpr * 4, 0), sc(rows * groups * 4, 0),
        zp((rows * 4 / 32) * groups * 4, 0);
    gpu::fill_device(w.data(), 0x5A, w.size(), s);
    gpu::fill_device(sc.data(), 0x3C, sc.size(), s);
    gpu::fill_device(zp.data(), 0x88, zp.size(), s);
    ct_source c;
    c.layout = ct_layout::pack_quantized;
    c.rows = rows;
    c.cols = cols;
    c.bits = 4;
    c.weight = w.data();
    c.scale = sc.data();
    c.strategy = ct_strategy::group;
    c.group_size = 128;
    c.groups = groups;
    c.zero_point = zp.data();
    const double ms = time_ms(s, [&] {
      gpu::reset_workspace(ws.data(), ws.size(), s);
      if (!gpu::recover_compressed(c, out0.as<float>(), ws.data(), ws.size(), s).ok()) std::abort();
    });
    rows_out.push_back({"recover ct pack int4 g128 asym -> F32", w.size() / 1048576.0,
                        double(w.size() + sc.size() + zp.size() + n * 4), ms});
  }

  std::printf("%-44s %9s %10s %9s %9s %7s\n", "kernel (8192 x 8192)", "in MiB", "moved MB", "ms",
              "GB/s", "% copy");
  for (const row& r : rows_out) {
    const double gbs = r.bytes_moved / (r.ms * 1e6);
    std::printf("%-44s %9.0f %10.1f %9.3f %9.0f %6.0f%%\n", r.what.c_str(), r.mbytes_in,
                r.bytes_moved / 1e6, r.ms, gbs, 100.0 * gbs / copy_gbs);
  }
  gpu::kernel_status st{};
  gpu::pinned_buffer hs(sizeof st);
  gpu::read_status(ws.data(), hs.as<gpu::kernel_status>(), s);
  s.synchronize();
  return 0;
}
