// Workers' shards and `finalize`: the plan rebuilt from the headers, every worker journal read,
// every share checked, then the files around the shards written once.
#include "pipeline/output/share_finalize.h"

#include <sys/stat.h>

#include <map>
#include <set>
#include <utility>

#include "io/checkpoint.h"
#include "io/dir_lock.h"
#include "io/error.h"
#include "pipeline/output/finalize.h"
#include "pipeline/output/journal.h"
#include "pipeline/run_options.h"

namespace shardquant {
namespace fs = std::filesystem;

namespace {

// Locks that leave no file behind however finalize ends: removing a held lock file is safe
// (io/dir_lock.h), and a finished output folder holds only the checkpoint's files.
struct held_locks {
  std::vector<dir_lock> locks;
  held_locks() = default;
  held_locks(const held_locks&) = delete;
  held_locks& operator=(const held_locks&) = delete;
  ~held_locks() {
    for (auto it = locks.rbegin(); it != locks.rend(); ++it) it->release_and_remove();
  }
};

// The worker counts of the journals in `dir` (one entry per journal file).
std::map<uint32_t, std::vector<std::string>> journals_by_count(const fs::path& dir) {
  std::map<uint32_t, std::vector<std::string>> r;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (auto w = worker_of_journal_name(it->path().filename().string()))
      r[w->count].push_back(it->path().filename().string());
  if (ec) throw io_error(dir.string(), "list directory", ec.value());
  return r;
}

bool has_size(const fs::path& p, uint64_t size) {
  std::error_code ec;
  const auto s = fs::file_size(p, ec);
  return !ec && s == size;
}

}  // namespace

void remove_shard_temporaries(const fs::path& final_path) {
  const std::string prefix = "." + final_path.filename().string() + ".sq-tmp-";
  std::error_code ec;
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(final_path.parent_path(), ec), end; !ec && it != end;
       it.increment(ec))
    if (it->path().filename().string().starts_with(prefix) && it->is_regular_file(ec) &&
        !it->is_symlink(ec))
      stale.push_back(it->path());
  for (const auto& p : stale)
    if (!fs::remove(p, ec) && ec) throw io_error(p.string(), "remove stale temporary", ec.value());
}

shard_inputs worker_options_inputs(const std::string& sources_key, const std::string& options_key,
                                   const worker_id& w) {
  return {shard_key("worker options", ""), sources_key, options_key, w.count};
}

std::vector<uint32_t> shard_owners(const plan& p, uint32_t count) {
  std::vector<std::pair<std::string, uint64_t>> sizes;
  for (const auto& sh : p.source.shards) sizes.emplace_back(sh.rel_path, sh.header.file_size);
  return assign_shares(sizes, count);
}

std::vector<uint32_t> worker_shares(const plan& p, const worker_id& w, existing_output existing,
                                    const fs::path& output) {
  std::vector<uint32_t> owner = shard_owners(p, w.count);
  if (existing != existing_output::fail) return owner;
  for (uint32_t s = 0; s < p.shards.size(); ++s) {
    std::error_code ec;
    // Plain or compressed (--compress): either is this worker's earlier output.
    const fs::path plain = output / p.shards[s].relative_path;
    const fs::path zst = output / (p.shards[s].relative_path + ".zst");
    const fs::path found = fs::exists(plain, ec) ? plain : zst;
    if (owner[s] == w.index && fs::exists(found, ec))
      throw usage_error("output shard " + found.string() + " (worker " + w.label() +
                        "'s) already exists; pass --resume to keep what an earlier run of this "
                        "worker published or --overwrite to replace it (nothing is ever deleted)");
  }
  return owner;
}

finalize_report finalize_shares(const quantize_options& o) {
  if (o.input.empty() || o.output.empty())
    throw usage_error("finalize: --model-dir and --output-dir are required");
  std::error_code ec;
  if (!fs::is_directory(o.output, ec))
    throw usage_error(
        "finalize: output directory " + o.output.string() +
        " does not exist; run the workers (`shardquant quantize --worker I/N`) first");
  held_locks held;
  held.locks.push_back(dir_lock::lock_or_throw(o.output, finalize_lock_name));
  // Nor may a single run write into this folder meanwhile.
  held.locks.push_back(dir_lock::lock_or_throw(o.output));

  finalize_report rep;
  std::vector<std::string> warnings;
  const warning_fn warn = [&](std::string w) { warnings.push_back(std::move(w)); };
  source_checkpoint src = open_source_checkpoint(o.input, warn, o.strict_side_files);
  const std::string sources_key = source_fingerprint(src);
  plan p = make_plan(std::move(src), plan_options_of(o));
  for (auto& w : p.warnings) warnings.push_back(w);
  const std::string options_key = shard_key(options_text(o, p.options), "");
  rep.shards = p.shards.size();

  // How many workers: --workers, else the one count the journals' names agree on.
  const auto found = journals_by_count(o.output);
  uint32_t n = o.worker_count;
  for (const auto& [count, names] : found)
    if ((n && count != n) || (!n && found.size() > 1)) {
      std::string list;
      for (const auto& [c, ns] : found)
        list += "\n  " + std::to_string(ns.size()) + " journal(s) of a " + std::to_string(c) +
                "-worker run, e.g. " + ns.front();
      throw usage_error("finalize: " + o.output.string() + " holds the journals of " +
                        (n ? "another run than --workers " + std::to_string(n)
                           : std::string("runs with different worker counts")) +
                        ":" + list + "\nfinish one run into its own output folder");
    }
  if (!n && !found.empty()) n = found.begin()->first;

  if (found.empty()) {
    // Nothing to check against: either finalize already ran (journals go last), or no worker did.
    bool complete = fs::is_regular_file(o.output / "model.safetensors.index.json", ec);
    std::string missing;
    const std::vector<uint32_t> owner = n ? shard_owners(p, n) : std::vector<uint32_t>{};
    for (uint32_t s = 0; s < p.shards.size(); ++s) {
      // A compressed shard's size is not known from the plan: it must exist.
      const fs::path out = o.output / published_shard_name(p.shards[s].relative_path, o);
      if (o.compress.empty() ? !has_size(out, p.shards[s].layout.file_size())
                             : !fs::is_regular_file(out, ec)) {
        complete = false;
        missing += "\n  " +
                   (n ? "worker " + worker_id{owner[s], n}.label() + " has not published "
                      : std::string("missing ")) +
                   published_shard_name(p.shards[s].relative_path, o);
      }
    }
    if (complete) {
      rep.already_done = true;
      rep.workers = n;
      rep.log.push_back(o.output.string() +
                        " is already finalized: every shard and the index are there, no worker "
                        "journal is left; nothing to do");
      return rep;
    }
    throw input_error(o.output.string(), "", input_error::no_offset,
                      "no worker journal (.shardquant-journal-worker-I-of-N) here: run the workers "
                      "(`shardquant quantize --worker I/N`) before finalize" +
                          missing);
  }
  rep.workers = n;

  // No worker may run while its shares are checked and its journal removed.
  for (uint32_t w = 0; w < n; ++w) {
    std::string holder;
    auto l = dir_lock::try_lock(o.output, worker_lock_name({w, n}), &holder);
    if (!l)
      throw usage_error("finalize: worker " + worker_id{w, n}.label() + " is still running (" +
                        holder + " holds " + (o.output / worker_lock_name({w, n})).string() +
                        "); wait for it to finish");
    held.locks.push_back(std::move(*l));
  }

  const std::vector<uint32_t> owner = shard_owners(p, n);
  const shard_inputs options_want = worker_options_inputs(sources_key, options_key, {0, n});
  std::vector<std::string> problems;
  std::vector<std::string> journal_names;
  for (uint32_t w = 0; w < n; ++w) {
    const worker_id id{w, n};
    const std::string name = worker_journal_name(id);
    std::optional<resume_journal> j;
    if (fs::exists(fs::symlink_status(o.output / name, ec))) {
      j.emplace(o.output, true, name);
      journal_names.push_back(name);
      if (const auto rec = j->inputs_of(worker_options_entry)) {
        if (rec->options != options_want.options) {
          problems.push_back("worker " + id.label() +
                             " ran with other options than this finalize (scheme, --quant-spec, "
                             "--exclude, --layer-scheme, --presharded, --convert, "
                             "--keep-excluded-as-original, --no-template-converters or the "
                             "shardquant version differ): pass finalize the workers' options, or "
                             "rerun the worker with these");
          continue;
        }
        if (rec->sources != options_want.sources) {
          problems.push_back("worker " + id.label() +
                             " read another source than this finalize (a source shard's size, "
                             "modification time or header, or config.json differ; every worker "
                             "must read the same files): rerun it with --resume");
          continue;
        }
      }
    }
    for (uint32_t s = 0; s < p.shards.size(); ++s) {
      if (owner[s] != w) continue;
      const auto& sh = p.shards[s];
      const std::string pub = published_shard_name(sh.relative_path, o);
      const std::string rel = escaped_name(pub);
      const bool compressed = !o.compress.empty();
      const std::string who = "worker " + id.label();
      const auto rec = j ? j->inputs_of(pub) : std::nullopt;
      if (!rec) {
        problems.push_back(who + " has not published " + rel);
        continue;
      }
      std::string why;
      if (rec->layout != shard_key(sh.layout.header_bytes(), "") ||
          (!compressed && rec->size != sh.layout.file_size()))
        why = "with another tensor layout than the plan";
      else if (rec->sources != sources_key)
        why =
            "from another source (a source shard's size, modification time or header, or "
            "config.json differ)";
      else if (rec->options != options_key)
        why = "with other options than this finalize";
      struct stat st {};
      if (why.empty()) {
        // A compressed shard is checked against the size its worker recorded.
        const uint64_t want = compressed ? rec->size : sh.layout.file_size();
        if (::lstat((o.output / pub).c_str(), &st) != 0 || !S_ISREG(st.st_mode))
          why = "but its file is gone";
        else if (static_cast<uint64_t>(st.st_size) != want)
          why = "but its file is " + std::to_string(st.st_size) + " bytes, not " +
                std::to_string(want);
      }
      if (!why.empty())
        problems.push_back(who + " published " + rel + " " + why + "; rerun it with --resume");
    }
  }
  if (!problems.empty()) {
    std::string text = std::to_string(problems.size()) + " problem(s) with the " +
                       std::to_string(n) + " workers' shares; nothing was written:";
    for (const auto& pr : problems) text += "\n  " + pr;
    throw input_error(o.output.string(), "", input_error::no_offset, text);
  }

  // Temporaries of killed workers (".NAME.sq-tmp-PID-N", io/file.h) are shardquant's own, and
  // no worker can be writing now: every worker lock is held.
  for (const auto& sh : p.shards) {
    remove_shard_temporaries(o.output / sh.relative_path);
    if (!o.compress.empty())
      remove_shard_temporaries(o.output / published_shard_name(sh.relative_path, o));
  }

  finalize_inputs fin = finalize_inputs_of(p, o);
  fin.warn = [&](std::string w) { warnings.push_back(std::move(w)); };
  finalize_output(fin);
  // Only now: until the index and config are written, a rerun needs the journals to check again.
  for (const auto& name : journal_names) resume_journal(o.output, false, name).discard();
  for (const auto& w : warnings) rep.log.push_back("warning: " + w);
  rep.log.push_back("finalized " + o.output.string() + ": " + std::to_string(p.shards.size()) +
                    " shard(s) from " + std::to_string(n) + " worker(s), " +
                    std::to_string(fin.weight_map.size()) + " tensors");
  return rep;
}

}  // namespace shardquant
