// Hadamard rotations of weights (kernels/hadamard.h, kernels/FORMATS-rotation.md). The operation
// order is Quark 0.13's, step for step, because the rotated values are rounded to the source dtype
// and a different order rounds differently. Depends on kernels/numeric.h and the tables only.
#include "kernels/hadamard.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/hadamard_tables.h"
#include "kernels/numeric.h"

namespace shardquant {
namespace {

bool is_pow2(std::size_t n) {
  return n > 0 && (n & (n - 1)) == 0;
}

std::size_t elem_size(dtype t) {
  switch (t) {
    case dtype::f32:
      return 4;
    case dtype::bf16:
    case dtype::f16:
      return 2;
    default:
      throw std::invalid_argument("hadamard rotation: the weight must be F32, BF16 or F16");
  }
}

float load(const void* p, dtype t, std::size_t i) {
  if (t == dtype::f32) {
    float v;
    std::memcpy(&v, static_cast<const std::byte*>(p) + i * 4, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, static_cast<const std::byte*>(p) + i * 2, 2);
  return t == dtype::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Stores a float that already is a value of type t (or rounds it to t, RNE).
void store(void* p, dtype t, std::size_t i, float v) {
  if (t == dtype::f32) {
    std::memcpy(static_cast<std::byte*>(p) + i * 4, &v, 4);
    return;
  }
  const uint16_t h = t == dtype::bf16 ? to_bf16_rne(v) : to_f16_rne(v);
  std::memcpy(static_cast<std::byte*>(p) + i * 2, &h, 2);
}

// Rounds an fp32 value to the nearest value of t (PyTorch's float -> bf16/f16 cast, RNE).
float round_to(dtype t, float v) {
  if (t == dtype::bf16) return bf16_to_f32(to_bf16_rne(v));
  if (t == dtype::f16) return f16_to_f32(to_f16_rne(v));
  return v;
}

// PyTorch's float64 -> bf16/f16 cast goes through fp32 (c10::BFloat16 and c10::Half are built from
// a float): two roundings, which is what Quark's `.to(dtype)` after a float64 matmul does.
float from_f64(double v) {
  return static_cast<float>(v);
}

hadamard_factor require_factor(std::size_t n) {
  auto f = find_hadamard_factor(n);
  if (!f) throw std::invalid_argument(hadamard_size_problem(n));
  return std::move(*f);
}

void check_shape(std::size_t rows, std::size_t cols, std::size_t size, const char* what) {
  (void)rows;
  if (size == 0 || cols % size != 0) {
    throw std::invalid_argument(std::string("hadamard rotation: rotation size ") +
                                std::to_string(size) + " does not divide the " + what + " " +
                                std::to_string(cols));
  }
}

template <typename F>
void for_rows(std::size_t rows, F&& body) {
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, rows, 16),
                    [&](const tbb::blocked_range<std::size_t>& r) {
                      for (std::size_t i = r.begin(); i != r.end(); ++i) body(i);
                    });
}

}  // namespace

std::string hadamard_size_problem(std::size_t n) {
  if (find_hadamard_factor(n)) return {};
  return "Could not find an Hadamard matrix for the size n=" + std::to_string(n) +
         " (it must be 2^j or k * 2^j with k one of 172, 156, 140, 108, 60, 52, 40, 36, 28, 20, "
         "12)";
}

std::optional<hadamard_factor> find_hadamard_factor(std::size_t n) {
  hadamard_factor f;
  f.n = n;
  if (is_pow2(n)) return f;
  for (const known_hadamard& h : k_known_hadamards) {
    if (n % h.size == 0 && is_pow2(n / h.size)) {
      f.k = h.size;
      f.base.resize(h.size * h.size);
      for (std::size_t r = 0; r < h.size; ++r) {
        for (std::size_t c = 0; c < h.size; ++c) {
          f.base[r * h.size + c] = h.rows[r][c] == '+' ? 1 : -1;
        }
      }
      return f;
    }
  }
  return std::nullopt;
}

void input_rotation_bytes(std::size_t n, uint64_t offset, uint64_t count, int8_t* out) {
  const hadamard_factor f = require_factor(n);
  const std::size_t m = n / f.k;
  for (uint64_t t = 0; t < count; ++t) {
    const uint64_t i = (offset + t) / n, j = (offset + t) % n;
    // Sylvester's H(m)[b][b'] = (-1)^popcount(b & b'), what scipy.linalg.hadamard builds.
    const uint64_t b = i % m, bp = j % m;
    const int sylv = (__builtin_popcountll(b & bp) & 1) ? -1 : 1;
    const int base = f.k == 1 ? 1 : f.base[(i / m) * f.k + (j / m)];
    out[t] = static_cast<int8_t>(sylv * base);
  }
}

std::vector<int8_t> input_rotation_matrix(std::size_t n) {
  (void)require_factor(n);
  std::vector<int8_t> out(n * n);
  input_rotation_bytes(n, 0, out.size(), out.data());
  return out;
}

void hadamard_vector_f64(double* x, const hadamard_factor& f, bool transpose) {
  const std::size_t n = f.n, k = f.k, m = n / k;
  // Quark's float64 matrix holds +-(1 / sqrt(n)) in every entry: each product x_i * c is rounded.
  const double c = 1.0 / std::sqrt(static_cast<double>(n));
  for (std::size_t i = 0; i < n; ++i) x[i] *= c;
  for (std::size_t h = 1; h < m; h *= 2) {
    for (std::size_t g = 0; g < n; g += 2 * h) {
      for (std::size_t j = g; j < g + h; ++j) {
        const double a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  if (k == 1) return;
  std::vector<double> tmp(n, 0.0);
  for (std::size_t ap = 0; ap < k; ++ap) {
    for (std::size_t a = 0; a < k; ++a) {
      const int s = transpose ? f.base[ap * k + a] : f.base[a * k + ap];
      for (std::size_t b = 0; b < m; ++b) tmp[ap * m + b] += s * x[a * m + b];
    }
  }
  for (std::size_t i = 0; i < n; ++i) x[i] = tmp[i];
}

void rotate_input_channels_full(void* data, dtype type, std::size_t rows, std::size_t cols) {
  const std::size_t es = elem_size(type);
  const hadamard_factor f = require_factor(cols);
  const std::size_t n = cols, k = f.k, m = n / k;
  // torch.tensor(n).sqrt(): an int64 tensor's sqrt is an fp32 tensor, correctly rounded.
  const float sqrt_n = std::sqrt(static_cast<float>(n));
  for_rows(rows, [&](std::size_t r) {
    void* row = static_cast<std::byte*>(data) + r * n * es;
    std::vector<float> x(n), acc;
    for (std::size_t i = 0; i < n; ++i) x[i] = load(row, type, i);
    // Butterflies in the weight's dtype: each sum and difference is rounded to it.
    for (std::size_t h = 1; h < m; h *= 2) {
      for (std::size_t g = 0; g < n; g += 2 * h) {
        for (std::size_t j = g; j < g + h; ++j) {
          const float a = x[j], b = x[j + h];
          x[j] = round_to(type, a + b);
          x[j + h] = round_to(type, a - b);
        }
      }
    }
    if (k > 1) {
      // hadamard_K.T @ inp as a matmul in the weight's dtype: fp32 accumulation in base-row
      // order, one rounding at the end (what PyTorch's CPU matmul gave on every golden).
      acc.assign(n, 0.0f);
      for (std::size_t ap = 0; ap < k; ++ap) {
        for (std::size_t a = 0; a < k; ++a) {
          const float s = static_cast<float>(f.base[a * k + ap]);
          for (std::size_t b = 0; b < m; ++b) acc[ap * m + b] += s * x[a * m + b];
        }
      }
      for (std::size_t i = 0; i < n; ++i) x[i] = round_to(type, acc[i]);
    }
    for (std::size_t i = 0; i < n; ++i) store(row, type, i, x[i] / sqrt_n);
  });
}

void rotate_input_channels_f64(void* data, dtype type, std::size_t rows, std::size_t cols,
                               std::size_t size) {
  const std::size_t es = elem_size(type);
  check_shape(rows, cols, size, "input dimension");
  const hadamard_factor f = require_factor(size);
  for_rows(rows, [&](std::size_t r) {
    void* row = static_cast<std::byte*>(data) + r * cols * es;
    std::vector<double> x(size);
    for (std::size_t b0 = 0; b0 < cols; b0 += size) {
      for (std::size_t i = 0; i < size; ++i) x[i] = load(row, type, b0 + i);
      hadamard_vector_f64(x.data(), f);
      for (std::size_t i = 0; i < size; ++i) store(row, type, b0 + i, from_f64(x[i]));
    }
  });
}

void rotate_output_channels_f64(void* data, dtype type, std::size_t rows, std::size_t cols,
                                std::size_t size) {
  const std::size_t es = elem_size(type);
  check_shape(cols, rows, size, "output dimension");
  const hadamard_factor f = require_factor(size);
  const std::size_t blocks = rows / size;
  // One task per (row block, column strip): the column vectors of a block are independent.
  constexpr std::size_t strip = 64;
  const std::size_t strips = (cols + strip - 1) / strip;
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, blocks * strips),
                    [&](const tbb::blocked_range<std::size_t>& range) {
                      std::vector<double> x(size);
                      for (std::size_t t = range.begin(); t != range.end(); ++t) {
                        const std::size_t blk = t / strips, c0 = (t % strips) * strip;
                        const std::size_t c1 = std::min(cols, c0 + strip);
                        for (std::size_t c = c0; c < c1; ++c) {
                          for (std::size_t i = 0; i < size; ++i) {
                            x[i] = load(data, type, (blk * size + i) * cols + c);
                          }
                          hadamard_vector_f64(x.data(), f);
                          for (std::size_t i = 0; i < size; ++i) {
                            store(data, type, (blk * size + i) * cols + c, from_f64(x[i]));
                          }
                        }
                      }
                    });
  (void)es;
}

void apply_rotation(const rotation_step& s, void* data, dtype type, std::size_t rows,
                    std::size_t cols) {
  switch (s.kind) {
    case rotation_kind::input_full:
      if (s.size != cols) {
        throw std::invalid_argument("hadamard rotation: a full-width rotation of size " +
                                    std::to_string(s.size) + " on a weight with " +
                                    std::to_string(cols) + " input channels");
      }
      rotate_input_channels_full(data, type, rows, cols);
      return;
    case rotation_kind::input_blocked:
      rotate_input_channels_f64(data, type, rows, cols, s.size);
      return;
    case rotation_kind::output_blocked:
      rotate_output_channels_f64(data, type, rows, cols, s.size);
      return;
  }
}

}  // namespace shardquant
