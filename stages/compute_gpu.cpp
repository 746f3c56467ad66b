// The CUDA compute backend: per device N lanes (a stream, a device buffer the size of a token,
// a workspace and a pinned status word). A job is copied to the same offsets of its lane's
// device buffer (H2D), quantized there (kernels through kernels/gpu_api.h) and its output
// pieces copied back (D2H); the stream's completion callback only queues an event, and one
// dispatcher thread turns events into job completions and starts queued jobs (CUDA calls are
// not allowed inside the callback). Copies, casts and block-FP8 recovery for pass-through run on
// the CPU path. Split per-tensor-scheme tensors share a workspace slot on one device: their amax
// jobs fold into it, their quantize jobs (released by the graph's amax gate once every amax job
// completed) read it.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "io/error.h"
#include "kernels/gpu_api.h"
#include "stages/compute_backend.h"
#include "stages/compute_cpu.h"

namespace shardquant {

#if defined(SHARDQUANT_HAVE_CUDA)

namespace {

struct lane {
  int device = 0;
  gpu::stream stream;
  gpu::device_buffer buffer;
  gpu::device_buffer workspace;
  gpu::pinned_buffer status;  // one gpu::kernel_status
  job* current = nullptr;
  compute_done done;
  lane(int dev, uint64_t bytes, size_t ws)
      : device(dev),
        stream(dev),
        buffer(bytes, dev),
        workspace(ws, dev),
        status(sizeof(gpu::kernel_status)) {}
};

struct device_slots {
  int device = 0;
  std::vector<std::unique_ptr<lane>> lanes;
  std::vector<lane*> idle;
  std::deque<std::pair<job*, compute_done>> pending;
  // Workspaces for split per-tensor tensors (shared across the tensor's jobs).
  std::vector<gpu::device_buffer> tensor_ws;
  std::vector<void*> free_tensor_ws;
};

class gpu_backend final : public compute_backend {
 public:
  gpu_backend(const std::vector<int>& devices, unsigned streams, uint64_t token_bytes,
              uint64_t tokens)
      : streams_(streams ? streams : 1), ws_bytes_(gpu::workspace_bytes()) {
    if (gpu::device_count() == 0) throw gpu::unavailable_error(gpu::unavailable_reason());
    for (int d : devices) {
      if (d >= gpu::device_count())
        throw usage_error("CUDA device " + std::to_string(d) + " does not exist (" +
                          std::to_string(gpu::device_count()) + " visible)");
      auto ds = std::make_unique<device_slots>();
      ds->device = d;
      // The device arena, sized at start: one token-sized buffer and a workspace per lane, and
      // workspace slots for split per-tensor tensors in flight.
      for (unsigned i = 0; i < streams_; ++i) {
        ds->lanes.push_back(std::make_unique<lane>(d, token_bytes, ws_bytes_));
        ds->idle.push_back(ds->lanes.back().get());
        arena_bytes_ += token_bytes + ws_bytes_;
      }
      for (uint64_t i = 0; i < tokens + 1; ++i) {
        ds->tensor_ws.emplace_back(ws_bytes_, d);
        ds->free_tensor_ws.push_back(ds->tensor_ws.back().data());
        arena_bytes_ += ws_bytes_;
      }
      devices_.push_back(std::move(ds));
    }
    dispatcher_ = std::thread([this] { dispatch(); });
  }

  ~gpu_backend() override {
    drain();
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    dispatcher_.join();
  }

  void run(job& j, compute_done done) override {
    if (!j.rotations.empty()) {
      // No CUDA rotation kernel yet: the CPU fallback wrapper (stages/compute_fallback.h) takes
      // every job of a rotated tensor. One reaching the device is a wiring bug; refuse rather than
      // quantize an unrotated weight.
      done(std::make_exception_ptr(std::logic_error(
          "'" + j.tensor + "': a rotated tensor's job reached the CUDA kernels (it must take the " +
          "CPU path)")));
      return;
    }
    // Work without a kernel stays on the CPU.
    if ((j.kind != job_kind::amax && j.kind != job_kind::quantize)) {
      run_cpu_compute_then(j, done);
      return;
    }
    try {
      arrange_input(j);
      // compressed-tensors: recovered on the CPU; the kernels then see dense F32 rows.
      if (j.ct.enabled) {
        const dtype rt = recovered_type_of(j);
        if (recover_rows(j)) {
          j.data_pos = j.work_pos;
          j.in_type = rt;  // F32, or BF16/F16 for FP4-packed sources
          j.ct.enabled = false;
        }
      }
    } catch (...) {
      done(std::current_exception());
      return;
    }
    std::lock_guard lock(mutex_);
    device_slots& ds = *devices_[pick_device_locked(j)];
    ++in_flight_;
    ds.pending.emplace_back(&j, std::move(done));
    cv_.notify_all();
  }

  void drain() override {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [this] { return in_flight_ == 0; });
  }

  unsigned concurrency() const noexcept override {
    return streams_ * static_cast<unsigned>(devices_.size());
  }
  std::string name() const override { return "cuda"; }
  uint64_t peak_device_bytes() const noexcept override { return arena_bytes_; }

 private:
  size_t pick_device_locked(job& j) {
    if (j.tensor_shared) {
      tensor_state& t = *j.tensor_shared;
      if (t.device < 0) t.device = static_cast<int>(next_device_++ % devices_.size());
      return static_cast<size_t>(t.device);
    }
    return next_device_++ % devices_.size();
  }

  // Enqueues everything for `j` on lane `l`; CUDA errors throw.
  void launch(device_slots& ds, lane& l, job& j) {
    gpu::set_device(l.device);
    auto* dev = static_cast<std::byte*>(l.buffer.data());
    std::byte* host = j.tok->data;
    const uint64_t in_bytes =
        j.fp8_block.enabled ? j.input.wanted_bytes() : j.rows * j.cols * bits(j.in_type) / 8;
    // Each input goes to the 16-byte boundary at or below its host position, inside its own
    // read area (io/tensor_source.h, device_start), so nothing else is overwritten.
    const uint64_t dev_data = device_start(j.data_pos);
    const uint64_t dev_scale = device_start(j.scale_data_pos);
    gpu::copy_to_device(dev + dev_data, host + j.data_pos, in_bytes, l.stream);
    if (j.fp8_block.enabled)
      gpu::copy_to_device(dev + dev_scale, host + j.scale_data_pos, j.fp8_block.scale.length,
                          l.stream);

    void* ws = l.workspace.data();
    if (j.tensor_shared) {
      tensor_state& t = *j.tensor_shared;
      // The first job of the tensor takes a slot and clears it before any of the tensor's
      // ranges (on other streams) can fold into it; the others wait on the tensor's mutex.
      std::lock_guard tensor_lock(t.mutex);
      if (t.device_workspace == nullptr) {
        {
          std::lock_guard lock(mutex_);
          if (ds.free_tensor_ws.empty())
            throw std::runtime_error("no free GPU workspace slot for split tensor '" + t.name +
                                     "'");
          t.device_workspace = ds.free_tensor_ws.back();
          ds.free_tensor_ws.pop_back();
        }
        t.workspace_bytes = ws_bytes_;
        gpu::reset_workspace(t.device_workspace, ws_bytes_, l.stream);
        l.stream.synchronize();
      }
      ws = t.device_workspace;
    } else {
      gpu::reset_workspace(ws, ws_bytes_, l.stream);
    }

    source_view v;
    fp8_block_source fv;
    const bool fp8 = j.fp8_block.enabled;
    if (fp8) {
      fv = fp8_block_source_of(j, dev + dev_data, dev + dev_scale);
    } else {
      v.type = j.in_type;
      v.shape = j.shape;
      v.data = dev + dev_data;
      v.row_begin = j.row_begin;
      v.row_end = j.row_begin + j.rows;
    }
    auto check = [&](const quant_status& st) {
      if (!st.ok()) throw input_error(j.source, j.tensor, input_error::no_offset, st.message());
    };
    if (j.kind == job_kind::amax) {
      check(fp8 ? gpu::tensor_amax(fv, ws, ws_bytes_, l.stream)
                : gpu::tensor_amax(v, ws, ws_bytes_, l.stream));
    } else {
      // A whole per-tensor-scheme tensor in one job: its amax first, in its own workspace.
      if (!j.tensor_shared && needs_tensor_amax(j.scheme))
        check(fp8 ? gpu::tensor_amax(fv, ws, ws_bytes_, l.stream)
                  : gpu::tensor_amax(v, ws, ws_bytes_, l.stream));
      quant_outputs out;
      // Outputs sit in the token at their file offset modulo 4096 (write_start, for O_DIRECT
      // writes), which after a 4-byte scale or an odd-sized tensor is any byte; the kernels
      // store vectors, so they write at device_start (still past the previous area: each output
      // area starts on a block boundary), and the D2H copy moves the bytes to their host
      // position.
      for (const auto& p : j.outputs) {
        void* d = dev + device_start(p.token_pos);
        if (p.slot == 0) out.weight = d;
        if (p.slot == 1) out.scale = d;
        if (p.slot == 2) out.extra = d;
        if (p.slot == 3) out.extra2 = d;  // zero point of a pair's asymmetric second stage
      }
      check(fp8 ? gpu::quantize(j.scheme, fv, out, ws, ws_bytes_, l.stream)
                : gpu::quantize(j.scheme, v, out, ws, ws_bytes_, l.stream));
      for (const auto& p : j.outputs)
        gpu::copy_to_host(host + p.token_pos, dev + device_start(p.token_pos), p.total_bytes(),
                          l.stream);
    }
    gpu::read_status(ws, l.status.as<gpu::kernel_status>(), l.stream);
    gpu::on_complete(l.stream, [this, lp = &l](std::exception_ptr e) {
      std::lock_guard lock(mutex_);
      events_.emplace_back(lp, e);
      cv_.notify_all();
    });
  }

  // Called by the dispatcher when a lane's work is done: the job's completion, then bookkeeping.
  void finish(device_slots& ds, lane& l, std::exception_ptr e) {
    job& j = *l.current;
    compute_done done = std::move(l.done);
    l.current = nullptr;
    if (!e) {
      const quant_status st = gpu::to_quant_status(*l.status.as<gpu::kernel_status>());
      if (!st.ok())
        e = std::make_exception_ptr(
            input_error(j.source, j.tensor, input_error::no_offset, st.message()));
    }
    if (j.tensor_shared && j.kind == job_kind::quantize &&
        j.tensor_shared->quantize_jobs_left.fetch_sub(1) == 1) {
      std::lock_guard lock(mutex_);
      ds.free_tensor_ws.push_back(j.tensor_shared->device_workspace);
      j.tensor_shared->device_workspace = nullptr;
    }
    done(e);
    std::lock_guard lock(mutex_);
    ds.idle.push_back(&l);
    --in_flight_;
    if (in_flight_ == 0) idle_cv_.notify_all();
  }

  void dispatch() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !events_.empty() || startable_locked(); });
      if (stop_ && events_.empty()) return;
      while (!events_.empty()) {
        auto [l, e] = events_.front();
        events_.pop_front();
        device_slots& ds = slots_of(l->device);
        lock.unlock();
        finish(ds, *l, e);
        lock.lock();
      }
      for (auto& dsp : devices_) {
        device_slots& ds = *dsp;
        while (!ds.idle.empty() && !ds.pending.empty()) {
          lane* l = ds.idle.back();
          ds.idle.pop_back();
          auto [j, done] = std::move(ds.pending.front());
          ds.pending.pop_front();
          l->current = j;
          l->done = std::move(done);
          lock.unlock();
          try {
            launch(ds, *l, *j);
          } catch (...) {
            // Nothing of this job is on the stream after the failing call that matters: wait
            // for what was queued, then complete the job with the error.
            std::exception_ptr e = std::current_exception();
            try {
              l->stream.synchronize();
            } catch (...) {
            }
            finish(ds, *l, e);
          }
          lock.lock();
        }
      }
    }
  }

  bool startable_locked() const {
    for (const auto& ds : devices_)
      if (!ds->idle.empty() && !ds->pending.empty()) return true;
    return false;
  }
  device_slots& slots_of(int device) {
    for (auto& ds : devices_)
      if (ds->device == device) return *ds;
    throw std::logic_error("unknown device");
  }

  unsigned streams_;
  size_t ws_bytes_;
  uint64_t arena_bytes_ = 0;
  std::vector<std::unique_ptr<device_slots>> devices_;
  std::mutex mutex_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::pair<lane*, std::exception_ptr>> events_;
  uint64_t in_flight_ = 0;
  uint64_t next_device_ = 0;
  bool stop_ = false;
  std::thread dispatcher_;
};

}  // namespace

std::unique_ptr<compute_backend> make_gpu_backend(const std::vector<int>& devices, unsigned streams,
                                                  uint64_t token_bytes, uint64_t tokens) {
  return std::make_unique<gpu_backend>(devices, streams, token_bytes, tokens);
}

#else

// A build without CUDA (-DSHARDQUANT_CUDA=OFF) has no kernels to launch.
std::unique_ptr<compute_backend> make_gpu_backend(const std::vector<int>&, unsigned, uint64_t,
                                                  uint64_t) {
  throw gpu::unavailable_error(
      "--device cuda: this build has no CUDA support (configured with SHARDQUANT_CUDA=OFF)");
}

#endif

}  // namespace shardquant
