// The public C++ API inside the source tree: the declarations live in the installed leaf
// headers of include/shardquant/ (options, report, plan, progress, errors: input_error, io_error,
// usage_error, and cancelled_error after quantize_options::cancel), so the library's users and its
// own code see one definition. The implementation assembles plan, geometry, graph, progress and
// report (api.cpp, plan_api.cpp, catalog.cpp). Stable: the CLI's `quantize` command calls exactly
// this.
#pragma once

#include "shardquant/shardquant.h"
