// `shardquant completion bash|zsh`: a shell completion script generated from the program's own
// CLI11 definition (subcommands and their options) and the scheme table, so it cannot drift from
// what the program accepts. Text only; nothing is installed.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace shardquant {

// The bash script: defines _shardquant and registers it with `complete -F` for shardquant.
[[nodiscard]] std::string bash_completion_script(const CLI::App& app);
// The zsh script: the bash one through zsh's bashcompinit.
[[nodiscard]] std::string zsh_completion_script(const CLI::App& app);

}  // namespace shardquant
