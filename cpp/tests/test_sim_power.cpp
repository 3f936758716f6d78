// The simulator's power model: energy is the exact integral of idle + dynamic * busy, and the power
// gauge is its mean over the last second, for intervals given by hand and for a batching model
// driven in virtual time.
#include <cmath>
#include <vector>

#include "agentperf/sim_model.h"
#include "sim/sim_power.h"
#include "testing.h"

using namespace agentperf;

namespace {
constexpr int64_t kMs = 1'000'000;
constexpr int64_t kS = 1'000'000'000;

bool near(double a, double b, double tol = 1e-9) { return std::abs(a - b) <= tol * std::max(1.0, std::abs(b)); }

struct Steps final : SimModelSink {
  std::vector<std::pair<int64_t, int64_t>> steps;
  SimPowerMeter* meter = nullptr;
  void on_emit(const SimEmission&) override {}
  void on_step(int64_t start, int64_t end) override {
    steps.emplace_back(start, end);
    if (meter) meter->add_busy(start, end);
  }
};
}  // namespace

TEST(sim_power_integrates_busy_intervals_exactly) {
  SimPowerMeter m(0);
  m.add_busy(100 * kMs, 300 * kMs);
  m.add_busy(500 * kMs, 600 * kMs);
  SimPowerParams p;  // 100 W idle, +600 W busy, one accelerator
  std::vector<const SimPowerMeter*> ms{&m};
  // Inside the first step: 100 ms busy of 200 ms.
  auto a = sim_power(p, ms, 200 * kMs);
  CHECK(near(a[0].utilisation, 0.5));
  CHECK(near(a[0].power_w, 400.0));
  CHECK(near(a[0].energy_mj, (100.0 * 0.2 + 600.0 * 0.1) * 1000));
  // At 1 s: 300 ms busy.
  a = sim_power(p, ms, kS);
  CHECK(near(a[0].utilisation, 0.3));
  CHECK(near(a[0].power_w, 280.0));
  CHECK(near(a[0].energy_mj, (100.0 + 600.0 * 0.3) * 1000));
  // At 1.4 s the window [0.4, 1.4] holds 100 ms busy; the energy keeps all 300 ms.
  a = sim_power(p, ms, 1400 * kMs);
  CHECK(near(a[0].power_w, 100.0 + 60.0));
  CHECK(near(a[0].energy_mj, (100.0 * 1.4 + 600.0 * 0.3) * 1000));
}

TEST(sim_power_gauge_is_the_energy_slope_over_the_last_second) {
  SimPowerMeter m(0);
  SimPowerParams p;
  p.idle_w = 80;
  p.dynamic_w = 520;
  std::vector<const SimPowerMeter*> ms{&m};
  // A busy pattern over 12 s (longer than the meter's history, so old intervals get folded), read
  // as the server reads it: at "now", after the steps that started by then.
  int64_t busy = 0, next_read = 2 * kS;
  for (int64_t t = 0; t < 12 * kS; t += 37 * kMs) {
    int64_t len = (t / kMs) % 29 * kMs / 2;
    m.add_busy(t, t + len);
    busy += len;
    if (t + 37 * kMs > next_read) {  // no step starts before the next one at t + 37 ms
      auto now = sim_power(p, ms, next_read);
      auto before = sim_power(p, ms, next_read - kS);
      CHECK_MSG(near(now[0].energy_mj - before[0].energy_mj, now[0].power_w * 1000, 1e-9), next_read);
      next_read += 333 * kMs;
    }
  }
  auto end = sim_power(p, ms, 13 * kS);
  CHECK(near(end[0].energy_mj, (80.0 * 13 * kS + 520.0 * static_cast<double>(busy)) / 1e6));
}

TEST(sim_power_maps_accelerators_to_workers) {
  SimPowerMeter busy(0), idle(0);
  busy.add_busy(0, kS);
  std::vector<const SimPowerMeter*> ms{&busy, &idle};
  SimPowerParams p;
  p.accelerators = 1;  // two replicas on one accelerator: their mean
  auto a = sim_power(p, ms, kS);
  CHECK_EQ(a.size(), size_t{1});
  CHECK(near(a[0].utilisation, 0.5));
  p.accelerators = 4;  // each replica over two accelerators: 0 and 2 busy, 1 and 3 idle
  a = sim_power(p, ms, kS);
  CHECK_EQ(a.size(), size_t{4});
  CHECK(near(a[0].power_w, 700.0) && near(a[2].power_w, 700.0));
  CHECK(near(a[1].power_w, 100.0) && near(a[3].power_w, 100.0));
  CHECK(near(a[0].energy_mj, 700.0 * 1000) && near(a[1].energy_mj, 100.0 * 1000));
}

TEST(sim_power_of_a_batching_model_in_virtual_time) {
  SimModelParams mp;
  mp.kind = SimModelKind::kBatching;
  mp.max_batch = 4;
  mp.step_base_ns = 7 * kMs;
  mp.step_per_seq_ns = kMs;
  mp.prefill_tokens_per_s = 100'000;
  auto model = make_sim_model(mp);
  SimPowerMeter meter(0);
  Steps sink;
  sink.meter = &meter;
  // Three requests, the last arriving after the model went idle.
  for (int i = 0; i < 2; ++i) {
    SimSequenceSpec s;
    s.prompt_tokens = 1000;
    s.output_tokens = 20;
    s.cookie = static_cast<uint64_t>(i + 1);
    model->submit(std::move(s), 0);
  }
  int64_t t;
  while ((t = model->next_deadline_ns()) >= 0 && t < 2 * kS) model->advance(t, sink);
  int64_t idle_from = sink.steps.back().second;
  SimSequenceSpec s;
  s.prompt_tokens = 500;
  s.output_tokens = 10;
  s.cookie = 3;
  model->submit(std::move(s), idle_from + 300 * kMs);
  while ((t = model->next_deadline_ns()) >= 0) model->advance(t, sink);
  CHECK(sink.steps.size() > 20);
  int64_t total = 0;
  for (size_t i = 0; i < sink.steps.size(); ++i) {
    CHECK(sink.steps[i].second > sink.steps[i].first);
    if (i) CHECK(sink.steps[i].first >= sink.steps[i - 1].second);  // never overlapping
    total += sink.steps[i].second - sink.steps[i].first;
  }
  int64_t end = sink.steps.back().second;
  CHECK(end - total >= 300 * kMs);  // the idle gap is not busy
  SimPowerParams p;
  std::vector<const SimPowerMeter*> ms{&meter};
  auto a = sim_power(p, ms, end);
  CHECK(near(a[0].energy_mj, (100.0 * static_cast<double>(end) + 600.0 * static_cast<double>(total)) / 1e6));
  // Stats agree: one interval per step.
  CHECK_EQ(model->stats().steps, static_cast<uint64_t>(sink.steps.size()));
}
