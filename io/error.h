// The errors every layer above kernels throws for bad input (formats.md §2.3, design.md §5):
// the classes are public API, declared in include/shardquant/errors.h (a leaf header that is
// installed); this header is the internal name for them. Owns no I/O.
#pragma once

#include "shardquant/errors.h"
