// The report of a run (--report, quantize_options::report_json) and of a dry run: the schema's
// fields (pipeline/output/REPORT.md documents each), a report written for failed and cancelled
// runs, the report path refused before anything is written, and the dry run's report sharing
// the run report's schema.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>

#include <shardquant/shardquant.h>
#include <nlohmann/json.hpp>

#include "trust_test_util.h"

using namespace shardquant;
using namespace sq_trust;
using json = nlohmann::json;

namespace {

json read_json(const fs::path& p) {
  return json::parse(sq_test::read_text(p));
}

// The program's exit code and its stdout + stderr.
std::pair<int, std::string> run_program(const std::string& args, const fs::path& tmp) {
  const fs::path out = tmp / "program-output.txt";
  const std::string cmd =
      std::string(SQ_BINARY_PATH) + " " + args + " > '" + out.string() + "' 2>&1";
  const int st = std::system(cmd.c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, sq_test::read_text(out)};
}

fs::path first_shard(const fs::path& dir) {
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") shards.push_back(e.path());
  std::sort(shards.begin(), shards.end());
  REQUIRE_FALSE(shards.empty());
  return shards.front();
}

// A header length far beyond the file: every reader refuses the shard, naming it.
void corrupt_header(const fs::path& shard) {
  std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
  const char huge[8] = {'\xff', '\xff', '\xff', '\x0f', 0, 0, 0, 0};
  f.write(huge, sizeof huge);
}

// Whether this process can create a file in `dir` (the file is removed again).
bool can_create_in(const fs::path& dir) {
  const fs::path probe = dir / (".sq-report-test-" + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd < 0) return false;
  ::close(fd);
  ::unlink(probe.c_str());
  return true;
}

uint64_t action_sum(const json& a) {
  uint64_t n = 0;
  for (const auto& [k, v] : a.items())
    if (k != "consumed") n += v.get<uint64_t>();
  return n;
}

}  // namespace

TEST_CASE(
    "a run's report says what ran: version, scheme, folders, excludes, actions, side files "
    "and timings") {
  sq_test::temp_dir d("report");
  make_llama(d.path / "src");
  sq_test::write_text(d.path / "src" / "tokenizer.json", std::string(123, 't'));
  sq_test::write_text(d.path / "src" / "original" / "params.json", "{}");
  auto o = options(d.path / "src", d.path / "out");
  o.report_json = d.path / "report.json";
  const plan_report plan = plan_checkpoint(o);
  const run_report r = quantize_checkpoint(o);
  const json j = read_json(o.report_json);

  CHECK(j["schema_version"] == report_schema_version);
  CHECK(j["kind"] == "run");
  CHECK(j["status"] == "ok");
  CHECK(j["error"].is_null());
  CHECK(j["tool_version"] == std::string(version()));
  CHECK(std::regex_match(j["started_at"].get<std::string>(),
                         std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
  CHECK(j["model_dir"] == (d.path / "src").string());
  CHECK(j["output_dir"] == (d.path / "out").string());
  CHECK(j["model_type"] == "llama");
  CHECK(j["scheme"] == "mxfp4");
  CHECK(j["quant_spec"].is_null());
  CHECK(j["exclude"] == json::array({"lm_head"}));  // the llama template's list, resolved
  CHECK(j["worker"].is_null());

  // Tensors per action: the plan's counts; every planned tensor counted once.
  const json& a = j["actions"];
  CHECK(a["quantize"].get<uint64_t>() == plan.quantized);
  CHECK(a["quantize"].get<uint64_t>() > 0);
  CHECK(a["pass"].get<uint64_t>() > 0);  // norms, embeddings, lm_head
  CHECK(a["quantize"] == r.actions.quantize);
  CHECK(a["pass"] == r.actions.pass);
  CHECK(r.actions.quantize == plan.actions.quantize);
  CHECK(r.actions.pass == plan.actions.pass);
  // mxfp4 writes a weight and a scale per quantized tensor: the output has both.
  CHECK(action_sum(a) + a["quantize"].get<uint64_t>() == j["tensors_out"].get<uint64_t>());
  CHECK(j["per_scheme"]["mxfp4"]["tensors"] == a["quantize"]);

  // Side files with their sizes, in the order copied.
  std::map<std::string, uint64_t> side;
  for (const auto& f : j["side_files"]) side[f["path"]] = f["bytes"];
  CHECK(side.at("tokenizer.json") == 123);
  CHECK(side.at("original/params.json") == 2);
  CHECK_FALSE(side.count("config.json"));  // written by the run, not copied
  REQUIRE(r.side_files.size() == j["side_files"].size());

  const json& t = j["timings"];
  for (const char* k : {"plan_seconds", "graph_seconds", "finalize_seconds", "total_seconds"})
    CHECK(t[k].get<double>() >= 0);
  CHECK(t["total_seconds"].get<double>() >=
        t["plan_seconds"].get<double>() + t["graph_seconds"].get<double>());
  CHECK(t["graph_seconds"].get<double>() > 0);
  CHECK(j["shards_written"].get<uint64_t>() == plan.shards);
  CHECK(j["bytes_in"] == plan.bytes_in);
  CHECK(json::parse(r.to_json()) == j);  // the returned report is the file
}

TEST_CASE(
    "a run that fails on a corrupt shard still writes a report: status failed, the error "
    "naming the file") {
  sq_test::temp_dir d("report");
  make_llama(d.path / "src");
  const fs::path shard = first_shard(d.path / "src");

  SUBCASE("a corrupt header, found while planning") {
    corrupt_header(shard);
    auto o = options(d.path / "src", d.path / "out");
    o.report_json = d.path / "report.json";
    CHECK_THROWS_AS((void)quantize_checkpoint(o), input_error);
    const json j = read_json(o.report_json);
    CHECK(j["status"] == "failed");
    CHECK(j["error"]["kind"] == "input");
    CHECK(j["error"]["file"] == shard.string());
    CHECK(j["error"]["message"].get<std::string>().find(shard.string()) != std::string::npos);
    CHECK(j["schema_version"] == report_schema_version);
    CHECK(j["scheme"] == "mxfp4");
    CHECK_FALSE(fs::exists(d.path / "out"));  // a run that published nothing leaves nothing

    // The program: exit 1, the same report.
    fs::remove(d.path / "report.json");
    const auto [rc, text] =
        run_program("quantize --model-dir " + (d.path / "src").string() + " --output-dir " +
                        (d.path / "out").string() + " --scheme mxfp4 --quiet --report " +
                        (d.path / "report.json").string(),
                    d.path);
    CHECK(rc == 1);
    CHECK(text.find(shard.filename().string()) != std::string::npos);
    const json c = read_json(d.path / "report.json");
    CHECK(c["status"] == "failed");
    CHECK(c["error"]["file"] == shard.string());
  }

  SUBCASE("a shard truncated while the graph runs") {
    std::vector<fs::path> shards;
    for (const auto& e : fs::directory_iterator(d.path / "src"))
      if (e.path().extension() == ".safetensors") shards.push_back(e.path());
    std::sort(shards.begin(), shards.end());
    REQUIRE(shards.size() >= 3);
    const fs::path last = shards.back();
    auto o = options(d.path / "src", d.path / "out", "fp8");
    o.memory_budget = 8ull << 20;
    o.streams = 1;
    o.io_engine = io_engine_kind::pread;
    o.report_json = d.path / "report.json";
    int started = 0;
    o.on_shard_start = [&](const std::string&) {
      if (++started == 2) fs::resize_file(last, fs::file_size(last) / 2);
    };
    CHECK_THROWS_AS((void)quantize_checkpoint(o), input_error);
    REQUIRE(started >= 2);
    const json j = read_json(o.report_json);
    CHECK(j["status"] == "failed");
    CHECK(j["error"]["kind"] == "input");
    CHECK(j["error"]["file"] == last.string());
    CHECK(j["error"]["message"].get<std::string>().find(last.filename().string()) !=
          std::string::npos);
    // What the plan knew is there: the run got that far.
    CHECK(j["model_type"] == "llama");
    CHECK(j["actions"]["quantize"].get<uint64_t>() > 0);
    CHECK(j["memory_budget"] == 8ull << 20);
    CHECK(j["timings"]["graph_seconds"].get<double>() > 0);
  }
}

TEST_CASE("a cancelled run writes a report with status cancelled") {
  sq_test::temp_dir d("report");
  make_llama(d.path / "src");
  auto o = options(d.path / "src", d.path / "out");
  o.report_json = d.path / "report.json";
  o.cancel = std::make_shared<std::atomic<bool>>(true);  // stops before the first job
  CHECK_THROWS_AS((void)quantize_checkpoint(o), cancelled_error);
  const json j = read_json(o.report_json);
  CHECK(j["status"] == "cancelled");
  CHECK(j["error"]["kind"] == "cancelled");
  CHECK(j["error"]["message"].get<std::string>().find("cancelled") != std::string::npos);
  CHECK(j["exclude"] == json::array({"lm_head"}));
  CHECK(j["shards_written"] == 0);
  CHECK_FALSE(fs::exists(d.path / "out"));
}

TEST_CASE("an unwritable report path is refused before the output folder is created") {
  sq_test::temp_dir d("report");
  make_llama(d.path / "src");
  auto o = options(d.path / "src", d.path / "out");
  auto refused = [&](const fs::path& report, const std::string& why) {
    CAPTURE(report);
    o.report_json = report;
    std::string what;
    try {
      (void)quantize_checkpoint(o);
    } catch (const usage_error& e) {
      what = e.what();
    }
    CHECK(what.find(report.string()) != std::string::npos);
    CHECK(what.find(why) != std::string::npos);
    CHECK_FALSE(fs::exists(d.path / "out"));
  };

  refused(d.path / "missing" / "report.json", "does not exist");
  refused(d.path / "src", "is a folder");
  sq_test::write_text(d.path / "file", "x");
  refused(d.path / "file" / "report.json", "is not a folder");

  // A read-only folder. root may create files in a 0555 folder; sysfs refuses even root.
  const fs::path ro = d.path / "ro";
  fs::create_directory(ro);
  ::chmod(ro.c_str(), 0555);
  if (!can_create_in(ro))
    refused(ro / "report.json", "a file cannot be created");
  else if (fs::is_directory("/sys") && !can_create_in("/sys"))
    refused("/sys/report.json", "a file cannot be created");
  else
    MESSAGE("no read-only folder to test with (root, and /sys accepts files)");
  ::chmod(ro.c_str(), 0755);
  CHECK(fs::is_empty(ro));  // the probe leaves nothing

  // The program: exit 2 with the reason, nothing created.
  const auto [rc, text] =
      run_program("quantize --model-dir " + (d.path / "src").string() + " --output-dir " +
                      (d.path / "out").string() + " --scheme mxfp4 --quiet --report " +
                      (d.path / "missing" / "r.json").string(),
                  d.path);
  CHECK(rc == 2);
  CHECK(text.find("does not exist") != std::string::npos);
  CHECK_FALSE(fs::exists(d.path / "out"));
  // The dry run checks it too.
  const auto [drc, dtext] = run_program("quantize --model-dir " + (d.path / "src").string() +
                                            " --scheme mxfp4 --dry-run --report " +
                                            (d.path / "missing" / "r.json").string(),
                                        d.path);
  CHECK(drc == 2);
  CHECK(dtext.find("does not exist") != std::string::npos);

  // The output folder itself is fine (however it is spelled): the run creates it before the
  // report is written. A folder inside it is not created.
  o.output = d.path.string() + "/out/";
  refused(d.path / "out" / "reports" / "report.json", "does not exist");
  o.report_json = d.path / "out" / "." / "report.json";
  (void)quantize_checkpoint(o);
  CHECK(read_json(d.path / "out" / "report.json")["status"] == "ok");
}

TEST_CASE("the dry run's report has the run report's schema, and says failed when planning fails") {
  sq_test::temp_dir d("report");
  make_llama(d.path / "src");
  auto o = options(d.path / "src", d.path / "out");
  o.report_json = d.path / "run.json";
  (void)quantize_checkpoint(o);
  const json run = read_json(d.path / "run.json");
  const auto [rc, text] = run_program(
      "quantize --model-dir " + (d.path / "src").string() + " --output-dir " +
          (d.path / "out2").string() + " --scheme mxfp4 --memory-budget 64MiB --dry-run --report " +
          (d.path / "plan.json").string(),
      d.path);
  REQUIRE_MESSAGE(rc == 0, text);
  const json plan = read_json(d.path / "plan.json");
  CHECK(plan["schema_version"] == report_schema_version);
  CHECK(plan["kind"] == "plan");
  CHECK(plan["status"] == "ok");
  CHECK(plan["error"].is_null());
  CHECK(plan["tool_version"] == std::string(version()));
  // Fields of both mean the same: equal values here (bytes_out differs: the plan counts tensor
  // bytes, the run file bytes; REPORT.md).
  for (const char* k :
       {"model_dir", "model_type", "scheme", "quant_spec", "layer_schemes", "exclude", "device",
        "layout", "dynamic_activations", "actions", "per_scheme", "memory_budget", "token_bytes",
        "tokens", "jobs", "split_tensors", "amax_tensors", "loader_notes"}) {
    CAPTURE(k);
    CHECK(plan[k] == run[k]);
  }
  CHECK(plan["tensors"].is_array());  // the CLI adds the plan's tensor list
  CHECK(plan["tensors"].size() == action_sum(plan["actions"]));

  corrupt_header(first_shard(d.path / "src"));
  const auto [frc, ftext] =
      run_program("quantize --model-dir " + (d.path / "src").string() +
                      " --scheme mxfp4 --dry-run --report " + (d.path / "failed.json").string(),
                  d.path);
  CHECK(frc == 1);
  const json f = read_json(d.path / "failed.json");
  CHECK(f["kind"] == "plan");
  CHECK(f["status"] == "failed");
  CHECK(f["error"]["file"] == first_shard(d.path / "src").string());
}

TEST_CASE("every field of the run and plan reports is documented in REPORT.md") {
  const std::string doc =
      sq_test::read_text(fs::path(SQ_TEST_DATA_DIR) / ".." / ".." / "pipeline/output/REPORT.md");
  REQUIRE_FALSE(doc.empty());
  CHECK(doc.find("`schema_version`: " + std::to_string(report_schema_version)) !=
        std::string::npos);
  run_report r;
  r.status = "failed";
  r.error.kind = "input";
  r.worker = "0/2";
  r.side_files.push_back({"tokenizer.json", 1});
  r.layer_schemes.emplace_back("*down_proj", "int4_wo_128");
  r.per_scheme.push_back({"mxfp4", 1, 2, 3});
  plan_report p;
  std::set<std::string> missing;
  auto walk = [&](auto&& self, const json& j) -> void {
    for (const auto& [k, v] : j.items()) {
      if (k != "mxfp4" && doc.find("`" + k + "`") == std::string::npos) missing.insert(k);
      if (v.is_object()) self(self, v);
      if (v.is_array() && !v.empty() && v[0].is_object()) self(self, v[0]);
    }
  };
  walk(walk, json::parse(r.to_json()));
  walk(walk, json::parse(p.to_json()));
  std::string list;
  for (const auto& k : missing) list += k + " ";
  CHECK_MESSAGE(missing.empty(), "not in REPORT.md: " << list);
}
