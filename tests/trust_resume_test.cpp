// Trust, in the library: --resume never mixes models (source or a finished shard changed ->
// redone), a run that publishes nothing leaves nothing, stale temporaries go, a folder link in
// the output is never written through, the cancel flag stops a run cleanly.
#include <signal.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <fstream>

#include "io/dir_lock.h"
#include "io/error.h"
#include "pipeline/output/journal.h"
#include "trust_test_util.h"

using namespace shardquant;
using namespace sq_trust;

namespace {

// A resumable half-finished output: every shard published and journaled, then finalize fails
// on a planted folder link (`original -> elsewhere`), which it must not write through.
void interrupted_run(const fs::path& src, const fs::path& out, const fs::path& elsewhere) {
  fs::create_directories(out);
  fs::create_directories(elsewhere);
  sq_test::write_text(elsewhere / "params.json", "precious");
  fs::create_symlink(elsewhere, out / "original");
  auto o = options(src, out);
  o.existing = existing_output::resume;
  CHECK_THROWS_AS((void)quantize_checkpoint(o), io_error);
  CHECK(sq_test::read_text(elsewhere / "params.json") == "precious");
  CHECK(fs::exists(out / ".shardquant-journal"));
  fs::remove(out / "original");
}

std::map<std::string, std::string> clean_output(const fs::path& src, const fs::path& out) {
  (void)quantize_checkpoint(options(src, out));
  return tree(out);
}

}  // namespace

TEST_CASE("--resume after the source shards were replaced by another model redoes every shard") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src");
  interrupted_run(d.path / "src", d.path / "out", d.path / "elsewhere");
  // Same shapes, other weights (another seed): before the fix three old shards were kept.
  fs::remove_all(d.path / "src");
  make_llama(d.path / "src", 6ull << 20, 2ull << 20, 2);
  auto o = options(d.path / "src", d.path / "out");
  o.existing = existing_output::resume;
  const run_report r = quantize_checkpoint(o);
  CHECK(r.shards_skipped == 0);
  CHECK(tree(d.path / "out") == clean_output(d.path / "src", d.path / "clean"));
}

TEST_CASE("--resume after a finished shard was altered in place redoes that shard only") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src");
  interrupted_run(d.path / "src", d.path / "out", d.path / "elsewhere");
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(d.path / "out"))
    if (e.path().extension() == ".safetensors") shards.push_back(e.path());
  std::sort(shards.begin(), shards.end());
  REQUIRE(shards.size() >= 3);
  {
    // One byte in the middle, same size and (re-set) modification time.
    const auto mtime = fs::last_write_time(shards[1]);
    std::fstream f(shards[1], std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(fs::file_size(shards[1]) / 2));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shards[1]) / 2));
    c = static_cast<char>(c ^ 0x10);
    f.write(&c, 1);
    f.close();
    fs::last_write_time(shards[1], mtime);
  }
  auto o = options(d.path / "src", d.path / "out");
  o.existing = existing_output::resume;
  const run_report r = quantize_checkpoint(o);
  CHECK(r.shards_skipped == shards.size() - 1);
  CHECK(tree(d.path / "out") == clean_output(d.path / "src", d.path / "clean"));
}

TEST_CASE("--resume with other options redoes every shard") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src");
  interrupted_run(d.path / "src", d.path / "out", d.path / "elsewhere");
  auto o = options(d.path / "src", d.path / "out", "fp8");
  o.existing = existing_output::resume;
  CHECK(quantize_checkpoint(o).shards_skipped == 0);
}

TEST_CASE("an untouched interrupted output resumes keeping every shard, byte-identical") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src");
  interrupted_run(d.path / "src", d.path / "out", d.path / "elsewhere");
  auto o = options(d.path / "src", d.path / "out");
  o.existing = existing_output::resume;
  const run_report r = quantize_checkpoint(o);
  CHECK(r.shards_skipped >= 3);
  CHECK(tree(d.path / "out") == clean_output(d.path / "src", d.path / "clean"));
}

TEST_CASE("--overwrite never writes through a folder link in the output, nor outside the output") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src");
  (void)quantize_checkpoint(options(d.path / "src", d.path / "out"));
  fs::create_directories(d.path / "elsewhere");
  sq_test::write_text(d.path / "elsewhere" / "params.json", "precious");
  fs::rename(d.path / "out" / "original", d.path / "original-moved");
  fs::create_symlink(d.path / "elsewhere", d.path / "out" / "original");
  // A file link too: replaced by the new file, its target left alone.
  sq_test::write_text(d.path / "target.json", "also precious");
  fs::remove(d.path / "out" / "tokenizer_config.json");
  fs::create_symlink(d.path / "target.json", d.path / "out" / "tokenizer_config.json");
  auto before = tree(d.path);
  for (auto it = before.begin(); it != before.end();)
    it = it->first.rfind("out/", 0) == 0 ? before.erase(it) : std::next(it);
  auto o = options(d.path / "src", d.path / "out");
  o.existing = existing_output::overwrite;
  CHECK_THROWS_WITH_AS((void)quantize_checkpoint(o), doctest::Contains("symbolic link"), io_error);
  auto after = tree(d.path);
  for (auto it = after.begin(); it != after.end();)
    it = it->first.rfind("out/", 0) == 0 ? after.erase(it) : std::next(it);
  CHECK(after == before);
  CHECK(sq_test::read_text(d.path / "elsewhere" / "params.json") == "precious");
  CHECK(sq_test::read_text(d.path / "target.json") == "also precious");
}

TEST_CASE("a run refused on bad input or cancelled before publishing leaves no folder behind") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src");
  // Bad input: config.json is a folder (and is reported as one).
  fs::create_directories(d.path / "bad");
  fs::copy(d.path / "src", d.path / "bad", fs::copy_options::recursive);
  fs::remove(d.path / "bad" / "config.json");
  fs::create_directories(d.path / "bad" / "config.json");
  CHECK_THROWS_WITH_AS(
      (void)quantize_checkpoint(options(d.path / "bad", d.path / "a" / "b" / "out")),
      doctest::Contains("is a folder"), input_error);
  CHECK_FALSE(fs::exists(d.path / "a"));
  // Cancelled before the first job: nothing published, nothing left, not even the folder.
  auto o = options(d.path / "src", d.path / "out2");
  o.cancel = std::make_shared<std::atomic<bool>>(true);
  CHECK_THROWS_AS((void)quantize_checkpoint(o), cancelled_error);
  CHECK_FALSE(fs::exists(d.path / "out2"));
  // An existing empty folder stays, empty: a plain rerun is not refused as "not empty".
  fs::create_directories(d.path / "out3");
  CHECK_THROWS_AS((void)quantize_checkpoint(options(d.path / "bad", d.path / "out3")), input_error);
  CHECK(fs::is_empty(d.path / "out3"));
  (void)quantize_checkpoint(options(d.path / "src", d.path / "out3"));
  CHECK(fs::exists(d.path / "out3" / "config.json"));
  CHECK_FALSE(fs::exists(d.path / "out3" / ".shardquant-journal"));
  CHECK_FALSE(fs::exists(d.path / "out3" / ".shardquant-lock"));
}

TEST_CASE("a cancel during the run stops it: no temporary file, the journal names what is kept") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src", 12ull << 20, 2ull << 20);
  auto o = options(d.path / "src", d.path / "out");
  o.memory_budget = 8ull << 20;
  o.cancel = std::make_shared<std::atomic<bool>>(false);
  int started = 0;
  o.on_shard_start = [&](const std::string&) {
    if (++started == 3) o.cancel->store(true);
  };
  CHECK_THROWS_AS((void)quantize_checkpoint(o), cancelled_error);
  for (const auto& [rel, bytes] : tree(d.path / "out"))
    CHECK(rel.find(".sq-tmp-") == std::string::npos);
  o.existing = existing_output::resume;
  o.cancel->store(false);
  o.on_shard_start = nullptr;
  (void)quantize_checkpoint(o);
  CHECK(tree(d.path / "out") == clean_output(d.path / "src", d.path / "clean"));
}

TEST_CASE("stale temporaries of dead processes are removed at the start of a run, live ones kept") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src");
  fs::create_directories(d.path / "out" / "sub");
  pid_t dead = 999999;
  while (::kill(dead, 0) == 0 || errno != ESRCH) --dead;
  const std::string stale = ".model.safetensors.sq-tmp-" + std::to_string(dead) + "-0";
  sq_test::write_text(d.path / "out" / stale, "half a shard");
  sq_test::write_text(d.path / "out" / "sub" / stale, "half a shard");
  const std::string live = ".x.safetensors.sq-tmp-1-0";  // pid 1 is alive
  sq_test::write_text(d.path / "out" / live, "someone's");
  auto o = options(d.path / "src", d.path / "out");
  o.existing = existing_output::resume;
  (void)quantize_checkpoint(o);
  CHECK_FALSE(fs::exists(d.path / "out" / stale));
  CHECK_FALSE(fs::exists(d.path / "out" / "sub" / stale));
  CHECK(fs::exists(d.path / "out" / live));
}

TEST_CASE("a run on a folder another process holds is refused, naming that process") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src");
  fs::create_directories(d.path / "out");
  auto held = dir_lock::try_lock(d.path / "out", dir_lock::output_lock_name);
  REQUIRE(held.has_value());
  // This process holds it through another descriptor: refused like any other holder.
  const std::string me = "pid " + std::to_string(::getpid());
  CHECK_THROWS_WITH_AS((void)quantize_checkpoint(options(d.path / "src", d.path / "out")),
                       doctest::Contains(me.c_str()), usage_error);
  CHECK(fs::exists(d.path / "out" / ".shardquant-lock"));
}

TEST_CASE("a plain rerun accepts what a run killed before publishing left: lock, empty journal") {
  sq_test::temp_dir d("trust");
  make_llama(d.path / "src");
  fs::create_directories(d.path / "out");
  pid_t dead = 999999;
  while (::kill(dead, 0) == 0 || errno != ESRCH) --dead;
  // The leftovers of a SIGKILL before the first shard was published.
  sq_test::write_text(d.path / "out" / dir_lock::output_lock_name, "pid 1 on nowhere\n");
  sq_test::write_text(d.path / "out" / resume_journal::file_name, "");
  const std::string stale = ".model.safetensors.sq-tmp-" + std::to_string(dead) + "-0";
  sq_test::write_text(d.path / "out" / stale, "half a shard");
  (void)quantize_checkpoint(options(d.path / "src", d.path / "out"));
  CHECK(fs::exists(d.path / "out" / "model.safetensors.index.json"));
  CHECK_FALSE(fs::exists(d.path / "out" / stale));

  // A journal that records a shard is an interrupted run's: a plain rerun is still refused.
  sq_test::temp_dir d2("trust");
  make_llama(d2.path / "src");
  fs::create_directories(d2.path / "out");
  sq_test::write_text(d2.path / "out" / resume_journal::file_name, "sq2 0 0 0 1 0 x\n");
  CHECK_THROWS_AS((void)quantize_checkpoint(options(d2.path / "src", d2.path / "out")),
                  usage_error);
}
