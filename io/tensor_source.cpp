// The table of source kinds and what every kind shares (io/tensor_source.h).
#include "io/tensor_source.h"

#include <array>
#include <cstring>

#include "io/plain_source.h"
#include "io/zstd_source.h"

namespace shardquant {

namespace {

struct source_kind {
  const char* name;
  bool (*matches)(std::string_view file_name);
  std::shared_ptr<tensor_source> (*open)(const std::filesystem::path&, const source_open_options&);
  void (*drain)();  // waits for reads served outside async_io; null: none
};

bool any_name(std::string_view) {
  return true;
}

// First match wins; the plain kind takes everything else.
constexpr std::array<source_kind, 2> k_kinds{{
    {"zstd", is_zstd_shard_name, open_zstd_tensor_source, drain_zstd_reads},
    {"plain", any_name, open_plain_source, nullptr},
}};

}  // namespace

void source_range::gather(const std::byte* area, std::byte* dest) const noexcept {
  const std::byte* first = area + skip();
  for (uint64_t i = 0; i < runs; ++i)
    std::memcpy(dest + i * run_bytes, first + i * stride, run_bytes);
}

tensor_source::~tensor_source() = default;

std::shared_ptr<tensor_source> open_tensor_source(const std::filesystem::path& file,
                                                  const source_open_options& o) {
  const std::string name = file.filename().string();
  for (const auto& k : k_kinds)
    if (k.matches(name)) return k.open(file, o);
  throw std::logic_error("no source kind for " + file.string());
}

void drain_tensor_sources() {
  for (const auto& k : k_kinds)
    if (k.drain) k.drain();
}

}  // namespace shardquant
