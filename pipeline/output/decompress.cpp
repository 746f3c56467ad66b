// Whole-checkpoint decompression: shards first, the index last (so a loader never sees an index
// naming a plain file that is not there yet).
#include "pipeline/output/decompress.h"

#include <algorithm>
#include <string>
#include <vector>

#include "io/error.h"
#include "io/file.h"
#include "io/json_value.h"
#include "io/zstd_source.h"
#include "io/zstd_writer.h"

namespace shardquant {

decompress_result decompress_checkpoint(const std::filesystem::path& dir, bool overwrite) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw usage_error(dir.string() + " is not a directory");
  std::vector<fs::path> zst;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec) && is_zstd_shard_name(it->path().filename().string()))
      zst.push_back(it->path());
  if (ec) throw io_error(dir.string(), "list directory", ec.value());
  std::sort(zst.begin(), zst.end());
  for (const auto& z : zst) {
    const fs::path plain = plain_shard_name(z.string());
    if (!overwrite && fs::exists(plain, ec))
      throw usage_error(plain.string() + " exists; pass --overwrite to replace it");
  }
  decompress_result r;
  for (const auto& z : zst) {
    r.plain_bytes += decompress_zstd_file(z, plain_shard_name(z.string()));
    ++r.shards;
  }
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index, ec)) {
    json_value root = parse_json_object_text(read_file(index), index.string());
    bool changed = false;
    for (auto& [key, v] : root.members)
      if (key == "weight_map" && v.is_object())
        for (auto& [name, file] : v.members)
          if (file.is_string() && is_zstd_shard_name(file.text)) {
            file.text = plain_shard_name(file.text);
            changed = true;
          }
    if (changed) {
      std::string out;
      write_json_pretty(out, root);
      out += '\n';
      write_file_atomic(index, out);
      r.index_rewritten = true;
    }
  }
  return r;
}

}  // namespace shardquant
