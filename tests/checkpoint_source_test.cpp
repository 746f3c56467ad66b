// Opening a source checkpoint (formats.md §3.1, §3.7): shard-set rules with and without an index,
// consistency errors and warnings, config.json strictness, source quantization config lookup
// and model dtype resolution.
#include "io/checkpoint.h"

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "checkpoint_test_util.h"
#include "io/error.h"

using namespace shardquant;
using namespace sq_test;

namespace {

struct warnings {
  std::vector<std::string> list;
  warning_fn fn() {
    return [this](std::string w) { list.push_back(std::move(w)); };
  }
  [[nodiscard]] bool any_contains(const std::string& s) const {
    for (const auto& w : list)
      if (w.find(s) != std::string::npos) return true;
    return false;
  }
};

const char* k_config = R"({"model_type": "llama", "torch_dtype": "bfloat16"})";

std::string error_of(const fs::path& dir) {
  try {
    (void)open_source_checkpoint(dir, {});
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("a single-file model without an index has one shard and no warnings") {
  temp_dir d;
  write_text(d.path / "config.json", k_config);
  write_shard(d.path / "model.safetensors", {"b", "a"});
  warnings w;
  const auto ck = open_source_checkpoint(d.path, w.fn());
  CHECK(w.list.empty());
  CHECK_FALSE(ck.has_index);
  REQUIRE(ck.shards.size() == 1);
  CHECK(ck.shards[0].rel_path == "model.safetensors");
  CHECK(ck.shards[0].header.tensors.size() == 2);
  REQUIRE(ck.shard_of("a") != nullptr);
  CHECK(ck.shard_of("a")->rel_path == "model.safetensors");
  CHECK(ck.shard_of("c") == nullptr);
  CHECK(ck.config_text == k_config);
  CHECK_FALSE(ck.quantization.has_value());
  CHECK(ck.model_dtype == dtype::bf16);
  CHECK(ck.config_json()["model_type"] == "llama");
}

TEST_CASE(
    "without an index every safetensors file is a shard in sorted order with a warning below the "
    "top") {
  temp_dir d;
  write_text(d.path / "config.json", k_config);
  write_shard(d.path / "b.safetensors", {"x"});
  write_shard(d.path / "a.safetensors", {"y"});
  write_shard(d.path / "sub" / "c.safetensors", {"z"});
  write_text(d.path / "notes.safetensors.txt", "not a shard");
  warnings w;
  const auto ck = open_source_checkpoint(d.path, w.fn());
  REQUIRE(ck.shards.size() == 3);
  CHECK(ck.shards[0].rel_path == "a.safetensors");
  CHECK(ck.shards[1].rel_path == "b.safetensors");
  CHECK(ck.shards[2].rel_path == "sub/c.safetensors");
  REQUIRE(w.list.size() == 1);
  CHECK(w.any_contains("sub/c.safetensors: shard below the top level"));
}

TEST_CASE(
    "with an index only the files it names are shards and others are ignored with a warning") {
  temp_dir d;
  write_text(d.path / "config.json", k_config);
  write_shard(d.path / "model-00001.safetensors", {"a", "b"});
  write_shard(d.path / "part" / "model-00002.safetensors", {"c"});
  write_shard(d.path / "consolidated.safetensors", {"a", "b", "c"});  // would clash if read
  write_text(d.path / "model.safetensors.index.json",
             R"({"metadata": {"total_size": 12}, "weight_map": {"a": "model-00001.safetensors",)"
             R"( "b": "model-00001.safetensors", "c": "part/model-00002.safetensors"}})");
  warnings w;
  const auto ck = open_source_checkpoint(d.path, w.fn());
  CHECK(ck.has_index);
  REQUIRE(ck.shards.size() == 2);
  CHECK(ck.shards[0].rel_path == "model-00001.safetensors");
  CHECK(ck.shards[1].rel_path == "part/model-00002.safetensors");
  CHECK(ck.shard_of("c")->rel_path == "part/model-00002.safetensors");
  REQUIRE(w.list.size() == 1);
  CHECK(w.any_contains(
      "consolidated.safetensors: not named in model.safetensors.index.json, ignored"));
}

TEST_CASE("index consistency: missing shard and tensor in two shards and wrong shard are errors") {
  temp_dir d;
  write_text(d.path / "config.json", k_config);
  write_shard(d.path / "s1.safetensors", {"a", "b"});
  write_shard(d.path / "s2.safetensors", {"c"});
  const fs::path index = d.path / "model.safetensors.index.json";

  write_text(index, R"({"weight_map": {"a": "s1.safetensors", "c": "s3.safetensors"}})");
  CHECK(error_of(d.path).find("shard \"s3.safetensors\" named in weight_map is missing") !=
        std::string::npos);

  write_text(
      index,
      R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors"}})");
  const std::string wrong = error_of(d.path);
  CHECK(wrong.find(index.string() + ": tensor 'b': weight_map points to shard \"s2.safetensors\", "
                                    "which does not contain it (found in \"s1.safetensors\")") ==
        0);

  write_text(
      index,
      R"({"weight_map": {"a": "s1.safetensors", "zz": "s2.safetensors", "c": "s2.safetensors"}})");
  CHECK(error_of(d.path).find("tensor 'zz': weight_map points to shard \"s2.safetensors\", which "
                              "does not contain it") != std::string::npos);

  write_shard(d.path / "s2.safetensors", {"c", "a"});
  write_text(
      index,
      R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}})");
  const std::string twice = error_of(d.path);
  CHECK(twice.find((d.path / "s2.safetensors").string() + ": tensor 'a' at byte 4096") == 0);
  CHECK(twice.find("tensor also present in shard " + (d.path / "s1.safetensors").string()) !=
        std::string::npos);

  write_text(index, R"({"weight_map": {"a": "../s1.safetensors"}})");
  CHECK(error_of(d.path).find("is not a plain relative path inside the checkpoint") !=
        std::string::npos);
  write_text(index, R"({"weight_map": {"a": 5}})");
  CHECK(error_of(d.path).find("tensor 'a': weight_map value is not a string") != std::string::npos);
  write_text(index, R"({"metadata": {}})");
  CHECK(error_of(d.path).find("index has no \"weight_map\"") != std::string::npos);
  write_text(index, R"({"weight_map": {"a": "s1.safetensors", "a": "s1.safetensors"}})");
  CHECK(error_of(d.path).find("duplicate key \"a\"") != std::string::npos);
}

TEST_CASE("a tensor missing from weight_map is processed with a warning") {
  temp_dir d;
  write_text(d.path / "config.json", k_config);
  write_shard(d.path / "s1.safetensors", {"a", "extra"});
  write_text(d.path / "model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors"}})");
  warnings w;
  const auto ck = open_source_checkpoint(d.path, w.fn());
  CHECK(ck.shard_of("extra") != nullptr);
  REQUIRE(w.list.size() == 1);
  CHECK(w.any_contains("tensor 'extra' is not in the index's weight_map"));
}

TEST_CASE("config.json is required and strict JSON and duplicate keys at any depth are errors") {
  temp_dir d;
  write_shard(d.path / "model.safetensors", {"a"});
  CHECK(error_of(d.path).find("config.json is missing") != std::string::npos);

  const std::string dup = "{\"a\": {\"x\": 1,\n \"x\": 2}}";
  write_text(d.path / "config.json", dup);
  const std::string e = error_of(d.path);
  CHECK(e.find((d.path / "config.json").string() + ": at byte " +
               std::to_string(dup.rfind("\"x\"")) + ": duplicate key \"x\" in JSON object") == 0);
  write_text(d.path / "config.json", R"({"a": [{"k": 1, "k": 1}]})");
  CHECK(error_of(d.path).find("duplicate key \"k\"") != std::string::npos);
  write_text(d.path / "config.json", R"({"a": 1} {"b": 2})");
  CHECK(error_of(d.path).find("at byte 9: unexpected bytes after the top-level JSON object") !=
        std::string::npos);
  write_text(d.path / "config.json", R"({"a": [1, 2,]})");
  CHECK(error_of(d.path).find("invalid JSON") != std::string::npos);
  write_text(d.path / "config.json", R"({"a": 01})");
  CHECK(error_of(d.path).find("invalid JSON") != std::string::npos);
  write_text(d.path / "config.json", R"([1])");
  CHECK(error_of(d.path).find("not an object") != std::string::npos);
  write_text(d.path / "config.json", "{\"a\": \"\xff\"}");
  CHECK(error_of(d.path).find("at byte 7: not valid UTF-8") != std::string::npos);
  write_text(d.path / "config.json", R"({"a": tru})");
  CHECK(error_of(d.path).find("invalid JSON") != std::string::npos);
}

TEST_CASE("a malformed shard is reported with the shard's own path") {
  temp_dir d;
  write_text(d.path / "config.json", k_config);
  write_text(d.path / "model.safetensors", std::string("\x02\0\0\0\0\0\0\0{}x", 11));
  CHECK(error_of(d.path).find((d.path / "model.safetensors").string() + ": at byte 10:") == 0);
  temp_dir e;
  write_text(e.path / "config.json", k_config);
  CHECK(error_of(e.path).find("no *.safetensors file") != std::string::npos);
}

TEST_CASE("the source quantization config is the top-level one or exactly one child's") {
  auto cfg = [](const std::string& text) { return parse_json_object_text(text, "config.json"); };
  auto top = find_source_quantization(
      cfg(R"({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},)"
          R"( "text_config": {"quantization_config": {"quant_method": "other"}}})"),
      "config.json");
  REQUIRE(top.has_value());
  CHECK(top->location == "quantization_config");
  CHECK(top->quant_method() == "fp8");
  CHECK(top->json()["weight_block_size"][1] == 128);

  auto child = find_source_quantization(
      cfg(R"({"vision_config": {"x": 1}, "text_config": {"quantization_config": {"quant_method": "compressed-tensors"}}})"),
      "config.json");
  REQUIRE(child.has_value());
  CHECK(child->location == "text_config.quantization_config");
  CHECK(child->quant_method() == "compressed-tensors");

  CHECK_FALSE(find_source_quantization(cfg(R"({"a": {"b": {"quantization_config": {}}}})"), "c")
                  .has_value());
  CHECK_THROWS_WITH_AS(
      (void)find_source_quantization(
          cfg(R"({"a": {"quantization_config": {}}, "b": {"quantization_config": {}}})"), "c"),
      doctest::Contains("two source quantization configs: \"a.quantization_config\" and "
                        "\"b.quantization_config\""),
      input_error);
  CHECK_THROWS_WITH_AS((void)find_source_quantization(cfg(R"({"quantization_config": 3})"), "c"),
                       doctest::Contains("is not an object"), input_error);
}

TEST_CASE("the model dtype follows the §3.7 lookup order and defaults to BF16") {
  auto dt = [](const std::string& text) {
    return resolve_model_dtype(parse_json_object_text(text, "config.json"), "config.json");
  };
  CHECK(dt(R"({})") == dtype::bf16);
  CHECK(dt(R"({"torch_dtype": "float16"})") == dtype::f16);
  CHECK(dt(R"({"dtype": "float32", "torch_dtype": "half"})") == dtype::f16);
  CHECK(dt(R"({"dtype": "double"})") == dtype::f64);
  CHECK(dt(R"({"torch_dtype": "", "dtype": "float"})") == dtype::f32);
  CHECK(dt(R"({"torch_dtype": null, "dtype": "float64"})") == dtype::f64);
  CHECK(dt(R"({"text_config": {"torch_dtype": "float16"}, "torch_dtype": "float32"})") ==
        dtype::f16);
  CHECK(dt(R"({"text_config": {"dtype": "float32", "torch_dtype": "float16"}})") == dtype::f32);
  CHECK(dt(R"({"text_config": "float16", "torch_dtype": "float32"})") == dtype::f32);
  CHECK(dt(R"({"torch_dtype": "AuTo", "dtype": "float32"})") == dtype::bf16);
  CHECK(dt(R"({"torch_dtype": 16, "dtype": "float32"})") == dtype::bf16);
  CHECK_THROWS_WITH_AS((void)dt(R"({"torch_dtype": "int8"})"),
                       doctest::Contains("unsupported model dtype \"int8\" in \"torch_dtype\""),
                       input_error);
  temp_dir d;
  write_text(d.path / "config.json", R"({"text_config": {"dtype": "float16"}})");
  write_shard(d.path / "model.safetensors", {"a"});
  CHECK(open_source_checkpoint(d.path, {}).model_dtype == dtype::f16);
}
