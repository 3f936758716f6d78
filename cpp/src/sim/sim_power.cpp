#include "sim/sim_power.h"

#include <algorithm>

namespace agentperf {

namespace {
// Enough for 2 windows of 1 ms steps (two states a step); older states are dropped first.
constexpr size_t kMaxHistory = 8192;
}  // namespace

SimPowerMeter::SimPowerMeter(int64_t start_ns, int64_t window_ns) : start_ns_(start_ns), window_ns_(window_ns) {
  history_.push_back({start_ns, SimBusyState{}});
}

void SimPowerMeter::publish(int64_t now_ns, const SimBusyState& s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (history_.back().state == s) return;
  history_.push_back({std::max(now_ns, history_.back().from_ns), s});
  // Keep the state in force at now - 2 windows (readers look back one window).
  while (history_.size() > 2 && history_[1].from_ns <= now_ns - 2 * window_ns_) history_.pop_front();
  while (history_.size() > kMaxHistory) history_.pop_front();
}

int64_t SimPowerMeter::busy_at_locked(int64_t t) const {
  // The state in force at t: the last one published at or before t.
  auto it = std::upper_bound(history_.begin(), history_.end(), t,
                             [](int64_t x, const Entry& e) { return x < e.from_ns; });
  if (it != history_.begin()) --it;
  return it->state.busy_at(t);
}

SimPowerReading SimPowerMeter::read(int64_t now_ns) const {
  std::lock_guard<std::mutex> lock(mu_);
  SimPowerReading r;
  now_ns = std::max(now_ns, start_ns_);
  r.elapsed_ns = now_ns - start_ns_;
  // Both bounds grow with now, so the reading stays monotonic.
  r.busy_ns = std::clamp<int64_t>(history_.back().state.busy_at(now_ns), 0, r.elapsed_ns);
  int64_t from = std::max({now_ns - window_ns_, start_ns_, history_.front().from_ns});
  int64_t span = now_ns - from;
  if (span <= 0) {
    SimBusyState s = history_.back().state;
    r.window_busy = s.since_ns >= 0 && s.since_ns <= now_ns && now_ns < s.until_ns ? 1.0 : 0.0;
  } else {
    double f = static_cast<double>(r.busy_ns - busy_at_locked(from)) / static_cast<double>(span);
    r.window_busy = std::clamp(f, 0.0, 1.0);
  }
  return r;
}

}  // namespace agentperf
