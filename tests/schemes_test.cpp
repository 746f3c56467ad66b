// The scheme table: names round-trip, output shapes follow formats.md §5.1 and §5.10.
#include "kernels/schemes.h"

#include <doctest/doctest.h>

#include <set>
#include <string>

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

TEST_CASE("names, aliases and refused names are distinct and rejected in one wording") {
  std::set<std::string_view> seen;
  for (const auto& s : all_schemes()) {
    CHECK(seen.insert(s.name).second);
    if (!s.alias.empty()) {
      CHECK(seen.insert(s.alias).second);
      CHECK(parse_scheme(s.alias) == s.id);
      CHECK(scheme_name_error(s.alias).empty());
    }
    CHECK(scheme_name_error(s.name).empty());
  }
  REQUIRE(refused_schemes().size() == 3);
  for (const auto& r : refused_schemes()) {
    CHECK(seen.insert(r.name).second);
    CHECK_FALSE(parse_scheme(r.name).has_value());
    CHECK(scheme_name_error(r.name) ==
          "scheme '" + std::string(r.name) + "' is refused: " + std::string(r.reason));
  }
  const std::string unknown = scheme_name_error("fp7");
  CHECK(unknown.starts_with("unknown scheme 'fp7' (known: int4_wo_32, int4_wo_64, "));
  CHECK(unknown.ends_with(", amdfp4_global32)"));
}

TEST_CASE("every row's exported specs agree with its weight math") {
  for (const auto& s : all_schemes()) {
    INFO(s.name);
    const weight_scheme ws(s.id);
    REQUIRE(s.weight.count >= 1);
    CHECK(s.output.count == 0);  // Quark 0.13 exports output_tensors null for every scheme
    for (const spec_list* l : {&s.input, &s.weight})
      for (const exported_spec& e : l->specs()) {
        CHECK_FALSE(e.dtype.empty());
        CHECK_FALSE(e.observer_cls.empty());
        CHECK(e.round_method == "half_even");
        CHECK((e.qscheme == "per_group") == (e.group_size != 0));
        CHECK((e.qscheme == "per_tensor") == !e.ch_axis.has_value());
      }
    for (const exported_spec& e : s.weight.specs()) CHECK_FALSE(e.is_dynamic);
    if (ws.progressive) {
      // A progressive pair exports its two stages; the second one holds the packed codes.
      REQUIRE(s.weight.count == 2);
      CHECK_FALSE(s.weight.at[1].is_scale_quant);
      CHECK(s.weight.at[1].qscheme == "per_channel");
      continue;
    }
    const exported_spec& w = s.weight.at[0];
    // A two-level FP4 weight exports its element spec then the quantizer of its block scales.
    CHECK((s.weight.count == 2) ==
          (s.family == scheme_family::nvfp4 || s.family == scheme_family::amdfp4_global));
    if (s.weight.count == 2) CHECK(s.weight.at[1].is_scale_quant);
    CHECK(w.group_size == ws.first.group_size);
    switch (s.family) {
      case scheme_family::int4_group:
      case scheme_family::int4_channel:
        CHECK(w.dtype == "int4");
        break;
      case scheme_family::uint4_group:
      case scheme_family::uint4_channel:
        CHECK(w.dtype == "uint4");
        CHECK(w.symmetric == false);
        break;
      case scheme_family::int8_tensor:
        CHECK(w.dtype == "int8");
        break;
      case scheme_family::fp8_tensor:
      case scheme_family::fp8_row:
        CHECK(w.dtype == "fp8_e4m3");
        CHECK(w.qscheme == (s.family == scheme_family::fp8_row ? "per_channel" : "per_tensor"));
        break;
      case scheme_family::mx:
        CHECK(w.dtype == (s.element == mx_element::fp4_e2m1   ? "fp4"
                          : s.element == mx_element::fp6_e2m3 ? "fp6_e2m3"
                                                              : "fp6_e3m2"));
        CHECK(w.scale_format == "e8m0");
        break;
      default:
        CHECK(w.dtype == "fp4");
        CHECK(w.scale_format == (s.family == scheme_family::amdfp4 ? "e5m3" : "float32"));
    }
  }
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
