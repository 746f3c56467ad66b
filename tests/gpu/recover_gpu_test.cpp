// Recovery on the GPU against the CPU reference (kernels/recover_tensors.h): DeepSeek block FP8
// (e4m3/e5m2 codes, F32/BF16/F16/E8M0 scales, odd block sizes, presharded chunk rows, row
// ranges), its fused quantization into every scheme (recover on the CPU then quantize F32 must
// equal the fused GPU kernel), and compressed-tensors pack/int/float layouts with every strategy,
// zero points and g_idx. Bad codes and scales must give the CPU's status.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "tests/gpu/gpu_test_util.h"

using namespace shardquant;
using namespace shardquant::test;

namespace {

struct fp8_case {
  uint64_t rows, cols, bh, bw, cr;  // cr = 0: not presharded
  fp8_kind kind;
  scale_kind sk;
};

size_t scale_esize(scale_kind k) {
  return k == scale_kind::f32 ? 4 : (k == scale_kind::e8m0 ? 1 : 2);
}

// Random FP8 codes (no NaN) and a random positive scale tensor of the case's shape.
struct fp8_data {
  fp8_block_source src;
  std::vector<uint8_t> codes, scale;
};

fp8_data make_fp8(const fp8_case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  fp8_data d;
  d.codes.resize(c.rows * c.cols);
  for (auto& b : d.codes) {
    uint8_t x;
    do x = static_cast<uint8_t>(rng());
    while (fp8_is_nan(c.kind, x));
    b = x;
  }
  const uint64_t cr = c.cr ? c.cr : c.rows;
  const uint64_t srows = (c.rows / cr) * ((cr + c.bh - 1) / c.bh);
  const uint64_t scols = (c.cols + c.bw - 1) / c.bw;
  d.scale.resize(srows * scols * scale_esize(c.sk));
  std::uniform_real_distribution<float> u(-12.0f, 2.0f);
  for (uint64_t i = 0; i < srows * scols; ++i) {
    const float s = std::exp2(u(rng)) * (1.0f + (rng() % 7) / 8.0f);
    switch (c.sk) {
      case scale_kind::f32:
        std::memcpy(&d.scale[i * 4], &s, 4);
        break;
      case scale_kind::bf16: {
        const uint16_t h = to_bf16_rne(s);
        std::memcpy(&d.scale[i * 2], &h, 2);
        break;
      }
      case scale_kind::f16: {
        const uint16_t h = to_f16_rne(s);
        std::memcpy(&d.scale[i * 2], &h, 2);
        break;
      }
      case scale_kind::e8m0:
        d.scale[i] = static_cast<uint8_t>(110 + rng() % 25);
        break;
      case scale_kind::e4m3:  // FP4 source scales; block-FP8 recovery never takes them
        break;
    }
  }
  fp8_block_source& s = d.src;
  s.weight_kind = c.kind;
  s.rows = c.rows;
  s.cols = c.cols;
  s.weight = d.codes.data();
  s.scale_type = c.sk;
  s.scale = d.scale.data();
  s.scale_rows = srows;
  s.scale_cols = scols;
  s.block_rows = c.bh;
  s.block_cols = c.bw;
  s.chunk_rows = c.cr;
  return d;
}

const fp8_case k_fp8_cases[] = {
    {256, 384, 128, 128, 0, fp8_kind::e4m3fn, scale_kind::f32},
    {130, 200, 128, 128, 0, fp8_kind::e4m3fn, scale_kind::bf16},
    {96, 96, 32, 64, 48, fp8_kind::e4m3fn, scale_kind::e8m0},  // presharded, cr % bh != 0
    {45, 37, 7, 5, 15, fp8_kind::e5m2, scale_kind::f16},       // odd blocks, bw < 8
    {64, 256, 128, 128, 0, fp8_kind::e5m2, scale_kind::e8m0},
};

// GPU recover_fp8_block of rows [r0, r1) vs the CPU reference.
void check_recover(const fp8_data& d, uint64_t r0, uint64_t r1) {
  gpu_ctx& c = ctx();
  fp8_block_source cpu = d.src;
  cpu.weight = d.codes.data() + r0 * d.src.cols;
  cpu.row_begin = r0;
  cpu.row_end = r1;
  const uint64_t n = (r1 - r0) * d.src.cols;
  std::vector<float> want(n, -1.0f);
  const quant_status st_cpu = reference::recover_fp8_block(cpu, want.data());
  gpu::device_buffer w = upload(cpu.weight, n);
  gpu::device_buffer sc = upload(d.scale.data(), d.scale.size());
  gpu::device_buffer out = poisoned(n * 4);
  fp8_block_source g = cpu;
  g.weight = w.as<uint8_t>();
  g.scale = sc.data();
  gpu::reset_workspace(c.ws.data(), c.ws.size(), c.s);
  REQUIRE(gpu::recover_fp8_block(g, out.as<float>(), c.ws.data(), c.ws.size(), c.s).ok());
  const quant_status st_gpu = gpu::to_quant_status(c.read());
  CHECK(int(st_cpu.what) == int(st_gpu.what));
  CHECK(st_cpu.index == st_gpu.index);
  if (st_cpu.ok()) {
    const std::vector<uint8_t> got = download(out, n * 4);
    CHECK(std::memcmp(got.data(), want.data(), n * 4) == 0);
  }
}

}  // namespace

TEST_CASE("block-FP8 recovery on the GPU equals the CPU reference for every scale type") {
  uint32_t seed = 11;
  for (const fp8_case& fc : k_fp8_cases) {
    const fp8_data d = make_fp8(fc, ++seed);
    const std::string what = std::to_string(fc.rows) + "x" + std::to_string(fc.cols) + " block " +
                             std::to_string(fc.bh) + "x" + std::to_string(fc.bw) + " cr " +
                             std::to_string(fc.cr);
    CAPTURE(what);
    check_recover(d, 0, fc.rows);
    check_recover(d, fc.rows / 3, fc.rows / 3 + fc.rows / 2);
  }
}

TEST_CASE("block-FP8 NaN codes and E8M0 0xFF scales give the CPU's statuses") {
  fp8_data d = make_fp8({64, 256, 32, 32, 0, fp8_kind::e4m3fn, scale_kind::e8m0}, 99);
  d.codes[5 * 256 + 77] = 0x7F;
  d.codes[9 * 256 + 3] = 0xFF;
  check_recover(d, 0, 64);
  check_recover(d, 8, 40);
  d.scale[17] = 0xFF;  // a bad scale outranks the NaN codes, wherever the range is
  check_recover(d, 0, 64);
  check_recover(d, 40, 64);
}

TEST_CASE("fused block-FP8 quantization equals CPU recovery followed by the CPU quantizer") {
  uint32_t seed = 300;
  for (const fp8_case& fc : k_fp8_cases) {
    const fp8_data d = make_fp8(fc, ++seed);
    std::vector<float> rec(fc.rows * fc.cols);
    REQUIRE(reference::recover_fp8_block(d.src, rec.data()).ok());
    const std::vector<uint64_t> shape{fc.rows, fc.cols};
    for (const scheme_info& si : all_schemes()) {
      if (!check_shape(si.id, shape).empty()) continue;
      if (!backend_supports(backend_cuda, weight_scheme(si.id))) continue;
      const std::string what = std::string(si.name) + " from " + std::to_string(fc.rows) + "x" +
                               std::to_string(fc.cols) + " block " + std::to_string(fc.bh) + "x" +
                               std::to_string(fc.bw);
      CAPTURE(what);
      const run_result cpu = run_scheme(impl::reference, si.id, dtype::f32, shape, rec.data());
      gpu_source src;
      src.fp8_block = true;
      src.fp8 = d.src;
      src.scale_bytes = d.scale.size();
      check_same(cpu, gpu_run(si.id, src, shape));
      const bool grouped =
          si.family == scheme_family::int4_group || si.family == scheme_family::uint4_group;
      check_same(cpu, gpu_run(si.id, src, shape, {grouped ? 8u : 5u, grouped ? 24u : 21u}));
    }
  }
}

namespace {

struct ct_data {
  ct_source src;
  std::vector<uint8_t> weight, scale, zp;
  std::vector<int32_t> g_idx;
};

// A compressed-tensors source of `rows` x `cols` with random codes, scales (F32/BF16/F16) and,
// when asked, zero points and a g_idx permutation of the groups.
ct_data make_ct(ct_layout layout, uint32_t bits, ct_strategy strat, bool asym, bool gidx,
                scale_kind sk, uint64_t rows, uint64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  ct_data d;
  ct_source& s = d.src;
  s.layout = layout;
  s.rows = rows;
  s.cols = cols;
  s.bits = bits;
  s.strategy = strat;
  s.scale_type = sk;
  if (layout == ct_layout::pack_quantized) {
    const uint64_t wpr = (cols * bits + 31) / 32;
    std::vector<uint32_t> w(rows * wpr, 0);
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t j = 0; j < cols; ++j) {
        const uint64_t bit = j * bits;
        w[r * wpr + bit / 32] |= (rng() & ((1u << bits) - 1)) << (bit % 32);
      }
    const auto* wb = reinterpret_cast<const uint8_t*>(w.data());
    d.weight.assign(wb, wb + w.size() * 4);
  } else {
    d.weight.resize(rows * cols);
    for (auto& b : d.weight) {
      uint8_t x;
      do x = static_cast<uint8_t>(rng());
      while (layout == ct_layout::float_quantized && fp8_e4m3fn_is_nan(x));
      b = x;
    }
  }
  uint64_t srows = 1, scols = 1;
  switch (strat) {
    case ct_strategy::tensor:
      break;
    case ct_strategy::channel:
      srows = rows;
      break;
    case ct_strategy::group:
      s.group_size = 32;
      s.groups = (cols + 31) / 32;
      srows = rows;
      scols = s.groups;
      break;
    case ct_strategy::block:
      s.block_rows = 16;
      s.block_cols = 24;
      srows = (rows + 15) / 16;
      scols = (cols + 23) / 24;
      break;
  }
  const size_t es = sk == scale_kind::f32 ? 4 : 2;
  d.scale.resize(srows * scols * es);
  std::uniform_real_distribution<float> u(-10.0f, 0.0f);
  for (uint64_t i = 0; i < srows * scols; ++i) {
    const float x = std::exp2(u(rng));
    if (sk == scale_kind::f32)
      std::memcpy(&d.scale[i * 4], &x, 4);
    else {
      const uint16_t h = sk == scale_kind::bf16 ? to_bf16_rne(x) : to_f16_rne(x);
      std::memcpy(&d.scale[i * 2], &h, 2);
    }
  }
  if (asym) {
    if (layout == ct_layout::pack_quantized) {
      const uint64_t zrows = (rows * bits + 31) / 32;
      std::vector<uint32_t> z(zrows * scols, 0);
      for (uint64_t o = 0; o < rows; ++o)
        for (uint64_t g = 0; g < scols; ++g) {
          const uint64_t bit = o * bits;
          z[(bit / 32) * scols + g] |= (rng() & ((1u << bits) - 1)) << (bit % 32);
        }
      d.zp.resize(z.size() * 4);
      std::memcpy(d.zp.data(), z.data(), d.zp.size());
      s.zero_point_type = dtype::i32;
    } else {
      s.zero_point_type = (seed & 1) ? dtype::i8 : dtype::i32;
      const size_t zs = s.zero_point_type == dtype::i8 ? 1 : 4;
      d.zp.resize(srows * scols * zs);
      for (uint64_t i = 0; i < srows * scols; ++i) {
        const int32_t v = static_cast<int32_t>(rng() % 17) - 8;
        if (zs == 1)
          d.zp[i] = static_cast<uint8_t>(static_cast<int8_t>(v));
        else
          std::memcpy(&d.zp[i * 4], &v, 4);
      }
    }
  }
  if (gidx) {
    d.g_idx.resize(cols);
    for (uint64_t j = 0; j < cols; ++j) d.g_idx[j] = static_cast<int32_t>(rng() % s.groups);
  }
  s.weight = d.weight.data();
  s.scale = d.scale.data();
  s.zero_point = asym ? d.zp.data() : nullptr;
  s.g_idx = gidx ? d.g_idx.data() : nullptr;
  return d;
}

void check_ct(const ct_data& d, uint64_t r0, uint64_t r1) {
  gpu_ctx& c = ctx();
  const ct_source& s = d.src;
  const uint64_t wrow =
      s.layout == ct_layout::pack_quantized ? (s.cols * s.bits + 31) / 32 * 4 : s.cols;
  ct_source cpu = s;
  cpu.weight = d.weight.data() + r0 * wrow;
  cpu.row_begin = r0;
  cpu.row_end = r1;
  const uint64_t n = (r1 - r0) * s.cols;
  std::vector<float> want(n, -1.0f);
  const quant_status st_cpu = reference::recover_compressed(cpu, want.data());
  gpu::device_buffer w = upload(cpu.weight, (r1 - r0) * wrow);
  gpu::device_buffer sc = upload(d.scale.data(), d.scale.size());
  gpu::device_buffer zp = upload(d.zp.data(), d.zp.size());
  gpu::device_buffer gi = upload(d.g_idx.data(), d.g_idx.size() * 4);
  gpu::device_buffer out = poisoned(n * 4);
  ct_source g = cpu;
  g.weight = w.data();
  g.scale = sc.data();
  g.zero_point = s.zero_point ? zp.data() : nullptr;
  g.g_idx = s.g_idx ? gi.as<int32_t>() : nullptr;
  gpu::reset_workspace(c.ws.data(), c.ws.size(), c.s);
  REQUIRE(gpu::recover_compressed(g, out.as<float>(), c.ws.data(), c.ws.size(), c.s).ok());
  const quant_status st_gpu = gpu::to_quant_status(c.read());
  CHECK(int(st_cpu.what) == int(st_gpu.what));
  CHECK(st_cpu.index == st_gpu.index);
  if (st_cpu.ok()) {
    const std::vector<uint8_t> got = download(out, n * 4);
    CHECK(std::memcmp(got.data(), want.data(), n * 4) == 0);
  }
}

}  // namespace

TEST_CASE("compressed-tensors recovery on the GPU equals the CPU reference") {
  uint32_t seed = 700;
  const scale_kind sks[] = {scale_kind::f32, scale_kind::bf16, scale_kind::f16};
  for (ct_layout layout :
       {ct_layout::pack_quantized, ct_layout::int_quantized, ct_layout::float_quantized}) {
    for (uint32_t bits : {4u, 8u}) {
      if (layout != ct_layout::pack_quantized && bits == 4) continue;
      for (ct_strategy strat :
           {ct_strategy::tensor, ct_strategy::channel, ct_strategy::group, ct_strategy::block}) {
        for (int variant = 0; variant < 3; ++variant) {
          const bool asym = variant == 1 && layout != ct_layout::float_quantized &&
                            (strat == ct_strategy::channel || strat == ct_strategy::group);
          const bool gidx = variant == 2 && strat == ct_strategy::group;
          ++seed;
          const ct_data d = make_ct(layout, bits, strat, asym, gidx, sks[seed % 3], 37, 200, seed);
          const std::string what = "layout " + std::to_string(int(layout)) + " bits " +
                                   std::to_string(bits) + " strategy " +
                                   std::to_string(int(strat)) + " asym " + std::to_string(asym) +
                                   " g_idx " + std::to_string(gidx);
          CAPTURE(what);
          check_ct(d, 0, 37);
          check_ct(d, 5, 30);
        }
      }
    }
  }
}

TEST_CASE("compressed-tensors bad g_idx entries and FP8 NaN codes give the CPU's statuses") {
  ct_data d = make_ct(ct_layout::pack_quantized, 4, ct_strategy::group, false, true,
                      scale_kind::f32, 16, 96, 5);
  d.g_idx[40] = 3;  // groups = 3: out of range
  d.g_idx[70] = -1;
  check_ct(d, 0, 16);
  ct_data f = make_ct(ct_layout::float_quantized, 8, ct_strategy::channel, false, false,
                      scale_kind::bf16, 16, 96, 6);
  f.weight[3 * 96 + 11] = 0x7F;
  f.weight[2 * 96 + 50] = 0xFF;
  check_ct(f, 0, 16);
  check_ct(f, 3, 16);
}
