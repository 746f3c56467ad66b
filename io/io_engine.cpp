// The engine table: one row per engine (io/io_engine.h).
#include "io/io_engine.h"

#include <array>

#include "io/async_io.h"

namespace shardquant {

namespace {

constexpr std::array<io_engine_row, io_engine_count> k_engines{{
    {io_engine_type::uring, "uring", make_uring_engine},
    {io_engine_type::pread, "pread", make_pread_engine},
}};

// Rows are indexed by their type: a row out of place is a compile error, not a wrong engine.
constexpr bool rows_in_enum_order() {
  for (size_t i = 0; i < k_engines.size(); ++i)
    if (static_cast<size_t>(k_engines[i].type) != i) return false;
  return true;
}
static_assert(rows_in_enum_order(), "io_engine rows must follow io_engine_type's order");

}  // namespace

std::span<const io_engine_row> io_engines() noexcept {
  return k_engines;
}

const io_engine_row& io_engine_row_of(io_engine_type t) noexcept {
  return k_engines[static_cast<size_t>(t)];
}

const char* io_engine_type_name(io_engine_type t) noexcept {
  return io_engine_row_of(t).name;
}

std::optional<io_engine_type> find_io_engine(std::string_view name) noexcept {
  for (const auto& r : k_engines)
    if (name == r.name) return r.type;
  return std::nullopt;
}

std::string io_engine_names(std::string_view last) {
  std::string s;
  for (size_t i = 0; i < k_engines.size(); ++i) {
    if (i) s += i + 1 == k_engines.size() ? last : std::string_view(", ");
    s += k_engines[i].name;
  }
  return s;
}

}  // namespace shardquant
