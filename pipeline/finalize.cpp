// Output directory preparation and finalization through io/checkpoint.h.
#include "pipeline/finalize.h"

#include "io/checkpoint.h"

namespace shardquant {

void prepare_output(const std::filesystem::path& source, const std::filesystem::path& output,
                    existing_output mode) {
  const output_mode m = mode == existing_output::overwrite ? output_mode::overwrite
                        : mode == existing_output::resume  ? output_mode::resume
                                                           : output_mode::fresh;
  prepare_output_dir(source, output, m);
}

void finalize_output(const finalize_inputs& in) {
  const warning_fn warn = in.warn ? warning_fn(in.warn) : warning_fn([](std::string) {});
  (void)copy_side_files(in.source, in.output, warn);
  write_index_json(in.output, in.weight_map, in.total_size);
  write_config_json(in.output, in.config_text, in.quantization_config, in.config_path);
}

}  // namespace shardquant
