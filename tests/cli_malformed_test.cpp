// The program on the malformed safetensors corpus (tests/data/malformed, manifest.tsv): every file
// makes `shardquant inspect` and `shardquant quantize` exit with status 1 and the file's own
// message, and quantize leaves nothing behind in its output directory.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

namespace fs = std::filesystem;

namespace {

struct row {
  std::string file, message;
};

std::vector<row> manifest() {
  std::ifstream in(fs::path(SQ_TEST_DATA_DIR) / "malformed" / "manifest.tsv");
  std::vector<row> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    std::istringstream ls(line);
    for (std::string c; std::getline(ls, c, '\t');) cols.push_back(c);
    if (cols.size() >= 4) rows.push_back({cols[0], cols[3]});
  }
  return rows;
}

struct result {
  int code;
  std::string out;
};

result run(const std::string& args, const fs::path& log) {
  const std::string cmd =
      std::string(SQ_BINARY_PATH) + " " + args + " > '" + log.string() + "' 2>&1";
  const int st = std::system(cmd.c_str());
  std::ifstream f(log);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1,
          std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>())};
}

}  // namespace

TEST_CASE(
    "every malformed corpus file fails inspect and quantize with its own error and no output") {
  const auto rows = manifest();
  REQUIRE(rows.size() >= 25);
  const fs::path tmp =
      fs::temp_directory_path() / ("sq_cli_malformed_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  for (const auto& r : rows) {
    CAPTURE(r.file);
    const fs::path file = fs::path(SQ_TEST_DATA_DIR) / "malformed" / r.file;
    REQUIRE(fs::exists(file));

    const result ins = run("inspect '" + file.string() + "'", tmp / "inspect.log");
    CHECK(ins.code == 1);
    CHECK(ins.out.find(r.message) != std::string::npos);
    CHECK(ins.out.find(r.file) != std::string::npos);

    // The same file as the only shard of a checkpoint: quantize refuses before writing a byte.
    const fs::path src = tmp / "src", out = tmp / "out";
    fs::remove_all(src);
    fs::remove_all(out);
    fs::create_directories(src);
    fs::copy_file(file, src / "model.safetensors");
    std::ofstream(src / "config.json") << R"({"model_type": "llama", "torch_dtype": "bfloat16"})";
    const result q = run("quantize --model-dir '" + src.string() + "' --output-dir '" +
                             out.string() + "' --scheme fp8 --quiet",
                         tmp / "quantize.log");
    CHECK(q.code == 1);
    CHECK(q.out.find(r.message) != std::string::npos);
    CHECK((!fs::exists(out) || fs::is_empty(out)));
  }
  fs::remove_all(tmp);
}
