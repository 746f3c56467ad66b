// The plan's rotation step (pipeline/plan/plan_rotation.h, kernels/FORMATS-rotation.md R.1, R.2,
// R.8).
#include "pipeline/plan/plan_rotation.h"

#include <map>

#include "io/error.h"

namespace shardquant {

uint64_t rotation_row_multiple(const plan_part& part) {
  uint64_t m = 1;
  for (const auto& s : part.rotations)
    if (s.kind == rotation_kind::output_blocked) m = std::max<uint64_t>(m, s.size);
  return m;
}

std::string rotation_text(const plan_part& part) {
  std::string s = "rotated:";
  for (size_t i = 0; i < part.rotations.size(); ++i) {
    const rotation_step& r = part.rotations[i];
    const std::string n = std::to_string(r.size);
    s += i ? ", " : " ";
    switch (r.kind) {
      case rotation_kind::input_full:
        s += "Hadamard " + n + " on input channels (full rows, in the source dtype)";
        break;
      case rotation_kind::input_blocked:
        s += "Hadamard " + n + " on input channel blocks (float64)";
        break;
      case rotation_kind::output_blocked:
        s += "Hadamard " + n + " on output channels (float64; a row range holds whole blocks of " +
             n + " rows)";
        break;
    }
  }
  return s;
}

void plan_rotations(plan& p) {
  const plan_options& o = p.options;
  if (!o.rotation.empty() && !o.rotation_config_file.empty())
    throw usage_error("give --rotation or --rotation-config, not both");
  rotation_config c;
  try {
    c = o.rotation.empty() ? rotation_from_file(o.rotation_config_file)
                           : rotation_from_flags(o.rotation, p.facts.model_type);
  } catch (const rotation_refused& e) {
    throw usage_error(std::string("rotation: ") + e.what());
  }
  // Quark collects the names from the source headers (_collect_rotation_tensor_names): linear
  // weights by the name rule with rank >= 2, and every `.bias`.
  rotation_inputs in;
  for (const auto& sh : p.source.shards) {
    for (const auto& e : sh.header.tensors) {
      if (passes_name_rule(e.name) && e.shape.size() >= 2)
        in.linear_weights[e.name] = e.shape;
      else if (e.name.ends_with(".bias"))
        in.biases.insert(e.name);
    }
  }
  in.exclude = p.facts.exclude_globs;
  try {
    p.rotation_targets = plan_rotation(c, p.source.config_json(), in);
  } catch (const rotation_refused& e) {
    throw usage_error(std::string("rotation: ") + e.what());
  }
  p.rotation = c;

  std::map<std::string, std::pair<uint32_t, uint32_t>> where;  // weight -> (item, part)
  for (uint32_t i = 0; i < p.items.size(); ++i)
    for (uint32_t k = 0; k < p.items[i].parts.size(); ++k) where[p.items[i].parts[k].name] = {i, k};
  for (const auto& [weight, steps] : p.rotation_targets.steps) {
    const auto it = where.find(weight);
    if (it == where.end())
      throw usage_error("rotation: '" + weight +
                        "' is a rotation target but a converter renamed "
                        "or split it (not supported)");
    plan_item& item = p.items[it->second.first];
    plan_part& part = item.parts[it->second.second];
    // A recovered weight (block-FP8 `_scale_inv`, compressed-tensors) is rotated after recovery,
    // in F32, as Quark rotates the float32 tensor its recovery returns (FORMATS-rotation R.1).
    if (part.action == tensor_action::keep_original)
      throw usage_error("rotation: '" + weight +
                        "' is a rotation target but is kept as original (its FP8 bytes cannot "
                        "be rotated without re-quantizing them; Quark bypasses recovery for it)");
    if (part.action != tensor_action::quantize && part.action != tensor_action::recover_quantize)
      throw usage_error(
          "rotation: '" + weight + "' is a rotation target but is excluded (" +
          std::string(action_name(part.action)) +
          "): Quark writes it rotated and unquantized; shardquant does not rotate tensors it "
          "copies or casts yet");
    if (!part.slice.is_whole())
      throw usage_error("rotation: '" + weight + "' comes out of a converter (not supported)");
    part.rotations = steps;
    const uint64_t m = rotation_row_multiple(part);
    if (part.split_rows && m > 1) {
      // Output-channel (R2 v_proj) rotations need whole column blocks: ranges of m rows.
      part.split_rows = std::max<uint64_t>(m, part.split_rows / m * m);
      if (part.split_rows >= part.input_shape[0]) part.split_rows = 0;
    }
  }
  // One generated I8 [n, n] buffer per online module, in the weight's output shard.
  for (const auto& [module, n] : p.rotation_targets.online) {
    const auto& [i, k] = where.at(module + ".weight");
    const plan_part& w = p.items[i].parts[k];
    plan_item item;
    item.source = p.items[i].source;
    item.source.bytes = 0;  // nothing is read: the shard index only names a file to hold open
    item.source.name = module + ".input_rotation";
    plan_part g;
    g.name = module + ".input_rotation";
    g.action = tensor_action::pass_through;
    g.input_type = dtype::i8;
    g.input_shape = {n, n};
    g.input_bytes = 0;
    g.output_shard = w.output_shard;
    g.generated_rotation = n;
    g.outputs.push_back({g.name, dtype::i8, {n, n}, n * n, 0});
    item.parts.push_back(std::move(g));
    p.items.push_back(std::move(item));
  }
}

}  // namespace shardquant
