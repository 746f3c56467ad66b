// The plain source kind of the seam (io/tensor_source.h): an uncompressed safetensors shard read
// through the async I/O engine, O_DIRECT where the file system takes it. Its plain offsets are
// file offsets, so a read is the aligned superset of blocks straight into the read area.
#pragma once

#include <filesystem>
#include <memory>

#include "io/tensor_source.h"

namespace shardquant {

[[nodiscard]] std::shared_ptr<tensor_source> open_plain_source(const std::filesystem::path& file,
                                                               const source_open_options& o);

}  // namespace shardquant
