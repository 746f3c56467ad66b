// The pread/pwrite engine: a few threads run blocking system calls from a queue. Works wherever
// io_uring is refused (containers' seccomp profiles, old kernels). The row "pread" of
// io/io_engine.h.
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "io/async_io.h"
#include "io/async_io_internal.h"

namespace shardquant {

namespace {

class pread_engine final : public async_io {
 public:
  explicit pread_engine(unsigned threads)
      : workers_(*this, threads, [](const piece& p) {
          return io_result_of(p.is_write
                                  ? ::pwrite(p.fd, p.data, p.length, static_cast<off_t>(p.offset))
                                  : ::pread(p.fd, p.data, p.length, static_cast<off_t>(p.offset)));
        }) {}
  ~pread_engine() override { drain(); }
  io_engine_type type() const noexcept override { return io_engine_type::pread; }
  void drain_engine() override { (void)workers_.drain(); }

 protected:
  void submit(piece p) override { workers_.submit(std::move(p)); }

 private:
  piece_workers workers_;
};

}  // namespace

std::unique_ptr<async_io> make_pread_engine(unsigned queue_depth) {
  // Blocking calls need threads to overlap; a handful keeps a disk queue busy.
  return std::make_unique<pread_engine>(std::clamp(queue_depth, 1u, 8u));
}

}  // namespace shardquant
