// Tests of the simulator's power model: the models' busy time (batching: steps; null: requests in
// flight), and the meter's exact energy integral and one-second power average over busy/idle
// intervals.
#include <cstdint>
#include <vector>

#include "agentperf/sim_model.h"
#include "sim/sim_power.h"
#include "testing.h"

using namespace agentperf;

namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kS = 1'000'000'000;

struct Discard final : SimModelSink {
  void on_emit(const SimEmission&) override {}
};

SimSequenceSpec spec(int64_t prompt, int32_t output, uint64_t cookie) {
  SimSequenceSpec s;
  s.prompt_tokens = prompt;
  s.output_tokens = output;
  s.cookie = cookie;
  return s;
}

SimBusyState busy_state(const SimModel& m) {
  SimModelStats st = m.stats();
  return {st.busy_ns, st.busy_since_ns, st.busy_until_ns};
}

}  // namespace

TEST(sim_power_energy_integrates_busy_and_idle_intervals_exactly) {
  // Idle for 1 s, one 0.5 s step, idle again: at 2 s, 2 s of idle power and 0.5 s of dynamic.
  SimPowerMeter meter(0);
  meter.publish(1 * kS, {0, 1 * kS, 1500 * kMs});
  SimPowerReading mid = meter.read(1250 * kMs);
  CHECK_EQ(mid.busy_ns, 250 * kMs);
  CHECK_EQ(mid.elapsed_ns, 1250 * kMs);
  meter.publish(1500 * kMs, {500 * kMs, -1, INT64_MAX});
  SimPowerReading r = meter.read(2 * kS);
  CHECK_EQ(r.elapsed_ns, 2 * kS);
  CHECK_EQ(r.busy_ns, 500 * kMs);
  // 150 W * 2 s + 550 W * 0.5 s = 575 J = 575000 mJ.
  CHECK_EQ(sim_energy_mj(150.0, 550.0, r.elapsed_ns, r.busy_ns), 575000.0);
  // The last second, [1 s, 2 s], was half busy.
  CHECK_EQ(r.window_busy, 0.5);
  // Three seconds later: the window is idle, the energy has gone on at idle power only.
  SimPowerReading later = meter.read(5 * kS);
  CHECK_EQ(later.window_busy, 0.0);
  CHECK_EQ(sim_energy_mj(150.0, 550.0, later.elapsed_ns, later.busy_ns), 575000.0 + 150.0 * 3 * 1000);
}

TEST(sim_power_back_to_back_steps_are_busy_without_a_gap_even_when_published_late) {
  SimPowerMeter meter(0);
  meter.publish(0, {0, 0, 100 * kMs});
  // The step ended at 100 ms and the next started then, but the worker only learns it at 130 ms.
  SimPowerReading before = meter.read(120 * kMs);
  CHECK_EQ(before.busy_ns, 100 * kMs);
  meter.publish(130 * kMs, {100 * kMs, 100 * kMs, 200 * kMs});
  SimPowerReading after = meter.read(130 * kMs);
  CHECK_EQ(after.busy_ns, 130 * kMs);  // caught up: the reading never goes down
  CHECK(after.busy_ns >= before.busy_ns);
  CHECK_EQ(meter.read(200 * kMs).busy_ns, 200 * kMs);
  CHECK_EQ(meter.read(200 * kMs).window_busy, 1.0);
}

TEST(sim_power_batching_model_is_busy_for_exactly_its_steps) {
  SimModelParams p;
  p.kind = SimModelKind::kBatching;
  p.max_batched_tokens = 0;
  p.prefill_tokens_per_s = 10'000;  // 0.1 ms per prompt token
  p.step_base_ns = 10 * kMs;
  p.step_per_seq_ns = 0;
  auto m = make_sim_model(p);
  Discard sink;
  m->submit(spec(100, 3, 1), 1 * kS);
  CHECK_EQ(busy_state(*m).since_ns, -1);  // the step starts when the model is advanced
  m->advance(1 * kS, sink);
  // Prefill step: 10 ms + 100 tokens * 0.1 ms.
  SimBusyState s = busy_state(*m);
  CHECK_EQ(s.since_ns, 1 * kS);
  CHECK_EQ(s.until_ns, 1 * kS + 20 * kMs);
  CHECK_EQ(s.busy_at(1 * kS + 5 * kMs), 5 * kMs);
  for (int64_t d; (d = m->next_deadline_ns()) >= 0;) m->advance(d, sink);
  // Then two 10 ms decode steps; then idle.
  s = busy_state(*m);
  CHECK_EQ(s.busy_ns, 40 * kMs);
  CHECK_EQ(s.since_ns, -1);
  CHECK_EQ(s.busy_at(10 * kS), 40 * kMs);
  // A second request 1 s later adds its own steps only.
  m->submit(spec(100, 2, 2), 3 * kS);
  for (int64_t d; (d = m->next_deadline_ns()) >= 0;) m->advance(d, sink);
  CHECK_EQ(busy_state(*m).busy_ns, 40 * kMs + 30 * kMs);
}

TEST(sim_power_null_model_is_busy_while_a_request_is_in_flight) {
  SimModelParams p;
  p.ttft_ns = 200 * kMs;
  p.itl_ns = 10 * kMs;
  auto m = make_sim_model(p);
  Discard sink;
  auto drain = [&](int64_t until) {
    for (int64_t d; (d = m->next_deadline_ns()) >= 0 && d <= until;) m->advance(d, sink);
  };
  m->submit(spec(1, 1, 1), 0);
  drain(100 * kMs);
  m->submit(spec(1, 1, 2), 100 * kMs);  // overlaps the first: [0, 300 ms) busy
  CHECK_EQ(busy_state(*m).since_ns, 0);
  drain(400 * kMs);
  CHECK_EQ(busy_state(*m).busy_ns, 300 * kMs);
  CHECK_EQ(busy_state(*m).since_ns, -1);
  m->submit(spec(1, 1, 3), 500 * kMs);  // [500, 700 ms)
  drain(1 * kS);
  CHECK_EQ(busy_state(*m).busy_ns, 500 * kMs);
  // A cancelled request ends at the latest time the model was told of.
  uint64_t h = m->submit(spec(1, 5, 4), 1 * kS);
  m->advance(1050 * kMs, sink);
  m->cancel(h);
  CHECK_EQ(busy_state(*m).busy_ns, 550 * kMs);
  CHECK_EQ(busy_state(*m).since_ns, -1);
}
