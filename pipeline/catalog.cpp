// The public API's small queries: version, the scheme table, inspect as JSON text. Thin
// wrappers over kernels/schemes.h and pipeline/inspect.h so that callers of libshardquant need
// neither.
#include <string>
#include <vector>

#include "kernels/schemes.h"
#include "pipeline/api.h"
#include "pipeline/inspect.h"

namespace shardquant {

const char* version() noexcept {
  return SHARDQUANT_VERSION;
}

std::vector<scheme_entry> schemes() {
  std::vector<scheme_entry> r;
  for (const auto& s : all_schemes()) r.push_back({std::string(s.name), std::string(s.help)});
  return r;
}

std::string inspect(const std::string& path) {
  return inspect_json(path).dump(2) + "\n";
}

}  // namespace shardquant
