// The exported config.json (formats.md §6.1 steps 2-4): every quantization_config key removed
// from objects at any depth (not inside arrays), the new one appended last, 4-space layout,
// raw UTF-8, and every source number re-emitted exactly as written.
#include <string>

#include <doctest/doctest.h>

#include "checkpoint_test_util.h"
#include "io/checkpoint.h"
#include "io/error.h"

using namespace shardquant;
using namespace sq_test;

TEST_CASE("config rewrite keeps key order and number tokens and appends quantization_config last") {
  const std::string source =
      "{\"architectures\":[\"LlamaForCausalLM\"],\"rms_norm_eps\":1e-05,"
      "\"rope_theta\":500000.0,\"neg_zero\":-0,\"big\":123456789012345678901234567890,"
      "\"exp\":1E+2,\"tiny\":5.0e-324,\"quantization_config\":{\"quant_method\":\"fp8\"},"
      "\"text_config\":{\"quantization_config\":{\"a\":1},\"vocab_size\":32000,"
      "\"layers\":[{\"quantization_config\":{\"kept\":true}}]},"
      "\"name\":\"caf\\u00e9 \\/ \\\"q\\\" \\t\",\"empty_obj\":{},\"empty_arr\":[],"
      "\"nested\":[[],{}],\"flag\":false,\"nothing\":null}";
  nlohmann::ordered_json q;
  q["quant_method"] = "quark";
  q["global_quant_config"] = {{"weight", {{"dtype", "fp8_e4m3"}, {"ch_axis", nullptr}}}};
  q["exclude"] = nlohmann::ordered_json::array({"lm_head"});
  q["version"] = "0.11";
  q["ratio"] = 0.5;
  const std::string out = rewrite_config_json(source, q, "config.json");
  const std::string expected = R"({
    "architectures": [
        "LlamaForCausalLM"
    ],
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "neg_zero": -0,
    "big": 123456789012345678901234567890,
    "exp": 1E+2,
    "tiny": 5.0e-324,
    "text_config": {
        "vocab_size": 32000,
        "layers": [
            {
                "quantization_config": {
                    "kept": true
                }
            }
        ]
    },
    "name": "café / \"q\" \t",
    "empty_obj": {},
    "empty_arr": [],
    "nested": [
        [],
        {}
    ],
    "flag": false,
    "nothing": null,
    "quantization_config": {
        "quant_method": "quark",
        "global_quant_config": {
            "weight": {
                "dtype": "fp8_e4m3",
                "ch_axis": null
            }
        },
        "exclude": [
            "lm_head"
        ],
        "version": "0.11",
        "ratio": 0.5
    }
}
)";
  CHECK(out == expected);
  // The result is itself valid JSON that parses back to the same text.
  std::string again;
  write_json_pretty(again, parse_json_object_text(out, "out"));
  CHECK(again + "\n" == out);
}

TEST_CASE("config rewrite refuses duplicate keys and invalid JSON naming the file and byte") {
  const nlohmann::ordered_json q = nlohmann::ordered_json::object();
  CHECK_THROWS_WITH_AS((void)rewrite_config_json("{\"a\": 1, \"a\": 2}", q, "src/config.json"),
                       doctest::Contains("src/config.json: at byte 9: duplicate key \"a\""),
                       input_error);
  CHECK_THROWS_WITH_AS((void)rewrite_config_json("{\"a\": 1}]", q, "src/config.json"),
                       doctest::Contains("at byte 8: unexpected bytes"), input_error);
  CHECK(rewrite_config_json(" \n{}\n", q, "c") == "{\n    \"quantization_config\": {}\n}\n");
}

TEST_CASE("write_config_json writes config.json atomically into the output directory") {
  temp_dir d;
  write_text(d.path / "config.json", "stale");
  nlohmann::ordered_json q;
  q["quant_method"] = "quark";
  write_config_json(d.path, R"({"model_type": "llama", "x": 1.50})", q, "src/config.json");
  CHECK(read_text(d.path / "config.json") ==
        "{\n    \"model_type\": \"llama\",\n    \"x\": 1.50,\n    \"quantization_config\": {\n"
        "        \"quant_method\": \"quark\"\n    }\n}\n");
  CHECK(std::distance(fs::directory_iterator(d.path), fs::directory_iterator()) == 1);
}
