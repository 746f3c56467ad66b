// libFuzzer target for the safetensors header reader (design.md §5: the reader is fuzzed).
// The input is a whole file image. A rejected input must throw input_error and nothing else;
// an accepted one must satisfy the tiling invariants, and its tensors must survive a round trip
// through shard_layout (the writer) and the reader again. Any other outcome aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "io/error.h"
#include "io/safetensors.h"

using namespace shardquant;

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

void check_accepted(const safetensors_header& h, uint64_t file_size) {
  if (h.data_start != 8 + h.header_len || h.data_start > file_size) broken("data_start");
  uint64_t total = 0;
  for (const auto& t : h.tensors) {
    if (t.end < t.begin || t.end > file_size - h.data_start) broken("tensor range");
    if (t.numel() * bits(t.type) != 8 * t.byte_size()) broken("tensor size");
    if (h.find(t.name) != &t) broken("find");
    total += t.byte_size();
  }
  if (total != file_size - h.data_start) broken("tensors do not tile the data section");

  std::vector<tensor_spec> specs;
  for (const auto& t : h.tensors) specs.push_back({t.name, t.type, t.shape});
  const shard_layout layout = shard_layout::make("fuzz-out", specs);
  const std::string& bytes = layout.header_bytes();
  const safetensors_header back = parse_safetensors_header(
      "fuzz-out", std::as_bytes(std::span<const char>(bytes.data(), bytes.size())),
      layout.file_size());
  if (back.tensors.size() != h.tensors.size()) broken("round trip count");
  for (const auto& t : h.tensors) {
    const tensor_entry* r = back.find(t.name);
    if (!r || r->type != t.type || r->shape != t.shape || r->byte_size() != t.byte_size())
      broken("round trip entry");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  safetensors_header h;
  try {
    h = parse_safetensors_header("fuzz-input", bytes, size);
  } catch (const input_error&) {
    return 0;
  }
  check_accepted(h, size);
  return 0;
}
