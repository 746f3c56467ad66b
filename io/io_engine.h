// The file I/O engines: the one definition of which engines exist, their names and how each is
// made (the public io_engine_kind of shardquant/options.h maps onto this table in one place,
// pipeline/run_options.cpp). A new engine is one new io/ file with its async_io subclass and its
// make function, plus its row here and in io_engine.cpp. Knows nothing about tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace shardquant {

class async_io;

enum class io_engine_type : uint8_t { uring, pread };
inline constexpr size_t io_engine_count = 2;

struct io_engine_row {
  io_engine_type type;
  const char* name;  // what --io-engine and the report say
  // Makes the engine with `queue_depth` requests in flight; throws io_error when the engine
  // cannot be set up on this machine (io_uring refused by seccomp, an old kernel).
  std::unique_ptr<async_io> (*make)(unsigned queue_depth);
};

// Every engine, in the order the automatic choice tries them (fastest first).
[[nodiscard]] std::span<const io_engine_row> io_engines() noexcept;
[[nodiscard]] const io_engine_row& io_engine_row_of(io_engine_type t) noexcept;
[[nodiscard]] const char* io_engine_type_name(io_engine_type t) noexcept;
// The engine named `name`; nullopt for an unknown name.
[[nodiscard]] std::optional<io_engine_type> find_io_engine(std::string_view name) noexcept;
// "uring or pread" (`last` joins the last two), for messages and help texts.
[[nodiscard]] std::string io_engine_names(std::string_view last = " or ");

// The engines' make functions (one io/ file each).
[[nodiscard]] std::unique_ptr<async_io> make_uring_engine(unsigned queue_depth);
[[nodiscard]] std::unique_ptr<async_io> make_pread_engine(unsigned queue_depth);

}  // namespace shardquant
