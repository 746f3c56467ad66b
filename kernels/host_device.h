// Marks the one-math functions shared by the CPU reference, the CPU fast path and the CUDA
// kernels. Empty without nvcc so these headers stay plain C++ for host code.
#pragma once

#if defined(__CUDACC__)
#define SQ_HD __host__ __device__ __forceinline__
#else
#define SQ_HD inline
#endif
