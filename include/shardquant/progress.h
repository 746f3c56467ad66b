// Progress of a running quantization (public): the sample a progress callback receives. A leaf.
#pragma once

#include <cstdint>

namespace shardquant {

// One progress sample, delivered from a background thread about 4 times a second and once at
// the end (done == true).
struct progress_sample {
  uint64_t bytes_done = 0;   // input bytes fully processed (read, quantized and written)
  uint64_t bytes_total = 0;  // input bytes the run will process
  uint64_t shards_done = 0;
  uint64_t shards_total = 0;
  double seconds = 0;  // since the graph started
  bool done = false;
};

}  // namespace shardquant
