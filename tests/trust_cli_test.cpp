// Trust through the program: two runs started together on one output folder (one refused,
// naming the other; the output is one scheme's, whole), --overwrite naming old shards it keeps,
// SIGTERM exiting 143 with one line on how to resume, budgets refused at the command line.
#include <sys/wait.h>

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>

#include "trust_test_util.h"

using namespace sq_trust;

namespace {

std::string slurp(const fs::path& p) {
  return sq_test::read_text(p);
}

// Runs `script` with bash from a file (no second round of quoting); returns system()'s status.
int bash(const fs::path& dir, const std::string& script) {
  const fs::path f = dir / "script.sh";
  sq_test::write_text(f, script + "\n");
  return std::system(("bash '" + f.string() + "'").c_str());
}

std::string quantize_cmd(const fs::path& src, const fs::path& out, const std::string& scheme,
                         const std::string& extra = "") {
  return std::string(SQ_BINARY_PATH) + " quantize --model-dir '" + src.string() +
         "' --output-dir '" + out.string() + "' --scheme " + scheme +
         " --memory-budget 8M --quiet " + extra;
}

}  // namespace

TEST_CASE("two runs started together on one output folder: one runs, the other is refused") {
  sq_test::temp_dir d("trustcli");
  make_llama(d.path / "src", 12ull << 20, 2ull << 20);
  for (int round = 0; round < 3; ++round) {
    const fs::path out = d.path / ("out" + std::to_string(round));
    // Both started at once by one shell; each one's exit status and messages go to a file.
    const std::string script =
        "(" + quantize_cmd(d.path / "src", out, "mxfp4") + " > '" + (d.path / "a.log").string() +
        "' 2>&1; echo $? > '" + (d.path / "a.rc").string() + "') & (" +
        quantize_cmd(d.path / "src", out, "fp8") + " > '" + (d.path / "b.log").string() +
        "' 2>&1; echo $? > '" + (d.path / "b.rc").string() + "') & wait";
    REQUIRE(bash(d.path, script) == 0);
    const int a = std::stoi(slurp(d.path / "a.rc")), b = std::stoi(slurp(d.path / "b.rc"));
    INFO("a: " << a << " " << slurp(d.path / "a.log") << "\nb: " << b << " "
               << slurp(d.path / "b.log"));
    CHECK(((a == 0) != (b == 0)));  // exactly one succeeded
    const std::string loser = slurp(d.path / (a == 0 ? "b.log" : "a.log"));
    // Refused while the other held the folder (naming it once it has written its pid, which a
    // loaded machine may delay past the 0.2 s the refusal waits), or after it had finished.
    CHECK((loser.find("in use by another shardquant run (") != std::string::npos ||
           loser.find("is not empty") != std::string::npos));
    // The output is wholly the winner's: compare with a clean run of the winning scheme.
    const fs::path clean = d.path / ("clean" + std::to_string(round));
    REQUIRE(std::system(quantize_cmd(d.path / "src", clean, a == 0 ? "mxfp4" : "fp8").c_str()) ==
            0);
    CHECK(tree(out) == tree(clean));
  }
}

TEST_CASE("--overwrite names the old shards the new index does not list, and keeps them") {
  sq_test::temp_dir d("trustcli");
  make_llama(d.path / "src");
  const fs::path out = d.path / "out";
  REQUIRE(std::system(quantize_cmd(d.path / "src", out, "mxfp4").c_str()) == 0);
  sq_test::write_text(out / "model-00009-of-00009.safetensors", "old shard");
  const fs::path log = d.path / "log";
  REQUIRE(std::system((quantize_cmd(d.path / "src", out, "mxfp4", "--overwrite") + " > '" +
                       log.string() + "' 2>&1")
                          .c_str()) == 0);
  // --quiet silences warnings; run again without it to see the message.
  REQUIRE(
      std::system((std::string(SQ_BINARY_PATH) + " quantize --model-dir '" +
                   (d.path / "src").string() + "' --output-dir '" + out.string() +
                   "' --scheme mxfp4 --memory-budget 8M --overwrite > '" + log.string() + "' 2>&1")
                      .c_str()) == 0);
  const std::string text = slurp(log);
  CHECK(text.find("model-00009-of-00009.safetensors: a shard the new index does not name") !=
        std::string::npos);
  CHECK(slurp(out / "model-00009-of-00009.safetensors") == "old shard");
}

TEST_CASE("SIGTERM stops a run with exit 143 and one line saying how to resume") {
  sq_test::temp_dir d("trustcli");
  make_llama(d.path / "src", 48ull << 20, 4ull << 20);
  const fs::path log = d.path / "log";
  // Killed as soon as the first shard is published (the journal then names it).
  const std::string script =
      quantize_cmd(d.path / "src", d.path / "out", "mxfp4") + " 2> '" + log.string() +
      "' & pid=$!; for i in $(seq 1 2000); do grep -q sq2 '" +
      (d.path / "out" / ".shardquant-journal").string() +
      "' 2>/dev/null && break; sleep 0.005; done; kill -TERM $pid; wait $pid; echo $? > '" +
      (d.path / "rc").string() + "'";
  REQUIRE(bash(d.path, script) == 0);
  const int rc = std::stoi(slurp(d.path / "rc"));
  INFO(slurp(log));
  CHECK((rc == 143 || rc == 0));  // 0: it had finished before the signal
  if (rc == 143) {
    CHECK(slurp(log).find("stopped by SIGTERM") != std::string::npos);
    CHECK(slurp(log).find("--resume") != std::string::npos);
    for (const auto& [rel, bytes] : tree(d.path / "out"))
      CHECK(rel.find(".sq-tmp-") == std::string::npos);
  }
}

TEST_CASE("the program refuses zero, empty and larger-than-memory budgets with exit 2") {
  sq_test::temp_dir d("trustcli");
  make_llama(d.path / "src");
  for (const char* b : {"0", "''", "0.00001K", "64T", "4000000T"}) {
    const std::string cmd = std::string(SQ_BINARY_PATH) + " quantize --model-dir '" +
                            (d.path / "src").string() + "' --output-dir '" +
                            (d.path / "out").string() + "' --scheme mxfp4 --memory-budget " + b +
                            " > /dev/null 2>&1";
    const int st = std::system(cmd.c_str());
    CHECK_MESSAGE(WEXITSTATUS(st) == 2, b);
    CHECK_FALSE(fs::exists(d.path / "out"));
  }
}
