// The text and JSON renderings of a verify_report (pipeline/output/verify.h): per-scheme summary,
// worst tensors, problems. No checking here.
#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/error.h"
#include "pipeline/output/verify.h"

namespace shardquant {

namespace {

using json = nlohmann::ordered_json;
constexpr uint64_t no_offset = input_error::no_offset;

std::string fmt_double(double d) {
  std::ostringstream s;
  s.precision(4);
  s << d;
  return s.str();
}

}  // namespace

std::string verify_report::to_json() const {
  json j = json::object();
  j["output_dir"] = output_dir;
  j["sound"] = sound;
  j["shards"] = shards;
  j["quantized_tensors"] = quantized.size();
  j["passed_through"] = passed_through;
  j["cast"] = cast;
  j["recovered"] = recovered;
  j["bytes_read"] = bytes_read;
  j["seconds"] = seconds;
  j["memory_budget"] = memory_budget;
  json ps = json::array();
  for (const scheme_verdict& s : per_scheme)
    ps.push_back({{"scheme", s.scheme},
                  {"tensors", s.tensors},
                  {"elements", s.elements},
                  {"mean_rel_l2", s.mean_rel_l2},
                  {"worst_rel_l2", s.worst_rel_l2},
                  {"max_abs", s.max_abs},
                  {"violations", s.violations},
                  {"non_finite", s.non_finite}});
  j["per_scheme"] = ps;
  json pr = json::array();
  for (const verify_problem& p : problems) {
    json e = {{"file", p.file}, {"tensor", p.tensor}};
    e["offset"] = p.offset == no_offset ? json(nullptr) : json(p.offset);
    e["message"] = p.message;
    pr.push_back(std::move(e));
  }
  j["problems"] = pr;
  json ts = json::array();
  for (const tensor_verdict& t : quantized)
    ts.push_back({{"name", t.name},
                  {"shard", t.shard},
                  {"scheme", t.scheme},
                  {"shape", t.shape},
                  {"elements", t.elements},
                  {"rel_l2", t.rel_l2},
                  {"max_abs", t.max_abs},
                  {"non_finite", t.non_finite},
                  {"violations", t.violations}});
  j["tensors"] = ts;
  return j.dump(2) + "\n";
}

std::string verify_report::to_text(size_t worst) const {
  std::ostringstream o;
  o << "verify " << output_dir << ": " << shards << " shard(s), " << quantized.size()
    << " quantized tensor(s) decoded (" << recovered << " from recovered sources), "
    << passed_through << " passed through and " << cast << " cast compared byte for byte; "
    << fmt_double(static_cast<double>(bytes_read) / double(1 << 20)) << " MiB read in "
    << fmt_double(seconds) << " s\n";
  for (const scheme_verdict& s : per_scheme)
    o << "  " << s.scheme << ": " << s.tensors << " tensor(s), rel L2 mean "
      << fmt_double(s.mean_rel_l2) << " worst " << fmt_double(s.worst_rel_l2) << ", max |err| "
      << fmt_double(s.max_abs) << ", NaN/Inf " << s.non_finite << ", bound violations "
      << s.violations << "\n";
  std::vector<const tensor_verdict*> order;
  for (const tensor_verdict& t : quantized) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    if (a->violations != b->violations) return a->violations > b->violations;
    return a->rel_l2 > b->rel_l2;
  });
  if (!order.empty()) o << "worst tensors:\n";
  for (size_t i = 0; i < order.size() && i < worst; ++i)
    o << "  " << order[i]->name << " (" << order[i]->scheme << ", " << order[i]->shard
      << "): rel L2 " << fmt_double(order[i]->rel_l2) << ", max |err| "
      << fmt_double(order[i]->max_abs) << ", violations " << order[i]->violations << "\n";
  for (const verify_problem& p : problems) o << "problem: " << p.to_string() << "\n";
  o << (sound ? "SOUND" : "NOT SOUND: " + std::to_string(problems.size()) + " problem(s)") << "\n";
  return o.str();
}

}  // namespace shardquant
