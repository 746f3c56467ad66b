// Progress while the graph runs: a sampler thread reads the graph's counters about 4 times a
// second, hands a progress_sample to the caller's callback, and draws on stderr: a one-line bar
// (bytes done, GB/s, ETA) when stderr is a terminal, a plain line every 5 seconds otherwise,
// nothing with quiet. No graph code.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "pipeline/api.h"
#include "pipeline/run/graph.h"

namespace shardquant {

class progress_reporter {
 public:
  progress_reporter(const graph_counters& c, uint64_t bytes_total, uint64_t shards_total,
                    bool to_stderr, std::function<void(const progress_sample&)> callback);
  ~progress_reporter();  // stops without the final sample
  // Stops the thread and emits the final sample (done = true) and the final line.
  void finish();

 private:
  void loop();
  progress_sample sample(bool done) const;
  void draw(const progress_sample& s, bool final_line);

  const graph_counters& counters_;
  uint64_t bytes_total_, shards_total_;
  bool to_stderr_, tty_;
  std::function<void(const progress_sample&)> callback_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_line_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// "12.3 GB" style.
[[nodiscard]] std::string human_bytes(double bytes);

}  // namespace shardquant
