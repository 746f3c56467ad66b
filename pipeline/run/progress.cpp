// Progress sampler and its terminal / log-line rendering.
#include "pipeline/run/progress.h"

#include <unistd.h>

#include <cstdio>
#include <string>

namespace shardquant {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000.0 && u < 4) {
    b /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

progress_reporter::progress_reporter(const graph_counters& c, uint64_t bytes_total,
                                     uint64_t shards_total, bool to_stderr,
                                     std::function<void(const progress_sample&)> callback)
    : counters_(c),
      bytes_total_(bytes_total),
      shards_total_(shards_total),
      to_stderr_(to_stderr),
      tty_(to_stderr && ::isatty(STDERR_FILENO) == 1),
      callback_(std::move(callback)),
      start_(std::chrono::steady_clock::now()),
      last_line_(start_) {
  if (to_stderr_ || callback_) thread_ = std::thread([this] { loop(); });
}

progress_reporter::~progress_reporter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void progress_reporter::finish() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  const progress_sample s = sample(true);
  if (callback_) callback_(s);
  if (to_stderr_) draw(s, true);
}

progress_sample progress_reporter::sample(bool done) const {
  progress_sample s;
  s.bytes_done = counters_.bytes_done.load();
  s.bytes_total = bytes_total_;
  s.shards_done = counters_.shards_done.load();
  s.shards_total = shards_total_;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  s.done = done;
  return s;
}

void progress_reporter::draw(const progress_sample& s, bool final_line) {
  const double rate = s.seconds > 0 ? s.bytes_done / s.seconds : 0;
  const double frac = s.bytes_total ? double(s.bytes_done) / double(s.bytes_total) : 1.0;
  const double eta = rate > 0 ? (double(s.bytes_total) - double(s.bytes_done)) / rate : 0;
  char line[256];
  if (tty_) {
    constexpr int width = 30;
    std::string bar(width, ' ');
    for (int i = 0; i < int(frac * width + 0.5) && i < width; ++i) bar[i] = '#';
    std::snprintf(line, sizeof line,
                  "\r[%s] %5.1f%%  %s / %s  %.2f GB/s  ETA %.0fs  shards %llu/%llu\x1b[K%s",
                  bar.c_str(), frac * 100.0, human_bytes(s.bytes_done).c_str(),
                  human_bytes(s.bytes_total).c_str(), rate / 1e9, final_line ? 0.0 : eta,
                  (unsigned long long)s.shards_done, (unsigned long long)s.shards_total,
                  final_line ? "\n" : "");
  } else {
    std::snprintf(
        line, sizeof line,
        "progress: %s of %s (%.1f%%), %.2f GB/s, %.1fs elapsed, ETA %.0fs, shards %llu/%llu\n",
        human_bytes(s.bytes_done).c_str(), human_bytes(s.bytes_total).c_str(), frac * 100.0,
        rate / 1e9, s.seconds, final_line ? 0.0 : eta, (unsigned long long)s.shards_done,
        (unsigned long long)s.shards_total);
  }
  std::fputs(line, stderr);
  std::fflush(stderr);
}

void progress_reporter::loop() {
  std::unique_lock lock(mutex_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return stop_; })) {
    const progress_sample s = sample(false);
    if (callback_) callback_(s);
    if (!to_stderr_) continue;
    const auto now = std::chrono::steady_clock::now();
    if (tty_ || now - last_line_ >= std::chrono::seconds(5)) {
      last_line_ = now;
      draw(s, false);
    }
  }
}

}  // namespace shardquant
