// Fixed Hadamard rotations of weights, as AMD Quark 0.13's file-to-file flow applies them
// (kernels/FORMATS-rotation.md): the factorisation n = k * 2^j Quark uses, the int8
// `input_rotation` buffer, and the three weight transforms (online R1/R4 at full width in the
// source dtype, blocked input-channel rotations in float64, R2 output-channel rotations in
// float64). Pure math on caller-owned buffers: no files, no JSON, no TBB graph. Errors are
// exceptions only for sizes no Hadamard matrix exists for (callers check sizes when they plan,
// before any data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace shardquant {

// Quark's _get_hadamard_K(n): n = k * 2^j with k = 1 when n is a power of two, else the first of
// its known sizes (172, 156, 140, 108, 60, 52, 40, 36, 28, 20, 12) that divides n with a power of
// two left over. base is the k x k matrix (row-major, +-1); empty when k == 1.
struct hadamard_factor {
  std::size_t n = 0;
  std::size_t k = 1;
  std::vector<int8_t> base;
};
[[nodiscard]] std::optional<hadamard_factor> find_hadamard_factor(std::size_t n);
// The reason a size has no Hadamard rotation, in Quark's words ("" when it has one).
[[nodiscard]] std::string hadamard_size_problem(std::size_t n);

// The int8 [n, n] `input_rotation` buffer Quark writes for an online rotation of size n:
// kron(base, Sylvester(n / k)) (Sylvester(n) when n is a power of two), row-major, +-1.
// Throws std::invalid_argument when find_hadamard_factor(n) has no factor.
[[nodiscard]] std::vector<int8_t> input_rotation_matrix(std::size_t n);
// Bytes [offset, offset + count) of input_rotation_matrix(n), without building all of it (the
// buffer of a 14336-wide down_proj is 196 MiB; a job writes a token's worth at a time).
void input_rotation_bytes(std::size_t n, uint64_t offset, uint64_t count, int8_t* out);

// x <- x @ M (or x @ M^T when transpose) on one float64 vector of length f.n, where
// M = kron(base, Sylvester(n / k)) / sqrt(n) is Quark's rotation matrix; the scale
// 1 / sqrt(n) is applied first, as Quark's float64 matrix holds it in every entry.
void hadamard_vector_f64(double* x, const hadamard_factor& f, bool transpose = false);

// The weight transforms. data: a row-major [rows, cols] weight of type (F32, BF16 or F16), rotated
// in place and left in the same dtype. All throw std::invalid_argument on a size that does not
// divide, a size without a Hadamard factor, or another dtype.

// Online R1/R4 with rotation_size == in_features (Quark's matmul_hadU on the weight's own dtype):
// the butterfly stages round to the source dtype after every add, the k x k step accumulates in
// fp32 and rounds once, then fp32 division by fp32 sqrt(n) rounds to the source dtype.
// Rows are independent: any row range can be rotated alone.
void rotate_input_channels_full(void* data, dtype type, std::size_t rows, std::size_t cols);

// Input channels in blocks of `size` (size divides cols) in float64 (Quark's rotate_with_size):
// blocked online R1/R4 (rotation_size < in_features) and R2 on o_proj. Rows are independent.
void rotate_input_channels_f64(void* data, dtype type, std::size_t rows, std::size_t cols,
                               std::size_t size);

// Output channels in blocks of `size` rows (R2 on v_proj) in float64. rows must be a multiple of
// size: a row range can be rotated alone only when it starts and ends on a block boundary.
void rotate_output_channels_f64(void* data, dtype type, std::size_t rows, std::size_t cols,
                                std::size_t size);

// One rotation of a weight, as the plan records it and a compute stage applies it (in order).
enum class rotation_kind : uint8_t {
  input_full,      // rotate_input_channels_full (online R1/R4, size == in_features)
  input_blocked,   // rotate_input_channels_f64 (blocked online R1/R4, R2 on o_proj)
  output_blocked,  // rotate_output_channels_f64 (R2 on v_proj)
};
struct rotation_step {
  rotation_kind kind = rotation_kind::input_full;
  std::size_t size = 0;
  bool operator==(const rotation_step&) const = default;
};
// Applies `s` to a row range of `rows` whole rows (an output_blocked range must cover whole
// blocks of s.size rows).
void apply_rotation(const rotation_step& s, void* data, dtype type, std::size_t rows,
                    std::size_t cols);

}  // namespace shardquant
