// Command-line parsing: our and Quark's spellings, the empty --exclude, sizes, scheme errors.
#include <doctest/doctest.h>

#include <sstream>

#include "cli/cli.h"
#include "io/error.h"

using namespace shardquant;
using sv = std::vector<std::string>;

TEST_CASE("Quark's spellings parse to the same arguments as ours") {
  const quantize_args a = parse_quantize_args(
      sv{"--model_dir", "in", "--output_dir", "out", "--quant_scheme", "mxfp4", "--exclude_layers",
         "lm_head", "*mlp.gate", "--file2file_quantization", "--skip_evaluation"});
  const quantize_args b =
      parse_quantize_args(sv{"--model-dir", "in", "--output-dir", "out", "--scheme", "mxfp4",
                             "--exclude", "lm_head", "*mlp.gate"});
  CHECK(a.model_dir == "in");
  CHECK(a.output_dir == "out");
  CHECK(a.scheme == "mxfp4");
  REQUIRE(a.exclude.has_value());
  CHECK(*a.exclude == sv{"lm_head", "*mlp.gate"});
  CHECK(a.exclude == b.exclude);
  CHECK(a.model_dir == b.model_dir);
}

TEST_CASE("--exclude with no value means an explicit empty list - absent means the template") {
  auto a =
      parse_quantize_args(sv{"--model-dir", "in", "--scheme", "fp8", "--dry-run", "--exclude"});
  REQUIRE(a.exclude.has_value());
  CHECK(a.exclude->empty());
  a = parse_quantize_args(sv{"--model-dir", "in", "--scheme", "fp8", "--exclude", "--dry-run"});
  REQUIRE(a.exclude.has_value());
  CHECK(a.exclude->empty());
  CHECK(a.dry_run);
  a = parse_quantize_args(sv{"--model-dir", "in", "--scheme", "fp8", "--dry-run"});
  CHECK_FALSE(a.exclude.has_value());
}

TEST_CASE("layer schemes come in pattern/scheme pairs and keep their order") {
  auto a = parse_quantize_args(sv{"--model-dir", "in", "--scheme", "fp8", "--dry-run",
                                  "--layer-scheme", "*down_proj", "int8", "--layer-scheme",
                                  "*experts*", "mxfp4", "--memory-budget", "1G", "--convert",
                                  "gate_up_proj=g.weight,u.weight:split_fused_experts(0)"});
  REQUIRE(a.layer_schemes.size() == 2);
  CHECK(a.layer_schemes[0] == std::pair<std::string, std::string>{"*down_proj", "int8"});
  CHECK(a.layer_schemes[1].first == "*experts*");
  CHECK(a.memory_budget == (1ull << 30));
  const plan_options o = to_plan_options(a);
  CHECK(o.scheme == scheme_id::fp8);
  CHECK(o.layer_schemes[1].scheme == scheme_id::mxfp4);
  CHECK(o.converters.size() == 1);
  CHECK_THROWS_AS((void)parse_quantize_args(sv{"--model-dir", "in", "--scheme", "fp8", "--dry-run",
                                               "--layer-scheme", "x"}),
                  usage_error);
}

TEST_CASE("unknown and not-yet-supported schemes are usage errors with a reason") {
  quantize_args a;
  a.scheme = "mx6";
  try {
    (void)to_plan_options(a);
    FAIL("expected usage_error");
  } catch (const usage_error& e) {
    CHECK(std::string(e.what()).find("is refused: Quark 0.13") != std::string::npos);
  }
  a.scheme = "fp7";
  try {
    (void)to_plan_options(a);
    FAIL("expected usage_error");
  } catch (const usage_error& e) {
    CHECK(std::string(e.what()).find("unknown scheme 'fp7' (known: ") != std::string::npos);
    CHECK(std::string(e.what()).find("mxfp4") != std::string::npos);
  }
}

TEST_CASE("required options and conflicting flags are usage errors") {
  CHECK_THROWS_AS((void)parse_quantize_args(sv{"--scheme", "fp8"}), usage_error);
  CHECK_THROWS_AS((void)parse_quantize_args(sv{"--model-dir", "in", "--scheme", "fp8"}),
                  usage_error);  // no --output-dir without --dry-run
  CHECK_THROWS_AS((void)parse_quantize_args(sv{"--model-dir", "in", "--output-dir", "o", "--scheme",
                                               "fp8", "--overwrite", "--resume"}),
                  usage_error);
}

TEST_CASE("sizes are binary and accept K/M/G/T with optional B or iB") {
  CHECK(parse_size("1024") == 1024);
  CHECK(parse_size("2K") == 2048);
  CHECK(parse_size("500M") == 500ull << 20);
  CHECK(parse_size("2G") == 2ull << 30);
  CHECK(parse_size("2GiB") == 2ull << 30);
  CHECK(parse_size("1.5G") == 3ull << 29);
  CHECK(parse_size("1T") == 1ull << 40);
  CHECK_THROWS_AS((void)parse_size(""), usage_error);
  CHECK_THROWS_AS((void)parse_size("G"), usage_error);
  CHECK_THROWS_AS((void)parse_size("12Q"), usage_error);
  CHECK_THROWS_AS((void)parse_size("-1M"), usage_error);
  CHECK_THROWS_AS((void)parse_size("99999999999T"), usage_error);
}

TEST_CASE(
    "--worker and --workers parse as given, finalize refuses --worker and quantize a lone "
    "--workers") {
  const auto a = parse_quantize_args(sv{"--model-dir", "in", "--output-dir", "out", "--scheme",
                                        "fp8", "--worker", "auto", "--workers", "8"});
  CHECK(a.worker == "auto");
  CHECK(a.workers == 8);
  std::ostringstream out, err;
  const char* fin[] = {"shardquant", "finalize", "--model-dir", "in",       "--output-dir",
                       "out",        "--scheme", "fp8",         "--worker", "1/4"};
  CHECK_THROWS_AS((void)run_cli(10, fin, out, err), usage_error);
  const char* lone[] = {"shardquant", "quantize", "--model-dir", "in",        "--output-dir",
                        "out",        "--scheme", "fp8",         "--workers", "4"};
  CHECK_THROWS_AS((void)run_cli(10, lone, out, err), usage_error);
}

TEST_CASE(
    "--threads, --log-level and repeated --skip-side-files parse; bad values are usage errors") {
  const auto a = parse_quantize_args(
      sv{"--model-dir", "in", "--output-dir", "out", "--scheme", "fp8", "--threads", "3",
         "--log-level", "debug", "--skip-side-files", "original/*", "--skip-side-files", "*.pth"});
  CHECK(a.threads == 3);
  CHECK(a.log_level == "debug");
  CHECK(a.skip_side_files == sv{"original/*", "*.pth"});
  const auto d =
      parse_quantize_args(sv{"--model-dir", "in", "--output-dir", "out", "--scheme", "fp8"});
  CHECK(d.threads == 0);
  CHECK(d.log_level == "info");
  CHECK(d.skip_side_files.empty());
  CHECK_THROWS_AS((void)parse_quantize_args(sv{"--model-dir", "in", "--output-dir", "out",
                                               "--scheme", "fp8", "--threads", "0"}),
                  usage_error);
  CHECK_THROWS_AS((void)parse_quantize_args(sv{"--model-dir", "in", "--output-dir", "out",
                                               "--scheme", "fp8", "--log-level", "verbose"}),
                  usage_error);
  CHECK(parse_log_level("warn") == log_level::warn);
  CHECK(parse_log_level("error") < parse_log_level("info"));
}
