// The job builder (pipeline/run/jobs): the jobs it makes are the cut the run geometry reports
// (rows per job, splits, amax passes, job count), fit their token, and write every byte of every
// output tensor exactly once, for several budgets and schemes.
#include <algorithm>
#include <map>

#include "graph_test_util.h"

using namespace sq_graph_test;

namespace {

struct made_shard {
  std::vector<std::unique_ptr<job>> jobs;
  shard_state state;  // its writer removes the temporary file when the test is done with it
};

}  // namespace

TEST_CASE("the jobs made are the cut the run geometry reports and fit their token") {
  for (const scheme_id scheme : {scheme_id::fp8, scheme_id::mxfp4, scheme_id::int4_wo_128}) {
    for (const uint64_t budget : {16 * MiB, 64 * MiB, uint64_t{1} << 30}) {
      CAPTURE(info(scheme).name);
      CAPTURE(budget);
      plan p = plan_of(scheme);
      const run_geometry geo = decide_geometry(p, budget);
      const fs::path out = scratch() / "builder";
      fs::create_directories(out);
      job_builder builder(p, out, geo.tokens.token_bytes, true);
      uint64_t jobs = 0, split_parts = 0, amax_parts = 0;
      for (uint32_t s = 0; s < p.shards.size(); ++s) {
        made_shard m;
        m.jobs = builder.make_shard(s, m.state);
        jobs += m.jobs.size();
        CHECK(m.state.jobs_left.load() == m.jobs.size());
        std::map<std::string, std::vector<const job*>> main_of, amax_of;
        for (const auto& j : m.jobs) {
          CHECK(j->needed <= geo.tokens.token_bytes);
          (j->kind == job_kind::amax ? amax_of : main_of)[j->tensor].push_back(j.get());
        }
        for (uint32_t ii : p.shards[s].items)
          for (const plan_part& part : p.items[ii].parts) {
            if (part.output_shard != s || part.action != tensor_action::quantize) continue;
            CAPTURE(part.name);
            const std::vector<const job*>& main = main_of[part.name];
            REQUIRE(!main.empty());
            const uint64_t rows = part.input_shape.empty() ? 1 : part.input_shape[0];
            // Row ranges in order, back to back, each of split_rows rows but the last.
            uint64_t next = 0;
            for (const job* j : main) {
              CHECK(j->row_begin == next);
              if (part.split_rows) CHECK(j->rows <= part.split_rows);
              if (part.split_rows && j != main.back()) CHECK(j->rows == part.split_rows);
              next = j->row_begin + j->rows;
            }
            CHECK(next == rows);
            CHECK(main.size() ==
                  (part.split_rows ? (rows + part.split_rows - 1) / part.split_rows : 1));
            split_parts += part.split_rows ? 1 : 0;
            // An amax pass: one amax job per range, over the same rows, writing nothing.
            const std::vector<const job*>& amax = amax_of[part.name];
            CHECK(amax.size() == (part.amax_pass ? main.size() : 0));
            amax_parts += part.amax_pass ? 1 : 0;
            for (size_t i = 0; i < amax.size(); ++i) {
              CHECK(amax[i]->row_begin == main[i]->row_begin);
              CHECK(amax[i]->rows == main[i]->rows);
              CHECK(amax[i]->outputs.empty());
              CHECK(amax[i]->tensor_shared == main[i]->tensor_shared);
            }
          }
        // Every byte of every output tensor of the shard is written by exactly one piece.
        std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> written;
        for (const auto& j : m.jobs)
          for (const write_piece& w : j->outputs)
            for (uint64_t k = 0; k < w.segments; ++k)
              written[w.tensor].emplace_back(w.tensor_offset + k * w.segment_stride, w.bytes);
        for (const auto& t : p.shards[s].layout.tensors()) {
          CAPTURE(t.name);
          auto& r = written[t.name];
          std::sort(r.begin(), r.end());
          uint64_t at = 0;
          for (const auto& [off, n] : r) {
            CHECK(off == at);
            at = off + n;
          }
          CHECK(at == t.byte_size());
        }
      }
      CHECK(jobs == geo.jobs);
      CHECK(split_parts <= geo.split_tensors.size());
      CHECK(amax_parts == geo.amax_tensors.size());
      // The smallest budget splits the large tensors; the largest splits none.
      if (budget == 16 * MiB) CHECK(split_parts > 0);
      if (budget == uint64_t{1} << 30) CHECK(geo.split_tensors.empty());
      if (scheme == scheme_id::fp8) CHECK(amax_parts == split_parts);
    }
  }
}

TEST_CASE("a smaller token cuts a tensor into more jobs of fewer rows, never one that overflows") {
  uint64_t last_jobs = 0;
  for (const uint64_t budget : {uint64_t{1} << 30, 64 * MiB, 32 * MiB, 16 * MiB}) {
    CAPTURE(budget);
    plan p = plan_of(scheme_id::mxfp4);
    const run_geometry geo = decide_geometry(p, budget);
    CHECK(geo.jobs >= last_jobs);
    last_jobs = geo.jobs;
    for (const auto& item : p.items)
      for (const plan_part& part : item.parts) {
        const part_cut c = cut_part(p, item, part, geo.tokens.token_bytes);
        if (c.row_ranges && c.split()) CHECK(c.per_job == part.split_rows);
      }
  }
}
