// Does a scheme's output run correctly where users load it, and with which options (issue 12,
// README "Loading the outputs")? One row per built-in scheme, keyed by scheme id (a table
// parallel to kernels/schemes.h, so that new scheme rows there need no change here: an id
// without a row reads as "not checked"). Read by `shardquant schemes`, the plan, the run-time
// warning, the report and the tests. Pure data and text; no files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kernels/importer_layout.h"
#include "kernels/schemes.h"
#include "pipeline/plan/quant_spec.h"

namespace shardquant {

// The options that make an output loadable (bit set).
enum loader_option : uint8_t {
  opt_none = 0,
  opt_dynamic_activations = 1,  // --dynamic-activations
  opt_importer_layout = 2,      // --layout quark-importer
};

enum class vllm_status : uint8_t {
  runs,         // vLLM's Quark loader runs it with the options in `vllm_options`
  unsupported,  // no vLLM Quark scheme accepts it (or it needs calibrated input scales)
  not_checked,  // a scheme without a row here
};

struct loader_row {
  scheme_id id;
  // transformers + amd-quark (AutoModelForCausalLM.from_pretrained): the options the output
  // needs to load with nothing missing and compute correctly (opt_none: the default runs), and
  // why the default does not.
  uint8_t hf_options = opt_none;
  std::string_view hf_why;
  // vLLM's Quark loader (vllm/model_executor/layers/quantization/quark/).
  vllm_status vllm = vllm_status::not_checked;
  uint8_t vllm_options = opt_none;
  std::string_view vllm_note;  // which vLLM scheme class, or why not
  // false: no option makes transformers + amd-quark compute it; hf_why names where Quark fails.
  bool hf_runs = true;
};

// The row of a built-in scheme (a row with vllm_status::not_checked and no options for an id
// the table does not know yet).
[[nodiscard]] loader_row loader_support(scheme_id s) noexcept;

// "--dynamic-activations --layout quark-importer", "" for opt_none.
[[nodiscard]] std::string loader_options_text(uint8_t options);
// The options a run uses, as bits.
[[nodiscard]] uint8_t loader_options_of(bool dynamic_activations, output_layout layout) noexcept;

// One line when the output of `s` with the run's `options` will not run correctly in
// transformers + amd-quark (the reason and the options that fix it, or that none does), "" when
// it will or when
// nothing is known (custom specs: not checked). vLLM notes are added when vLLM could run it
// with other options.
[[nodiscard]] std::string loader_warning(const quant_scheme& s, uint8_t options);

}  // namespace shardquant
