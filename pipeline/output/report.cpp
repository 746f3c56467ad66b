// run_report and plan_report rendering (one JSON schema, pipeline/output/REPORT.md), the facts
// they take from a plan, the peak-RSS measurement, and the report file's checks and writing.
#include "pipeline/output/report.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <system_error>

#include <nlohmann/json.hpp>

#include "io/file.h"
#include "pipeline/plan/plan.h"
#include "pipeline/run/progress.h"

namespace shardquant {

namespace {

using json = nlohmann::ordered_json;

std::string key(tensor_action a) {
  return std::string(action_name(a));
}

// Keys are the dry run's `action` values, so a report and a plan's tensor list read alike.
json actions_json(const action_counts& a) {
  json j;
  j[key(tensor_action::quantize)] = a.quantize;
  j[key(tensor_action::pass_through)] = a.pass;
  j[key(tensor_action::cast)] = a.cast;
  j[key(tensor_action::recover_quantize)] = a.recover_quantize;
  j[key(tensor_action::recover_cast)] = a.recover_cast;
  j[key(tensor_action::keep_original)] = a.keep_original;
  j["generate"] = a.generate;
  j["consumed"] = a.consumed;
  return j;
}

json per_scheme_json(const std::vector<scheme_tensors>& v) {
  json j = json::object();
  for (const auto& s : v)
    j[s.scheme] = {{"tensors", s.tensors}, {"bytes_in", s.bytes_in}, {"bytes_out", s.bytes_out}};
  return j;
}

json error_json(const std::string& status, const report_error& e) {
  if (status == "ok") return nullptr;
  json j;
  j["kind"] = e.kind;
  j["message"] = e.message;
  if (e.kind == "input") {
    j["file"] = e.file;
    j["tensor"] = e.tensor;
    j["offset"] = e.offset == input_error::no_offset ? json(nullptr) : json(e.offset);
  }
  return j;
}

json or_null(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

json pairs_json(const std::vector<std::pair<std::string, std::string>>& v) {
  json j = json::array();
  for (const auto& [glob, scheme] : v) j.push_back({{"pattern", glob}, {"scheme", scheme}});
  return j;
}

// The fields every report opens with (REPORT.md "Common fields").
void put_head(json& j, const char* kind, const std::string& status, const report_error& error,
              const std::string& tool_version) {
  j["schema_version"] = report_schema_version;
  j["kind"] = kind;
  j["status"] = status;
  j["error"] = error_json(status, error);
  j["tool_version"] = tool_version.empty() ? std::string(SHARDQUANT_VERSION) : tool_version;
}

}  // namespace

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

action_counts count_actions(const plan& p, const std::vector<bool>& shard_selected) {
  auto selected = [&](uint32_t shard) {
    return shard_selected.empty() || (shard < shard_selected.size() && shard_selected[shard]);
  };
  action_counts a;
  for (const auto& it : p.items)
    for (const auto& pt : it.parts) {
      if (!selected(pt.output_shard)) continue;
      if (pt.generated_rotation) {
        ++a.generate;
        continue;
      }
      switch (pt.action) {
        case tensor_action::quantize:
          ++a.quantize;
          break;
        case tensor_action::pass_through:
          ++a.pass;
          break;
        case tensor_action::cast:
          ++a.cast;
          break;
        case tensor_action::recover_quantize:
          ++a.recover_quantize;
          break;
        case tensor_action::recover_cast:
          ++a.recover_cast;
          break;
        case tensor_action::keep_original:
          ++a.keep_original;
          break;
      }
    }
  // Output shards are 1:1 with source shards, in the same order.
  for (const auto& c : p.consumed)
    if (selected(c.source.shard)) ++a.consumed;
  return a;
}

std::vector<scheme_tensors> scheme_shares(const plan& p) {
  std::vector<scheme_tensors> r;
  for (const auto& s : p.totals.per_scheme)
    r.push_back({std::string(s.scheme.name()), s.tensors, s.bytes_in, s.bytes_out});
  return r;
}

void fill_plan_facts(run_report& r, const plan& p) {
  r.model_dir = p.model_dir.string();
  r.model_type = p.facts.model_type;
  r.scheme = std::string(p.options.scheme.name());
  r.quant_spec = p.options.scheme.custom ? p.options.scheme.custom->path : std::string();
  r.layer_schemes.clear();
  for (const auto& o : p.options.layer_schemes)
    r.layer_schemes.emplace_back(o.glob, std::string(o.scheme.name()));
  r.exclude = p.exclude_resolved;
  r.actions = count_actions(p);
  r.per_scheme = scheme_shares(p);
  r.layout = std::string(layout_name(p.options.layout));
  r.dynamic_activations = p.options.dynamic_activations;
  r.loader_notes = p.loader_notes;
}

report_error report_error_of(const std::exception_ptr& e) {
  report_error r;
  try {
    std::rethrow_exception(e);
  } catch (const input_error& x) {
    r = {"input", x.what(), x.file(), x.tensor(), x.offset()};
  } catch (const io_error& x) {
    r.kind = "io";
    r.message = x.what();
  } catch (const usage_error& x) {
    r.kind = "usage";
    r.message = x.what();
  } catch (const cancelled_error& x) {
    r.kind = "cancelled";
    r.message = x.what();
  } catch (const std::exception& x) {
    r.kind = "internal";
    r.message = x.what();
  } catch (...) {
    r.kind = "internal";
    r.message = "unknown error";
  }
  return r;
}

plan_report failed_plan_report(const quantize_options& o, const std::exception_ptr& e) {
  plan_report r;
  r.status = "failed";
  r.error = report_error_of(e);
  r.model_dir = o.input.string();
  r.output_dir = o.output.string();
  r.scheme = o.scheme.empty() ? o.quant_spec : o.scheme;
  return r;
}

void check_report_path(const std::filesystem::path& report, const std::filesystem::path& output) {
  namespace fs = std::filesystem;
  if (report.empty()) return;
  const std::string what = "cannot write the report " + report.string() + ": ";
  std::error_code ec;
  if (fs::is_directory(report, ec)) throw usage_error(what + "it is a folder");
  auto normal = [&](const fs::path& p) {  // absolute, no "." or "..", no trailing separator
    fs::path a = fs::absolute(p, ec).lexically_normal();
    return a.has_filename() ? a : a.parent_path();
  };
  const fs::path folder = normal(report).parent_path();
  if (!fs::exists(folder, ec)) {
    // The output folder is created by the run itself; its parent is checked by that.
    if (!output.empty() && folder == normal(output)) return;
    throw usage_error(what + "the folder " + folder.string() + " does not exist");
  }
  if (!fs::is_directory(folder, ec)) throw usage_error(what + folder.string() + " is not a folder");
  try {
    atomic_file probe(report);  // created under a temporary name, removed when it goes
  } catch (const io_error& e) {
    throw usage_error(what + "a file cannot be created in " + folder.string() + " (" + e.what() +
                      ")");
  }
}

std::string write_report_noexcept(const std::filesystem::path& report,
                                  const std::string& json) noexcept {
  try {
    write_file_atomic(report, json);
    return {};
  } catch (const std::exception& e) {
    return std::string("the report was not written: ") + e.what();
  } catch (...) {
    return "the report was not written";
  }
}

namespace {

// The fields run and plan reports share, in the same key order in both (the two public structs
// stay separate types, so these take either).
template <class R>
void put_request(json& j, const R& r) {
  j["model_type"] = r.model_type;
  j["scheme"] = r.scheme;
  j["quant_spec"] = or_null(r.quant_spec);
  j["layer_schemes"] = pairs_json(r.layer_schemes);
  j["exclude"] = r.exclude;
}
template <class R>
void put_outcome(json& j, const R& r) {
  j["jobs"] = r.jobs;
  j["split_tensors"] = r.split_tensors;
  j["amax_tensors"] = r.amax_tensors;
  j["loader_notes"] = r.loader_notes;
  j["warnings"] = r.warnings;
}

}  // namespace

std::string run_report::to_json() const {
  json j;
  put_head(j, "run", status, error, tool_version);
  j["started_at"] = started_at;
  j["model_dir"] = model_dir;
  j["output_dir"] = output_dir;
  put_request(j, *this);
  j["worker"] = or_null(worker);
  j["device"] = device;
  j["streams"] = streams;
  j["io_engine"] = io_engine;
  j["direct_io"] = direct_io;
  j["layout"] = layout;
  j["dynamic_activations"] = dynamic_activations;
  j["compress"] = or_null(compress);
  j["actions"] = actions_json(actions);
  j["per_scheme"] = per_scheme_json(per_scheme);
  j["tensors_out"] = tensors_out;
  j["bytes_in"] = bytes_in;
  j["bytes_out"] = bytes_out;
  j["shards_written"] = shards_written;
  j["shards_skipped"] = shards_skipped;
  json side = json::array();
  for (const auto& f : side_files) side.push_back({{"path", f.path}, {"bytes", f.bytes}});
  j["side_files"] = side;
  j["side_files_skipped"] = side_files_skipped;
  j["timings"] = {{"plan_seconds", timings.plan},
                  {"graph_seconds", timings.graph},
                  {"finalize_seconds", timings.finalize},
                  {"total_seconds", timings.total}};
  j["wall_seconds"] = wall_seconds;
  j["gb_per_s"] = gb_per_s;
  j["busy_seconds"] = {{"read", busy.read}, {"quantize", busy.quantize}, {"write", busy.write}};
  j["peak_rss_bytes"] = peak_rss_bytes;
  j["peak_device_bytes"] = peak_device_bytes;
  j["memory_budget"] = memory_budget;
  j["token_bytes"] = token_bytes;
  j["tokens"] = tokens;
  j["peak_live_tokens"] = peak_live_tokens;
  put_outcome(j, *this);
  return j.dump(2) + "\n";
}

std::string plan_report::to_json() const {
  json j;
  put_head(j, "plan", status, error, "");
  j["model_dir"] = model_dir;
  j["output_dir"] = or_null(output_dir);
  put_request(j, *this);
  j["device"] = device;
  j["layout"] = layout;
  j["dynamic_activations"] = dynamic_activations;
  j["actions"] = actions_json(actions);
  j["per_scheme"] = per_scheme_json(per_scheme);
  j["shards"] = shards;
  j["tensors_out"] = tensors_out;
  j["quantized"] = quantized;
  j["bytes_in"] = bytes_in;
  j["bytes_out"] = bytes_out;
  j["memory_budget"] = memory_budget;
  j["budget_chosen"] = budget_chosen;
  j["token_bytes"] = token_bytes;
  j["tokens"] = tokens;
  put_outcome(j, *this);
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
