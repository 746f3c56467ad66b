// run_report rendering and the peak-RSS measurement.
#include "pipeline/output/report.h"

#include <sys/resource.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "pipeline/run/progress.h"

namespace shardquant {

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string run_report::to_json() const {
  nlohmann::ordered_json j;
  j["output_dir"] = output_dir;
  j["tensors_out"] = tensors_out;
  j["bytes_in"] = bytes_in;
  j["bytes_out"] = bytes_out;
  j["wall_seconds"] = wall_seconds;
  j["gb_per_s"] = gb_per_s;
  j["busy_seconds"] = {{"read", busy.read}, {"quantize", busy.quantize}, {"write", busy.write}};
  j["peak_rss_bytes"] = peak_rss_bytes;
  j["peak_device_bytes"] = peak_device_bytes;
  j["memory_budget"] = memory_budget;
  j["token_bytes"] = token_bytes;
  j["tokens"] = tokens;
  j["peak_live_tokens"] = peak_live_tokens;
  j["jobs"] = jobs;
  j["split_tensors"] = split_tensors;
  j["amax_tensors"] = amax_tensors;
  j["shards_written"] = shards_written;
  j["shards_skipped"] = shards_skipped;
  j["io_engine"] = io_engine;
  j["direct_io"] = direct_io;
  j["device"] = device;
  j["streams"] = streams;
  j["layout"] = layout;
  j["dynamic_activations"] = dynamic_activations;
  j["loader_notes"] = loader_notes;
  j["warnings"] = warnings;
  j["side_files_skipped"] = side_files_skipped;
  return j.dump(2) + "\n";
}

std::string report_text(const run_report& r) {
  char buf[8192];  // the output path is the only unbounded part
  std::snprintf(
      buf, sizeof buf,
      "output: %s (%llu tensors)\n"
      "read %s, wrote %s in %.2fs: %.2f GB/s\n"
      "busy: read %.2fs, quantize %.2fs, write %.2fs (summed over jobs)\n"
      "memory: budget %s as %llu x %s tokens, peak %llu live; peak RSS %s; device peak %s\n"
      "shards: %llu written, %llu kept (resume); %llu jobs; io %s%s; device %s, %u "
      "stream(s)\n",
      r.output_dir.c_str(), (unsigned long long)r.tensors_out, human_bytes(r.bytes_in).c_str(),
      human_bytes(r.bytes_out).c_str(), r.wall_seconds, r.gb_per_s, r.busy.read, r.busy.quantize,
      r.busy.write, human_bytes(r.memory_budget).c_str(), (unsigned long long)r.tokens,
      human_bytes(r.token_bytes).c_str(), (unsigned long long)r.peak_live_tokens,
      human_bytes(r.peak_rss_bytes).c_str(), human_bytes(r.peak_device_bytes).c_str(),
      (unsigned long long)r.shards_written, (unsigned long long)r.shards_skipped,
      (unsigned long long)r.jobs, r.io_engine.c_str(), r.direct_io ? " (O_DIRECT)" : "",
      r.device.c_str(), r.streams);
  std::string t = buf;
  for (const auto& n : r.loader_notes) t += "loaders: " + n + "\n";
  return t;
}

}  // namespace shardquant
