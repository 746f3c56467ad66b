// Flow graph assembly and the error protocol: every node body and every async completion
// records the first failure and cancels the graph; bodies do nothing once failed; after the
// graph stops, I/O and the compute backend are drained and the graph waited for again so no
// callback outlives the run.
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

using clock_type = std::chrono::steady_clock;
using async_t = tbb::flow::async_node<job*, job*>;

uint64_t ns_since(clock_type::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t).count());
}

struct shard_run {
  shard_state state;
  std::vector<std::unique_ptr<job>> jobs;
};

}  // namespace

void run_graph(graph_run& r) {
  using namespace tbb::flow;
  graph_counters& counters = *r.counters;

  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr first_error;
  tbb::task_group_context ctx;
  auto record = [&](std::exception_ptr e) {
    {
      std::lock_guard lock(error_mutex);
      if (!first_error) first_error = e;
    }
    failed = true;
    ctx.cancel_group_execution();
  };
  // Runs a node body; a throw becomes the run's failure instead of unwinding into oneTBB.
  auto guarded = [&](auto&& fn) {
    if (failed) return;
    try {
      fn();
    } catch (...) {
      record(std::current_exception());
    }
  };

  auto check_cancel = [&] {
    if (r.cancel && r.cancel->load(std::memory_order_relaxed))
      throw cancelled_error("the run was cancelled");
  };

  std::mutex runs_mutex;
  std::map<uint32_t, std::unique_ptr<shard_run>> runs;
  auto commit = [&](shard_state& s) {
    s.out.reset();
    s.writer->commit();
    counters.shards_done.fetch_add(1);
    if (r.on_shard_committed) r.on_shard_committed(s);
  };

  // Feed state: only the input_node body touches it (it runs serially).
  size_t next_shard = 0;
  std::deque<job*> ready;
  uint64_t seq = 0;

  graph g(ctx);
  input_node<job*> source(g, [&](tbb::flow_control& fc) -> job* {
    job* out = nullptr;
    guarded([&] {
      check_cancel();
      while (ready.empty()) {
        if (next_shard == r.shards.size()) return;
        const uint32_t s = r.shards[next_shard++];
        auto sr = std::make_unique<shard_run>();
        sr->jobs = r.builder->make_shard(s, sr->state, seq);
        if (r.on_shard_started) r.on_shard_started(sr->state);
        if (sr->jobs.empty()) {
          commit(sr->state);
          continue;
        }
        for (auto& j : sr->jobs) ready.push_back(j.get());
        std::lock_guard lock(runs_mutex);
        runs[s] = std::move(sr);
      }
      out = ready.front();
      ready.pop_front();
    });
    if (out == nullptr) fc.stop();
    return out;
  });

  buffer_node<token*> tokens(g);
  join_node<std::tuple<job*, token*>, reserving> join(g);
  function_node<std::tuple<job*, token*>, job*> attach(
      g, unlimited, [&](const std::tuple<job*, token*>& t) -> job* {
        job* j = std::get<0>(t);
        j->tok = std::get<1>(t);
        guarded([&] {
          check_cancel();
          r.pool->on_take(j->tok);
          if (j->needed > j->tok->size)
            throw std::logic_error("job for '" + j->tensor + "' needs " +
                                   std::to_string(j->needed) + " bytes, token holds " +
                                   std::to_string(j->tok->size));
        });
        return j;
      });

  async_t reader(g, unlimited, [&](job* j, async_t::gateway_type& gw) {
    guarded([&] {
      gw.reserve_wait();
      const auto t = clock_type::now();
      try {
        start_read(*r.io, *j, [&, j, t, gw_p = &gw](std::exception_ptr e) {
          if (e) {
            record(e);
          } else if (!failed) {
            counters.read_ns.fetch_add(ns_since(t));
            gw_p->try_put(j);
          }
          gw_p->release_wait();
        });
      } catch (...) {
        gw.release_wait();
        throw;
      }
    });
  });

  async_t* compute_ptr = nullptr;
  async_t compute(g, r.backend->concurrency(), [&](job* j, async_t::gateway_type& gw) {
    guarded([&] {
      if (j->kind == job_kind::quantize && j->tensor_shared && park_until_amax(*j)) return;
      gw.reserve_wait();
      const auto t = clock_type::now();
      r.backend->run(*j, [&, j, t, gw_p = &gw](std::exception_ptr e) {
        if (e) {
          record(e);
        } else if (!failed) {
          counters.compute_ns.fetch_add(ns_since(t));
          try {
            if (j->kind == job_kind::amax)
              for (job* p : fold_amax(*j, j->range_amax)) compute_ptr->try_put(p);
            gw_p->try_put(j);
          } catch (...) {
            record(std::current_exception());
          }
        }
        gw_p->release_wait();
      });
    });
  });
  compute_ptr = &compute;

  async_t writer(g, unlimited, [&](job* j, async_t::gateway_type& gw) {
    guarded([&] {
      gw.reserve_wait();
      if (j->outputs.empty()) {
        gw.try_put(j);
        gw.release_wait();
        return;
      }
      const auto t = clock_type::now();
      try {
        start_write(*r.io, *j, [&, j, t, gw_p = &gw](std::exception_ptr e) {
          if (e) {
            record(e);
          } else if (!failed) {
            counters.write_ns.fetch_add(ns_since(t));
            gw_p->try_put(j);
          }
          gw_p->release_wait();
        });
      } catch (...) {
        gw.release_wait();
        throw;
      }
    });
  });

  function_node<job*, continue_msg> finish(g, unlimited, [&](job* j) -> continue_msg {
    guarded([&] {
      token* t = j->tok;
      j->tok = nullptr;
      r.pool->on_return(t);
      tokens.try_put(t);
      counters.bytes_done.fetch_add(j->input_bytes);
      counters.bytes_out.fetch_add(j->output_bytes);
      counters.jobs_done.fetch_add(1);
      shard_state& s = *j->shard;
      if (s.jobs_left.fetch_sub(1) != 1) return;
      // The last job of the shard: publish it, then free its jobs (j among them).
      commit(s);
      std::lock_guard lock(runs_mutex);
      runs.erase(s.index);
    });
    return continue_msg();
  });

  make_edge(source, input_port<0>(join));
  make_edge(tokens, input_port<1>(join));
  make_edge(join, attach);
  make_edge(attach, reader);
  make_edge(reader, compute);
  make_edge(compute, writer);
  make_edge(writer, finish);

  for (token* t : r.pool->all()) tokens.try_put(t);
  source.activate();
  g.wait_for_all();
  // Cancellation can end the wait while requests are in flight: let them land (their callbacks
  // see `failed` and do nothing), then wait for whatever they spawned.
  r.io->drain();
  drain_tensor_sources();
  r.backend->drain();
  g.wait_for_all();
  if (first_error) std::rethrow_exception(first_error);
  if (!runs.empty() || !ready.empty() || next_shard != r.shards.size())
    throw std::logic_error("flow graph stopped with " + std::to_string(runs.size()) +
                           " shard(s) unfinished");
}

}  // namespace shardquant
