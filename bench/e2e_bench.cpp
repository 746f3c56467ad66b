// End-to-end benchmark: first the I/O floor of this checkpoint on this disk (a pure-I/O pass with
// the same engine and O_DIRECT: read every input shard byte and, concurrently, write as many
// bytes as the quantized output will hold into a scratch file next to the output), then the real
// quantization run through the public API. Prints GB/s of both and the ratio of their times
// (1.00 = quantization costs nothing beyond moving the bytes). A program, not a test.
//
//   e2e_bench --model-dir SRC --output-dir OUT [--scheme mxfp4] [--device cpu|cuda[:N]]
//             [--memory-budget 8G] [--streams N] [--io-engine auto|uring|pread]
//             [--skip-floor] [--skip-run] [--keep-output] [--json FILE] [--zstd [LEVEL]]
//
// --zstd adds the compressed rows (issue 19), after the plain run, on the same disk: the source
// compressed shard by shard with shardquant's seekable writer at LEVEL (default 3; ratio, GB/s);
// the same run reading that compressed source (decompressed as a stream into the tokens); the
// same run writing `--compress zstd:LEVEL` output (ratio, time). Each time is also given against
// the plain run's.
#include <fcntl.h>

#include <CLI/CLI.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "io/async_io.h"
#include "io/checkpoint.h"
#include "io/error.h"
#include "io/file.h"
#include "io/zstd_writer.h"
#include "pipeline/api.h"
#include "pipeline/plan/plan.h"
#include "pipeline/run/token_pool.h"
#include "pipeline/run_options.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

uint64_t parse_size(const std::string& s) {
  size_t used = 0;
  const double v = std::stod(s, &used);
  const std::string unit = s.substr(used);
  double m = 1;
  if (unit == "K" || unit == "KiB") m = 1024.0;
  if (unit == "M" || unit == "MiB") m = 1024.0 * 1024;
  if (unit == "G" || unit == "GiB") m = 1024.0 * 1024 * 1024;
  return static_cast<uint64_t>(v * m);
}

struct floor_result {
  uint64_t read_bytes = 0, write_bytes = 0;
  double seconds = 0;
};

// Reads every file in `inputs` in token-sized chunks and writes `out_total` bytes (the same
// share of each chunk) to `scratch`, with `tokens` buffers in flight; returns the wall time.
floor_result io_floor(const std::vector<fs::path>& inputs, uint64_t out_total,
                      const fs::path& scratch, async_io& io, const token_geometry& g) {
  uint64_t in_total = 0;
  for (const auto& p : inputs) in_total += fs::file_size(p);
  token_pool pool(g, plain_host_allocator());
  auto out = io_file::open(scratch, io_file::mode::write, true, out_total);

  std::mutex m;
  std::condition_variable cv;
  std::vector<token*> free = pool.all();
  std::exception_ptr error;
  uint64_t in_flight = 0;
  uint64_t written_so_far = 0, read_so_far = 0;

  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t chunk = align_down(g.token_bytes - 2 * io_alignment, io_alignment);
  for (const auto& path : inputs) {
    auto f = io_file::open(path, io_file::mode::read, true);
    for (uint64_t off = 0; off < f->size(); off += chunk) {
      const uint64_t len = std::min(chunk, f->size() - off);
      // This chunk's share of the output, block-aligned so the writes take the O_DIRECT path.
      read_so_far += len;
      // 128-bit product: out_total * read_so_far overflows 64 bits past ~4 GB x ~4 GB.
      const uint64_t target =
          in_total ? static_cast<uint64_t>(static_cast<unsigned __int128>(out_total) * read_so_far /
                                           in_total)
                   : 0;
      uint64_t wlen = target > written_so_far ? target - written_so_far : 0;
      if (read_so_far < in_total) wlen = align_down(wlen, io_alignment);
      const uint64_t woff = written_so_far;
      written_so_far += wlen;
      token* t = nullptr;
      {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return !free.empty() || error; });
        if (error) break;
        t = free.back();
        free.pop_back();
        ++in_flight;
      }
      auto release = [&, t](std::exception_ptr e) {
        std::lock_guard lock(m);
        if (e && !error) error = e;
        free.push_back(t);
        --in_flight;
        cv.notify_all();
      };
      io.read(f, off, len, t->data, [&, t, wlen, woff, release](std::exception_ptr e) {
        if (e || wlen == 0) {
          release(e);
          return;
        }
        io.write(out, woff, wlen, t->data, release);
      });
    }
  }
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return in_flight == 0; });
  }
  io.drain();
  if (error) std::rethrow_exception(error);
  if (::fsync(out->buffered_fd()) != 0) throw io_error(scratch.string(), "fsync", errno);
  floor_result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.read_bytes = in_total;
  r.write_bytes = written_so_far;
  out.reset();
  fs::remove(scratch);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("shardquant end-to-end benchmark: I/O floor, then the real run");
  std::string model, output, scheme = "mxfp4", device = "cpu", budget, engine = "auto", json;
  unsigned streams = 0;
  bool skip_floor = false, skip_run = false, keep = false;
  app.add_option("--model-dir", model)->required();
  app.add_option("--output-dir", output)->required();
  app.add_option("--scheme", scheme);
  app.add_option("--device", device);
  app.add_option("--memory-budget", budget);
  app.add_option("--streams", streams);
  app.add_option("--io-engine", engine);
  app.add_flag("--skip-floor", skip_floor);
  app.add_flag("--skip-run", skip_run);
  app.add_flag("--keep-output", keep);
  app.add_option("--json", json);
  int zstd_level = 0;
  app.add_option("--zstd", zstd_level, "also the compressed input/output rows at this level")
      ->expected(0, 1)
      ->default_str("3");
  CLI11_PARSE(app, argc, argv);

  try {
    const uint64_t b = budget.empty() ? default_memory_budget() : parse_size(budget);
    const token_geometry g = choose_token_geometry(b);
    const io_engine_kind ek = parse_io_engine(engine);

    // The plan gives the exact output size without reading any tensor.
    plan_options po;
    po.scheme = *parse_scheme(scheme);
    const plan p = make_plan(open_source_checkpoint(model, [](std::string) {}), po);
    std::vector<fs::path> inputs;
    uint64_t out_total = 0;
    for (const auto& s : p.source.shards) inputs.push_back(s.path);
    for (const auto& s : p.shards) out_total += s.layout.file_size();

    fs::create_directories(output);
    floor_result fl;
    std::string engine_used;
    if (!skip_floor) {
      auto io = make_io_engine(ek, 64);
      engine_used = io->name();
      fl = io_floor(inputs, out_total, fs::path(output) / ".e2e_bench_floor.tmp", *io, g);
      std::printf(
          "io floor   : read %.2f GB + write %.2f GB in %.3f s -> %.2f GB/s input "
          "(engine %s, %llu x %.0f MiB buffers)\n",
          fl.read_bytes / 1e9, fl.write_bytes / 1e9, fl.seconds, fl.read_bytes / fl.seconds / 1e9,
          engine_used.c_str(), (unsigned long long)g.count, g.token_bytes / 1048576.0);
      std::fflush(stdout);
    }
    // The options every timed run of this budget shares (plain and zstd passes alike).
    auto run_options = [&](const fs::path& in, const char* out_name) {
      quantize_options o;
      o.input = in;
      o.output = fs::path(output) / out_name;
      o.scheme = scheme;
      o.device = device;
      o.memory_budget = b;
      o.streams = streams;
      o.io_engine = ek;
      o.existing = existing_output::overwrite;
      o.quiet = true;
      return o;
    };
    run_report r;
    if (!skip_run) {
      const quantize_options o = run_options(model, "quantized");
      r = quantize_checkpoint(o);
      std::printf(
          "quantize   : %s on %s, read %.2f GB, wrote %.2f GB in %.3f s -> %.2f GB/s input "
          "(busy read %.2fs quantize %.2fs write %.2fs; peak RSS %.0f MiB; engine %s%s)\n",
          scheme.c_str(), r.device.c_str(), r.bytes_in / 1e9, r.bytes_out / 1e9, r.wall_seconds,
          r.gb_per_s, r.busy.read, r.busy.quantize, r.busy.write, r.peak_rss_bytes / 1048576.0,
          r.io_engine.c_str(), r.direct_io ? ", O_DIRECT" : "");
      if (!keep) fs::remove_all(o.output);
    }
    if (!skip_floor && !skip_run)
      std::printf("ratio      : quantize time / floor time = %.3f (target <= 1.15)\n",
                  r.wall_seconds / fl.seconds);
    std::string zstd_json;
    if (app.count("--zstd") > 0) {
      if (zstd_level == 0) zstd_level = 3;
      const std::string level = "zstd:" + std::to_string(zstd_level);
      // 1. the compressed source (same relative names + .zst, config.json and index copied)
      const fs::path zsrc = fs::path(output) / "zstd-source";
      fs::create_directories(zsrc);
      for (const char* f : {"config.json", "model.safetensors.index.json"})
        if (fs::exists(fs::path(model) / f))
          fs::copy_file(fs::path(model) / f, zsrc / f, fs::copy_options::overwrite_existing);
      uint64_t plain_in = 0, comp_in = 0;
      const auto tc = std::chrono::steady_clock::now();
      for (const auto& s : p.source.shards) {
        if (s.compressed) throw usage_error("--zstd wants a plain source");
        shardquant::file_handle f = shardquant::file_handle::open(s.path, O_RDONLY);
        const fs::path dst = zsrc / (s.rel_path + ".zst");
        fs::create_directories(dst.parent_path());
        std::vector<uint64_t> cuts;
        for (const auto& t : s.header.tensors) cuts.push_back(s.header.data_start + t.begin);
        comp_in += write_zstd_seekable(f.get(), s.path.string(), s.header.file_size, cuts, dst,
                                       parse_compress_option(level));
        plain_in += s.header.file_size;
      }
      const double tcs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count();
      std::printf("zstd src   : %s, %.2f GB -> %.2f GB (ratio %.3f) in %.3f s -> %.2f GB/s\n",
                  level.c_str(), plain_in / 1e9, comp_in / 1e9, double(plain_in) / comp_in, tcs,
                  plain_in / tcs / 1e9);
      auto run = [&](const fs::path& in, const std::string& compress) {
        quantize_options o = run_options(in, "quantized-zstd");
        o.compress = compress;
        const run_report z = quantize_checkpoint(o);
        fs::remove_all(o.output);
        return z;
      };
      const run_report zi = run(zsrc, "");
      std::printf(
          "zstd in    : %s from the compressed source, %.2f GB plain in (%.2f GB read from disk) "
          "in %.3f s -> %.2f GB/s plain input; time / plain run %.3f; peak RSS %.0f MiB\n",
          scheme.c_str(), zi.bytes_in / 1e9, comp_in / 1e9, zi.wall_seconds, zi.gb_per_s,
          r.wall_seconds > 0 ? zi.wall_seconds / r.wall_seconds : 0, zi.peak_rss_bytes / 1048576.0);
      const run_report zo = run(model, level);
      std::printf(
          "zstd out   : %s with --compress %s, wrote %.2f GB (plain output %.2f GB, ratio %.3f) "
          "in %.3f s -> %.2f GB/s input; time / plain run %.3f; peak RSS %.0f MiB\n",
          scheme.c_str(), level.c_str(), zo.bytes_out / 1e9, r.bytes_out / 1e9,
          zo.bytes_out ? double(r.bytes_out) / zo.bytes_out : 0, zo.wall_seconds, zo.gb_per_s,
          r.wall_seconds > 0 ? zo.wall_seconds / r.wall_seconds : 0, zo.peak_rss_bytes / 1048576.0);
      fs::remove_all(zsrc);
      zstd_json = ", \"zstd_level\": " + std::to_string(zstd_level) +
                  ", \"zstd_source_plain_bytes\": " + std::to_string(plain_in) +
                  ", \"zstd_source_bytes\": " + std::to_string(comp_in) +
                  ", \"zstd_compress_seconds\": " + std::to_string(tcs) +
                  ", \"zstd_input_run\": " + zi.to_json() +
                  ", \"zstd_output_run\": " + zo.to_json();
    }
    if (!json.empty()) {
      std::ofstream f(json);
      f << "{\"floor_seconds\": " << fl.seconds << ", \"floor_read_bytes\": " << fl.read_bytes
        << ", \"floor_write_bytes\": " << fl.write_bytes << ", \"run\": " << r.to_json()
        << ", \"ratio\": " << (fl.seconds > 0 ? r.wall_seconds / fl.seconds : 0) << zstd_json
        << "}\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "e2e_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
