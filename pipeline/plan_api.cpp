// plan_checkpoint: the dry run through the public API. Options are read as quantize_checkpoint
// reads them (run_options.h) and the geometry is the run's own (geometry.h); nothing here opens
// the output folder or reads tensor data. Its JSON form is the report's
// (pipeline/output/report.cpp).
#include <memory>

#include "io/checkpoint.h"
#include "io/error.h"
#include "pipeline/api.h"
#include "pipeline/output/report.h"
#include "pipeline/plan/geometry.h"
#include "pipeline/plan/plan.h"
#include "pipeline/run/memory_limits.h"
#include "pipeline/run_options.h"

namespace shardquant {

plan_report plan_checkpoint(const quantize_options& o) {
  if (o.input.empty()) throw usage_error("input is required");
  plan_options po = plan_options_of(o);
  (void)parse_devices(o.device);  // a bad device string fails here as it would in the run
  plan_report r;
  // A given budget is refused here as the run would refuse it (more than the machine has).
  if (o.memory_budget) check_memory_budget(o.memory_budget, read_memory_limits());
  source_checkpoint src = open_source_checkpoint(
      o.input, [&](std::string w) { r.warnings.push_back(std::move(w)); }, o.strict_side_files);
  auto p = std::make_shared<plan>(make_plan(std::move(src), std::move(po)));
  const run_geometry g = decide_geometry(*p, o.memory_budget);
  for (const auto& w : p->warnings) r.warnings.push_back(w);
  if (o.on_warning)
    for (const auto& w : r.warnings) o.on_warning(w);
  // The facts the run's report has too, taken the same way (pipeline/output/report.h).
  run_report facts;
  fill_plan_facts(facts, *p);
  r.model_dir = facts.model_dir;
  r.output_dir = o.output.string();
  r.model_type = facts.model_type;
  r.scheme = facts.scheme;
  r.quant_spec = facts.quant_spec;
  r.layer_schemes = facts.layer_schemes;
  r.layout = facts.layout;
  r.dynamic_activations = facts.dynamic_activations;
  r.actions = facts.actions;
  r.per_scheme = facts.per_scheme;
  r.loader_notes = facts.loader_notes;
  r.device = resolve_device(o.device);
  r.shards = p->shards.size();
  for (const auto& sh : p->shards) r.tensors_out += sh.layout.tensors().size();
  r.quantized = p->totals.quantized;
  r.bytes_in = p->totals.bytes_in;
  r.bytes_out = p->totals.bytes_out;
  r.memory_budget = g.budget;
  r.budget_chosen = g.budget_chosen;
  r.token_bytes = g.tokens.token_bytes;
  r.tokens = g.tokens.count;
  r.jobs = g.jobs;
  r.split_tensors = g.split_tensors;
  r.amax_tensors = g.amax_tensors;
  r.exclude = p->exclude_resolved;
  r.detail = std::move(p);
  return r;
}

}  // namespace shardquant
