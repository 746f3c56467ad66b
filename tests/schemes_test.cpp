// The scheme table: names round-trip, output shapes follow formats.md §5.1 and §5.10.
#include "kernels/schemes.h"

#include <doctest/doctest.h>

using namespace shardquant;

TEST_CASE("every scheme name parses back to its own id") {
  for (const auto& s : all_schemes()) {
    auto id = parse_scheme(s.name);
    REQUIRE(id.has_value());
    CHECK(*id == s.id);
    CHECK(info(s.id).name == s.name);
  }
  CHECK(parse_scheme("fp4_block16_scale_e4m3") == scheme_id::nvfp4);
  CHECK_FALSE(parse_scheme("mx6").has_value());
  CHECK(unsupported_scheme_reason("bfp16").has_value());
  CHECK_FALSE(unsupported_scheme_reason("nvfp4").has_value());
  CHECK_FALSE(unsupported_scheme_reason("fp8").has_value());
}

TEST_CASE("output tensor shapes follow the scheme table") {
  const std::vector<uint64_t> w{2048, 8192};
  auto mx = output_tensors(scheme_id::mxfp4, w);
  REQUIRE(mx.size() == 2);
  CHECK(mx[0].type == dtype::u8);
  CHECK(mx[0].shape == std::vector<uint64_t>{2048, 4096});
  CHECK(mx[1].shape == std::vector<uint64_t>{2048, 256});

  auto g = output_tensors(scheme_id::uint4_wo_128, std::vector<uint64_t>{100, 256});
  REQUIRE(g.size() == 3);
  CHECK(g[0].shape == std::vector<uint64_t>{256, 13});
  CHECK(g[1].shape == std::vector<uint64_t>{100, 2});
  CHECK(g[2].suffix == "_zero_point");

  auto w4a8 = output_tensors(scheme_id::int4_fp8, std::vector<uint64_t>{3, 17});
  REQUIRE(w4a8.size() == 3);
  CHECK(w4a8[0].shape == std::vector<uint64_t>{3, 3});
  CHECK(w4a8[1].shape.empty());
  CHECK(w4a8[2].shape == std::vector<uint64_t>{3});

  auto e3 = output_tensors(scheme_id::mxfp6_e2m3, std::vector<uint64_t>{4, 2, 64});
  CHECK(e3[0].shape == std::vector<uint64_t>{4, 2, 48});
  CHECK(e3[1].shape == std::vector<uint64_t>{8, 2});
}

TEST_CASE("shape prerequisites reject what Quark cannot quantize") {
  CHECK_FALSE(check_shape(scheme_id::int4_wo_128, std::vector<uint64_t>{8, 100}).empty());
  CHECK(check_shape(scheme_id::int4_wo_128, std::vector<uint64_t>{8, 256}).empty());
  CHECK_FALSE(check_shape(scheme_id::int8, std::vector<uint64_t>{2, 8, 8}).empty());
  CHECK_FALSE(check_shape(scheme_id::mxfp4, std::vector<uint64_t>{8, 7}).empty());
  CHECK_FALSE(check_shape(scheme_id::fp8, std::vector<uint64_t>{8, 0}).empty());
  std::string warn;
  CHECK(check_shape(scheme_id::fp8, std::vector<uint64_t>{2, 8, 8}, &warn).empty());
  CHECK_FALSE(warn.empty());
}
