// Tests of the simulator's performance models in virtual time: the null model's pacing, prefill
// time with and without prefix-cache hits, decode speed against batch size and context, queueing
// when the batch (or the KV capacity) is full, chunked prefill, cancellation.
#include <cstdint>
#include <vector>

#include "agentperf/sim_model.h"
#include "testing.h"

using namespace agentperf;

namespace {

constexpr int64_t kMs = 1'000'000;

struct Collect final : SimModelSink {
  std::vector<SimEmission> events;
  void on_emit(const SimEmission& e) override { events.push_back(e); }
  // By value: CHECK_EQ binds its arguments by reference, so never pass it a part of a temporary.
  SimEmission first(uint64_t cookie) const { return of(cookie).front(); }
  SimEmission last(uint64_t cookie) const { return of(cookie).back(); }
  std::vector<SimEmission> of(uint64_t cookie) const {
    std::vector<SimEmission> out;
    for (const auto& e : events)
      if (e.cookie == cookie) out.push_back(e);
    return out;
  }
};

// Runs the model until nothing is pending (virtual time: jumps from deadline to deadline).
void drain(SimModel& m, Collect& sink, int64_t until_ns = INT64_MAX) {
  for (int64_t d; (d = m.next_deadline_ns()) >= 0 && d <= until_ns;) m.advance(d, sink);
}

SimSequenceSpec spec(int64_t prompt, int32_t output, uint64_t cookie, std::vector<uint64_t> blocks = {}) {
  SimSequenceSpec s;
  s.prompt_tokens = prompt;
  s.output_tokens = output;
  s.cookie = cookie;
  s.block_hashes = std::move(blocks);
  return s;
}

std::vector<uint64_t> blocks(uint64_t agent, int n) {
  std::vector<uint64_t> v;
  for (int i = 0; i < n; ++i) v.push_back(agent * 1000003 + static_cast<uint64_t>(i) + 1);
  return v;
}

SimModelParams batching() {
  SimModelParams p;
  p.kind = SimModelKind::kBatching;
  p.max_batch = 64;
  p.max_batched_tokens = 0;
  p.prefill_tokens_per_s = 10'000;  // 0.1 ms per token
  p.step_base_ns = 10 * kMs;
  p.step_per_seq_ns = 0;
  p.step_per_context_token_ns = 0;
  p.block_tokens = 16;
  p.prefix_cache_tokens = 1'000'000;
  return p;
}

}  // namespace

TEST(sim_null_model_paces_events_from_arrival) {
  SimModelParams p;
  p.ttft_ns = 200 * kMs;
  p.itl_ns = 10 * kMs;
  p.tokens_per_chunk = 2;
  auto m = make_sim_model(p);
  Collect sink;
  m->submit(spec(10, 5, 7), 1000);
  m->advance(1000 + 199 * kMs, sink);
  CHECK(sink.events.empty());
  drain(*m, sink);
  auto ev = sink.of(7);
  CHECK_EQ(ev.size(), size_t{3});
  CHECK_EQ(ev[0].at_ns, 1000 + 200 * kMs);
  CHECK_EQ(ev[1].at_ns, 1000 + 210 * kMs);
  CHECK_EQ(ev[2].at_ns, 1000 + 220 * kMs);
  CHECK_EQ(ev[0].tokens, 2);
  CHECK_EQ(ev[2].tokens, 1);
  CHECK(ev[0].first && !ev[0].last && ev[2].last);
  CHECK_EQ(ev[2].generated, 5);
  CHECK_EQ(m->stats().running, 0);
}

TEST(sim_prefill_time_without_cache_hits) {
  auto m = make_sim_model(batching());
  Collect sink;
  m->submit(spec(1000, 3, 1, blocks(1, 62)), 0);
  drain(*m, sink);
  auto ev = sink.of(1);
  CHECK_EQ(ev.size(), size_t{3});
  // Prefill step: base 10 ms + 1000 tokens / 10k tok/s = 110 ms; then 10 ms decode steps.
  CHECK_EQ(ev[0].at_ns, 110 * kMs);
  CHECK_EQ(ev[0].cached_tokens, 0);
  CHECK_EQ(ev[0].tokens, 1);
  CHECK_EQ(ev[1].at_ns, 120 * kMs);
  CHECK_EQ(ev[2].at_ns, 130 * kMs);
  SimModelStats st = m->stats();
  CHECK_EQ(st.cache_query_tokens, uint64_t{1000});
  CHECK_EQ(st.cache_hit_tokens, uint64_t{0});
  CHECK_EQ(st.cache_blocks, 62);
}

TEST(sim_prefill_skips_cached_blocks) {
  auto m = make_sim_model(batching());
  Collect sink;
  m->submit(spec(1000, 2, 1, blocks(1, 62)), 0);
  drain(*m, sink);
  // Same prompt again: 62 blocks * 16 = 992 tokens cached, 8 prefilled: 10 ms + 0.8 ms.
  m->submit(spec(1000, 2, 2, blocks(1, 62)), 1000 * kMs);
  drain(*m, sink);
  auto ev = sink.of(2);
  CHECK_EQ(ev[0].cached_tokens, 992);
  CHECK_EQ(ev[0].at_ns - 1000 * kMs, 10 * kMs + 800'000);
  // A prompt sharing only its first 10 blocks: 160 cached, 840 prefilled (84 ms).
  std::vector<uint64_t> partial = blocks(1, 10);
  for (uint64_t h : blocks(9, 52)) partial.push_back(h);
  m->submit(spec(1000, 2, 3, partial), 2000 * kMs);
  drain(*m, sink);
  ev = sink.of(3);
  CHECK_EQ(ev[0].cached_tokens, 160);
  CHECK_EQ(ev[0].at_ns - 2000 * kMs, 10 * kMs + 84 * kMs);
  // Another agent's prompt (different first block): no hit at all.
  m->submit(spec(1000, 2, 4, blocks(2, 62)), 3000 * kMs);
  drain(*m, sink);
  CHECK_EQ(sink.first(4).cached_tokens, 0);
}

TEST(sim_a_fully_cached_prompt_still_computes_its_last_block) {
  auto m = make_sim_model(batching());
  Collect sink;
  m->submit(spec(992, 2, 1, blocks(1, 62)), 0);  // exactly 62 full blocks
  drain(*m, sink);
  m->submit(spec(992, 2, 2, blocks(1, 62)), 1000 * kMs);
  drain(*m, sink);
  CHECK_EQ(sink.first(2).cached_tokens, 61 * 16);  // hits <= floor((992 - 1) / 16)
}

TEST(sim_prefix_cache_capacity_is_bounded_lru) {
  SimModelParams p = batching();
  p.prefix_cache_tokens = 100 * 16;  // 100 blocks: one 62-block prompt fits, two do not
  auto m = make_sim_model(p);
  Collect sink;
  m->submit(spec(1000, 2, 1, blocks(1, 62)), 0);
  drain(*m, sink);
  m->submit(spec(1000, 2, 2, blocks(2, 62)), 1000 * kMs);
  drain(*m, sink);
  CHECK_EQ(m->stats().cache_blocks, 100);
  // Agent 2's prompt is whole; agent 1 lost its tail (evicted first) but kept its head.
  m->submit(spec(1000, 2, 3, blocks(2, 62)), 2000 * kMs);
  drain(*m, sink);
  CHECK_EQ(sink.first(3).cached_tokens, 992);
  m->submit(spec(1000, 2, 4, blocks(1, 62)), 3000 * kMs);
  drain(*m, sink);
  int64_t cached = sink.first(4).cached_tokens;
  CHECK_MSG(cached > 0 && cached < 992, cached);
}

TEST(sim_decode_speed_falls_with_batch_size) {
  for (int batch : {1, 4, 16}) {
    SimModelParams p = batching();
    p.step_per_seq_ns = 1 * kMs;
    p.prefill_tokens_per_s = 1e12;  // prefill ~free
    auto m = make_sim_model(p);
    Collect sink;
    for (int i = 0; i < batch; ++i) m->submit(spec(1, 11, static_cast<uint64_t>(i)), 0);
    drain(*m, sink);
    auto ev = sink.of(0);
    CHECK_EQ(ev.size(), size_t{11});
    // 10 decode steps of base + per_seq * batch.
    int64_t step = (ev.back().at_ns - ev.front().at_ns) / 10;
    CHECK_MSG(step == (10 + batch) * kMs, "batch " << batch << " step " << step);
  }
}

TEST(sim_decode_step_grows_with_context) {
  SimModelParams p = batching();
  p.step_per_context_token_ns = 1000;  // 1 us per context token
  auto m = make_sim_model(p);
  Collect sink;
  m->submit(spec(1000, 3, 1), 0);
  drain(*m, sink);
  auto ev = sink.of(1);
  // Decode step 1: context 1000 + 1 generated; step 2: 1002.
  CHECK_EQ(ev[1].at_ns - ev[0].at_ns, 10 * kMs + 1'001'000);
  CHECK_EQ(ev[2].at_ns - ev[1].at_ns, 10 * kMs + 1'002'000);
}

TEST(sim_requests_queue_when_the_batch_is_full) {
  SimModelParams p = batching();
  p.max_batch = 2;
  p.prefill_tokens_per_s = 1e12;
  auto m = make_sim_model(p);
  Collect sink;
  for (uint64_t i = 0; i < 3; ++i) m->submit(spec(1, 5, i), 0);
  m->advance(0, sink);
  CHECK_EQ(m->stats().running, 2);
  CHECK_EQ(m->stats().waiting, 1);
  drain(*m, sink);
  // The first two: first token at 10 ms, done at 50 ms; the third enters at 50 ms.
  CHECK_EQ(sink.last(0).at_ns, 50 * kMs);
  CHECK_EQ(sink.first(2).at_ns, 60 * kMs);
  CHECK_EQ(sink.last(2).at_ns, 100 * kMs);
}

TEST(sim_kv_capacity_limits_admission) {
  SimModelParams p = batching();
  p.max_batch = 8;
  p.kv_capacity_tokens = 100;
  p.prefill_tokens_per_s = 1e12;
  auto m = make_sim_model(p);
  CHECK(m->fits(90, 10));
  CHECK(!m->fits(95, 10));
  Collect sink;
  for (uint64_t i = 0; i < 3; ++i) m->submit(spec(40, 10, i), 0);  // 50 tokens each
  m->advance(0, sink);
  CHECK_EQ(m->stats().running, 2);
  CHECK_EQ(m->stats().waiting, 1);
  drain(*m, sink);
  CHECK_EQ(m->stats().kv_used_tokens, 0);
}

TEST(sim_chunked_prefill_spreads_a_long_prompt) {
  SimModelParams p = batching();
  p.max_batched_tokens = 100;
  auto m = make_sim_model(p);
  Collect sink;
  m->submit(spec(250, 2, 1), 0);
  drain(*m, sink);
  // Three prefill steps of 100, 100, 50 tokens: 3 * 10 ms + 250 * 0.1 ms.
  CHECK_EQ(sink.first(1).at_ns, 30 * kMs + 25 * kMs);
  CHECK_EQ(m->stats().steps, uint64_t{4});
}

TEST(sim_decode_and_prefill_share_a_step) {
  auto m = make_sim_model(batching());
  Collect sink;
  m->submit(spec(100, 20, 1), 0);  // prefill 10 + 10 ms
  drain(*m, sink, 20 * kMs);
  m->submit(spec(100, 2, 2), 25 * kMs);  // arrives mid-step; joins at 30 ms
  drain(*m, sink);
  auto a = sink.of(1);
  auto b = sink.of(2);
  // Step [30, 50 ms]: 1's decode plus 2's prefill of 100 tokens (10 ms).
  CHECK_EQ(b[0].at_ns, 50 * kMs);
  CHECK_EQ(a[2].at_ns - a[1].at_ns, 20 * kMs);
}

TEST(sim_tokens_per_chunk_imitates_speculative_decoding) {
  SimModelParams p = batching();
  p.tokens_per_chunk = 3;
  auto m = make_sim_model(p);
  Collect sink;
  m->submit(spec(1, 7, 1), 0);
  drain(*m, sink);
  auto ev = sink.of(1);
  CHECK_EQ(ev.size(), size_t{3});
  CHECK_EQ(ev[0].tokens, 1);
  CHECK_EQ(ev[1].tokens, 3);
  CHECK_EQ(ev[2].tokens, 3);
  CHECK(ev[2].last);
}

TEST(sim_cancel_frees_the_slot) {
  SimModelParams p = batching();
  p.max_batch = 1;
  p.prefill_tokens_per_s = 1e12;
  auto m = make_sim_model(p);
  Collect sink;
  uint64_t a = m->submit(spec(1, 100, 1), 0);
  m->submit(spec(1, 2, 2), 0);
  drain(*m, sink, 15 * kMs);
  m->cancel(a);
  m->cancel(a);  // twice: ignored
  drain(*m, sink);
  CHECK_EQ(sink.of(1).size(), size_t{1});
  CHECK_EQ(sink.first(2).at_ns, 30 * kMs);  // admitted at the 20 ms boundary
  CHECK_EQ(m->stats().running, 0);
  CHECK_EQ(m->stats().waiting, 0);
}

TEST(sim_model_time_does_not_drift_when_advanced_late) {
  SimModelParams p = batching();
  p.prefill_tokens_per_s = 1e12;
  auto m = make_sim_model(p);
  Collect sink;
  m->submit(spec(1, 10, 1), 5 * kMs);
  m->advance(1000 * kMs, sink);  // a very late caller
  auto ev = sink.of(1);
  CHECK_EQ(ev.size(), size_t{10});
  for (size_t i = 0; i < ev.size(); ++i) CHECK_EQ(ev[i].at_ns, 5 * kMs + static_cast<int64_t>(i + 1) * 10 * kMs);
}

TEST(sim_model_params_are_validated) {
  SimModelParams p = batching();
  p.max_batch = 0;
  CHECK(!validate_sim_model_params(p).empty());
  p = batching();
  p.prefill_tokens_per_s = 0;
  CHECK(!validate_sim_model_params(p).empty());
  p = batching();
  p.step_base_ns = 0;
  CHECK(!validate_sim_model_params(p).empty());
  CHECK(validate_sim_model_params(batching()).empty());
}
