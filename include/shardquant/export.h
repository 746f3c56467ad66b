// SHARDQUANT_API marks what libshardquant.so exports. The library is built with
// -fvisibility=hidden, so everything not marked (plan, graph, kernels, io) stays internal; the
// same attribute on the consumer's side is harmless. A leaf: no other header.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define SHARDQUANT_API __attribute__((visibility("default")))
#else
#define SHARDQUANT_API
#endif
