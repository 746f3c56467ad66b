// Seekable zstd output and whole-file decompression (libzstd streaming API).
#include "io/zstd_writer.h"

#include <fcntl.h>
#include <zstd.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "io/error.h"
#include "io/file.h"
#include "io/zstd_source.h"

namespace shardquant {

namespace {

constexpr size_t chunk = size_t{4} << 20;

struct cctx_deleter {
  void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
};
struct dctx_deleter {
  void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};

void check(size_t r, const std::string& path, const char* what) {
  if (ZSTD_isError(r))
    throw std::runtime_error(path + ": zstd " + what + ": " + ZSTD_getErrorName(r));
}

}  // namespace

zstd_compress_options parse_compress_option(const std::string& text) {
  zstd_compress_options o;
  if (text == "zstd") return o;
  if (text.rfind("zstd:", 0) == 0) {
    const std::string l = text.substr(5);
    if (!l.empty() && l.size() <= 2 && std::all_of(l.begin(), l.end(), ::isdigit)) {
      o.level = std::stoi(l);
      if (o.level >= 1 && o.level <= ZSTD_maxCLevel()) return o;
    }
  }
  throw usage_error("--compress must be zstd or zstd:LEVEL (LEVEL 1-" +
                    std::to_string(ZSTD_maxCLevel()) + "), not '" + text + "'");
}

uint64_t write_zstd_seekable(int plain_fd, const std::string& plain_path, uint64_t plain_size,
                             std::vector<uint64_t> cuts, const std::filesystem::path& final_path,
                             const zstd_compress_options& options) {
  static std::mutex one_at_a_time;
  std::lock_guard serial(one_at_a_time);
  const std::string out_path = final_path.string();

  cuts.push_back(0);
  cuts.push_back(plain_size);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::erase_if(cuts, [&](uint64_t c) { return c > plain_size; });

  std::unique_ptr<ZSTD_CCtx, cctx_deleter> cctx(ZSTD_createCCtx());
  if (!cctx) throw std::bad_alloc();
  const unsigned workers =
      options.workers ? options.workers : std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
  check(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, options.level), out_path,
        "level");
  check(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1), out_path, "checksum");
  // A libzstd built without threads refuses nbWorkers: compress on this thread instead.
  (void)ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_nbWorkers, static_cast<int>(workers));

  atomic_file out(final_path);
  std::vector<std::byte> in_buf(chunk), out_buf(ZSTD_CStreamOutSize());
  std::vector<zstd_seek_entry> table;
  uint64_t written = 0;
  for (size_t f = 0; f + 1 < cuts.size(); ++f) {
    for (uint64_t begin = cuts[f]; begin < cuts[f + 1]; begin += zstd_max_frame_bytes) {
      const uint64_t end = std::min(cuts[f + 1], begin + zstd_max_frame_bytes);
      check(ZSTD_CCtx_setPledgedSrcSize(cctx.get(), end - begin), out_path, "frame size");
      const uint64_t frame_start = written;
      for (uint64_t pos = begin; pos < end;) {
        const auto n = static_cast<size_t>(std::min<uint64_t>(chunk, end - pos));
        pread_all(plain_fd, std::span<std::byte>(in_buf.data(), n), pos, plain_path);
        pos += n;
        const ZSTD_EndDirective mode = pos == end ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer ib{in_buf.data(), n, 0};
        for (;;) {
          ZSTD_outBuffer ob{out_buf.data(), out_buf.size(), 0};
          const size_t left = ZSTD_compressStream2(cctx.get(), &ob, &ib, mode);
          check(left, out_path, "compress");
          out.pwrite(written, std::span<const std::byte>(out_buf.data(), ob.pos));
          written += ob.pos;
          if (mode == ZSTD_e_end ? left == 0 : ib.pos == ib.size) break;
        }
      }
      table.push_back(
          {static_cast<uint32_t>(written - frame_start), static_cast<uint32_t>(end - begin)});
    }
  }
  if (plain_size == 0) {  // an empty file is still one (empty) frame
    check(ZSTD_CCtx_setPledgedSrcSize(cctx.get(), 0), out_path, "frame size");
    ZSTD_inBuffer ib{nullptr, 0, 0};
    ZSTD_outBuffer ob{out_buf.data(), out_buf.size(), 0};
    check(ZSTD_compressStream2(cctx.get(), &ob, &ib, ZSTD_e_end), out_path, "compress");
    out.pwrite(0, std::span<const std::byte>(out_buf.data(), ob.pos));
    written = ob.pos;
    table.push_back({static_cast<uint32_t>(ob.pos), 0});
  }
  const std::string seek = make_zstd_seek_table(table);
  out.pwrite(written, seek);
  written += seek.size();
  out.commit(written);
  return written;
}

uint64_t decompress_zstd_file(const std::filesystem::path& in, const std::filesystem::path& out) {
  const std::string in_path = in.string();
  file_handle f = file_handle::open(in, O_RDONLY);
  const uint64_t size = f.size();
  std::unique_ptr<ZSTD_DCtx, dctx_deleter> dctx(ZSTD_createDCtx());
  if (!dctx) throw std::bad_alloc();
  (void)ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 27);
  atomic_file dst(out);
  std::vector<std::byte> ibuf(ZSTD_DStreamInSize() * 8), obuf(chunk);
  uint64_t cpos = 0, written = 0;
  size_t last = 0;
  while (cpos < size) {
    const auto n = static_cast<size_t>(std::min<uint64_t>(ibuf.size(), size - cpos));
    pread_all(f.get(), std::span<std::byte>(ibuf.data(), n), cpos, in_path);
    ZSTD_inBuffer ib{ibuf.data(), n, 0};
    while (ib.pos < ib.size) {
      ZSTD_outBuffer ob{obuf.data(), obuf.size(), 0};
      last = ZSTD_decompressStream(dctx.get(), &ob, &ib);
      if (ZSTD_isError(last))
        throw input_error(in_path, "", cpos + ib.pos,
                          std::string("zstd: ") + ZSTD_getErrorName(last) + " (corrupt data?)");
      dst.pwrite(written, std::span<const std::byte>(obuf.data(), ob.pos));
      written += ob.pos;
    }
    cpos += n;
  }
  // Flush what the decoder still holds, then insist the last frame ended.
  for (;;) {
    ZSTD_inBuffer ib{nullptr, 0, 0};
    ZSTD_outBuffer ob{obuf.data(), obuf.size(), 0};
    const size_t r = ZSTD_decompressStream(dctx.get(), &ob, &ib);
    if (ZSTD_isError(r))
      throw input_error(in_path, "", size, std::string("zstd: ") + ZSTD_getErrorName(r));
    if (ob.pos == 0) break;  // nothing held back (a finished decoder now asks for a new frame)
    last = r;
    dst.pwrite(written, std::span<const std::byte>(obuf.data(), ob.pos));
    written += ob.pos;
  }
  if (last != 0 || size == 0)
    throw input_error(in_path, "", size, "file ends inside a zstd frame (truncated?)");
  dst.commit(written);
  return written;
}

}  // namespace shardquant
