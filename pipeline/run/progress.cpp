// Progress sampler and its terminal / log-line rendering.
#include "pipeline/run/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace shardquant {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024.0 && u < 5) {
    b /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

int terminal_columns(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    char* end = nullptr;
    const long v = std::strtol(c, &end, 10);
    if (end != c && *end == '\0' && v > 0 && v < 100000) return static_cast<int>(v);
  }
  return 80;
}

namespace {

std::string fmt(const char* f, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

}  // namespace

std::string progress_bar_text(const progress_sample& s, int columns, bool final_line) {
  const double rate = s.seconds > 0 ? s.bytes_done / s.seconds : 0;
  const double frac = s.bytes_total ? double(s.bytes_done) / double(s.bytes_total) : 1.0;
  const double eta = rate > 0 ? (double(s.bytes_total) - double(s.bytes_done)) / rate : 0;
  // The fields after the bar, most useful first; trailing ones are dropped to fit.
  std::vector<std::string> fields = {
      fmt("%5.1f%%", frac * 100.0), "ETA " + fmt("%.0fs", final_line ? 0.0 : eta),
      human_bytes(double(s.bytes_done)) + " / " + human_bytes(double(s.bytes_total)),
      fmt("%.2f GB/s", rate / 1e9),
      "shards " + std::to_string(s.shards_done) + "/" + std::to_string(s.shards_total)};
  const int room = std::max(columns - 1, 0);
  auto joined = [&](size_t n) {
    std::string t;
    for (size_t i = 0; i < n; ++i) t += (i ? "  " : "") + fields[i];
    return t;
  };
  constexpr int max_bar = 30, min_bar = 8;
  // Keep as many fields as fit beside a bar of at least min_bar cells; with none that fit, try
  // without the bar.
  for (size_t n = fields.size(); n >= 1; --n) {
    const std::string t = joined(n);
    const int left = room - int(t.size()) - 3;  // "[" "]" and a space
    if (left >= min_bar) {
      const int width = std::min(left, max_bar);
      std::string bar(size_t(width), ' ');
      const int filled = std::min(int(frac * width + 0.5), width);
      for (int i = 0; i < filled; ++i) bar[size_t(i)] = '#';
      return "[" + bar + "] " + t;
    }
  }
  for (size_t n = fields.size(); n >= 1; --n) {
    const std::string t = joined(n);
    if (int(t.size()) <= room) return t;
  }
  return joined(1).substr(0, size_t(room));
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
  std::string line;
  if (tty_) {
    // Measured at every draw: the terminal may be resized during a run. A line that never
    // reaches the last column cannot wrap, so "\r" always returns to its start.
    line = "\r" + progress_bar_text(s, terminal_columns(STDERR_FILENO), final_line) + "\x1b[K" +
           (final_line ? "\n" : "");
  } else {
    const double rate = s.seconds > 0 ? s.bytes_done / s.seconds : 0;
    const double frac = s.bytes_total ? double(s.bytes_done) / double(s.bytes_total) : 1.0;
    const double eta = rate > 0 ? (double(s.bytes_total) - double(s.bytes_done)) / rate : 0;
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "progress: %s of %s (%.1f%%), %.2f GB/s, %.1fs elapsed, ETA %.0fs, shards "
                  "%llu/%llu\n",
                  human_bytes(s.bytes_done).c_str(), human_bytes(s.bytes_total).c_str(),
                  frac * 100.0, rate / 1e9, s.seconds, final_line ? 0.0 : eta,
                  (unsigned long long)s.shards_done, (unsigned long long)s.shards_total);
    line = buf;
  }
  std::fputs(line.c_str(), stderr);
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
