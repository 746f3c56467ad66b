// JSON views of the scheme and template tables.
#include "cli/catalog_json.h"

#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "kernels/schemes.h"
#include "pipeline/plan/loader_support.h"
#include "pipeline/plan/templates.h"

namespace shardquant {
namespace {

using json = nlohmann::ordered_json;

json options_list(uint8_t o) {
  json a = json::array();
  if (o & opt_dynamic_activations) a.push_back("--dynamic-activations");
  if (o & opt_importer_layout) a.push_back("--layout quark-importer");
  return a;
}

const char* vllm_word(vllm_status s) {
  switch (s) {
    case vllm_status::runs:
      return "runs";
    case vllm_status::unsupported:
      return "unsupported";
    default:
      return "not_checked";
  }
}

}  // namespace

void print_schemes_json(std::ostream& out) {
  json schemes = json::array();
  for (const auto& s : all_schemes()) {
    const loader_row r = loader_support(s.id);
    json backends = json::array();
    if (s.backends & backend_cpu) backends.push_back("cpu");
    if (s.backends & backend_cuda) backends.push_back("cuda");
    json aliases = json::array();
    if (!s.alias.empty()) aliases.push_back(std::string(s.alias));
    schemes.push_back({{"name", std::string(s.name)},
                       {"description", std::string(s.help)},
                       {"group_size", s.group_size},
                       {"backends", backends},
                       {"aliases", aliases},
                       {"transformers",
                        {{"options", options_list(r.hf_options)}, {"why", std::string(r.hf_why)}}},
                       {"vllm",
                        {{"status", vllm_word(r.vllm)},
                         {"options", options_list(r.vllm_options)},
                         {"note", std::string(r.vllm_note)}}}});
  }
  json refused = json::array();
  for (const auto& r : refused_schemes())
    refused.push_back({{"name", std::string(r.name)}, {"reason", std::string(r.reason)}});
  const json j = {{"schemes", schemes}, {"refused", refused}};
  out << j.dump(2) << "\n";
}

void print_templates_json(std::ostream& out) {
  json a = json::array();
  for (const auto& t : all_templates()) {
    json conv = json::array();
    for (const auto& c : t.converters()) conv.push_back(c.to_string());
    a.push_back(
        {{"model_type", std::string(t.model_type)}, {"exclude", t.exclude}, {"converters", conv}});
  }
  const json j = {{"templates", a}};
  out << j.dump(2) << "\n";
}

}  // namespace shardquant
