// The read and write node bodies: submit a job's reads (weight range, recovery companions) to
// their sources (io/tensor_source.h: plain shards through the async I/O engine, compressed ones
// through their stream) and its output writes (every piece at its precomputed offset in the
// shard's temporary file) to the async I/O engine. Completion comes back through a callback on the
// engine's thread; the graph turns it into a message (async_node gateway). No math, no graph types.
#pragma once

#include <exception>
#include <functional>

#include "io/async_io.h"
#include "stages/job.h"

namespace shardquant {

using stage_done = std::function<void(std::exception_ptr)>;

// Reads the job's input (and block-FP8 scale) into its token. `done` runs once.
void start_read(async_io& io, job& j, stage_done done);

// Records every output piece as written in the shard's writer (throws logic_error for a piece
// outside its tensor or written twice, before any byte moves), then writes the pieces. `done`
// runs once, after the last write completed.
void start_write(async_io& io, job& j, stage_done done);

}  // namespace shardquant
