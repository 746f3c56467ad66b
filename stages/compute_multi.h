// Several device backends as one (`--device cuda:0,1`: one backend per device): the scheduler
// that picks the backend of each job, and the compute_backend that forwards jobs through it.
// Pure dispatch: no math, no device calls, no graph; depends only on stages/compute_backend.h.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "stages/compute_backend.h"

namespace shardquant {

// Picks the backend of each job. Every job of a split per-tensor-scheme tensor goes where its
// tensor's first job went (a device backend keeps the tensor's amax in its own memory); any other
// job goes to the backend with the smallest share of its capacity in flight, ties taken in turn.
// A slow backend's jobs stay in flight longer, so it is offered fewer new ones while the others
// take the rest; idle backends of equal capacity share evenly. Thread-safe.
class device_scheduler {
 public:
  // `capacity`: how many jobs each backend takes at once (its concurrency(); at least 1).
  explicit device_scheduler(std::vector<unsigned> capacity);
  // The backend for a job of tensor `t` (null: not a split per-tensor-scheme tensor), counted in
  // flight until release().
  [[nodiscard]] size_t acquire(tensor_state* t);
  void release(size_t backend);
  [[nodiscard]] uint64_t in_flight(size_t backend) const;
  [[nodiscard]] size_t size() const noexcept { return capacity_.size(); }

 private:
  std::vector<uint64_t> capacity_;
  std::vector<uint64_t> load_;
  size_t next_ = 0;  // where the search for the least loaded starts: ties rotate
  mutable std::mutex mutex_;
};

// One backend over `backends` (at least one; one is returned as it is, so a one-device run is
// exactly that device's backend). Concurrency and device memory are the sums, the name the
// first backend's.
[[nodiscard]] std::unique_ptr<compute_backend> make_multi_backend(
    std::vector<std::unique_ptr<compute_backend>> backends);

}  // namespace shardquant
