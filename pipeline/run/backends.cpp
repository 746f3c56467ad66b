// The compute backends of a run (backends.h).
#include "pipeline/run/backends.h"

#include <algorithm>

#include "kernels/schemes.h"
#include "stages/compute_fallback.h"
#include "stages/compute_multi.h"

namespace shardquant {

std::unique_ptr<compute_backend> make_run_backend(const std::vector<int>& devices, unsigned streams,
                                                  token_geometry tokens, const backend_seam& seam) {
  std::vector<std::unique_ptr<compute_backend>> each;
  if (devices.empty()) {
    for (unsigned i = 0; i < std::max(seam.cpu_backends, 1u); ++i)
      each.push_back(seam.make_cpu ? seam.make_cpu(i, streams) : make_cpu_backend(streams));
    return make_multi_backend(std::move(each));
  }
  // One backend per device, each with its own lanes, arena and tensor workspaces.
  for (int d : devices)
    each.push_back(make_gpu_backend({d}, streams, tokens.token_bytes, tokens.count));
  // Schemes without a CUDA kernel (the table's backends column) run on the CPU path.
  return with_cpu_fallback(make_multi_backend(std::move(each)), backend_cuda);
}

}  // namespace shardquant
