// The quark-importer output layout (kernels/importer_layout.h): shapes and names per scheme,
// the byte conversion of the kernels' file-to-file outputs (reorder nibbles, transposed
// per-group scales, packed zero points), row ranges giving the same bytes as the whole tensor,
// and the shapes it refuses.
#include "kernels/importer_layout.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/amdfp4.h"
#include "kernels/quantize.h"

using namespace shardquant;

namespace {

// Quantized outputs of a whole [out, in] F32 weight, file-to-file layout.
struct f2f_result {
  std::vector<std::vector<std::byte>> bufs;
  quant_outputs view() {
    quant_outputs o;
    void** slot[4] = {&o.weight, &o.scale, &o.extra, &o.extra2};
    for (size_t i = 0; i < bufs.size(); ++i) *slot[i] = bufs[i].data();
    return o;
  }
};

std::vector<float> weight(uint64_t out, uint64_t in, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> w(out * in);
  for (auto& x : w) x = d(g);
  return w;
}

f2f_result quantize_whole(const weight_scheme& s, const std::vector<uint64_t>& shape,
                          const std::vector<float>& w) {
  f2f_result r;
  for (const auto& o : output_tensors(s, shape, dtype::f32)) r.bufs.emplace_back(o.byte_size());
  source_view v;
  v.type = dtype::f32;
  v.shape = shape;
  v.data = w.data();
  const quant_status st = reference::quantize(s, v, r.view());
  REQUIRE(st.ok());
  return r;
}

// Converts rows [r0, r1) and scatters the pieces into whole importer tensors.
void convert_range(const weight_scheme& s, const std::vector<uint64_t>& shape, uint64_t r0,
                   uint64_t r1, const std::vector<float>& w,
                   std::vector<std::vector<std::byte>>& whole) {
  std::vector<std::vector<std::byte>> kb;
  // The kernel sees F32 rows (amdfp4 writes its scale in that dtype).
  for (const auto& p : range_layout(s, shape, r0, r1, nullptr, dtype::f32))
    kb.emplace_back(p.run_bytes * p.count);
  quant_outputs k;
  void** slot[4] = {&k.weight, &k.scale, &k.extra, &k.extra2};
  for (size_t i = 0; i < kb.size(); ++i) *slot[i] = kb[i].data();
  source_view v;
  v.type = dtype::f32;
  v.shape = shape;
  v.data = w.data() + r0 * shape[1];
  v.row_begin = r0;
  v.row_end = r1;
  REQUIRE(reference::quantize(s, v, k).ok());
  std::string err;
  const auto pieces = importer_range_layout(s, shape, r0, r1, &err);
  REQUIRE(err.empty());
  std::vector<std::vector<std::byte>> ob;
  std::vector<void*> ptr;
  for (const auto& p : pieces) ob.emplace_back(p.run_bytes * p.count);
  for (auto& b : ob) ptr.push_back(b.data());
  to_importer_layout(s, shape, r0, r1, k, ptr, dtype::f32);
  for (size_t t = 0; t < pieces.size(); ++t)
    for (uint64_t i = 0; i < pieces[t].count; ++i)
      std::memcpy(whole[t].data() + pieces[t].offset + i * pieces[t].stride,
                  ob[t].data() + i * pieces[t].run_bytes, pieces[t].run_bytes);
}

std::vector<std::vector<std::byte>> convert_whole(const weight_scheme& s,
                                                  const std::vector<uint64_t>& shape,
                                                  const std::vector<float>& w) {
  std::vector<std::vector<std::byte>> whole;
  for (const auto& o : importer_output_tensors(s, shape)) whole.emplace_back(o.byte_size());
  convert_range(s, shape, 0, shape[0], w, whole);
  return whole;
}

template <class T>
T at(const std::vector<std::byte>& b, uint64_t i) {
  T v;
  std::memcpy(&v, b.data() + i * sizeof(T), sizeof(T));
  return v;
}

// Element e of word w: nibble i holds element order[i].
int nibble_of(uint32_t w, unsigned e, bool reorder) {
  static const unsigned ro[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  unsigned i = e;
  if (reorder)
    for (unsigned k = 0; k < 8; ++k)
      if (ro[k] == e) i = k;
  return static_cast<int>((w >> (4 * i)) & 0xF);
}

}  // namespace

TEST_CASE(
    "int4 per-group importer outputs: reorder nibbles, scales [in/g, out], zero zero-points") {
  const std::vector<uint64_t> shape{16, 64};
  const weight_scheme s = scheme_id::int4_wo_32;
  const auto w = weight(16, 64, 1);
  auto f2f = quantize_whole(s, shape, w);
  const auto imp = convert_whole(s, shape, w);
  const auto outs = importer_output_tensors(s, shape);
  REQUIRE(outs.size() == 3);
  CHECK(outs[0].shape == std::vector<uint64_t>{64, 2});
  CHECK(outs[1].suffix == "_scale");
  CHECK(outs[1].shape == std::vector<uint64_t>{2, 16});
  CHECK(outs[2].suffix == "_zero_point");
  CHECK(outs[2].type == dtype::i32);
  CHECK(outs[2].shape == std::vector<uint64_t>{2, 2});
  // Same code for every element, read in each layout's nibble order.
  for (uint64_t j = 0; j < 64; ++j)
    for (uint64_t c = 0; c < 2; ++c)
      for (unsigned e = 0; e < 8; ++e)
        CHECK(nibble_of(at<uint32_t>(imp[0], j * 2 + c), e, true) ==
              nibble_of(at<uint32_t>(f2f.bufs[0], j * 2 + c), e, false));
  for (uint64_t r = 0; r < 16; ++r)
    for (uint64_t k = 0; k < 2; ++k)
      CHECK(at<float>(imp[1], k * 16 + r) == at<float>(f2f.bufs[1], r * 2 + k));
  for (uint64_t i = 0; i < 4; ++i) CHECK(at<uint32_t>(imp[2], i) == 0u);
}

TEST_CASE("uint4 per-group zero points are packed 8 per word along out in reorder order") {
  const std::vector<uint64_t> shape{16, 64};
  const weight_scheme s = scheme_id::uint4_wo_32;
  auto w = weight(16, 64, 2);
  for (auto& x : w) x += 0.03f;  // asymmetric ranges: non-trivial zero points
  auto f2f = quantize_whole(s, shape, w);
  const auto imp = convert_whole(s, shape, w);
  const auto outs = importer_output_tensors(s, shape);
  REQUIRE(outs.size() == 3);
  CHECK(outs[2].shape == std::vector<uint64_t>{2, 2});
  bool nonzero = false;
  for (uint64_t k = 0; k < 2; ++k)
    for (uint64_t c = 0; c < 2; ++c)
      for (unsigned e = 0; e < 8; ++e) {
        const int32_t zp = at<int32_t>(f2f.bufs[2], (8 * c + e) * 2 + k);
        nonzero |= zp != 0;
        CHECK(nibble_of(at<uint32_t>(imp[2], k * 2 + c), e, true) == zp);
      }
  CHECK(nonzero);
}

TEST_CASE("row ranges converted one by one give the bytes of the whole tensor") {
  const std::vector<uint64_t> shape{32, 128};
  for (scheme_id id : {scheme_id::int4_wo_64, scheme_id::uint4_wo_32,
                       scheme_id::int4_wo_per_channel, scheme_id::uint4_wo_per_channel,
                       scheme_id::int8, scheme_id::int4_fp8, scheme_id::amdfp4, scheme_id::nvfp4}) {
    CAPTURE(info(id).name);
    const weight_scheme s = id;
    const auto w = weight(32, 128, 3);
    const auto whole = convert_whole(s, shape, w);
    std::vector<std::vector<std::byte>> ranges;
    for (const auto& o : importer_output_tensors(s, shape)) ranges.emplace_back(o.byte_size());
    // Per-tensor schemes need the whole tensor's amax: int8 and int4_fp8 are checked whole.
    if (needs_tensor_amax(s)) continue;
    for (uint64_t r0 = 0; r0 < 32; r0 += 8) convert_range(s, shape, r0, r0 + 8, w, ranges);
    CHECK(ranges == whole);
  }
}

TEST_CASE(
    "per-channel, int8 and int4_fp8 importer outputs carry the importer's names and zero points") {
  const std::vector<uint64_t> shape{16, 64};
  auto o = importer_output_tensors(scheme_id::int4_wo_per_channel, shape);
  REQUIRE(o.size() == 3);
  CHECK(o[0].shape == std::vector<uint64_t>{16, 8});
  CHECK(o[2].suffix == "_zero_point");
  CHECK(o[2].shape == std::vector<uint64_t>{2});
  o = importer_output_tensors(scheme_id::uint4_wo_per_channel, shape);
  REQUIRE(o.size() == 3);
  CHECK(o[2].shape == std::vector<uint64_t>{2});
  o = importer_output_tensors(scheme_id::int8, shape);
  REQUIRE(o.size() == 3);
  CHECK(o[2].suffix == "_zero_point");
  CHECK(o[2].type == dtype::i8);
  CHECK(o[2].shape.empty());
  o = importer_output_tensors(scheme_id::int4_fp8, shape);
  REQUIRE(o.size() == 4);
  CHECK(o[1].suffix == "_quantizer.0.scale");
  CHECK(o[2].suffix == "_quantizer.1.scale");
  CHECK(o[3].suffix == "_quantizer.1.zero_point");
  CHECK(o[3].shape == std::vector<uint64_t>{2});
  // int4_fp8 is packed in the reorder order already: the weight words are unchanged.
  const auto w = weight(16, 64, 4);
  auto f2f = quantize_whole(scheme_id::int4_fp8, shape, w);
  const auto imp = convert_whole(scheme_id::int4_fp8, shape, w);
  CHECK(imp[0] == f2f.bufs[0]);
  CHECK(imp[1] == f2f.bufs[1]);
  CHECK(imp[2] == f2f.bufs[2]);
}

TEST_CASE("nvfp4 importer outputs are the same bytes, named as the sequential quantizer's") {
  const std::vector<uint64_t> shape{16, 64};
  const weight_scheme s = scheme_id::nvfp4;
  CHECK(importer_layout_differs(s));
  const auto o = importer_output_tensors(s, shape);
  REQUIRE(o.size() == 3);
  CHECK(o[0].suffix.empty());
  CHECK(o[1].suffix == "_quantizer.0.scale");
  CHECK(o[1].type == dtype::f8_e4m3);
  CHECK(o[1].shape == std::vector<uint64_t>{16, 4});
  CHECK(o[2].suffix == "_quantizer.1.scale");
  CHECK(o[2].shape.empty());
  const auto w = weight(16, 64, 5);
  auto f2f = quantize_whole(s, shape, w);
  CHECK(convert_whole(s, shape, w) == f2f.bufs);
}

TEST_CASE("amdfp4 importer scales are the U8 E5M3 codes of the file-to-file scale values") {
  for (scheme_id id : {scheme_id::amdfp4, scheme_id::amdfp4_g32}) {
    CAPTURE(info(id).name);
    const weight_scheme s = id;
    const uint64_t g = s.first.group_size;
    const std::vector<uint64_t> shape{16, 64};
    CHECK(importer_layout_differs(s));
    const auto o = importer_output_tensors(s, shape);
    REQUIRE(o.size() == 2);
    CHECK(o[1].suffix == "_scale");
    CHECK(o[1].type == dtype::u8);
    CHECK(o[1].shape == std::vector<uint64_t>{16, 64 / g});
    const auto w = weight(16, 64, 6);
    auto f2f = quantize_whole(s, shape, w);  // F32 rows: F32 scale values
    const auto imp = convert_whole(s, shape, w);
    CHECK(imp[0] == f2f.bufs[0]);
    REQUIRE(imp[1].size() == 16 * 64 / g);
    for (uint64_t i = 0; i < imp[1].size(); ++i)
      CHECK(e5m3_decode(static_cast<uint8_t>(imp[1][i])) == at<float>(f2f.bufs[1], i));
  }
  // BF16 rows: the kernel's scale is BF16 (1.0, 0, 3.5, 2^-17 as E5M3 subnormal 1).
  const std::vector<uint64_t> shape{1, 64};
  const uint16_t bf16_scale[4] = {0x3F80, 0x0000, 0x4060, 0x3700};
  std::vector<std::byte> weight_bytes(32, std::byte{0x21});
  quant_outputs k;
  k.weight = weight_bytes.data();
  k.scale = const_cast<uint16_t*>(bf16_scale);
  std::vector<std::byte> ow(32), os(4);
  void* ptr[2] = {ow.data(), os.data()};
  to_importer_layout(scheme_id::amdfp4, shape, 0, 1, k, ptr, dtype::bf16);
  CHECK(ow == weight_bytes);
  CHECK(static_cast<uint8_t>(os[0]) == e5m3_encode(1.0f));
  CHECK(static_cast<uint8_t>(os[1]) == 0);
  CHECK(e5m3_decode(static_cast<uint8_t>(os[2])) == 3.5f);
  CHECK(static_cast<uint8_t>(os[3]) == 1);
}

TEST_CASE("schemes the importer layout does not change keep the file-to-file outputs") {
  const std::vector<uint64_t> shape{16, 64};
  for (scheme_id id :
       {scheme_id::fp8, scheme_id::ptpc_fp8, scheme_id::mxfp4, scheme_id::mxfp6_e2m3,
        scheme_id::mxfp4_fp8, scheme_id::amdfp4_global16, scheme_id::amdfp4_global32}) {
    CAPTURE(info(id).name);
    CHECK_FALSE(importer_layout_differs(id));
    const auto a = output_tensors(id, shape);
    const auto b = importer_output_tensors(id, shape);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].suffix == b[i].suffix);
      CHECK(a[i].shape == b[i].shape);
    }
  }
}

TEST_CASE("the importer layout refuses int4 dimensions that are not multiples of 8") {
  CHECK(importer_layout_error(scheme_id::int4_wo_32, std::vector<uint64_t>{12, 64}) != "");
  CHECK(importer_layout_error(scheme_id::int4_wo_per_channel, std::vector<uint64_t>{16, 60}) != "");
  CHECK(importer_layout_error(scheme_id::int4_wo_32, std::vector<uint64_t>{16, 64}) == "");
  CHECK(importer_layout_error(scheme_id::fp8, std::vector<uint64_t>{12, 60}) == "");
  std::string err;
  (void)importer_range_layout(scheme_id::int4_wo_per_channel, std::vector<uint64_t>{16, 64}, 0, 4,
                              &err);
  CHECK(err != "");
  CHECK(parse_layout("quark-importer") == output_layout::quark_importer);
  CHECK(parse_layout("quark-f2f") == output_layout::quark_f2f);
  CHECK_FALSE(parse_layout("importer").has_value());
}
