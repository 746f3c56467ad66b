// libFuzzer target for the number- and order-preserving JSON tree used for config.json and the
// index: any input either throws input_error or parses; a parsed tree written out (§6.1 style)
// must parse back and write out to the very same bytes (tokens kept, escapes stable).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "io/error.h"
#include "io/json_value.h"

using namespace shardquant;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  json_value v;
  try {
    v = parse_json_object_text(text, "fuzz.json");
  } catch (const input_error&) {
    return 0;
  }
  std::string once;
  write_json_pretty(once, v);
  std::string twice;
  try {
    write_json_pretty(twice, parse_json_object_text(once, "fuzz-out.json"));
  } catch (const input_error& e) {
    std::fprintf(stderr, "written JSON does not parse back: %s\n", e.what());
    std::abort();
  }
  if (once != twice) {
    std::fprintf(stderr, "write(parse(write(x))) != write(x)\n");
    std::abort();
  }
  return 0;
}
