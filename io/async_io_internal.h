// Internal to the async I/O engines (io/async_io.cpp and the engine files): a request (one read
// or write, split into pieces), and threads that run blocking piece transfers from a queue (the
// pread engine's workers and the copy threads of memory-backed files, io_file::memory_backed()).
// Not for use outside io/.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "io/async_io.h"

namespace shardquant {

// One read or write of the caller: its pieces count down to the one callback.
struct async_io::request {
  std::shared_ptr<io_file> file;
  io_callback done;
  std::atomic<uint64_t> pending{0};
  std::mutex error_mutex;
  std::exception_ptr error;

  void fail(std::exception_ptr e) {
    std::lock_guard lock(error_mutex);
    if (!error) error = std::move(e);
  }
  // Called when one piece finishes for good; the last one runs the callback.
  void piece_finished() {
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) done(error);
  }
};

// A blocking call's result as complete() takes it: bytes, or -errno.
[[nodiscard]] inline int64_t io_result_of(ssize_t n) {
  return n < 0 ? -static_cast<int64_t>(errno) : static_cast<int64_t>(n);
}

class async_io::piece_workers {
 public:
  // run(p) does the transfer and returns bytes or -errno; complete() is called with it.
  piece_workers(async_io& owner, unsigned threads, std::function<int64_t(const piece&)> run)
      : owner_(owner), run_(std::move(run)) {
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  }
  ~piece_workers() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
  }
  piece_workers(const piece_workers&) = delete;
  piece_workers& operator=(const piece_workers&) = delete;

  void submit(piece p) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(p));
    }
    ready_.notify_one();
  }
  // Waits until no piece is queued or running; true if it had to wait.
  bool drain() {
    std::unique_lock lock(mutex_);
    if (queue_.empty() && busy_ == 0) return false;
    idle_.wait(lock, [this] { return queue_.empty() && busy_ == 0; });
    return true;
  }

 private:
  void work() {
    for (;;) {
      piece p;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        p = std::move(queue_.front());
        queue_.pop_front();
        ++busy_;
      }
      owner_.complete(p, run_(p));
      {
        std::lock_guard lock(mutex_);
        --busy_;
        if (queue_.empty() && busy_ == 0) idle_.notify_all();
      }
    }
  }

  async_io& owner_;
  std::function<int64_t(const piece&)> run_;
  std::mutex mutex_;
  std::condition_variable ready_, idle_;
  std::deque<piece> queue_;
  unsigned busy_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace shardquant
