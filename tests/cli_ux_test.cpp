// What users expect from the program (issue 16 "CLI"): `help`, a shard file given as the model,
// --exclude globs that match nothing, side files in the plan and --skip-side-files, --threads,
// --log-level, --json for schemes and templates, shell completion, and the progress bar's width
// on a real terminal (a pseudo-terminal through script(1)).
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "plan_test_util.h"

using namespace sq_plan_test;

namespace {

struct result {
  int code;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Runs a shell command line, stdout and stderr kept apart.
result run_shell(const std::string& command, const fs::path& tmp) {
  const fs::path o = tmp / "stdout.txt", e = tmp / "stderr.txt";
  const std::string cmd = "(" + command + ") > " + o.string() + " 2> " + e.string();
  const int st = std::system(cmd.c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(o), slurp(e)};
}

// Runs the program with `args` (shell words).
result run(const std::string& args, const fs::path& tmp) {
  return run_shell(std::string(SQ_BINARY_PATH) + " " + args, tmp);
}

bool has(const std::string& s, const std::string& x) {
  return s.find(x) != std::string::npos;
}

// A small llama checkpoint (2 shards) with side files: make-checkpoint's, a tokenizer of known
// size and a second copy of the weights in `original/`.
fs::path make_model(const fs::path& root) {
  const fs::path d = root / "llama";
  const auto r =
      run("make-checkpoint --arch llama --size 24M --shard-size 12M --out " + d.string(), root);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  write_text(d / "tokenizer.json", std::string(3000, 't'));
  write_text(d / "original" / "consolidated.00.pth", std::string(5000, 'w'));
  write_text(d / "original" / "params.json", "{}");
  return d;
}

}  // namespace

TEST_CASE("help and help SUBCOMMAND print what --help prints; an unknown one is a usage error") {
  temp_dir t("cliux");
  const auto h = run("help", t.path), dh = run("--help", t.path);
  CHECK(h.code == 0);
  CHECK(h.out == dh.out);
  CHECK(has(h.out, "completion"));
  const auto q = run("help quantize", t.path), dq = run("quantize --help", t.path);
  CHECK(q.code == 0);
  CHECK(q.out == dq.out);
  CHECK(has(q.out, "--skip-side-files"));
  const auto n = run("help frobnicate", t.path);
  CHECK(n.code == 2);
  CHECK(has(n.err, "frobnicate"));
}

TEST_CASE("a .safetensors file given as the model names the folder to pass instead, exit 2") {
  temp_dir t("cliux");
  const fs::path d = make_model(t.path);
  fs::path shard;
  for (const auto& e : fs::directory_iterator(d))
    if (e.path().extension() == ".safetensors") shard = e.path();
  REQUIRE(!shard.empty());
  const auto r = run("quantize --model-dir " + shard.string() + " --scheme fp8 --dry-run", t.path);
  CHECK(r.code == 2);
  CHECK(has(r.err, "single shard file"));
  CHECK(has(r.err, "--model-dir " + fs::absolute(d).string()));
}

TEST_CASE("an --exclude glob that matches no module is warned about in the dry run and the run") {
  temp_dir t("cliux");
  const fs::path d = make_model(t.path);
  auto r = run("quantize --model-dir " + d.string() + " --scheme fp8 --dry-run --exclude lm_hed",
               t.path);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(has(r.err, "warning: exclude pattern 'lm_hed' matches no module"));
  CHECK(has(r.out, "quantize fp8               lm_head.weight"));  // the typo left it quantized
  r = run("quantize --model-dir " + d.string() + " --scheme fp8 --dry-run --exclude lm_head",
          t.path);
  REQUIRE(r.code == 0);
  CHECK_FALSE(has(r.err, "matches no module"));
  // Template lists cover every variant of a model type: not checked.
  r = run("quantize --model-dir " + d.string() + " --scheme fp8 --dry-run", t.path);
  CHECK_FALSE(has(r.err, "matches no module"));
  // The run: the warning reaches stderr and the report.
  const fs::path rep = t.path / "run.json";
  r = run("quantize --model-dir " + d.string() + " --output-dir " + (t.path / "o").string() +
              " --scheme fp8 --exclude lm_hed 'model.*.q_proj' --report " + rep.string(),
          t.path);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(has(r.err, "exclude pattern 'lm_hed'"));
  CHECK_FALSE(has(r.err, "'model.*.q_proj' matches no module"));
  const auto j = nlohmann::json::parse(slurp(rep));
  bool listed = false;
  for (const auto& w : j["warnings"]) listed = listed || has(w.get<std::string>(), "'lm_hed'");
  CHECK(listed);
}

TEST_CASE("side files are listed with sizes in the plan and --skip-side-files leaves them out") {
  temp_dir t("cliux");
  const fs::path d = make_model(t.path);
  const fs::path plan_json = t.path / "plan.json";
  auto r = run("quantize --model-dir " + d.string() +
                   " --scheme fp8 --dry-run --skip-side-files 'original/*' --report " +
                   plan_json.string(),
               t.path);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  // make-checkpoint's own side files (chat template, generation and tokenizer configs) too.
  CHECK(has(r.out, "side files: 6 ("));
  CHECK(has(r.out, " copied, 4.9 KiB skipped)"));
  CHECK(has(r.out, "  copy tokenizer.json  2.9 KiB"));
  CHECK(has(r.out, "  skip original/consolidated.00.pth  4.9 KiB  (--skip-side-files original/*)"));
  CHECK(has(r.out, "  skip original/params.json  2 B"));
  const auto pj = nlohmann::json::parse(slurp(plan_json));
  REQUIRE(pj["side_files"].size() == 6);
  std::map<std::string, nlohmann::json> by_path;
  for (const auto& f : pj["side_files"]) by_path[f["path"].get<std::string>()] = f;
  CHECK(by_path["original/consolidated.00.pth"]["bytes"] == 5000);
  CHECK(by_path["original/consolidated.00.pth"]["skipped_by"] == "original/*");
  CHECK(by_path["tokenizer.json"]["bytes"] == 3000);
  CHECK(by_path["tokenizer.json"]["skipped_by"].is_null());

  const fs::path out = t.path / "o", rep = t.path / "run.json";
  r = run("quantize --model-dir " + d.string() + " --output-dir " + out.string() +
              " --scheme fp8 --skip-side-files 'original/*' --report " + rep.string(),
          t.path);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(fs::exists(out / "tokenizer.json"));
  CHECK_FALSE(fs::exists(out / "original"));  // not even the empty folder
  const auto j = nlohmann::json::parse(slurp(rep));
  CHECK(j["side_files_skipped"] ==
        nlohmann::json::array({"original/consolidated.00.pth", "original/params.json"}));

  // Without the option everything is copied, as before.
  r = run("quantize --model-dir " + d.string() + " --output-dir " + (t.path / "o2").string() +
              " --scheme fp8",
          t.path);
  REQUIRE(r.code == 0);
  CHECK(fs::exists(t.path / "o2" / "original" / "consolidated.00.pth"));

  // A glob that matches a shard named in the index is an error naming both.
  r = run("quantize --model-dir " + d.string() +
              " --scheme fp8 --dry-run --skip-side-files "
              "'*.safetensors'",
          t.path);
  CHECK(r.code == 2);
  CHECK(has(r.err, "--skip-side-files '*.safetensors' matches model-00001-of-00002.safetensors"));
  CHECK(has(r.err, "named in model.safetensors.index.json"));
}

TEST_CASE("--threads limits oneTBB and --log-level decides what reaches stderr") {
  temp_dir t("cliux");
  const fs::path d = make_model(t.path);
  auto r = run("quantize --model-dir " + d.string() +
                   " --scheme fp8 --dry-run --threads 3 --log-level debug --exclude nothing_here",
               t.path);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(has(r.err, "debug: threads 3 (oneTBB)"));
  CHECK(has(r.err, "warning: exclude pattern 'nothing_here'"));
  r = run("quantize --model-dir " + d.string() + " --scheme fp8 --dry-run --threads 0", t.path);
  CHECK(r.code == 2);
  r = run("quantize --model-dir " + d.string() + " --scheme fp8 --dry-run --log-level loud",
          t.path);
  CHECK(r.code == 2);

  const std::string base = "quantize --model-dir " + d.string() + " --scheme fp8 --exclude x ";
  // info (the default): warnings, the budget line, progress lines and the summary.
  r = run(base + "--output-dir " + (t.path / "info").string(), t.path);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(has(r.err, "warning: exclude pattern 'x'"));
  CHECK(has(r.err, "memory budget"));
  CHECK(has(r.err, "progress: "));
  // warn: the warning only.
  r = run(base + "--log-level warn --output-dir " + (t.path / "warn").string(), t.path);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(has(r.err, "warning: exclude pattern 'x'"));
  CHECK_FALSE(has(r.err, "memory budget"));
  CHECK_FALSE(has(r.err, "progress: "));
  // error: nothing, but the report still lists the warning.
  const fs::path rep = t.path / "error.json";
  r = run(base + "--log-level error --report " + rep.string() + " --output-dir " +
              (t.path / "error").string(),
          t.path);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(r.err.empty());
  CHECK(has(slurp(rep), "exclude pattern 'x'"));
  // debug: each shard as it starts.
  r = run(base + "--log-level debug --threads 2 --output-dir " + (t.path / "debug").string(),
          t.path);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(has(r.err, "debug: threads 2 (oneTBB)"));
  CHECK(has(r.err, "debug: shard model-00001-of-00002.safetensors started"));
}

TEST_CASE("schemes --json and templates --json are machine-readable with documented fields") {
  temp_dir t("cliux");
  auto r = run("schemes --json", t.path);
  REQUIRE(r.code == 0);
  const auto s = nlohmann::json::parse(r.out);
  REQUIRE(s["schemes"].is_array());
  bool found = false;
  for (const auto& x : s["schemes"]) {
    for (const char* k :
         {"name", "description", "group_size", "backends", "aliases", "transformers", "vllm"})
      CHECK_MESSAGE(x.contains(k), k);
    if (x["name"] == "nvfp4") {
      found = true;
      CHECK(x["aliases"] == nlohmann::json::array({"fp4_block16_scale_e4m3"}));
    }
    if (x["name"] == "int4_wo_128") {
      CHECK(x["group_size"] == 128);
      CHECK(x["transformers"]["options"] == nlohmann::json::array({"--layout quark-importer"}));
    }
    if (x["name"] == "fp8") CHECK(x["vllm"]["status"] == "runs");
  }
  CHECK(found);
  CHECK(s["refused"][0]["name"] == "mx6");
  r = run("templates --json", t.path);
  REQUIRE(r.code == 0);
  const auto tj = nlohmann::json::parse(r.out);
  bool dsv3 = false;
  for (const auto& x : tj["templates"])
    if (x["model_type"] == "deepseek_v3") {
      dsv3 = true;
      CHECK(x["exclude"].is_array());
      CHECK(x["converters"].is_array());
    }
  CHECK(dsv3);
}

TEST_CASE("completion bash: sourced in bash it completes subcommands, options and scheme names") {
  temp_dir t("cliux");
  const auto r = run("completion bash", t.path);
  REQUIRE(r.code == 0);
  write_text(t.path / "sq.bash", r.out);
  auto complete = [&](const std::string& words, int cword) {
    write_text(t.path / "probe.sh", "source " + (t.path / "sq.bash").string() + "\nCOMP_WORDS=(" +
                                        words + ")\nCOMP_CWORD=" + std::to_string(cword) +
                                        "\n_shardquant\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n");
    return run_shell("bash " + (t.path / "probe.sh").string(), t.path).out;
  };
  CHECK(has(complete("shardquant qua", 1), "quantize"));
  const std::string opts = complete("shardquant quantize --sk", 2);
  CHECK(has(opts, "--skip-side-files"));
  CHECK_FALSE(has(opts, "--model-dir"));
  const std::string schemes = complete("shardquant quantize --scheme mxfp", 3);
  CHECK(has(schemes, "mxfp4\n"));
  CHECK(has(schemes, "mxfp6_e2m3"));
  CHECK_FALSE(has(schemes, "int8"));
  CHECK(
      has(complete("shardquant quantize --layer-scheme '*down_proj' int4_wo_1", 4), "int4_wo_128"));
  CHECK(has(complete("shardquant quantize --log-level d", 3), "debug"));
  CHECK(has(complete("shardquant schemes --j", 2), "--json"));
  const auto z = run("completion zsh", t.path);
  CHECK(z.code == 0);
  CHECK(has(z.out, "bashcompinit"));
}

TEST_CASE("on a 40- and an 80-column terminal no progress line reaches the last column") {
  temp_dir t("cliux");
  if (std::system("command -v script > /dev/null 2>&1") != 0) {
    MESSAGE("skipped: script(1) (util-linux) is not installed");
    return;
  }
  const fs::path d = make_model(t.path);
  for (int cols : {40, 80}) {
    const fs::path log = t.path / ("tty" + std::to_string(cols) + ".txt");
    const std::string inner = "stty cols " + std::to_string(cols) + "; " + SQ_BINARY_PATH +
                              " quantize --model-dir " + d.string() + " --output-dir " +
                              (t.path / ("o" + std::to_string(cols))).string() +
                              " --scheme mxfp4 --log-level info";
    const std::string cmd = "script -qec '" + inner + "' " + log.string() + " > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::string text = slurp(log);
    // Erase-to-end sequences take no column.
    for (size_t p; (p = text.find("\x1b[K")) != std::string::npos;) text.erase(p, 3);
    size_t bars = 0, longest = 0, start = 0;
    for (size_t i = 0; i <= text.size(); ++i)
      if (i == text.size() || text[i] == '\r' || text[i] == '\n') {
        const std::string seg = text.substr(start, i - start);
        if (seg.starts_with("[")) {
          ++bars;
          longest = std::max(longest, seg.size());
        }
        start = i + 1;
      }
    CAPTURE(cols);
    CAPTURE(text);
    CHECK(bars >= 1);  // the final line at least
    CHECK(longest <= size_t(cols - 1));
  }
}
