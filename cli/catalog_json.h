// `shardquant schemes --json` and `shardquant templates --json`: the scheme table and the model
// templates as machine-readable JSON (fields documented in README "Use"). Reads the tables in
// kernels/schemes.h, pipeline/plan/loader_support.h and pipeline/plan/templates.h; prints only.
#pragma once

#include <iosfwd>

namespace shardquant {

void print_schemes_json(std::ostream& out);
void print_templates_json(std::ostream& out);

}  // namespace shardquant
