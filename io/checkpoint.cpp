// Checkpoint directory handling (formats.md §3, §6.1 steps 2-4).
#include "io/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <system_error>

#include "io/error.h"
#include "io/file.h"
#include "io/json_text.h"
#include "io/zstd_source.h"

namespace shardquant {
namespace fs = std::filesystem;

namespace {

constexpr uint64_t no_offset = input_error::no_offset;
constexpr std::string_view index_name = "model.safetensors.index.json";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

struct tree_entry {
  std::string rel;  // '/'-separated
  fs::path path;
  bool is_dir = false;
  uint64_t size = 0;
  unsigned mode = 0644;
};

// Where a symbolic link in a source checkpoint may lead: the model folder itself, or the
// Hugging Face cache repository holding the snapshot (`.../models--ORG--NAME/`, with
// `snapshots/<rev>/` and `blobs/`), whose snapshot files are links into `../../blobs/`.
struct link_policy {
  fs::path model;  // canonical model folder
  fs::path repo;   // canonical cache repository, or empty
  bool strict = false;

  explicit link_policy(const fs::path& dir, bool strict_links) : strict(strict_links) {
    std::error_code ec;
    model = fs::canonical(dir, ec);
    if (ec) throw io_error(dir.string(), "resolve source directory", ec.value());
    for (fs::path p = model; p.has_relative_path(); p = p.parent_path()) {
      const fs::path parent = p.parent_path();
      if (p.filename() == "snapshots" && parent.filename().string().rfind("models--", 0) == 0 &&
          fs::is_directory(parent / "blobs", ec)) {
        repo = parent;
        break;
      }
      if (parent == p) break;
    }
  }

  static bool inside(const fs::path& outer, const fs::path& inner) {
    auto o = outer.begin();
    auto i = inner.begin();
    for (; o != outer.end(); ++o, ++i)
      if (i == inner.end() || *o != *i) return false;
    return true;
  }

  // Empty when the link at `p` may be followed to a regular file; otherwise why not.
  std::string refuse(const fs::path& p) const {
    std::error_code ec;
    const fs::path target = fs::canonical(p, ec);
    if (ec) return "a symbolic link that leads nowhere";
    struct stat st {};
    if (::stat(target.c_str(), &st) != 0) return "a symbolic link that leads nowhere";
    if (S_ISDIR(st.st_mode))
      return "a symbolic link to a folder (" + escaped_name(target.string()) +
             "); folders are never followed through a link";
    if (!S_ISREG(st.st_mode)) return "a symbolic link to something that is not a regular file";
    if (inside(model, target) || (!repo.empty() && inside(repo, target))) return {};
    return "a symbolic link to " + escaped_name(target.string()) + ", outside the model folder" +
           (repo.empty() ? std::string{} : " and its cache repository " + repo.string());
  }
};

// Depth-first listing of `root`, children in byte-wise name order. Real folders are entered;
// a symbolic link is followed only to a regular file the link_policy allows (anything else is
// skipped with a warning naming it, or an input_error when strict); sockets, fifos and devices
// are warned about and skipped.
class tree_walker {
 public:
  tree_walker(const warning_fn& warn, const link_policy& links) : warn_(warn), links_(links) {}
  void warn(std::string msg) const {
    if (warn_) warn_(std::move(msg));
  }

  std::vector<tree_entry> walk(const fs::path& root) {
    struct stat st {};
    if (::stat(root.c_str(), &st) != 0) throw io_error(root.string(), "stat", errno);
    out_.clear();
    visit(root, "");
    return std::move(out_);
  }

 private:
  void visit(const fs::path& dir, const std::string& rel) {
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      names.push_back(it->path().filename().string());
    if (ec) throw io_error(dir.string(), "list directory", ec.value());
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      const fs::path p = dir / name;
      const std::string r = rel.empty() ? name : rel + "/" + name;
      struct stat st {};
      if (::lstat(p.c_str(), &st) != 0) {
        warn(escaped_name(p.string()) + ": skipped (cannot stat)");
        continue;
      }
      if (S_ISLNK(st.st_mode)) {
        const std::string why = links_.refuse(p);
        if (!why.empty()) {
          if (links_.strict)
            throw input_error(p.string(), "", input_error::no_offset,
                              why + " (--strict-side-files)");
          warn(escaped_name(p.string()) + ": skipped (" + why + ")");
          continue;
        }
        if (::stat(p.c_str(), &st) != 0) {
          warn(escaped_name(p.string()) + ": skipped (cannot stat its target)");
          continue;
        }
      }
      if (S_ISDIR(st.st_mode)) {
        out_.push_back({r, p, true, 0, static_cast<unsigned>(st.st_mode & 07777)});
        visit(p, r);
      } else if (S_ISREG(st.st_mode)) {
        out_.push_back({r, p, false, static_cast<uint64_t>(st.st_size),
                        static_cast<unsigned>(st.st_mode & 07777)});
      } else {
        warn(escaped_name(p.string()) + ": skipped (not a regular file or directory)");
      }
    }
  }

  const warning_fn& warn_;
  const link_policy& links_;
  std::vector<tree_entry> out_;
};

// A weight_map shard path must stay inside the checkpoint (the output mirrors it).
bool is_safe_relative(std::string_view rel) {
  if (rel.empty() || rel.front() == '/') return false;
  size_t start = 0;
  while (start <= rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string_view::npos) slash = rel.size();
    const std::string_view part = rel.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

// A file the index names (or the index itself): no folder on its way may be a symbolic link,
// and the file may be one only where link_policy allows. Throws input_error naming `who`.
void check_source_file(const link_policy& links, const fs::path& dir, const std::string& rel,
                       const std::string& who) {
  fs::path p = dir;
  const fs::path r(rel);
  for (auto it = r.begin(); it != r.end(); ++it) {
    p /= *it;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) continue;
    const bool last = std::next(it) == r.end();
    if (!last)
      throw input_error(who, "", no_offset,
                        "\"" + escaped_name(rel) + "\" passes through the symbolic link " +
                            escaped_name(p.string()) +
                            " to a folder; folders are never followed "
                            "through a link");
    if (const std::string why = links.refuse(p); !why.empty())
      throw input_error(who, "", no_offset, "\"" + escaped_name(rel) + "\" is " + why);
  }
}

void copy_one_file(const tree_entry& e, const fs::path& dest) {
  file_handle in = file_handle::open(e.path, O_RDONLY);
  // The size is taken again from the open descriptor, so a file that changed since the
  // listing is still copied whole.
  const uint64_t size = in.size();
  atomic_file out(dest, e.mode & 0777);
  std::vector<std::byte> buf(std::min<uint64_t>(size, uint64_t{8} << 20));
  for (uint64_t off = 0; off < size;) {
    const auto n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    pread_all(in.get(), std::span<std::byte>(buf.data(), n), off, in.path());
    out.pwrite(off, std::span<const std::byte>(buf.data(), n));
    off += n;
  }
  out.commit(size);
}

bool contains(const fs::path& outer, const fs::path& inner) {
  auto o = outer.begin();
  auto i = inner.begin();
  for (; o != outer.end(); ++o, ++i) {
    if (o->empty() && std::next(o) == outer.end()) return true;  // trailing '/'
    if (i == inner.end() || *o != *i) return false;
  }
  return true;
}

void remove_quantization_config(json_value& v) {
  if (!v.is_object()) return;
  std::erase_if(v.members, [](const auto& m) { return m.first == "quantization_config"; });
  for (auto& m : v.members) remove_quantization_config(m.second);
}

}  // namespace

std::string source_quantization::quant_method() const {
  const json_value* m = config.find("quant_method");
  return m && m->is_string() ? m->text : std::string{};
}

const source_shard* source_checkpoint::shard_of(std::string_view tensor) const {
  auto it = tensor_shard.find(std::string(tensor));
  return it == tensor_shard.end() ? nullptr : &shards[it->second];
}

std::string read_json_file_text(const fs::path& file) {
  file_handle f = file_handle::open(file, O_RDONLY);
  struct stat st {};
  if (::fstat(f.get(), &st) != 0) throw io_error(file.string(), "fstat", errno);
  if (S_ISDIR(st.st_mode))
    throw input_error(file.string(), "", no_offset, "is a folder, not a JSON file");
  if (!S_ISREG(st.st_mode))
    throw input_error(file.string(), "", no_offset, "is not a regular file");
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > max_json_file_bytes)
    throw input_error(file.string(), "", no_offset,
                      "is " + std::to_string(size) + " bytes; JSON files of a checkpoint over " +
                          std::to_string(max_json_file_bytes >> 20) + " MiB are refused");
  std::string s(size, '\0');
  pread_all(f.get(), std::as_writable_bytes(std::span<char>(s.data(), s.size())), 0, f.path());
  return s;
}

json_value read_json_object_file(const fs::path& file) {
  return parse_json_object_text(read_json_file_text(file), file.string());
}

std::optional<source_quantization> find_source_quantization(const json_value& config,
                                                            std::string_view path) {
  auto fail = [&](const std::string& msg) {
    throw input_error(std::string(path), "", no_offset, msg);
  };
  if (const json_value* q = config.find("quantization_config");
      q && q->type != json_value::kind::null) {
    if (!q->is_object()) fail("\"quantization_config\" is not an object");
    return source_quantization{"quantization_config", *q};
  }
  std::optional<source_quantization> found;
  for (const auto& [key, child] : config.members) {
    if (!child.is_object()) continue;
    const json_value* q = child.find("quantization_config");
    if (!q || q->type == json_value::kind::null) continue;
    if (!q->is_object()) fail("\"" + key + ".quantization_config\" is not an object");
    if (found)
      fail("two source quantization configs: \"" + found->location + "\" and \"" + key +
           ".quantization_config\"");
    found = source_quantization{key + ".quantization_config", *q};
  }
  return found;
}

dtype resolve_model_dtype(const json_value& config, std::string_view path) {
  std::vector<std::pair<std::string, const json_value*>> candidates;
  if (const json_value* tc = config.find("text_config"); tc && tc->is_object()) {
    candidates.emplace_back("text_config.dtype", tc->find("dtype"));
    candidates.emplace_back("text_config.torch_dtype", tc->find("torch_dtype"));
  }
  candidates.emplace_back("torch_dtype", config.find("torch_dtype"));
  candidates.emplace_back("dtype", config.find("dtype"));
  for (const auto& [where, v] : candidates) {
    if (!v || v->type == json_value::kind::null) continue;
    if (v->is_string() && v->text.empty()) continue;
    if (!v->is_string()) return dtype::bf16;
    const std::string s = v->text;
    if (lower(s) == "auto" || s == "bfloat16") return dtype::bf16;
    if (s == "float16" || s == "half") return dtype::f16;
    if (s == "float32" || s == "float") return dtype::f32;
    if (s == "float64" || s == "double") return dtype::f64;
    throw input_error(std::string(path), "", no_offset,
                      "unsupported model dtype \"" + s + "\" in \"" + where +
                          "\" (expected bfloat16, float16, float32, float64 or auto)");
  }
  return dtype::bf16;
}

source_checkpoint open_source_checkpoint(const fs::path& dir, const warning_fn& warn_fn,
                                         bool strict_links) {
  const auto warn = [&](std::string msg) {
    if (warn_fn) warn_fn(std::move(msg));
  };
  source_checkpoint ck;
  ck.dir = dir;
  const link_policy links(dir, strict_links);
  const fs::path config_path = dir / "config.json";
  {
    struct stat st {};
    if (::lstat(config_path.c_str(), &st) != 0)
      throw input_error(config_path.string(), "", no_offset,
                        "config.json is missing (required in a checkpoint directory)");
    if (S_ISLNK(st.st_mode)) {
      if (const std::string why = links.refuse(config_path); !why.empty())
        throw input_error(config_path.string(), "", no_offset, "config.json is " + why);
      (void)::stat(config_path.c_str(), &st);
    }
    if (S_ISDIR(st.st_mode))
      throw input_error(config_path.string(), "", no_offset,
                        "config.json is a folder, not a file (a checkpoint needs the JSON file)");
    if (!S_ISREG(st.st_mode))
      throw input_error(config_path.string(), "", no_offset,
                        "config.json is not a regular file (a fifo, socket or device)");
  }
  ck.config_text = read_json_file_text(config_path);
  ck.config = parse_json_object_text(ck.config_text, config_path.string());
  ck.quantization = find_source_quantization(ck.config, config_path.string());
  ck.model_dtype = resolve_model_dtype(ck.config, config_path.string());

  tree_walker walker(warn_fn, links);
  std::vector<std::string> found;  // every *.safetensors(.zst) file, relative, sorted
  for (const auto& e : walker.walk(dir))
    if (!e.is_dir && (ends_with(e.rel, ".safetensors") || is_zstd_shard_name(e.rel)))
      found.push_back(e.rel);
  std::sort(found.begin(), found.end());
  // A shard present both plain and compressed is read plain; the twin is ignored.
  std::erase_if(found, [&](const std::string& rel) {
    if (!is_zstd_shard_name(rel) ||
        !std::binary_search(found.begin(), found.end(), plain_shard_name(rel)))
      return false;
    warn((dir / rel).string() + ": the plain shard beside it is read; this one is ignored");
    return true;
  });

  const fs::path index_path = dir / std::string(index_name);
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::error_code ec;
  ck.has_index = fs::exists(fs::symlink_status(index_path, ec));
  if (ck.has_index) check_source_file(links, dir, std::string(index_name), index_path.string());
  std::vector<std::string> shard_paths;
  if (ck.has_index) {
    const std::string ip = index_path.string();
    const json_value index = read_json_object_file(index_path);
    const json_value* wm = index.find("weight_map");
    if (!wm) throw input_error(ip, "", no_offset, "index has no \"weight_map\"");
    if (!wm->is_object()) throw input_error(ip, "", no_offset, "\"weight_map\" is not an object");
    std::set<std::string> listed;
    for (const auto& [name, file] : wm->members) {
      if (!file.is_string())
        throw input_error(ip, escaped_name(name), no_offset, "weight_map value is not a string");
      if (file.text.find('\0') != std::string::npos)
        throw input_error(ip, escaped_name(name), no_offset,
                          "shard path \"" + escaped_name(file.text) +
                              "\" contains a NUL byte (a file name cannot)");
      if (!is_safe_relative(file.text))
        throw input_error(ip, escaped_name(name), no_offset,
                          "shard path \"" + escaped_name(file.text) +
                              "\" is not a plain relative path inside the checkpoint");
      weight_map.emplace_back(name, file.text);
      listed.insert(file.text);
    }
    if (listed.empty()) throw input_error(ip, "", no_offset, "\"weight_map\" names no shard");
    std::set<std::string> on_disk;  // the listed shards as found: plain or compressed twin
    for (const auto& rel : listed) {
      check_source_file(links, dir, rel, ip);
      std::string file = rel;
      for (const std::string& twin : {plain_shard_name(rel), plain_shard_name(rel) + ".zst"})
        if (!fs::is_regular_file(dir / file, ec) && fs::is_regular_file(dir / twin, ec))
          file = twin;
      if (!fs::is_regular_file(dir / file, ec))
        throw input_error(ip, "", no_offset,
                          "shard \"" + escaped_name(rel) + "\" named in weight_map is missing");
      if (file != rel) check_source_file(links, dir, file, ip);
      if (on_disk.insert(file).second) shard_paths.push_back(file);
    }
    listed.insert(on_disk.begin(), on_disk.end());
    for (const auto& rel : found)
      if (!listed.count(rel))
        warn((dir / rel).string() + ": not named in " + std::string(index_name) + ", ignored");
  } else {
    if (found.empty())
      throw input_error(dir.string(), "", no_offset, "no *.safetensors file in the directory");
    for (const auto& rel : found)
      if (rel.find('/') != std::string::npos)
        warn((dir / rel).string() +
             ": shard below the top level (no index); processed, output keeps its sub-directory");
    shard_paths = found;
  }
  std::sort(shard_paths.begin(), shard_paths.end());

  for (const auto& rel : shard_paths) {
    source_shard s;
    s.rel_path = plain_shard_name(rel);  // the output keeps the plain name
    s.path = dir / rel;
    if (is_zstd_shard_name(rel)) {
      zstd_shard_info zi = read_zstd_shard_info(s.path);
      s.header = std::move(zi.header);
      s.compressed = true;
      s.zstd_window = zi.first_window;
    } else {
      s.header = read_safetensors_header(s.path);
    }
    const auto index = static_cast<uint32_t>(ck.shards.size());
    for (const auto& t : s.header.tensors) {
      auto [it, inserted] = ck.tensor_shard.emplace(t.name, index);
      if (!inserted)
        throw input_error(s.path.string(), t.name, s.header.data_start + t.begin,
                          "tensor also present in shard " + ck.shards[it->second].path.string());
    }
    ck.shards.push_back(std::move(s));
  }

  if (ck.has_index) {
    const std::string ip = index_path.string();
    std::set<std::string_view> mapped;
    for (const auto& [name, rel] : weight_map) {
      mapped.insert(name);
      const source_shard* s = ck.shard_of(name);
      if (!s || s->rel_path != plain_shard_name(rel))
        throw input_error(ip, name, no_offset,
                          "weight_map points to shard \"" + rel + "\", which does not contain it" +
                              (s ? " (found in \"" + s->rel_path + "\")" : std::string{}));
    }
    for (const auto& s : ck.shards)
      for (const auto& t : s.header.tensors)
        if (!mapped.count(t.name))
          warn(s.path.string() + ": tensor '" + t.name + "' is not in the index's weight_map" +
               " (processed anyway)");
  }
  return ck;
}

fs::path create_output_dir(const fs::path& source, const fs::path& output) {
  std::error_code ec;
  const fs::path src = fs::canonical(source, ec);
  if (ec) throw io_error(source.string(), "resolve source directory", ec.value());
  const fs::path out = fs::weakly_canonical(fs::absolute(output), ec);
  if (ec) throw io_error(output.string(), "resolve output directory", ec.value());
  if (out == src)
    throw usage_error("output directory " + output.string() + " is the source directory");
  if (contains(src, out))
    throw usage_error("output directory " + output.string() + " lies inside the source directory " +
                      source.string());
  if (contains(out, src))
    throw usage_error("source directory " + source.string() + " lies inside the output directory " +
                      output.string());
  if (!fs::exists(output, ec)) {
    // The topmost missing folder: what a run that publishes nothing removes again.
    fs::path top = fs::absolute(output).lexically_normal();
    if (!top.has_filename()) top = top.parent_path();
    while (top.has_parent_path() && top.parent_path() != top && !fs::exists(top.parent_path(), ec))
      top = top.parent_path();
    fs::create_directories(output, ec);
    if (ec) throw io_error(output.string(), "create directory", ec.value());
    return top;
  }
  if (!fs::is_directory(output, ec))
    throw usage_error("output path " + output.string() + " exists and is not a directory");
  return {};
}

void check_output_empty(const fs::path& output, output_mode mode,
                        const std::vector<std::string>& ignored) {
  if (mode != output_mode::fresh) return;
  std::error_code ec;
  bool empty = true;
  for (fs::directory_iterator it(output, ec), end; !ec && it != end; it.increment(ec))
    if (std::find(ignored.begin(), ignored.end(), it->path().filename().string()) == ignored.end())
      empty = false;
  if (ec) throw io_error(output.string(), "list directory", ec.value());
  if (!empty)
    throw usage_error("output directory " + output.string() +
                      " is not empty; pass --overwrite to replace the files shardquant writes "
                      "or --resume to continue an interrupted run (nothing is ever deleted)");
}

fs::path prepare_output_dir(const fs::path& source, const fs::path& output, output_mode mode) {
  fs::path created = create_output_dir(source, output);
  check_output_empty(output, mode, {});
  return created;
}

void remove_created_output_dirs(const fs::path& output, const fs::path& created_root) {
  if (created_root.empty()) return;
  fs::path p = fs::absolute(output).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  const fs::path top = created_root;
  // rmdir only: a folder that holds anything stays.
  for (;;) {
    if (::rmdir(p.c_str()) != 0) return;
    if (p == top || !p.has_parent_path() || p.parent_path() == p) return;
    p = p.parent_path();
  }
}

bool is_side_file(std::string_view rel) {
  const size_t slash = rel.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? rel : rel.substr(slash + 1);
  if (ends_with(name, ".safetensors") || is_zstd_shard_name(name)) return false;
  if (slash == std::string_view::npos) {
    const std::string l = lower(name);
    if (ends_with(l, ".md") && l.find("readme") != std::string::npos) return false;
    if (name == "config.json" || name == index_name) return false;
  }
  return true;
}

side_copy_stats copy_side_files(const fs::path& source, const fs::path& output,
                                const warning_fn& warn, bool strict_links) {
  side_copy_stats stats;
  const link_policy links(source, strict_links);
  tree_walker walker(warn, links);
  {
    std::error_code ec;
    fs::create_directories(output, ec);  // the output root is the caller's choice
    if (ec) throw io_error(output.string(), "create directory", ec.value());
  }
  for (const auto& e : walker.walk(source)) {
    const fs::path dest = output / e.rel;
    if (e.is_dir) {
      create_directories_inside(output, e.rel);
      ++stats.directories;
    } else if (is_side_file(e.rel)) {
      copy_one_file(e, dest);
      ++stats.files;
      stats.bytes += e.size;
      stats.copied.emplace_back(e.rel, e.size);
    }
  }
  return stats;
}

std::string make_index_json(std::vector<std::pair<std::string, std::string>> weight_map,
                            uint64_t total_size) {
  std::sort(weight_map.begin(), weight_map.end());
  for (size_t i = 1; i < weight_map.size(); ++i)
    if (weight_map[i].first == weight_map[i - 1].first)
      throw std::logic_error("index: tensor '" + weight_map[i].first + "' listed twice");
  json_value root;
  root.type = json_value::kind::object;
  json_value meta;
  meta.type = json_value::kind::object;
  json_value size;
  size.type = json_value::kind::number;
  size.text = std::to_string(total_size);
  meta.members.emplace_back("total_size", std::move(size));
  json_value wm;
  wm.type = json_value::kind::object;
  for (auto& [name, file] : weight_map) {
    json_value f;
    f.type = json_value::kind::string;
    f.text = std::move(file);
    wm.members.emplace_back(std::move(name), std::move(f));
  }
  root.members.emplace_back("metadata", std::move(meta));
  root.members.emplace_back("weight_map", std::move(wm));
  std::string out;
  write_json_pretty(out, root);
  out += '\n';
  return out;
}

void write_index_json(const fs::path& output_dir,
                      std::vector<std::pair<std::string, std::string>> weight_map,
                      uint64_t total_size) {
  write_file_atomic(output_dir / std::string(index_name),
                    make_index_json(std::move(weight_map), total_size));
}

std::string rewrite_config_json(std::string_view source_text,
                                const nlohmann::ordered_json& quantization_config,
                                std::string_view source_path) {
  json_value root = parse_json_object_text(source_text, source_path);
  remove_quantization_config(root);
  root.members.emplace_back("quantization_config", from_nlohmann(quantization_config));
  std::string out;
  write_json_pretty(out, root);
  out += '\n';
  return out;
}

void write_config_json(const fs::path& output_dir, std::string_view source_text,
                       const nlohmann::ordered_json& quantization_config,
                       std::string_view source_path) {
  write_file_atomic(output_dir / "config.json",
                    rewrite_config_json(source_text, quantization_config, source_path));
}

}  // namespace shardquant
