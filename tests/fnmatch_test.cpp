// Python fnmatch semantics (formats.md §4.2). The expected values were produced by CPython's
// fnmatch.fnmatchcase on these exact pairs (the reference), covering every corner §4.2 lists.
#include "pipeline/plan/fnmatch.h"

#include <doctest/doctest.h>

#include <string>

using namespace shardquant;

namespace {
struct fn_case {
  const char* name;
  const char* pattern;
  bool expected;
};
const fn_case k_cases[] = {
    {"lm_head", "lm_head", true},
    {"lm_head.weight", "lm_head", false},
    {"LM_HEAD", "lm_head", false},
    {"model.layers.0.self_attn.q_proj", "*self_attn*", true},
    {"", "*", true},
    {"a.b.c", "a*c", true},
    {"abc", "a?c", true},
    {"ac", "a?c", false},
    {"abbc", "a?c", false},
    {"é", "?", true},
    {"éé", "?", false},
    {"b", "[abc]", true},
    {"d", "[abc]", false},
    {"m", "[a-z]", true},
    {"M", "[a-z]", false},
    {"b", "[!a]", true},
    {"a", "[!a]", false},
    {"]", "[]]", true},
    {"a", "[]]", false},
    {"a", "[!]]", true},
    {"]", "[!]]", false},
    {"a", "[]a]", true},
    {"]", "[]a]", true},
    {"[abc", "[abc", true},
    {"a[", "a[", true},
    {"a", "[z-a]", false},
    {"z", "[z-a]", false},
    {"-", "[z-a]", false},
    {"b", "[z-ab]", true},
    {"a", "[z-ab]", false},
    {"a\\b", "a\\b", true},
    {"\\x", "\\*", true},
    {"x", "\\*", false},
    {"{a,b}", "{a,b}", true},
    {"a", "{a,b}", false},
    {"x.mlp.gate.foo", "*.mlp.gate", false},
    {"model.layers.1.mlp.gate", "*.mlp.gate", true},
    {"[!]", "[!]", true},
    {"-", "[a-]", true},
    {"a", "[a-]", true},
    {"b", "[a-]", false},
    {"q", "[!z-a]", true},
    {".", "[--0]", true},
    {"/", "[--0]", true},
    {"1", "[--0]", false},
    {"^", "[^a]", true},
    {"b", "[^a]", false},
    {"a-c", "[a-c]-c", true},
    {"b", "[a-c-e]", true},
    {"-", "[a-c-e]", true},
    {"d", "[a-c-e]", false},
    {"e", "[a-c-e]", true},
    {"model.layers.61.mlp", "model.layers.61.*", true},
    {"model.layers.610", "model.layers.61.*", false},
    {"aXbXc", "a*b*c", true},
    {"abcbd", "a*b?d", false},
    {"", "", true},
    {"a", "", false},
    {"a", "[!]", false},
    {"!", "[!!]", false},
    {"a", "[!!]", true},
    {"x", "[!z-ab-c]", true},
    {"b", "[!z-ab-c]", false},
    {"a", "[!z-ab-c]", true},
    {"c", "[!z-ab-c]", false},
    {"&", "[&&]", true},
    {"~", "[a~~]", true},
};
}  // namespace

TEST_CASE("fnmatch agrees with CPython on every corner of the glob grammar") {
  for (const auto& c : k_cases) {
    INFO("name '" << c.name << "' pattern '" << c.pattern << "'");
    CHECK(fnmatch(c.name, c.pattern) == c.expected);
    CHECK(glob_pattern(c.pattern).matches(c.name) == c.expected);
  }
}

TEST_CASE("a star pattern backtracks over long names without blowing up") {
  const std::string name(2000, 'a');
  CHECK(fnmatch(name, "*a*a*a*a*a*a*a*a"));
  CHECK_FALSE(fnmatch(name, "*a*a*a*a*a*a*a*b"));
}

TEST_CASE("fnmatch_any is true when one of several patterns matches") {
  std::vector<glob_pattern> ps{glob_pattern("lm_head"), glob_pattern("*mlp.gate")};
  CHECK(fnmatch_any("model.layers.3.mlp.gate", ps));
  CHECK(fnmatch_any("lm_head", ps));
  CHECK_FALSE(fnmatch_any("model.layers.3.mlp.gate_proj", ps));
  CHECK_FALSE(fnmatch_any("x", {}));
}
