// The golden vectors of formats.md §12.7 (data in tests/golden_vectors.h), byte for byte, on the
// GPU: whole tensor and (where the rows allow) one launch per row.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/golden_vectors.h"
#include "tests/gpu/gpu_test_util.h"

using namespace shardquant;
using namespace shardquant::test;

namespace {

// Runs each case's scheme on its bf16 tensor on the GPU and compares every output tensor with the
// expected, once over the whole tensor and, for schemes without cross-row groups, per row.
void check_golden(const golden::cases& cases) {
  for (const golden::golden_case& c : cases) {
    const std::vector<uint64_t>& shape = c.shape;
    const std::string scheme_s(info(c.scheme).name);
    CAPTURE(scheme_s);
    gpu_source src;
    src.type = dtype::bf16;
    src.host = c.input.data();
    std::vector<std::vector<uint64_t>> splits{{}};
    const scheme_family f = info(c.scheme).family;
    if (shape[0] > 1 && f != scheme_family::int4_group && f != scheme_family::uint4_group) {
      std::vector<uint64_t> every_row;
      for (uint64_t r = 1; r < shape[0]; ++r) every_row.push_back(r);
      splits.push_back(every_row);
    }
    for (const auto& cuts : splits) {
      const size_t ranges = cuts.size() + 1;
      CAPTURE(ranges);
      const run_result r = gpu_run(c.scheme, src, shape, cuts);
      golden::check_outputs(r, c);
    }
  }
}

}  // namespace

// One test case per vector, named "GPU " + its sentence.
#define SQ_GOLDEN_GPU_TEST(builder, sentence) \
  TEST_CASE("GPU " sentence) {                \
    check_golden(golden::builder(sentence));  \
  }
SQ_GOLDEN_VECTORS(SQ_GOLDEN_GPU_TEST)
#undef SQ_GOLDEN_GPU_TEST
