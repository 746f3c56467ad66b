// Flow graph assembly: the node bodies as small functors (fgbzip2 style), the error protocol and
// the wiring. Every node body and every async completion records the first failure and cancels
// the graph; bodies do nothing once failed; after the graph stops, I/O and the compute backend
// are drained, the graph waited for again (no callback outlives the run) and the tokens of
// unfinished jobs returned to the pool. Node bodies are copied by oneTBB, so they hold only
// pointers to the run's state. No math, no file layout: stages/ and the job builder own those.
#include "pipeline/run/graph.h"

#include <tbb/flow_graph.h>

#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>

#include "io/error.h"
#include "stages/compute_cpu.h"
#include "stages/io_stage.h"

namespace shardquant {

namespace {

namespace flow = tbb::flow;
using async_t = flow::async_node<job*, job*>;
using gateway_t = async_t::gateway_type;
using job_token = std::tuple<job*, token*>;
using clock_type = std::chrono::steady_clock;

// The run's first failure (an error or a cancel), shared by every node and completion.
class failure {
 public:
  explicit failure(const std::atomic<bool>* cancel) : cancel_(cancel) {}

  void record(std::exception_ptr e) {
    {
      std::lock_guard lock(mutex_);
      if (!first_) first_ = e;
    }
    failed_ = true;
    ctx_.cancel_group_execution();
  }
  [[nodiscard]] bool failed() const noexcept { return failed_; }

  // Runs a node body; a throw becomes the run's failure instead of unwinding into oneTBB.
  template <class F>
  void guarded(F&& fn) {
    if (failed_) return;
    try {
      fn();
    } catch (...) {
      record(std::current_exception());
    }
  }

  void check_cancel() const {
    if (cancel_ && cancel_->load(std::memory_order_relaxed))
      throw cancelled_error("the run was cancelled");
  }

  void rethrow_if_failed() const {
    if (first_) std::rethrow_exception(first_);
  }

  [[nodiscard]] tbb::task_group_context& context() noexcept { return ctx_; }

 private:
  const std::atomic<bool>* cancel_;
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr first_;
  tbb::task_group_context ctx_;
};

// The one protocol of every async stage: reserve the gateway (the graph must not finish while
// work is outside it), start the work, and on its completion, which may come on another
// thread, either record the error or count the busy time, run `on_done` and put the job on;
// then release. A throw from `start` means its completion will not come.
template <class Start, class OnDone>
void run_async(failure& f, gateway_t& gw, job* j, std::atomic<uint64_t>& busy_ns, Start&& start,
               OnDone on_done) {
  gw.reserve_wait();
  const auto t = clock_type::now();
  try {
    start([&f, &gw, &busy_ns, j, t, on_done](std::exception_ptr e) {
      if (e) {
        f.record(e);
      } else if (!f.failed()) {
        busy_ns.fetch_add(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t).count()));
        try {
          on_done(j);
          gw.try_put(j);
        } catch (...) {
          f.record(std::current_exception());
        }
      }
      gw.release_wait();
    });
  } catch (...) {
    gw.release_wait();
    throw;
  }
}

constexpr auto nothing_more = [](job*) {};

// The shards in flight: their jobs (owned here), commits and the counters of finished work.
class shard_book {
 public:
  explicit shard_book(graph_run& r) : r_(r) {}

  // Opens shard `s` and returns its jobs; a shard without jobs is committed at once.
  std::vector<job*> open(uint32_t s) {
    auto sr = std::make_unique<shard_run>();
    sr->jobs = r_.builder->make_shard(s, sr->state);
    if (r_.on_shard_started) r_.on_shard_started(sr->state);
    if (sr->jobs.empty()) {
      commit(sr->state);
      return {};
    }
    std::vector<job*> jobs;
    for (auto& j : sr->jobs) jobs.push_back(j.get());
    std::lock_guard lock(mutex_);
    runs_[s] = std::move(sr);
    return jobs;
  }

  // Job `j` is written: its token goes back, and the shard's last job publishes the shard and
  // frees its jobs (j among them).
  void finish(job* j, flow::buffer_node<token*>& tokens) {
    token* t = j->tok;
    j->tok = nullptr;
    r_.pool->on_return(t);
    tokens.try_put(t);
    graph_counters& c = *r_.counters;
    c.bytes_done.fetch_add(j->input_bytes);
    c.bytes_out.fetch_add(j->output_bytes);
    c.jobs_done.fetch_add(1);
    shard_state& s = *j->shard;
    if (s.jobs_left.fetch_sub(1) != 1) return;
    commit(s);
    std::lock_guard lock(mutex_);
    runs_.erase(s.index);
  }

  // After a failure, once nothing runs any more: every token a job still holds (read, parked at
  // the amax gate, computed but not written) goes back to the pool's count.
  void return_held_tokens() {
    std::lock_guard lock(mutex_);
    for (auto& [s, sr] : runs_)
      for (auto& j : sr->jobs)
        if (j->tok) {
          r_.pool->on_return(j->tok);
          j->tok = nullptr;
        }
  }

  [[nodiscard]] size_t unfinished() const { return runs_.size(); }

 private:
  struct shard_run {
    shard_state state;
    std::vector<std::unique_ptr<job>> jobs;
  };

  void commit(shard_state& s) {
    s.out.reset();
    s.writer->commit();
    r_.counters->shards_done.fetch_add(1);
    if (r_.on_shard_committed) r_.on_shard_committed(s);
  }

  graph_run& r_;
  std::mutex mutex_;
  std::map<uint32_t, std::unique_ptr<shard_run>> runs_;
};

// What the input node has not handed out yet; only its (serial) body touches it.
struct feed_state {
  size_t next_shard = 0;
  std::deque<job*> ready;
};

// input_node body: the jobs of r.shards, shard by shard, in plan order.
class job_feed {
 public:
  job_feed(graph_run& r, failure& f, shard_book& book, feed_state& feed)
      : r_(&r), f_(&f), book_(&book), feed_(&feed) {}
  job* operator()(tbb::flow_control& fc) const {
    job* out = nullptr;
    f_->guarded([&] {
      f_->check_cancel();
      while (feed_->ready.empty()) {
        if (feed_->next_shard == r_->shards.size()) return;
        for (job* j : book_->open(r_->shards[feed_->next_shard++])) feed_->ready.push_back(j);
      }
      out = feed_->ready.front();
      feed_->ready.pop_front();
    });
    if (out == nullptr) fc.stop();
    return out;
  }

 private:
  graph_run* r_;
  failure* f_;
  shard_book* book_;
  feed_state* feed_;
};

// After the reserving join: the job now holds the token (the memory bound) it is checked against.
class attach_token {
 public:
  attach_token(graph_run& r, failure& f) : r_(&r), f_(&f) {}
  job* operator()(const job_token& t) const {
    job* j = std::get<0>(t);
    // Counted even after a failure: the job holds the token until finish_job or the sweep after
    // a failure gives it back.
    try {
      r_->pool->on_take(std::get<1>(t));
      j->tok = std::get<1>(t);
    } catch (...) {
      f_->record(std::current_exception());
      return j;
    }
    f_->guarded([&] {
      f_->check_cancel();
      if (j->needed > j->tok->size)
        throw std::logic_error("job for '" + j->tensor + "' needs " + std::to_string(j->needed) +
                               " bytes, token holds " + std::to_string(j->tok->size));
    });
    return j;
  }

 private:
  graph_run* r_;
  failure* f_;
};

class read_stage {
 public:
  read_stage(graph_run& r, failure& f) : r_(&r), f_(&f) {}
  void operator()(job* j, gateway_t& gw) const {
    f_->guarded([&] {
      run_async(
          *f_, gw, j, r_->counters->read_ns,
          [&](stage_done done) { start_read(*r_->io, *j, std::move(done)); }, nothing_more);
    });
  }

 private:
  graph_run* r_;
  failure* f_;
};

// The compute node's body and its amax gate: a quantize job of a split per-tensor-scheme tensor
// waits (parked, holding its token) until the tensor's last amax job has folded its range; that
// completion puts the parked jobs back into this node.
class compute_stage {
 public:
  compute_stage(graph_run& r, failure& f, async_t* const& self) : r_(&r), f_(&f), self_(&self) {}
  void operator()(job* j, gateway_t& gw) const {
    f_->guarded([&] {
      if (j->kind == job_kind::quantize && j->tensor_shared && park_until_amax(*j)) return;
      async_t* self = *self_;
      run_async(
          *f_, gw, j, r_->counters->compute_ns,
          [&](compute_done done) { r_->backend->run(*j, std::move(done)); },
          [self](job* d) {
            if (d->kind == job_kind::amax)
              for (job* p : fold_amax(*d, d->range_amax)) self->try_put(p);
          });
    });
  }

 private:
  graph_run* r_;
  failure* f_;
  async_t* const* self_;
};

class write_stage {
 public:
  write_stage(graph_run& r, failure& f) : r_(&r), f_(&f) {}
  void operator()(job* j, gateway_t& gw) const {
    f_->guarded([&] {
      if (j->outputs.empty()) {  // an amax job: nothing to write
        gw.reserve_wait();
        gw.try_put(j);
        gw.release_wait();
        return;
      }
      run_async(
          *f_, gw, j, r_->counters->write_ns,
          [&](stage_done done) { start_write(*r_->io, *j, std::move(done)); }, nothing_more);
    });
  }

 private:
  graph_run* r_;
  failure* f_;
};

class finish_job {
 public:
  finish_job(failure& f, shard_book& book, flow::buffer_node<token*>& tokens)
      : f_(&f), book_(&book), tokens_(&tokens) {}
  flow::continue_msg operator()(job* j) const {
    f_->guarded([&] { book_->finish(j, *tokens_); });
    return flow::continue_msg();
  }

 private:
  failure* f_;
  shard_book* book_;
  flow::buffer_node<token*>* tokens_;
};

}  // namespace

void run_graph(graph_run& r) {
  failure f(r.cancel);
  shard_book book(r);
  feed_state feed;
  async_t* compute_node = nullptr;  // the compute body puts released parked jobs back into it

  flow::graph g(f.context());
  flow::input_node<job*> source(g, job_feed(r, f, book, feed));
  flow::buffer_node<token*> tokens(g);
  flow::join_node<job_token, flow::reserving> join(g);
  flow::function_node<job_token, job*> attach(g, flow::unlimited, attach_token(r, f));
  async_t reader(g, flow::unlimited, read_stage(r, f));
  async_t compute(g, r.backend->concurrency(), compute_stage(r, f, compute_node));
  compute_node = &compute;
  async_t writer(g, flow::unlimited, write_stage(r, f));
  flow::function_node<job*, flow::continue_msg> finish(g, flow::unlimited,
                                                       finish_job(f, book, tokens));

  flow::make_edge(source, flow::input_port<0>(join));
  flow::make_edge(tokens, flow::input_port<1>(join));
  flow::make_edge(join, attach);
  flow::make_edge(attach, reader);
  flow::make_edge(reader, compute);
  flow::make_edge(compute, writer);
  flow::make_edge(writer, finish);

  for (token* t : r.pool->all()) tokens.try_put(t);
  source.activate();
  g.wait_for_all();
  // Cancellation can end the wait while requests are in flight: let them land (their callbacks
  // see the failure and do nothing), then wait for whatever they spawned.
  r.io->drain();
  drain_tensor_sources();
  r.backend->drain();
  g.wait_for_all();
  if (f.failed()) book.return_held_tokens();
  f.rethrow_if_failed();
  if (book.unfinished() || !feed.ready.empty() || feed.next_shard != r.shards.size())
    throw std::logic_error("flow graph stopped with " + std::to_string(book.unfinished()) +
                           " shard(s) unfinished");
}

}  // namespace shardquant
