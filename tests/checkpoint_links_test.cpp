// Symbolic links in a source checkpoint: followed only to a regular file inside the model folder
// or its Hugging Face cache repository (a fake cache snapshot must keep working), never to a
// folder; anything else skipped with a warning naming it, or an error with strict links.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "checkpoint_test_util.h"
#include "io/checkpoint.h"
#include "io/error.h"

using namespace shardquant;
using namespace sq_test;

namespace {

// A Hugging Face cache layout: models--org--name/{blobs/<hash>, snapshots/rev1/<file> ->
// ../../blobs/<hash>}. Returns the snapshot folder.
fs::path make_cache_snapshot(const fs::path& root) {
  const fs::path repo = root / "hub" / "models--org--name";
  const fs::path blobs = repo / "blobs";
  const fs::path snap = repo / "snapshots" / "rev1";
  fs::create_directories(snap / "original");
  write_text(blobs / "c0ffee", R"({"model_type": "llama"})");
  write_shard(blobs / "5afe", {"a.weight", "b.weight"});
  write_text(blobs / "70c3", R"({"tok": 1})");
  write_text(blobs / "9a9a", R"({"dim": 4})");
  fs::create_symlink("../../blobs/c0ffee", snap / "config.json");
  fs::create_symlink("../../blobs/5afe", snap / "model.safetensors");
  fs::create_symlink("../../blobs/70c3", snap / "tokenizer.json");
  fs::create_symlink("../../../blobs/9a9a", snap / "original" / "params.json");
  return snap;
}

struct warnings {
  std::vector<std::string> list;
  warning_fn fn() {
    return [this](std::string w) { list.push_back(std::move(w)); };
  }
  bool any_contains(const std::string& s) const {
    for (const auto& w : list)
      if (w.find(s) != std::string::npos) return true;
    return false;
  }
};

}  // namespace

TEST_CASE("a Hugging Face cache snapshot (every file a link into blobs/) opens and copies") {
  temp_dir d("links");
  const fs::path snap = make_cache_snapshot(d.path);
  warnings w;
  const source_checkpoint ck = open_source_checkpoint(snap, w.fn());
  CHECK(ck.shards.size() == 1);
  CHECK(w.list.empty());
  const side_copy_stats s = copy_side_files(snap, d.path / "out", w.fn());
  CHECK(s.files == 2);
  CHECK(read_text(d.path / "out" / "tokenizer.json") == R"({"tok": 1})");
  CHECK(read_text(d.path / "out" / "original" / "params.json") == R"({"dim": 4})");
  CHECK_FALSE(fs::is_symlink(d.path / "out" / "tokenizer.json"));
}

TEST_CASE("a side-file link to a file outside the model is skipped with a warning naming it") {
  temp_dir d("links");
  const fs::path snap = make_cache_snapshot(d.path);
  write_text(d.path / "secret", "do not copy");
  fs::create_symlink(d.path / "secret", snap / "special_tokens_map.json");
  warnings w;
  (void)copy_side_files(snap, d.path / "out", w.fn());
  CHECK_FALSE(fs::exists(d.path / "out" / "special_tokens_map.json"));
  CHECK(w.any_contains("special_tokens_map.json"));
  CHECK(w.any_contains("outside the model folder"));
  CHECK_THROWS_WITH_AS((void)copy_side_files(snap, d.path / "out2", w.fn(), true),
                       doctest::Contains("special_tokens_map.json"), input_error);
}

TEST_CASE("a link to a folder is never followed, even one inside the model") {
  temp_dir d("links");
  const fs::path src = d.path / "model";
  write_text(src / "config.json", "{}");
  write_shard(src / "model.safetensors", {"a.weight"});
  write_text(d.path / "big" / "unrelated.bin", "439 MB of other things");
  fs::create_symlink("../..", src / "extra");       // the whole tree above
  fs::create_symlink(src / "sub", src / "inside");  // a folder inside the model
  write_text(src / "sub" / "x.json", "{}");
  warnings w;
  (void)open_source_checkpoint(src, w.fn());
  const side_copy_stats s = copy_side_files(src, d.path / "out", w.fn());
  CHECK(s.files == 1);  // sub/x.json only, through the real folder
  CHECK_FALSE(fs::exists(d.path / "out" / "extra"));
  CHECK_FALSE(fs::exists(d.path / "out" / "inside"));
  CHECK(w.any_contains("extra"));
  CHECK(w.any_contains("folders are never followed"));
}

TEST_CASE("a link inside the model folder to one of its files is followed") {
  temp_dir d("links");
  const fs::path src = d.path / "model";
  write_text(src / "config.json", "{}");
  write_shard(src / "model.safetensors", {"a.weight"});
  write_text(src / "real.json", "{\"r\": 1}");
  fs::create_symlink("real.json", src / "alias.json");
  warnings w;
  (void)copy_side_files(src, d.path / "out", w.fn());
  CHECK(read_text(d.path / "out" / "alias.json") == "{\"r\": 1}");
  CHECK(w.list.empty());
}

TEST_CASE("a shard or config.json linked outside the model is refused, naming it") {
  temp_dir d("links");
  const fs::path src = d.path / "model";
  write_text(src / "config.json", "{}");
  write_shard(d.path / "elsewhere" / "model.safetensors", {"a.weight"});
  fs::create_directories(src);
  fs::create_symlink(d.path / "elsewhere" / "model.safetensors", src / "model.safetensors");
  warnings w;
  // Without an index the link is skipped like any other: no shard is left.
  CHECK_THROWS_AS((void)open_source_checkpoint(src, w.fn()), input_error);
  CHECK(w.any_contains("model.safetensors"));
  write_text(src / "model.safetensors.index.json",
             R"({"weight_map": {"a.weight": "model.safetensors"}})");
  CHECK_THROWS_WITH_AS((void)open_source_checkpoint(src, w.fn()),
                       doctest::Contains("outside the model folder"), input_error);
  fs::remove(src / "config.json");
  write_text(d.path / "cfg.json", "{}");
  fs::create_symlink(d.path / "cfg.json", src / "config.json");
  CHECK_THROWS_WITH_AS((void)open_source_checkpoint(src, w.fn()),
                       doctest::Contains("config.json is a symbolic link"), input_error);
}
