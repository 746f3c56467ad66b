// The errors every layer above kernels throws for bad input (formats.md §2.3, design.md §5):
// the classes are public API, declared in include/shardquant/errors.h (a leaf header that is
// installed); this header is the internal name for them, plus message helpers. Owns no I/O.
#pragma once

#include <string>
#include <string_view>

#include "shardquant/errors.h"

namespace shardquant {

// `name` fit for an error message: printable ASCII as is, every other byte (NUL, control
// characters, bytes of 0x7f and above) as \xNN, and a backslash doubled.
[[nodiscard]] std::string escaped_name(std::string_view name);

}  // namespace shardquant
