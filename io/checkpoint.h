// The checkpoint directory (formats.md §3): opening a source (config.json, the optional index,
// the shard set and its consistency rules, every shard header), the source quantization config
// and model dtype (§3.7), the output directory rules (§3.6), side-file copies (§3.3), and the two
// JSON files shardquant writes (the index §3.4, config.json §6.1 steps 2-4). No tensor data, no
// quantization math; warnings go to a caller-provided callback, never to stderr.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/json_value.h"
#include "io/safetensors.h"
#include "kernels/dtype.h"

namespace shardquant {

using warning_fn = std::function<void(std::string)>;

struct source_shard {
  std::string rel_path;        // relative to the checkpoint directory, '/'-separated; the plain
                               // name ("X.safetensors") also for a compressed shard
  std::filesystem::path path;  // the file read: directory / rel_path, or its ".zst" twin
  safetensors_header header;   // offsets and file_size of the plain (decompressed) bytes
  bool compressed = false;     // a zstd-compressed shard (io/zstd_source.h)
  uint64_t zstd_window = 0;    // its first frame's window
};

// §3.7: where the source quantization config was found and its value.
struct source_quantization {
  std::string location;  // "quantization_config" or e.g. "text_config.quantization_config"
  json_value config;     // the object, numbers as written
  [[nodiscard]] nlohmann::ordered_json json() const { return to_nlohmann(config); }
  // Its "quant_method" string, or "" when absent or not a string.
  [[nodiscard]] std::string quant_method() const;
};

struct source_checkpoint {
  std::filesystem::path dir;
  std::string config_text;  // config.json exactly as read
  json_value config;        // parsed, key order and number tokens kept
  bool has_index = false;
  std::vector<source_shard> shards;                        // sorted by rel_path, byte-wise
  std::unordered_map<std::string, uint32_t> tensor_shard;  // tensor name -> index into shards
  std::optional<source_quantization> quantization;         // nullopt: unquantized source
  dtype model_dtype = dtype::bf16;

  [[nodiscard]] const source_shard* shard_of(std::string_view tensor) const;
  // config.json as nlohmann (for reading values such as model_type).
  [[nodiscard]] nlohmann::ordered_json config_json() const { return to_nlohmann(config); }
};

// Opens a source checkpoint directory: reads config.json (required; duplicate keys -> error),
// applies the shard-set and consistency rules of §3.1, reads every shard header (all §2.3 checks)
// and resolves §3.7. Throws input_error / io_error; warnings go to `warn`.
// Symbolic links are followed only to a regular file inside the model folder or inside the
// Hugging Face cache repository that holds it (`.../models--ORG--NAME/`: snapshot files are
// links into its `blobs/`), never to a folder; another link is skipped with a warning naming it,
// or refused (input_error) with `strict_links`.
[[nodiscard]] source_checkpoint open_source_checkpoint(const std::filesystem::path& dir,
                                                       const warning_fn& warn,
                                                       bool strict_links = false);

// config.json and the index are refused above this size (a JSON file is read whole).
inline constexpr uint64_t max_json_file_bytes = uint64_t{64} << 20;
// Reads a JSON file of the checkpoint whole, refusing one over max_json_file_bytes or one that
// is not a regular file (input_error naming it).
[[nodiscard]] std::string read_json_file_text(const std::filesystem::path& file);

// Pieces of the above, usable on their own.
[[nodiscard]] json_value read_json_object_file(const std::filesystem::path& file);
[[nodiscard]] std::optional<source_quantization> find_source_quantization(const json_value& config,
                                                                          std::string_view path);
[[nodiscard]] dtype resolve_model_dtype(const json_value& config, std::string_view path);

// §3.6. Never deletes anything.
enum class output_mode { fresh, overwrite, resume };
// Throws usage_error when output equals the source or one lies inside the other, or when output
// exists and is not a directory. Creates it (and missing parents) when missing and returns the
// topmost folder it created (empty when `output` existed).
[[nodiscard]] std::filesystem::path create_output_dir(const std::filesystem::path& source,
                                                      const std::filesystem::path& output);
// In mode fresh, throws usage_error when `output` holds anything but the names in `ignored`
// (e.g. the run's own lock file). Call it with the output lock held.
void check_output_empty(const std::filesystem::path& output, output_mode mode,
                        const std::vector<std::string>& ignored);
// create_output_dir + check_output_empty(no names ignored).
std::filesystem::path prepare_output_dir(const std::filesystem::path& source,
                                         const std::filesystem::path& output, output_mode mode);
// Removes, with rmdir only (a folder holding anything stays), `output` and its parents up to
// `created_root` as returned by create_output_dir: for a run that published nothing.
void remove_created_output_dirs(const std::filesystem::path& output,
                                const std::filesystem::path& created_root);

// §3.3: copies every side file (recursively, byte for byte via a temporary name + rename, which
// replaces a link at the destination instead of writing through it) and creates every
// directory of the source tree under `output` (never through a symbolic link there). Links in
// the source follow the rule of open_source_checkpoint (skipped with a warning, or an
// input_error with `strict_links`).
struct side_copy_stats {
  uint64_t files = 0;
  uint64_t bytes = 0;
  uint64_t directories = 0;
  std::vector<std::pair<std::string, uint64_t>> copied;  // (relative path, bytes), copy order
};
side_copy_stats copy_side_files(const std::filesystem::path& source,
                                const std::filesystem::path& output, const warning_fn& warn,
                                bool strict_links = false);
// Whether a file at relative path `rel` ('/'-separated) is a side file to copy.
[[nodiscard]] bool is_side_file(std::string_view rel);

// §3.4: `weight_map` pairs (tensor name, relative shard path), any order; total_size = Σ bytes.
[[nodiscard]] std::string make_index_json(
    std::vector<std::pair<std::string, std::string>> weight_map, uint64_t total_size);
void write_index_json(const std::filesystem::path& output_dir,
                      std::vector<std::pair<std::string, std::string>> weight_map,
                      uint64_t total_size);

// §6.1 steps 2-4: the source config.json text with every "quantization_config" key removed
// (in objects at any depth, not inside arrays), `quantization_config` appended at the end of the
// top-level object, written with 4-space indentation and source number tokens kept.
// `source_path` names the file in errors (e.g. duplicate keys).
[[nodiscard]] std::string rewrite_config_json(std::string_view source_text,
                                              const nlohmann::ordered_json& quantization_config,
                                              std::string_view source_path);
// Writes rewrite_config_json(...) to output_dir/config.json atomically.
void write_config_json(const std::filesystem::path& output_dir, std::string_view source_text,
                       const nlohmann::ordered_json& quantization_config,
                       std::string_view source_path);

}  // namespace shardquant
