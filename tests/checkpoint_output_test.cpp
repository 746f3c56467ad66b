// The output side of a checkpoint directory: output directory rules (formats.md §3.6, never
// deleting anything), the side-file copy (§3.3: recursive, symlinks followed only inside the model,
// hidden files, exclusions exactly as written, byte for byte) and the index writer (§3.4).
#include "io/checkpoint.h"

#include <sys/stat.h>

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "checkpoint_test_util.h"
#include "io/error.h"

using namespace shardquant;
using namespace sq_test;

namespace {

std::vector<std::string> listing(const fs::path& root) {
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it)
    out.push_back(fs::relative(it->path(), root).string() + (it->is_directory() ? "/" : ""));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("an output directory equal to or inside or around the source is refused") {
  temp_dir d;
  const fs::path src = d.path / "model";
  fs::create_directories(src / "sub");
  CHECK_THROWS_WITH_AS(prepare_output_dir(src, src, output_mode::overwrite),
                       doctest::Contains("is the source directory"), usage_error);
  CHECK_THROWS_WITH_AS(prepare_output_dir(src, src / ".." / "model" / "", output_mode::fresh),
                       doctest::Contains("is the source directory"), usage_error);
  CHECK_THROWS_WITH_AS(prepare_output_dir(src, src / "sub" / "out", output_mode::fresh),
                       doctest::Contains("lies inside the source directory"), usage_error);
  CHECK_THROWS_WITH_AS(prepare_output_dir(src / "sub", src, output_mode::overwrite),
                       doctest::Contains("source directory"), usage_error);
  fs::create_directory_symlink(src, d.path / "link");
  CHECK_THROWS_WITH_AS(prepare_output_dir(src, d.path / "link", output_mode::fresh),
                       doctest::Contains("is the source directory"), usage_error);
  CHECK_THROWS_WITH_AS(prepare_output_dir(src, d.path / "link" / "new", output_mode::fresh),
                       doctest::Contains("lies inside the source directory"), usage_error);
  CHECK_FALSE(fs::exists(src / "new"));
  CHECK_FALSE(fs::exists(src / "sub" / "out"));
  // A sibling whose name merely starts like the source is not inside it.
  prepare_output_dir(src, d.path / "model2", output_mode::fresh);
  CHECK(fs::is_directory(d.path / "model2"));
}

TEST_CASE(
    "a missing output directory is created and an empty one used but a non-empty one refused") {
  temp_dir d;
  const fs::path src = d.path / "src";
  fs::create_directories(src);
  prepare_output_dir(src, d.path / "a" / "b" / "out", output_mode::fresh);
  CHECK(fs::is_directory(d.path / "a" / "b" / "out"));
  prepare_output_dir(src, d.path / "a" / "b" / "out", output_mode::fresh);  // empty: used

  const fs::path out = d.path / "full";
  write_text(out / "keep.txt", "mine");
  write_text(out / "tokenizer.json", "old");
  CHECK_THROWS_WITH_AS(prepare_output_dir(src, out, output_mode::fresh),
                       doctest::Contains("is not empty; pass --overwrite"), usage_error);
  prepare_output_dir(src, out, output_mode::overwrite);
  prepare_output_dir(src, out, output_mode::resume);
  CHECK(read_text(out / "keep.txt") == "mine");  // nothing deleted in any mode
  CHECK(read_text(out / "tokenizer.json") == "old");

  write_text(d.path / "file", "x");
  CHECK_THROWS_WITH_AS(prepare_output_dir(src, d.path / "file", output_mode::overwrite),
                       doctest::Contains("exists and is not a directory"), usage_error);
}

TEST_CASE("side files are copied recursively byte for byte with the §3.3 exclusions") {
  temp_dir d;
  const fs::path src = d.path / "src";
  const fs::path out = d.path / "out";
  std::string binary;
  for (int i = 0; i < 3 * 1024 * 1024 + 17; ++i) binary.push_back(static_cast<char>(i * 131 + 7));
  write_text(src / "config.json", "{}");
  write_text(src / "model.safetensors.index.json", "{}");
  write_shard(src / "model-00001.safetensors", {"a"});
  write_shard(src / "sub" / "other.safetensors", {"b"});
  write_text(src / "README.md", "card");
  write_text(src / "Readme.MD", "card");
  write_text(src / "my_README_notes.md", "card");
  write_text(src / "readme.txt", "kept: not .md");
  write_text(src / "CHANGES.md", "kept: no readme");
  write_text(src / "docs" / "README.md", "kept: not top level");
  write_text(src / "sub" / "config.json", "kept: not top level");
  write_text(src / "sub" / "model.safetensors.index.json", "kept: not top level");
  write_text(src / "tokenizer.json", "{\"t\": 1}");
  write_text(src / ".gitattributes", "*.safetensors filter=lfs");
  write_text(src / ".hidden" / "deep" / "x.bin", binary);
  write_text(src / "tokenizer.model", binary);
  write_text(src / "modeling_x.py", "print(1)\n");
  ::chmod((src / "modeling_x.py").c_str(), 0755);
  fs::create_directories(src / "empty_dir");
  write_text(d.path / "outside" / "chat_template.jinja", "{{ x }}");
  write_text(d.path / "outside_dir" / "f.txt", "via dir link");
  fs::create_symlink(d.path / "outside" / "chat_template.jinja", src / "chat_template.jinja");
  fs::create_directory_symlink(d.path / "outside_dir", src / "linked_dir");
  fs::create_directory_symlink(src, src / "sub" / "loop");  // must not recurse forever

  std::vector<std::string> warns;
  fs::create_directories(out);
  const auto stats = copy_side_files(src, out, [&](std::string w) { warns.push_back(w); });
  // Links leading outside the model, or to any folder, are skipped and named (issue 11).
  CHECK(listing(out) == std::vector<std::string>{".gitattributes", ".hidden/", ".hidden/deep/",
                                                 ".hidden/deep/x.bin", "CHANGES.md", "docs/",
                                                 "docs/README.md", "empty_dir/", "modeling_x.py",
                                                 "readme.txt", "sub/", "sub/config.json",
                                                 "sub/model.safetensors.index.json",
                                                 "tokenizer.json", "tokenizer.model"});
  CHECK(stats.files == 10);
  CHECK(read_text(out / ".hidden" / "deep" / "x.bin") == binary);
  CHECK(read_text(out / "tokenizer.model") == binary);
  CHECK_FALSE(fs::exists(fs::symlink_status(out / "chat_template.jinja")));
  CHECK_FALSE(fs::exists(fs::symlink_status(out / "linked_dir")));
  CHECK((fs::status(out / "modeling_x.py").permissions() & fs::perms::owner_exec) !=
        fs::perms::none);
  REQUIRE(warns.size() == 3);
  CHECK(warns[0].find("chat_template.jinja") != std::string::npos);
  CHECK(warns[0].find("outside the model folder") != std::string::npos);
  CHECK(warns[1].find("linked_dir") != std::string::npos);
  CHECK(warns[1].find("folders are never followed") != std::string::npos);
  CHECK(warns[2].find("loop") != std::string::npos);
}

TEST_CASE("copying side files again replaces what shardquant writes and leaves other files alone") {
  temp_dir d;
  const fs::path src = d.path / "src";
  const fs::path out = d.path / "out";
  write_text(src / "tokenizer.json", "new");
  write_text(out / "tokenizer.json", "old");
  write_text(out / "unrelated.txt", "user file");
  write_text(out / "README.md", "user readme");
  (void)copy_side_files(src, out, {});
  CHECK(read_text(out / "tokenizer.json") == "new");
  CHECK(read_text(out / "unrelated.txt") == "user file");
  CHECK(read_text(out / "README.md") == "user readme");
  CHECK(listing(out) == std::vector<std::string>{"README.md", "tokenizer.json", "unrelated.txt"});
}

TEST_CASE("is_side_file applies the exclusions to top-level names only where the spec says so") {
  CHECK_FALSE(is_side_file("model.safetensors"));
  CHECK_FALSE(is_side_file("a/b/c.safetensors"));
  CHECK_FALSE(is_side_file("README.md"));
  CHECK_FALSE(is_side_file("readme-ja.Md"));
  CHECK_FALSE(is_side_file("config.json"));
  CHECK_FALSE(is_side_file("model.safetensors.index.json"));
  CHECK(is_side_file("README"));
  CHECK(is_side_file("README.mdx"));
  CHECK(is_side_file("x/README.md"));
  CHECK(is_side_file("x/config.json"));
  CHECK(is_side_file("model.safetensors.bak"));
  CHECK(is_side_file("Config.json"));
}

TEST_CASE(
    "the index is written with 4-space indent and sorted keys and raw UTF-8 and the given total") {
  temp_dir d;
  write_index_json(d.path,
                   {{"z.weight", "model-00002.safetensors"},
                    {"\xc3\xa9t\xc3\xa9", "sub/model-00001.safetensors"},
                    {"A", "model-00001.safetensors"},
                    {"a\"q", "model-00001.safetensors"}},
                   123456789012);
  const std::string expected =
      "{\n"
      "    \"metadata\": {\n"
      "        \"total_size\": 123456789012\n"
      "    },\n"
      "    \"weight_map\": {\n"
      "        \"A\": \"model-00001.safetensors\",\n"
      "        \"a\\\"q\": \"model-00001.safetensors\",\n"
      "        \"z.weight\": \"model-00002.safetensors\",\n"
      "        \"\xc3\xa9t\xc3\xa9\": \"sub/model-00001.safetensors\"\n"
      "    }\n"
      "}\n";
  CHECK(read_text(d.path / "model.safetensors.index.json") == expected);
  CHECK(std::distance(fs::directory_iterator(d.path), fs::directory_iterator()) == 1);
  CHECK(make_index_json({}, 0) ==
        "{\n    \"metadata\": {\n        \"total_size\": 0\n    },\n    \"weight_map\": {}\n}\n");
  CHECK_THROWS_AS((void)make_index_json({{"a", "x"}, {"a", "y"}}, 0), std::logic_error);
}
