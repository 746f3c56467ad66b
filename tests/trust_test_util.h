// Helpers shared by the trust suites (resume, locks, links, stops): a small generated llama
// checkpoint, quantize options for it, and a listing of a folder tree with every file's bytes.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "checkpoint_test_util.h"
#include "pipeline/api.h"
#include "synthetic_source_util.h"

namespace sq_trust {

namespace fs = std::filesystem;

// A llama checkpoint of about `size` bytes in shards of `shard` bytes (several shards).
inline void make_llama(const fs::path& out, uint64_t size = 6ull << 20, uint64_t shard = 2ull << 20,
                       uint64_t seed = 1) {
  (void)sq_test::make_llama(out, size, shard, seed);
}

inline shardquant::quantize_options options(const fs::path& in, const fs::path& out,
                                            const std::string& scheme = "mxfp4") {
  shardquant::quantize_options o;
  o.input = in;
  o.output = out;
  o.scheme = scheme;
  o.quiet = true;
  o.memory_budget = 64ull << 20;
  return o;
}

// Every entry under `dir` (not following links): relative path -> file bytes, "<dir>" for a
// folder, "-> TARGET" for a symbolic link.
inline std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> r;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) return r;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string rel = it->path().lexically_relative(dir).generic_string();
    if (it->is_symlink())
      r[rel] = "-> " + fs::read_symlink(it->path()).string();
    else if (it->is_directory())
      r[rel] = "<dir>";
    else
      r[rel] = sq_test::read_text(it->path());
  }
  return r;
}

}  // namespace sq_trust
