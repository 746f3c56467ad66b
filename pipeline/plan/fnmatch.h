// Python's fnmatch.fnmatch on POSIX (formats.md §4.2): the glob semantics of exclude lists,
// per-layer overrides and presharded globs. Pure string matching; no files.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace shardquant {

// A compiled pattern (translate once, match many module names).
class glob_pattern {
 public:
  explicit glob_pattern(std::string_view pattern);
  [[nodiscard]] bool matches(std::string_view name) const;
  [[nodiscard]] const std::string& pattern() const noexcept { return pattern_; }

 private:
  struct range {
    char32_t lo, hi;
  };
  enum class kind : unsigned char { literal, any, star, set, never };
  struct token {
    kind k;
    char32_t c = 0;             // literal
    bool negate = false;        // set
    std::vector<range> ranges;  // set
  };
  static token make(kind k, char32_t c = 0) {
    token t;
    t.k = k;
    t.c = c;
    return t;
  }
  std::string pattern_;
  std::vector<token> tokens_;
  [[nodiscard]] bool token_matches(const token& t, char32_t c) const;
};

// Whole-string, case-sensitive match, exactly as Python's fnmatch.fnmatch on POSIX.
[[nodiscard]] bool fnmatch(std::string_view name, std::string_view pattern);
// True when any pattern matches.
[[nodiscard]] bool fnmatch_any(std::string_view name, const std::vector<glob_pattern>& patterns);

}  // namespace shardquant
