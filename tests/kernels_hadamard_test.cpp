// kernels/hadamard: Quark 0.13's Hadamard rotations byte for byte against goldens made by Quark's
// own functions (tests/conformance/rotation_goldens.py -> tests/data/rotation/goldens.safetensors),
// orthogonality (rotating back recovers the weights), and the refused sizes.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "kernels/hadamard.h"
#include "tensor_bytes_util.h"

using namespace shardquant;

namespace {

const std::filesystem::path k_goldens =
    std::filesystem::path(SQ_TEST_DATA_DIR) / "rotation" / "goldens.safetensors";

struct golden_case {
  std::vector<std::byte> in, out;
  dtype type;
  std::vector<uint64_t> shape;
};

golden_case load_case(const safetensors_header& h, const std::string& name) {
  const tensor_entry* e = h.find(name + ".in");
  REQUIRE_MESSAGE(e != nullptr, name);
  return {tensor_bytes(k_goldens, name + ".in"), tensor_bytes(k_goldens, name + ".out"), e->type,
          e->shape};
}

// Counts the elements whose bytes differ, and reports the first.
std::size_t count_diff(const std::vector<std::byte>& a, const std::vector<std::byte>& b,
                       std::size_t es, const std::string& name) {
  REQUIRE(a.size() == b.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < a.size(); i += es) {
    if (std::memcmp(&a[i], &b[i], es) != 0) {
      if (bad == 0) MESSAGE(name << ": first difference at element " << i / es);
      ++bad;
    }
  }
  return bad;
}

const char* const k_dtypes[] = {"bf16", "f16", "f32"};

}  // namespace

TEST_CASE("Quark's Hadamard factor search: powers of two, then the known sizes in Quark's order") {
  CHECK(find_hadamard_factor(256)->k == 1);
  CHECK(find_hadamard_factor(768)->k == 12);
  CHECK(find_hadamard_factor(40)->k == 40);  // 40 before 20: Quark's order, not the smallest k
  CHECK(find_hadamard_factor(80)->k == 40);
  CHECK(find_hadamard_factor(344)->k == 172);
  CHECK(find_hadamard_factor(11008)->k == 172);         // llama-2-7b's intermediate size
  CHECK(find_hadamard_factor(14336)->k == 28);          // llama-3-8b's intermediate size
  CHECK_FALSE(find_hadamard_factor(1040).has_value());  // 52 * 20: no power of two left over
  CHECK(hadamard_size_problem(1040).find("n=1040") != std::string::npos);
  CHECK(hadamard_size_problem(4096).empty());
  const auto f12 = find_hadamard_factor(12);
  REQUIRE(f12.has_value());
  // H H^T = 12 I: the table was transcribed right.
  for (std::size_t i = 0; i < 12; ++i) {
    for (std::size_t j = 0; j < 12; ++j) {
      int s = 0;
      for (std::size_t t = 0; t < 12; ++t) s += f12->base[i * 12 + t] * f12->base[j * 12 + t];
      CHECK(s == (i == j ? 12 : 0));
    }
  }
}

TEST_CASE("every known Hadamard base matrix is a Hadamard matrix (H H^T = k I)") {
  for (std::size_t k : {12, 20, 28, 36, 40, 52, 60, 108, 140, 156, 172}) {
    const auto f = find_hadamard_factor(k);
    REQUIRE(f.has_value());
    REQUIRE(f->k == k);
    bool ok = true;
    for (std::size_t i = 0; i < k; ++i) {
      for (std::size_t j = 0; j < k; ++j) {
        int s = 0;
        for (std::size_t t = 0; t < k; ++t) s += f->base[i * k + t] * f->base[j * k + t];
        ok = ok && s == static_cast<int>(i == j ? k : 0);
      }
    }
    CHECK_MESSAGE(ok, "k = " << k);
  }
}

TEST_CASE("the int8 input_rotation buffer equals Quark's build_input_rotation_int8") {
  const safetensors_header h = read_safetensors_header(k_goldens);
  for (std::size_t n : {2, 40, 96, 256, 344}) {
    const std::string name = "irot." + std::to_string(n);
    const std::vector<std::byte> want = tensor_bytes(k_goldens, name);
    const std::vector<int8_t> got = input_rotation_matrix(n);
    REQUIRE(want.size() == got.size());
    CHECK_MESSAGE(std::memcmp(want.data(), got.data(), got.size()) == 0, name);
  }
  CHECK_THROWS_AS((void)input_rotation_matrix(1040), std::invalid_argument);
}

TEST_CASE("full-width online rotation matches Quark's matmul_hadU in the weight's own dtype") {
  const safetensors_header h = read_safetensors_header(k_goldens);
  for (const char* dt : k_dtypes) {
    for (std::size_t n : {2, 64, 256, 768, 40, 80, 112, 344, 832}) {
      const std::string name = "full." + std::to_string(n) + "." + dt;
      golden_case c = load_case(h, name);
      const std::size_t es = c.type == dtype::f32 ? 4 : 2;
      std::vector<std::byte> got = c.in;
      rotate_input_channels_full(got.data(), c.type, c.shape[0], c.shape[1]);
      CHECK_MESSAGE(count_diff(got, c.out, es, name) == 0, name);
      // A row range alone gives the same bytes (rows are independent).
      std::vector<std::byte> part(c.in.begin() + static_cast<std::ptrdiff_t>(2 * n * es),
                                  c.in.end());
      rotate_input_channels_full(part.data(), c.type, c.shape[0] - 2, n);
      CHECK(std::memcmp(part.data(), c.out.data() + 2 * n * es, part.size()) == 0);
    }
  }
}

TEST_CASE("blocked input-channel and R2 rotations match Quark's float64 rotate_with_size") {
  const safetensors_header h = read_safetensors_header(k_goldens);
  for (const char* dt : k_dtypes) {
    for (auto [n, r] :
         {std::pair<std::size_t, std::size_t>{256, 64}, {768, 96}, {240, 120}, {1024, 512}}) {
      const std::string name = "blocked." + std::to_string(n) + "." + std::to_string(r) + "." + dt;
      golden_case c = load_case(h, name);
      const std::size_t es = c.type == dtype::f32 ? 4 : 2;
      std::vector<std::byte> got = c.in;
      rotate_input_channels_f64(got.data(), c.type, c.shape[0], c.shape[1], r);
      CHECK_MESSAGE(count_diff(got, c.out, es, name) == 0, name);
    }
    for (auto [n, hd] :
         {std::pair<std::size_t, std::size_t>{128, 64}, {192, 96}, {256, 128}, {80, 80}}) {
      const std::string suffix = std::to_string(n) + "." + std::to_string(hd) + "." + dt;
      golden_case o = load_case(h, "r2out." + suffix);
      const std::size_t es = o.type == dtype::f32 ? 4 : 2;
      std::vector<std::byte> got = o.in;
      rotate_output_channels_f64(got.data(), o.type, o.shape[0], o.shape[1], hd);
      const std::string oname = "r2out." + suffix, iname = "r2in." + suffix;
      CHECK_MESSAGE(count_diff(got, o.out, es, oname) == 0, oname);
      golden_case i = load_case(h, "r2in." + suffix);
      got = i.in;
      rotate_input_channels_f64(got.data(), i.type, i.shape[0], i.shape[1], hd);
      CHECK_MESSAGE(count_diff(got, i.out, es, iname) == 0, iname);
    }
  }
}

TEST_CASE("the rotation is orthogonal: rotating back recovers the weights within float rounding") {
  std::mt19937_64 rng(20261204);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (std::size_t n : {64, 768, 344, 40}) {
    const auto f = find_hadamard_factor(n);
    REQUIRE(f.has_value());
    std::vector<double> x(n);
    for (double& v : x) v = nd(rng);
    x[3] = 50.0;  // an outlier is spread: no element keeps more than a fraction of it
    std::vector<double> y = x;
    hadamard_vector_f64(y.data(), *f);
    double norm_x = 0, norm_y = 0, max_y = 0;
    for (std::size_t i = 0; i < n; ++i) {
      norm_x += x[i] * x[i];
      norm_y += y[i] * y[i];
      max_y = std::max(max_y, std::abs(y[i]));
    }
    CHECK(std::abs(norm_x - norm_y) < 1e-12 * norm_x);
    CHECK(max_y < 50.0 / 2);
    hadamard_vector_f64(y.data(), *f, /*transpose=*/true);
    double err = 0;
    for (std::size_t i = 0; i < n; ++i) err = std::max(err, std::abs(y[i] - x[i]));
    CHECK_MESSAGE(err < 1e-12, "n = " << n << " seed 20261204");
  }
  // The F32 weight transform: rotate, then rotate back in float64: the original within a few fp32
  // ulps (the rotated weight was rounded to fp32 once).
  const std::size_t rows = 3, n = 768;
  std::vector<float> w(rows * n);
  for (float& v : w) v = static_cast<float>(nd(rng));
  std::vector<float> r = w;
  rotate_input_channels_full(r.data(), dtype::f32, rows, n);
  const auto f = find_hadamard_factor(n);
  for (std::size_t i = 0; i < rows; ++i) {
    std::vector<double> y(r.begin() + static_cast<std::ptrdiff_t>(i * n),
                          r.begin() + static_cast<std::ptrdiff_t>((i + 1) * n));
    hadamard_vector_f64(y.data(), *f, true);
    for (std::size_t j = 0; j < n; ++j) {
      CHECK(std::abs(y[j] - w[i * n + j]) <= 1e-5 * (1.0 + std::abs(w[i * n + j])));
    }
  }
}

TEST_CASE(
    "a rotation size that does not divide the dimension, or has no Hadamard matrix, is refused") {
  std::vector<float> w(4 * 96);
  CHECK_THROWS_WITH_AS(rotate_input_channels_f64(w.data(), dtype::f32, 4, 96, 64),
                       doctest::Contains("does not divide the input dimension 96"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(rotate_output_channels_f64(w.data(), dtype::f32, 4, 96, 64),
                       doctest::Contains("does not divide the output dimension 4"),
                       std::invalid_argument);
  std::vector<float> w2(2 * 1040);
  CHECK_THROWS_WITH_AS(rotate_input_channels_full(w2.data(), dtype::f32, 2, 1040),
                       doctest::Contains("n=1040"), std::invalid_argument);
  std::vector<int8_t> w3(2 * 64);
  CHECK_THROWS_AS(rotate_input_channels_full(w3.data(), dtype::i8, 2, 64), std::invalid_argument);
}
