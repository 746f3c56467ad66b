// Weight converters (formats.md §9): parsing, name/shape rules, byte slicing.
#include "pipeline/plan/converters.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "io/error.h"

using namespace shardquant;
using shape = std::vector<uint64_t>;

TEST_CASE("converter specs parse and print back") {
  const converter c =
      parse_converter("gate_up_proj=gate_proj.weight,up_proj.weight:split_fused_experts(-1)");
  CHECK(c.source == "gate_up_proj");
  CHECK(c.targets == std::vector<std::string>{"gate_proj.weight", "up_proj.weight"});
  CHECK(c.op == converter_op::split_fused_experts);
  CHECK(c.arg == -1);
  CHECK(parse_converter(c.to_string()) == c);
  CHECK(parse_converter("qkv.weight=q.weight,k.weight,v.weight:chunk(0)").op ==
        converter_op::chunk);
  CHECK(parse_converter("old.w=new.weight:rename").targets.size() == 1);
  CHECK_THROWS_AS((void)parse_converter("no-equals:chunk(0)"), usage_error);
  CHECK_THROWS_AS((void)parse_converter("a=b:chunk(0)"), usage_error);  // chunk needs 2 targets
  CHECK_THROWS_AS((void)parse_converter("a=b,c:rename"), usage_error);
  CHECK_THROWS_AS((void)parse_converter("a=b:transpose(0)"), usage_error);
  CHECK_THROWS_AS((void)parse_converter("a=b,c:chunk(x)"), usage_error);
}

TEST_CASE("converter files hold a JSON list") {
  const auto p = std::filesystem::temp_directory_path() / "sq_conv_test.json";
  {
    std::ofstream f(p);
    f << R"([{"source": "gate_up_proj", "targets": ["g.weight", "u.weight"], "op": "split_fused_experts", "arg": 1},
             {"source": "x", "targets": ["y.weight"], "op": "rename"}])";
  }
  const auto v = read_converter_file(p.string());
  REQUIRE(v.size() == 2);
  CHECK(v[0].arg == 1);
  CHECK(v[1].op == converter_op::rename);
  std::filesystem::remove(p);
}

TEST_CASE("the first converter whose source is a plain suffix fires") {
  const std::vector<converter> list{parse_converter("proj=a.weight:rename"),
                                    parse_converter("down_proj=b.weight:rename")};
  CHECK(match_converter(list, "m.experts.down_proj") == size_t{0});  // no dot boundary, first wins
  CHECK(!match_converter(list, "m.down_proj.weight").has_value());
}

TEST_CASE("chunk follows torch.chunk: ceil-sized chunks - missing trailing targets get nothing") {
  const converter c = parse_converter("qkv=q.weight,k.weight,v.weight:chunk(0)");
  auto o = apply_converter(c, "l.qkv", shape{10, 4});
  REQUIRE(o.size() == 3);
  CHECK(o[0].name == "l.q.weight");
  CHECK(o[0].shape == shape{4, 4});
  CHECK(o[2].shape == shape{2, 4});
  CHECK(o[2].slice.begin == 8);
  // 4 rows in 3 chunks: L = 2, only 2 chunks exist.
  o = apply_converter(c, "l.qkv", shape{4, 4});
  CHECK(o.size() == 2);
  o = apply_converter(parse_converter("x=a.weight,b.weight:chunk(-1)"), "x", shape{3, 5});
  CHECK(o[0].shape == shape{3, 3});
  CHECK(o[1].shape == shape{3, 2});
}

TEST_CASE("split_fused_experts names experts and halves along the per-expert axis") {
  const converter c =
      parse_converter("gate_up_proj=gate_proj.weight,up_proj.weight:split_fused_experts(0)");
  auto o = apply_converter(c, "model.layers.0.mlp.experts.gate_up_proj", shape{3, 8, 4});
  REQUIRE(o.size() == 6);
  CHECK(o[0].name == "model.layers.0.mlp.experts.0.gate_proj.weight");
  CHECK(o[1].name == "model.layers.0.mlp.experts.0.up_proj.weight");
  CHECK(o[5].name == "model.layers.0.mlp.experts.2.up_proj.weight");
  CHECK(o[1].shape == shape{4, 4});
  CHECK(o[1].slice.begin == 4);
  auto d = apply_converter(parse_converter("down_proj=down_proj.weight:split_fused_experts(0)"),
                           "e.down_proj", shape{2, 4, 6});
  REQUIRE(d.size() == 2);
  CHECK(d[1].name == "e.1.down_proj.weight");
  CHECK(d[1].shape == shape{4, 6});
  CHECK_THROWS_AS((void)apply_converter(c, "x.gate_up_proj", shape{8, 4}), input_error);
  CHECK_THROWS_AS((void)apply_converter(c, "x.gate_up_proj", shape{2, 7, 4}), input_error);
}

TEST_CASE("slices copy the logical C-order bytes of strided views") {
  // Source [2, 4, 6] of uint16 with value = flat index.
  const shape s{2, 4, 6};
  std::vector<uint16_t> src(48);
  std::iota(src.begin(), src.end(), 0);
  const auto bytes = std::as_bytes(std::span(src));
  const converter c = parse_converter("w=a.weight,b.weight:split_fused_experts(-1)");
  auto outs = apply_converter(c, "w", s);  // halves along the last axis (a strided view)
  REQUIRE(outs.size() == 4);
  const strided_view v = describe_slice(s, 16, outs[3].slice);  // expert 1, second half
  CHECK(v.shape == shape{4, 3});
  CHECK(v.count == 4);
  CHECK(v.run_bytes == 6);
  std::vector<uint16_t> got(12, 0xFFFF);
  copy_slice(bytes, v, std::as_writable_bytes(std::span(got)));
  for (uint64_t r = 0; r < 4; ++r)
    for (uint64_t k = 0; k < 3; ++k) CHECK(got[r * 3 + k] == 24 + r * 6 + 3 + k);
  // A whole-expert slice is one run.
  const strided_view w = describe_slice(s, 16, converter_slice{1, -1, 0, 0});
  CHECK(w.count == 1);
  CHECK(w.offset == 48);
  CHECK(w.bytes() == 48);
  CHECK_THROWS_AS((void)describe_slice(s, 4, outs[0].slice), input_error);
}
