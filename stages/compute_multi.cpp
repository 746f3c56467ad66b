// Several device backends as one (compute_multi.h).
#include "stages/compute_multi.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace shardquant {

device_scheduler::device_scheduler(std::vector<unsigned> capacity)
    : capacity_(capacity.begin(), capacity.end()), load_(capacity.size(), 0) {
  if (capacity_.empty()) throw std::logic_error("device_scheduler: no backend");
  for (auto& c : capacity_) c = std::max<uint64_t>(c, 1);
}

size_t device_scheduler::acquire(tensor_state* t) {
  std::lock_guard lock(mutex_);
  if (t && t->backend >= 0) {
    const auto b = static_cast<size_t>(t->backend);
    ++load_[b];
    return b;
  }
  const size_t n = capacity_.size();
  size_t best = next_;
  for (size_t k = 1; k < n; ++k) {
    const size_t i = (next_ + k) % n;
    // load_[i] / capacity_[i] < load_[best] / capacity_[best], without division
    if (load_[i] * capacity_[best] < load_[best] * capacity_[i]) best = i;
  }
  next_ = (best + 1) % n;
  ++load_[best];
  if (t) t->backend = static_cast<int>(best);
  return best;
}

void device_scheduler::release(size_t backend) {
  std::lock_guard lock(mutex_);
  if (backend >= load_.size() || load_[backend] == 0)
    throw std::logic_error("device_scheduler: release of backend " + std::to_string(backend) +
                           " with nothing in flight");
  --load_[backend];
}

uint64_t device_scheduler::in_flight(size_t backend) const {
  std::lock_guard lock(mutex_);
  return load_.at(backend);
}

namespace {

std::vector<unsigned> capacities(const std::vector<std::unique_ptr<compute_backend>>& b) {
  std::vector<unsigned> c;
  for (const auto& x : b) c.push_back(x->concurrency());
  return c;
}

class multi_backend final : public compute_backend {
 public:
  explicit multi_backend(std::vector<std::unique_ptr<compute_backend>> backends)
      : backends_(std::move(backends)), scheduler_(capacities(backends_)) {}

  void run(job& j, compute_done done) override {
    const size_t b = scheduler_.acquire(j.tensor_shared.get());
    // Released before the graph hears of it, so the job the graph hands over next sees the load
    // without this one.
    backends_[b]->run(j, [this, b, done = std::move(done)](std::exception_ptr e) {
      scheduler_.release(b);
      done(e);
    });
  }
  void drain() override {
    for (auto& b : backends_) b->drain();
  }
  [[nodiscard]] unsigned concurrency() const noexcept override {
    unsigned n = 0;
    for (const auto& b : backends_) n += b->concurrency();
    return n;
  }
  [[nodiscard]] std::string name() const override { return backends_.front()->name(); }
  [[nodiscard]] uint64_t peak_device_bytes() const noexcept override {
    uint64_t n = 0;
    for (const auto& b : backends_) n += b->peak_device_bytes();
    return n;
  }

 private:
  std::vector<std::unique_ptr<compute_backend>> backends_;
  device_scheduler scheduler_;
};

}  // namespace

std::unique_ptr<compute_backend> make_multi_backend(
    std::vector<std::unique_ptr<compute_backend>> backends) {
  if (backends.empty()) throw std::logic_error("make_multi_backend: no backend");
  if (backends.size() == 1) return std::move(backends.front());
  return std::make_unique<multi_backend>(std::move(backends));
}

}  // namespace shardquant
