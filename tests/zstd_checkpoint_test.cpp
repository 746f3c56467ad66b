// Compressed checkpoints end to end: sources compressed by the `zstd` command (one frame per
// shard, several frames, an index naming the .zst files) and by shardquant's own seekable writer
// quantize to the same bytes as their plain twins, bf16 and block-FP8, with tensors split into
// row ranges and per-tensor schemes that read a tensor twice; `--compress zstd` output restores
// through `zstd -d` and `shardquant decompress` to the plain run's files; a truncated or corrupt
// .zst fails with the file named; --resume keeps compressed shards; peak RSS on a compressed
// source 16x the budget stays under budget + 64 MiB (compressed output adds a fixed compressor
// cost). Needs the `zstd` command.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "checkpoint_test_util.h"
#include "io/error.h"
#include "io/file.h"
#include "io/zstd_source.h"
#include "io/zstd_writer.h"
#include "pipeline/api.h"
#include "pipeline/output/decompress.h"
#include "synthetic/make_checkpoint.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;
constexpr uint64_t budget = 16 * MiB;  // 4 tokens of 4 MiB: the large tensors split

fs::path scratch() {
  static const sq_test::temp_dir d("zstd-e2e");
  return d.path;
}

int sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

using sq_test::tree;

void check_same_trees(const fs::path& a, const fs::path& b) {
  const auto ta = tree(a), tb = tree(b);
  CHECK(ta.size() == tb.size());
  for (const auto& [name, bytes] : ta) {
    INFO("file " << name);
    REQUIRE(tb.count(name) == 1);
    CHECK(tb.at(name) == bytes);
  }
}

fs::path make_source(const std::string& name, const std::string& arch, dtype type) {
  make_checkpoint_options o;
  o.arch = arch;
  o.size = 48 * MiB;
  o.shard_size = 16 * MiB;
  o.type = type;
  o.seed = 11;
  o.out = scratch() / name;
  if (!fs::exists(o.out)) (void)make_checkpoint(o);
  return o.out;
}

// A copy of `src` whose shards are compressed by the zstd command. `how`: "single" (one frame,
// `zstd -q --rm`), "frames" (the first shard cut into two frames written from a pipe, so no
// frame states the content size), "index" (single, and the index names the .zst files).
fs::path compressed_twin(const fs::path& src, const std::string& how) {
  const fs::path dst = scratch() / (src.filename().string() + "-zst-" + how);
  if (fs::exists(dst)) return dst;
  REQUIRE(sh("cp -r '" + src.string() + "' '" + dst.string() + "'") == 0);
  bool first = true;
  for (const auto& e : fs::directory_iterator(dst)) {
    const std::string f = e.path().string();
    if (e.path().extension() != ".safetensors") continue;
    if (how == "frames" && first) {
      const uint64_t half = fs::file_size(e.path()) / 2;
      REQUIRE(sh("head -c " + std::to_string(half) + " '" + f + "' | zstd -q -c > '" + f +
                 ".zst' && tail -c +" + std::to_string(half + 1) + " '" + f +
                 "' | zstd -q -c >> '" + f + ".zst' && rm '" + f + "'") == 0);
      first = false;
    } else {
      REQUIRE(sh("zstd -q --rm '" + f + "'") == 0);
    }
  }
  if (how == "index") {
    const fs::path idx = dst / "model.safetensors.index.json";
    const std::string text = read_all(idx);
    sq_test::write_text(
        idx, std::regex_replace(text, std::regex("\\.safetensors\""), ".safetensors.zst\""));
  }
  return dst;
}

run_report quantize(const fs::path& in, const fs::path& out, const std::string& scheme,
                    const std::string& compress = "", bool resume = false) {
  quantize_options o;
  o.input = in;
  o.output = out;
  o.scheme = scheme;
  o.excludes = std::vector<std::string>{};
  o.memory_budget = budget;
  o.quiet = true;
  o.progress_to_stderr = false;
  o.compress = compress;
  if (resume) o.existing = existing_output::resume;
  return quantize_checkpoint(o);
}

void check_twin_quantizes_alike(const fs::path& plain, const fs::path& twin,
                                const std::string& scheme) {
  INFO("source " << twin.filename().string() << ", scheme " << scheme);
  const fs::path a = scratch() / ("out-" + plain.filename().string() + "-" + scheme);
  const fs::path b = scratch() / ("out-" + twin.filename().string() + "-" + scheme);
  if (!fs::exists(a)) (void)quantize(plain, a, scheme);
  (void)quantize(twin, b, scheme);
  check_same_trees(a, b);
  fs::remove_all(b);
}

}  // namespace

TEST_CASE("a bf16 checkpoint compressed by the zstd command quantizes like its plain twin") {
  const fs::path plain = make_source("llama", "llama", dtype::bf16);
  for (const char* how : {"single", "frames", "index"})
    for (const char* scheme : {"mxfp4", "fp8"})  // fp8: split tensors read twice (amax pass)
      check_twin_quantizes_alike(plain, compressed_twin(plain, how), scheme);
}

TEST_CASE("a block-FP8 checkpoint compressed by the zstd command quantizes like its plain twin") {
  const fs::path plain = make_source("dsv3", "deepseek_v3", dtype::f8_e4m3);
  for (const char* scheme : {"mxfp4", "fp8"})
    check_twin_quantizes_alike(plain, compressed_twin(plain, "single"), scheme);
}

TEST_CASE("a source in zstd's seekable format quantizes like its plain twin") {
  const fs::path plain = make_source("llama", "llama", dtype::bf16);
  const fs::path twin = scratch() / "llama-seekable";
  if (!fs::exists(twin)) {
    REQUIRE(sh("cp -r '" + plain.string() + "' '" + twin.string() + "'") == 0);
    for (const auto& e : fs::directory_iterator(twin)) {
      if (e.path().extension() != ".safetensors") continue;
      const uint64_t size = fs::file_size(e.path());
      shardquant::file_handle f = shardquant::file_handle::open(e.path(), O_RDONLY);
      // Frames every 3 MiB, so tensors start inside frames too.
      std::vector<uint64_t> cuts;
      for (uint64_t c = 3 * MiB; c < size; c += 3 * MiB) cuts.push_back(c);
      (void)write_zstd_seekable(f.get(), e.path().string(), size, cuts, e.path().string() + ".zst",
                                {});
      fs::remove(e.path());
    }
  }
  for (const auto& e : fs::directory_iterator(twin))
    if (is_zstd_shard_name(e.path().filename().string())) {
      const zstd_shard_info info = read_zstd_shard_info(e.path());
      CHECK(info.seekable);
    }
  check_twin_quantizes_alike(plain, twin, "fp8");
}

TEST_CASE("--compress zstd output restores through zstd -d and shardquant decompress") {
  const fs::path plain = make_source("llama", "llama", dtype::bf16);
  const fs::path ref = scratch() / "out-llama-mxfp4";
  if (!fs::exists(ref)) (void)quantize(plain, ref, "mxfp4");
  const fs::path z = scratch() / "compressed-out";
  const run_report r = quantize(plain, z, "mxfp4", "zstd:3");
  uint64_t n_shards = 0;
  for (const auto& e : fs::directory_iterator(ref))
    n_shards += e.path().extension() == ".safetensors";
  CHECK(r.shards_written == n_shards);
  const std::string index = read_all(z / "model.safetensors.index.json");
  for (const auto& e : fs::directory_iterator(ref)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".safetensors") continue;
    INFO("shard " << name);
    CHECK_FALSE(fs::exists(z / name));  // only the compressed file is published
    REQUIRE(fs::exists(z / (name + ".zst")));
    CHECK(index.find("\"" + name + ".zst\"") != std::string::npos);
    CHECK(read_zstd_shard_info(z / (name + ".zst")).seekable);
    const fs::path d = scratch() / ("zstd-d-" + name);
    REQUIRE(sh("zstd -q -d -f '" + (z / (name + ".zst")).string() + "' -o '" + d.string() + "'") ==
            0);
    CHECK(read_all(d) == read_all(e.path()));
  }
  const decompress_result dr = decompress_checkpoint(z, false);
  CHECK(dr.shards == n_shards);
  CHECK(dr.index_rewritten);
  // Plain shards and index now equal the plain run's; the .zst files are kept.
  auto tz = tree(z);
  for (auto it = tz.begin(); it != tz.end();)
    it = is_zstd_shard_name(it->first) ? tz.erase(it) : std::next(it);
  const auto tr = tree(ref);
  CHECK(tz.size() == tr.size());
  for (const auto& [name, bytes] : tr) {
    INFO("file " << name);
    CHECK(tz[name] == bytes);
  }
  CHECK_THROWS_AS((void)decompress_checkpoint(z, false), usage_error);  // no silent overwrite
  fs::remove_all(z);
}

TEST_CASE("--resume keeps compressed shards the journal recorded and redoes a damaged one") {
  const fs::path plain = make_source("llama", "llama", dtype::bf16);
  const fs::path ref = scratch() / "resume-ref";
  (void)quantize(plain, ref, "mxfp4", "zstd");
  // A run that dies after publishing every shard (a directory holds config.json's name): the
  // journal lists every compressed shard with its compressed size.
  const fs::path out = scratch() / "resume-out";
  fs::create_directories(out / "config.json" / "blocker");
  quantize_options o;
  o.input = plain;
  o.output = out;
  o.scheme = "mxfp4";
  o.excludes = std::vector<std::string>{};
  o.memory_budget = budget;
  o.quiet = true;
  o.progress_to_stderr = false;
  o.compress = "zstd";
  o.existing = existing_output::overwrite;
  CHECK_THROWS(quantize_checkpoint(o));
  REQUIRE(fs::exists(out / ".shardquant-journal"));
  fs::remove_all(out / "config.json");
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(out))
    if (is_zstd_shard_name(e.path().filename().string())) shards.push_back(e.path());
  std::sort(shards.begin(), shards.end());
  REQUIRE(shards.size() >= 2);
  fs::resize_file(shards[1], 100);  // damaged: its size no longer matches the journal
  o.existing = existing_output::resume;
  const run_report r = quantize_checkpoint(o);
  CHECK(r.shards_written == 1);
  CHECK(r.shards_skipped == shards.size() - 1);
  check_same_trees(ref, out);
  fs::remove_all(ref);
  fs::remove_all(out);
}

TEST_CASE("a truncated or corrupt .zst shard fails with an error naming the file") {
  const fs::path plain = make_source("llama", "llama", dtype::bf16);
  const fs::path twin = compressed_twin(plain, "single");
  for (const char* damage : {"truncate", "corrupt"}) {
    INFO(damage);
    const fs::path bad = scratch() / (std::string("bad-") + damage);
    fs::remove_all(bad);
    REQUIRE(sh("cp -r '" + twin.string() + "' '" + bad.string() + "'") == 0);
    fs::path victim;
    for (const auto& e : fs::directory_iterator(bad))
      if (is_zstd_shard_name(e.path().filename().string()) && (victim.empty() || e.path() < victim))
        victim = e.path();
    const uint64_t size = fs::file_size(victim);
    if (std::string(damage) == "truncate") {
      fs::resize_file(victim, size / 2);
    } else {
      std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(size / 2));
      const std::string junk(4096, '\x5a');
      f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    }
    const fs::path out = scratch() / (std::string("bad-out-") + damage);
    try {
      (void)quantize(bad, out, "mxfp4");
      FAIL("the damaged shard was accepted");
    } catch (const input_error& e) {
      MESSAGE(std::string(e.what()));
      CHECK(e.file() == victim.string());
      // Truncation is found by the decoder (with the compressed offset); corruption may first
      // show as bad values (a NaN in a weight) or as zstd's checksum error, naming the tensor.
      if (std::string(damage) == "truncate") CHECK(e.offset() != input_error::no_offset);
      CHECK_FALSE(e.tensor().empty());
    }
    // Nothing under the damaged shard's final name.
    CHECK_FALSE(fs::exists(out / plain_shard_name(victim.filename().string())));
    fs::remove_all(out);
    fs::remove_all(bad);
  }
}

TEST_CASE(
    "peak RSS on a compressed source 16x the budget stays under budget + 64 MiB, and compressed "
    "output adds a fixed compressor cost") {
  make_checkpoint_options o;
  o.arch = "llama";
  o.size = 256 * MiB;
  o.shard_size = 64 * MiB;
  o.seed = 5;
  o.out = scratch() / "big";
  (void)make_checkpoint(o);
  const fs::path twin = compressed_twin(o.out, "single");
  // The CPU device: a CUDA runtime maps hundreds of MiB of its own, which says nothing about our
  // buffers. The source (256 MiB) is 4 times the slack: a run that kept a third of what it
  // decompressed fails. Measured about 25 MiB here.
  auto peak_rss = [&](const std::string& extra, const std::string& tag) {
    const fs::path out = scratch() / ("big-out-" + tag);
    const fs::path rep = scratch() / ("big-report-" + tag + ".json");
    REQUIRE(sh(std::string(SQ_BINARY_PATH) + " quantize --model-dir '" + twin.string() +
               "' --output-dir '" + out.string() +
               "' --scheme fp8 --device cpu --memory-budget 16MiB --quiet " + extra +
               " --report '" + rep.string() + "'") == 0);
    const auto j = nlohmann::json::parse(read_all(rep));
    fs::remove_all(out);
    return j["peak_rss_bytes"].get<uint64_t>();
  };
  constexpr uint64_t slack = 64 * MiB;
  static_assert(256 * MiB >= 4 * slack, "the source must dwarf the slack");
  const uint64_t plain_out = peak_rss("", "plain");
  MESSAGE("peak RSS " << plain_out / MiB << " MiB, 16 MiB budget, 256 MiB compressed source");
  CHECK(plain_out < budget + slack);
  // --compress zstd: zstd's compression contexts (its worker threads' windows and buffers, about
  // 100 MiB measured) do not depend on the source's size; a compressed run stays within that of
  // the plain one.
  const uint64_t zst_out = peak_rss("--compress zstd", "zst");
  MESSAGE("peak RSS " << zst_out / MiB << " MiB with --compress zstd");
  CHECK(zst_out < plain_out + 160 * MiB);
  fs::remove_all(twin);
  fs::remove_all(o.out);
}
