// Progress while the graph runs: a sampler thread reads the graph's counters about 4 times a
// second, hands a progress_sample to the caller's callback, and draws on stderr: a one-line bar
// (bytes done, GB/s, ETA) that fits the terminal's width when stderr is a terminal, a plain line
// every 5 seconds otherwise, nothing with quiet. Sizes in binary units, rates in GB/s (10^9
// bytes per second, as the report's gb_per_s; README "Units"). No graph code.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
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

// Binary units, the program's one convention for sizes (1 KiB = 1024 bytes, as --memory-budget
// and --size read them): "512 B", "1.5 KiB", "12.3 GiB".
[[nodiscard]] std::string human_bytes(double bytes);

// The width of the terminal on `fd` (TIOCGWINSZ), else the COLUMNS environment variable, else 80.
[[nodiscard]] int terminal_columns(int fd);

// The terminal bar's visible text for `s`, at most `columns - 1` characters (the last column
// stays empty: writing it makes some terminals wrap). Fields are dropped, least useful first
// (shard count, rate, byte counts, ETA, then the bar itself), when the width is short; the
// caller adds "\r" before it and the erase-to-end sequence after it.
[[nodiscard]] std::string progress_bar_text(const progress_sample& s, int columns, bool final_line);

}  // namespace shardquant
