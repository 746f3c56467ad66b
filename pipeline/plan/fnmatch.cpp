// Python fnmatch.translate, replayed without a regex engine: the bracket parsing below follows
// CPython's translate() step for step (its chunking of '-' ranges, removal of reversed ranges,
// the "[!]" and empty-set cases), because users copy globs from Quark recipes and must get the
// same modules.
#include "pipeline/plan/fnmatch.h"

#include <string>

namespace shardquant {
namespace {

// UTF-8 to code points; an invalid byte stands for itself so matching never throws.
std::u32string decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(b);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? b : b & (0x7F >> len);
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (!ok) {
      out.push_back(b);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

}  // namespace

glob_pattern::glob_pattern(std::string_view pattern) : pattern_(pattern) {
  const std::u32string pat = decode(pattern);
  const size_t n = pat.size();
  size_t i = 0;
  while (i < n) {
    const char32_t c = pat[i++];
    if (c == U'*') {
      if (tokens_.empty() || tokens_.back().k != kind::star) tokens_.push_back(make(kind::star));
    } else if (c == U'?') {
      tokens_.push_back(make(kind::any));
    } else if (c == U'[') {
      size_t j = i;
      if (j < n && pat[j] == U'!') ++j;
      if (j < n && pat[j] == U']') ++j;
      while (j < n && pat[j] != U']') ++j;
      if (j >= n) {
        tokens_.push_back(make(kind::literal, U'['));
        continue;
      }
      // CPython: split the set at range hyphens into chunks; chunk k-1's last character and
      // chunk k's first character form a range; every other character is literal.
      std::vector<std::u32string> chunks;
      const std::u32string stuff0 = pat.substr(i, j - i);
      if (stuff0.find(U'-') == std::u32string::npos) {
        chunks.push_back(stuff0);
      } else {
        size_t start = i;
        size_t k = pat[i] == U'!' ? i + 2 : i + 1;
        for (;;) {
          size_t h = std::u32string::npos;
          for (size_t q = k; q < j; ++q)
            if (pat[q] == U'-') {
              h = q;
              break;
            }
          if (h == std::u32string::npos) break;
          chunks.push_back(pat.substr(start, h - start));
          start = h + 1;
          k = h + 3;
        }
        std::u32string last = pat.substr(start, j - start);
        if (!last.empty())
          chunks.push_back(last);
        else
          chunks.back() += U'-';
        for (size_t q = chunks.size() - 1; q > 0; --q) {
          if (chunks[q - 1].back() > chunks[q].front()) {
            chunks[q - 1] = chunks[q - 1].substr(0, chunks[q - 1].size() - 1) + chunks[q].substr(1);
            chunks.erase(chunks.begin() + static_cast<std::ptrdiff_t>(q));
          }
        }
      }
      i = j + 1;
      std::u32string joined;
      for (size_t q = 0; q < chunks.size(); ++q) joined += (q ? U"-" : U"") + chunks[q];
      if (joined.empty()) {
        tokens_.push_back(make(kind::never));
        continue;
      }
      if (joined == U"!") {
        tokens_.push_back(make(kind::any));
        continue;
      }
      token t = make(kind::set);
      t.negate = chunks.front().front() == U'!';
      for (size_t q = 0; q < chunks.size(); ++q) {
        const std::u32string& ch = chunks[q];
        size_t b = (q == 0 && t.negate) ? 1 : 0;
        size_t e = ch.size();
        if (q > 0) ++b;                        // first char is the high end of a range
        if (q + 1 < chunks.size() && e > b) {  // last char is the low end of the next range
          --e;
        }
        for (size_t r = b; r < e; ++r) t.ranges.push_back({ch[r], ch[r]});
        if (q + 1 < chunks.size()) t.ranges.push_back({ch.back(), chunks[q + 1].front()});
      }
      tokens_.push_back(std::move(t));
    } else {
      tokens_.push_back(make(kind::literal, c));
    }
  }
}

bool glob_pattern::token_matches(const token& t, char32_t c) const {
  switch (t.k) {
    case kind::literal:
      return t.c == c;
    case kind::any:
      return true;
    case kind::set: {
      bool in = false;
      for (const range& r : t.ranges)
        if (c >= r.lo && c <= r.hi) in = true;
      return in != t.negate;
    }
    default:
      return false;
  }
}

bool glob_pattern::matches(std::string_view name_utf8) const {
  const std::u32string name = decode(name_utf8);
  // Iterative wildcard match: only '*' is variable-length, so backtracking to the last star
  // is complete.
  size_t ti = 0, ni = 0;
  size_t star_t = std::string::npos, star_n = 0;
  while (ni < name.size()) {
    if (ti < tokens_.size() && tokens_[ti].k == kind::star) {
      star_t = ti++;
      star_n = ni;
    } else if (ti < tokens_.size() && token_matches(tokens_[ti], name[ni])) {
      ++ti;
      ++ni;
    } else if (star_t != std::string::npos) {
      ti = star_t + 1;
      ni = ++star_n;
    } else {
      return false;
    }
  }
  while (ti < tokens_.size() && tokens_[ti].k == kind::star) ++ti;
  return ti == tokens_.size();
}

bool fnmatch(std::string_view name, std::string_view pattern) {
  return glob_pattern(pattern).matches(name);
}

bool fnmatch_any(std::string_view name, const std::vector<glob_pattern>& patterns) {
  for (const auto& p : patterns)
    if (p.matches(name)) return true;
  return false;
}

}  // namespace shardquant
