// Compressed shards: seek table, header probe, streaming cursors, the read pool and the
// process-wide accounting of decompression contexts.
#include "io/zstd_source.h"

#include <fcntl.h>
#define ZSTD_STATIC_LINKING_ONLY  // frame header, DStream size estimate (exported by libzstd 1.5)
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <mutex>
#include <thread>

#include "io/error.h"
#include "io/file.h"

namespace shardquant {

namespace {

constexpr uint64_t no_offset = input_error::no_offset;
constexpr uint64_t max_window = uint64_t{128} << 20;  // zstd's own default decoding limit
constexpr uint64_t input_chunk = uint64_t{1} << 20;
constexpr uint64_t cache_entry_max = uint64_t{1} << 20;
constexpr size_t cache_entries = 2;

uint32_t le32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<uint32_t>(p[i]);
  return v;
}
void put_le32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
std::string mib(uint64_t b) {
  return std::to_string((b + (1 << 20) - 1) >> 20) + " MiB";
}
unsigned log2_floor(uint64_t v) {
  unsigned l = 0;
  while (v >>= 1) ++l;
  return l;
}

struct zstd_dctx_deleter {
  void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};
using dctx_ptr = std::unique_ptr<ZSTD_DCtx, zstd_dctx_deleter>;

struct request {
  uint64_t offset = 0, length = 0;
  std::byte* dest = nullptr;
  bool companion = false;
  std::string tensor;
  zstd_read_done done;
};

struct cursor {
  dctx_ptr dctx;  // allocated and freed under the registry's mutex only
  uint64_t bytes = 0;
  bool busy = false;
  uint64_t last_use = 0;
  bool valid = false;        // plain_pos and the buffers describe a real stream position
  uint64_t plain_pos = 0;    // plain offset of the next byte the cursor produces
  uint64_t c_next = 0;       // file offset of the next compressed byte to load
  uint64_t in_file_pos = 0;  // file offset of in[0]
  size_t in_size = 0, in_pos = 0;
  bool at_frame_end = true;
  std::vector<std::byte> in, scratch;
  struct cached {
    uint64_t offset;
    std::vector<std::byte> bytes;
  };
  std::deque<cached> cache;  // companion cursor: recent small reads (scales read per row range)
};

// Every cursor of every open source, the bytes their contexts hold and the limit.
struct registry {
  std::mutex mutex;
  std::condition_variable changed;
  zstd_read_limits limits;
  uint64_t bytes = 0;
  uint64_t tick = 0;
  std::list<cursor*> cursors;
  // Reads submitted and not yet completed (drain_zstd_reads).
  uint64_t in_flight = 0;
  std::condition_variable idle;

  void free_context(cursor& c) {  // mutex held
    c.dctx.reset();
    c.in = {};
    c.scratch = {};
    c.cache.clear();
    c.valid = false;
    bytes -= c.bytes;
    c.bytes = 0;
  }
};
registry& reg() {
  static registry r;
  return r;
}

// Threads that serve sources: a source with pending reads is one task; one thread drains it.
class read_pool {
 public:
  read_pool() {
    const unsigned n = std::clamp(std::thread::hardware_concurrency(), 2u, 16u);
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { work(); });
  }
  ~read_pool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};
read_pool& pool() {
  static read_pool p;
  return p;
}

}  // namespace

bool is_zstd_shard_name(std::string_view name) noexcept {
  return name.size() > zstd_shard_suffix.size() &&
         name.substr(name.size() - zstd_shard_suffix.size()) == zstd_shard_suffix;
}

std::string plain_shard_name(std::string_view name) {
  constexpr std::string_view zst = ".zst";
  if (name.size() >= zst.size() && name.substr(name.size() - zst.size()) == zst)
    name.remove_suffix(zst.size());
  return std::string(name);
}

std::string make_zstd_seek_table(const std::vector<zstd_seek_entry>& frames) {
  std::string body;
  for (const auto& f : frames) {
    put_le32(body, f.compressed_size);
    put_le32(body, f.decompressed_size);
  }
  put_le32(body, static_cast<uint32_t>(frames.size()));
  body.push_back(0);  // descriptor: no checksums
  put_le32(body, zstd_seekable_magic);
  std::string out;
  put_le32(out, zstd_skippable_magic);
  put_le32(out, static_cast<uint32_t>(body.size()));
  return out + body;
}

std::optional<std::vector<zstd_seek_entry>> read_zstd_seek_table(int fd, uint64_t file_size,
                                                                 const std::string& path) {
  if (file_size < 17) return std::nullopt;
  std::byte foot[9];
  pread_all(fd, foot, file_size - 9, path);
  if (le32(foot + 5) != zstd_seekable_magic) return std::nullopt;
  const uint64_t n = le32(foot);
  const auto desc = std::to_integer<unsigned>(foot[4]);
  const auto bad = [&](const std::string& why) {
    return input_error(path, "", file_size - 9, "zstd seek table: " + why);
  };
  if (desc & 0x7C) throw bad("reserved descriptor bits are set");
  const uint64_t entry = (desc & 0x80) ? 12 : 8;
  const uint64_t frame = 8 + n * entry + 9;
  if (frame > file_size) throw bad(std::to_string(n) + " entries do not fit in the file");
  std::vector<std::byte> t(frame);
  pread_all(fd, t, file_size - frame, path);
  if (le32(t.data()) != zstd_skippable_magic || le32(t.data() + 4) != frame - 8)
    throw bad("the skippable frame holding it does not start at byte " +
              std::to_string(file_size - frame));
  std::vector<zstd_seek_entry> out(n);
  uint64_t total = 0;
  for (uint64_t i = 0; i < n; ++i) {
    out[i].compressed_size = le32(t.data() + 8 + i * entry);
    out[i].decompressed_size = le32(t.data() + 12 + i * entry);
    total += out[i].compressed_size;
  }
  if (total + frame != file_size)
    throw bad("frames add up to " + std::to_string(total) + " compressed bytes, but " +
              std::to_string(file_size - frame) + " precede the table");
  return out;
}

void set_zstd_read_limits(const zstd_read_limits& limits) {
  auto& r = reg();
  std::lock_guard lock(r.mutex);
  r.limits = limits;
}

zstd_read_limits get_zstd_read_limits() {
  auto& r = reg();
  std::lock_guard lock(r.mutex);
  return r.limits;
}

uint64_t zstd_cursor_bytes(uint64_t window) {
  return ZSTD_estimateDStreamSize(static_cast<size_t>(window)) + input_chunk +
         ZSTD_DStreamOutSize() + cache_entries * cache_entry_max;
}

zstd_read_limits zstd_limits_for_budget(uint64_t budget, uint64_t min_window,
                                        const std::string& what) {
  if (min_window > max_window)
    throw input_error(what, "", no_offset,
                      "zstd window of " + mib(min_window) + " is above the " + mib(max_window) +
                          " shardquant accepts (recompress without --long=28 or higher)");
  zstd_read_limits l;
  const uint64_t by_budget = uint64_t{1} << log2_floor(std::max<uint64_t>(budget / 32, 1));
  l.window_limit = std::max(min_window, std::clamp(by_budget, uint64_t{1} << 20, max_window));
  l.window_limit = uint64_t{1} << log2_floor(l.window_limit);
  if (l.window_limit < min_window) l.window_limit <<= 1;
  const uint64_t one = zstd_cursor_bytes(l.window_limit);
  l.context_limit = 2 * one;  // the floor: one shard's two cursors, or every read restarts
  for (uint64_t n : {4, 2})
    if (n * one <= budget / 2) {
      l.context_limit = n * one;
      break;
    }
  return l;
}

zstd_shard_info read_zstd_shard_info(const std::filesystem::path& file) {
  const std::string path = file.string();
  file_handle f = file_handle::open(file, O_RDONLY);
  zstd_shard_info info;
  info.compressed_size = f.size();
  std::byte head[ZSTD_FRAMEHEADERSIZE_MAX] = {};
  const size_t head_len =
      static_cast<size_t>(std::min<uint64_t>(info.compressed_size, ZSTD_FRAMEHEADERSIZE_MAX));
  pread_all(f.get(), std::span<std::byte>(head, head_len), 0, path);
  ZSTD_frameHeader zfh{};
  const size_t r = ZSTD_getFrameHeader(&zfh, head, head_len);
  if (ZSTD_isError(r) || r > 0)
    throw input_error(path, "", 0,
                      r > 0 || info.compressed_size < 4
                          ? "file is too short for a zstd frame header"
                          : std::string("not a zstd file (") + ZSTD_getErrorName(r) + ")");
  info.first_window = zfh.frameType == ZSTD_frame ? zfh.windowSize : 0;
  if (info.first_window > max_window)
    throw input_error(path, "", 0,
                      "zstd window of " + mib(info.first_window) + " is above the " +
                          mib(max_window) + " shardquant accepts (recompress without --long=28 " +
                          "or higher)");
  std::optional<uint64_t> plain_size;
  if (auto table = read_zstd_seek_table(f.get(), info.compressed_size, path)) {
    info.seekable = true;
    uint64_t total = 0;
    for (const auto& e : *table) total += e.decompressed_size;
    plain_size = total;
  } else if (zfh.frameType == ZSTD_frame && zfh.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN) {
    plain_size = zfh.frameContentSize;
  }

  // The header: 8 bytes, then N more, decompressed with a private context (no pool, no limit
  // but the hard window maximum: this runs before the budget is known).
  auto src = zstd_source::open(file, true);
  std::vector<std::byte> buf(8);
  src->read_now(0, 8, buf.data());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<uint64_t>(buf[i]);
  if (n <= max_header_len) {
    buf.resize(8 + n);
    src->read_now(8, n, buf.data() + 8);
  }
  // The plain size, when no frame header says it, is what the header implies: parse with an
  // open-ended size, and the "trailing bytes" error's offset is where the data ends.
  const uint64_t open_ended = uint64_t{1} << 62;
  try {
    info.header = parse_safetensors_header(path, buf, plain_size.value_or(open_ended));
  } catch (const input_error& e) {
    if (plain_size && e.message().find("past the end of the file") == std::string::npos) throw;
    // A first frame shorter than the data (several frames): same rule.
    try {
      info.header = parse_safetensors_header(path, buf, open_ended);
    } catch (const input_error& e2) {
      if (e2.message().rfind("trailing bytes", 0) != 0) throw;
      info.header = parse_safetensors_header(path, buf, e2.offset());
    }
  }
  return info;
}

// ---------------------------------------------------------------------------------------------

struct zstd_source::state {
  std::string path;
  file_handle fd;
  uint64_t size = 0;
  // Known frame starts (plain offset, compressed offset), sorted; (0, 0) always.
  std::vector<std::pair<uint64_t, uint64_t>> frames{{0, 0}};
  std::mutex mutex;
  std::deque<request> pending;
  bool scheduled = false;
  bool probe = false;  // header probe before the limits are set: zstd's own window maximum
  uint64_t plain_size = 0;
  cursor cursors[2];

  state() {
    auto& r = reg();
    std::lock_guard lock(r.mutex);
    for (auto& c : cursors) r.cursors.push_back(&c);
  }
  ~state() {
    auto& r = reg();
    std::lock_guard lock(r.mutex);
    for (auto& c : cursors) {
      if (c.dctx) r.free_context(c);
      r.cursors.remove(&c);
    }
    r.changed.notify_all();
  }

  // Marks `c` busy and gives it a context, evicting idle cursors of any source (least recently
  // used first) to stay under the limit, waiting only while every live context is busy.
  void acquire(cursor& c) {
    auto& r = reg();
    std::unique_lock lock(r.mutex);
    c.busy = true;
    c.last_use = ++r.tick;
    if (c.dctx) return;
    const uint64_t need = zstd_cursor_bytes(r.limits.window_limit);
    while (r.bytes > 0 && r.bytes + need > r.limits.context_limit) {
      cursor* victim = nullptr;
      for (cursor* o : r.cursors)
        if (o->dctx && !o->busy && (!victim || o->last_use < victim->last_use)) victim = o;
      if (victim)
        r.free_context(*victim);
      else
        r.changed.wait(lock);
    }
    c.dctx.reset(ZSTD_createDCtx());
    if (!c.dctx) throw std::bad_alloc();
    (void)ZSTD_DCtx_setParameter(
        c.dctx.get(), ZSTD_d_windowLogMax,
        static_cast<int>(log2_floor(probe ? max_window : r.limits.window_limit)));
    c.in.resize(input_chunk);
    c.scratch.resize(ZSTD_DStreamOutSize());
    c.valid = false;
    c.bytes = need;
    r.bytes += need;
  }
  void release(cursor& c) {
    auto& r = reg();
    std::lock_guard lock(r.mutex);
    c.busy = false;
    r.changed.notify_all();
  }

  [[noreturn]] void fail(const cursor& c, const request& q, const std::string& why) const {
    throw input_error(path, q.tensor, c.in_file_pos + c.in_pos, why);
  }

  void note_frame(uint64_t plain, uint64_t compressed) {
    const std::pair<uint64_t, uint64_t> f{plain, compressed};
    auto it = std::lower_bound(frames.begin(), frames.end(), f);
    if (it == frames.end() || *it != f) frames.insert(it, f);
  }

  void restart(cursor& c, std::pair<uint64_t, uint64_t> frame) {
    (void)ZSTD_DCtx_reset(c.dctx.get(), ZSTD_reset_session_only);
    c.plain_pos = frame.first;
    c.c_next = frame.second;
    c.in_file_pos = frame.second;
    c.in_size = c.in_pos = 0;
    c.at_frame_end = true;
    c.valid = true;
  }

  // Produces `n` plain bytes from the cursor into `dest` (nullptr: discard them).
  void produce(cursor& c, const request& q, std::byte* dest, uint64_t n) {
    while (n > 0) {
      if (c.in_pos == c.in_size) {
        if (c.c_next >= size) {
          if (!c.at_frame_end) fail(c, q, "file ends inside a zstd frame (truncated?)");
          fail(c, q,
               "the decompressed data ends at byte " + std::to_string(c.plain_pos) +
                   ", before the tensor's bytes [" + std::to_string(q.offset) + ", " +
                   std::to_string(q.offset + q.length) +
                   ") that the header promises (truncated or modified?)");
        }
        const auto len = static_cast<size_t>(std::min<uint64_t>(c.in.size(), size - c.c_next));
        pread_all(fd.get(), std::span<std::byte>(c.in.data(), len), c.c_next, path);
        c.in_file_pos = c.c_next;
        c.c_next += len;
        c.in_size = len;
        c.in_pos = 0;
      }
      ZSTD_inBuffer ib{c.in.data(), c.in_size, c.in_pos};
      ZSTD_outBuffer ob{dest ? dest : c.scratch.data(),
                        static_cast<size_t>(dest ? n : std::min<uint64_t>(n, c.scratch.size())), 0};
      const size_t ret = ZSTD_decompressStream(c.dctx.get(), &ob, &ib);
      if (ZSTD_isError(ret)) {
        c.valid = false;
        if (ZSTD_getErrorCode(ret) == ZSTD_error_frameParameter_windowTooLarge)
          fail(c, q,
               "a zstd frame needs a window above " + mib(get_zstd_read_limits().window_limit) +
                   ", the limit for this memory budget (budget / 32, at least the first "
                   "frame's window, at most 128 MiB): raise --memory-budget");
        fail(c, q, std::string("zstd: ") + ZSTD_getErrorName(ret) + " (corrupt data?)");
      }
      c.in_pos = ib.pos;
      c.plain_pos += ob.pos;
      if (dest) dest += ob.pos;
      n -= ob.pos;
      c.at_frame_end = ret == 0;
      if (ret == 0) note_frame(c.plain_pos, c.in_file_pos + c.in_pos);
    }
  }

  // At the end of the plain data: the rest of the file may hold only frame ends (checksums) and
  // skippable frames; decoding them verifies the checksums.
  void finish(cursor& c, const request& q) {
    for (;;) {
      if (c.in_pos == c.in_size) {
        if (c.c_next >= size) {
          if (!c.at_frame_end) fail(c, q, "file ends inside a zstd frame (truncated?)");
          return;
        }
        const auto len = static_cast<size_t>(std::min<uint64_t>(c.in.size(), size - c.c_next));
        pread_all(fd.get(), std::span<std::byte>(c.in.data(), len), c.c_next, path);
        c.in_file_pos = c.c_next;
        c.c_next += len;
        c.in_size = len;
        c.in_pos = 0;
      }
      ZSTD_inBuffer ib{c.in.data(), c.in_size, c.in_pos};
      ZSTD_outBuffer ob{c.scratch.data(), c.scratch.size(), 0};
      const size_t ret = ZSTD_decompressStream(c.dctx.get(), &ob, &ib);
      if (ZSTD_isError(ret)) {
        c.valid = false;
        fail(c, q, std::string("zstd: ") + ZSTD_getErrorName(ret) + " (corrupt data?)");
      }
      c.in_pos = ib.pos;
      if (ob.pos) {
        c.valid = false;
        fail(c, q,
             "the decompressed data goes on past byte " + std::to_string(plain_size) +
                 ", where the safetensors header says the file ends");
      }
      c.at_frame_end = ret == 0;
    }
  }

  void serve(const request& q) {
    cursor& c = cursors[q.companion ? 1 : 0];
    acquire(c);  // first: an idle cursor's cache may be evicted by another thread
    for (const auto& e : c.cache)
      if (e.offset <= q.offset && q.offset + q.length <= e.offset + e.bytes.size()) {
        std::memcpy(q.dest, e.bytes.data() + (q.offset - e.offset), q.length);
        release(c);
        return;
      }
    try {
      auto it = std::upper_bound(frames.begin(), frames.end(),
                                 std::pair<uint64_t, uint64_t>{q.offset, ~uint64_t{0}});
      const auto frame = *std::prev(it);
      if (!c.valid || c.plain_pos > q.offset || c.plain_pos < frame.first) restart(c, frame);
      produce(c, q, nullptr, q.offset - c.plain_pos);
      produce(c, q, q.dest, q.length);
      if (plain_size && c.plain_pos == plain_size) finish(c, q);
      if (q.companion && q.length <= cache_entry_max) {
        if (c.cache.size() == cache_entries) c.cache.pop_front();
        c.cache.push_back({q.offset, std::vector<std::byte>(q.dest, q.dest + q.length)});
      }
    } catch (...) {
      release(c);
      throw;
    }
    release(c);
  }
};

namespace {

void serve_pending(const std::shared_ptr<zstd_source::state>& s) {
  for (;;) {
    request q;
    {
      std::lock_guard lock(s->mutex);
      if (s->pending.empty()) {
        s->scheduled = false;
        return;
      }
      q = std::move(s->pending.front());
      s->pending.pop_front();
    }
    std::exception_ptr e;
    try {
      s->serve(q);
    } catch (...) {
      e = std::current_exception();
    }
    q.done(e);
    auto& r = reg();
    std::lock_guard lock(r.mutex);
    if (--r.in_flight == 0) r.idle.notify_all();
  }
}

}  // namespace

std::shared_ptr<zstd_source> zstd_source::open(const std::filesystem::path& file, bool probe,
                                               uint64_t plain_size) {
  auto s = std::make_shared<state>();
  s->probe = probe;
  s->plain_size = plain_size;
  s->path = file.string();
  s->fd = file_handle::open(file, O_RDONLY);
  s->size = s->fd.size();
  if (auto table = read_zstd_seek_table(s->fd.get(), s->size, s->path)) {
    uint64_t plain = 0, comp = 0;
    for (const auto& e : *table) {
      plain += e.decompressed_size;
      comp += e.compressed_size;
      s->frames.emplace_back(plain, comp);
    }
    std::sort(s->frames.begin(), s->frames.end());
  }
  return std::shared_ptr<zstd_source>(new zstd_source(std::move(s)));
}

zstd_source::~zstd_source() = default;

const std::string& zstd_source::path() const noexcept {
  return s_->path;
}

void zstd_source::read(uint64_t offset, uint64_t length, std::byte* dest, bool companion,
                       std::string tensor, zstd_read_done done) {
  {
    auto& r = reg();
    std::lock_guard lock(r.mutex);
    ++r.in_flight;
  }
  bool post = false;
  {
    std::lock_guard lock(s_->mutex);
    s_->pending.push_back({offset, length, dest, companion, std::move(tensor), std::move(done)});
    post = !s_->scheduled;
    s_->scheduled = true;
  }
  if (post) pool().post([s = s_] { serve_pending(s); });
}

void zstd_source::read_now(uint64_t offset, uint64_t length, std::byte* dest, bool companion,
                           std::string tensor) {
  std::promise<void> p;
  auto f = p.get_future();
  read(offset, length, dest, companion, std::move(tensor), [&p](std::exception_ptr e) {
    if (e)
      p.set_exception(e);
    else
      p.set_value();
  });
  f.get();
}

namespace {

class zstd_tensor_source final : public tensor_source {
 public:
  explicit zstd_tensor_source(std::shared_ptr<zstd_source> z) : z_(std::move(z)) {}
  const std::string& path() const noexcept override { return z_->path(); }
  std::string_view kind() const noexcept override { return "zstd"; }
  void read(async_io&, uint64_t offset, uint64_t length, std::byte* area, bool companion,
            const std::string& tensor, io_callback done) override {
    z_->read(offset, length, area + read_skip(offset), companion, tensor, std::move(done));
  }
  void read_now(uint64_t offset, uint64_t length, std::byte* dest,
                const std::string& tensor) override {
    z_->read_now(offset, length, dest, false, tensor);
  }

 private:
  std::shared_ptr<zstd_source> z_;
};

}  // namespace

std::shared_ptr<tensor_source> open_zstd_tensor_source(const std::filesystem::path& file,
                                                       const source_open_options& o) {
  return std::make_shared<zstd_tensor_source>(zstd_source::open(file, false, o.plain_size));
}

void drain_zstd_reads() {
  auto& r = reg();
  std::unique_lock lock(r.mutex);
  r.idle.wait(lock, [&] { return r.in_flight == 0; });
}

}  // namespace shardquant
