// The golden vectors of formats.md §12.7 (data in tests/golden_vectors.h), byte for byte, through
// both the reference and the fast quantizer.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/golden_vectors.h"
#include "tests/kernels_test_util.h"

using namespace shardquant;
using namespace shardquant::test;

namespace {

// Runs each case's scheme on its bf16 tensor and compares every output tensor with the expected.
void check_golden(const golden::cases& cases) {
  for (const golden::golden_case& c : cases) {
    for (impl i : {impl::reference, impl::fast}) {
      const std::string impl_s = impl_name(i);
      CAPTURE(impl_s);
      const std::string scheme_s(info(c.scheme).name);
      CAPTURE(scheme_s);
      const run_result r = run_scheme(i, c.scheme, dtype::bf16, c.shape, c.input.data());
      golden::check_outputs(r, c);
    }
  }
}

}  // namespace

// One test case per vector, named by its sentence.
#define SQ_GOLDEN_CPU_TEST(builder, sentence) \
  TEST_CASE(sentence) {                       \
    check_golden(golden::builder(sentence));  \
  }
SQ_GOLDEN_VECTORS(SQ_GOLDEN_CPU_TEST)
#undef SQ_GOLDEN_CPU_TEST
