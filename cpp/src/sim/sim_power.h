// The simulator's power model: one replica's busy time turned into accelerator power and energy.
//
// A replica (one worker's model) runs on `accelerators` simulated accelerators that share its work
// evenly, so each draws
//     P(t) = idle_w + dynamic_w * busy(t)        (busy(t) = 1 while the model is busy, else 0)
// where "busy" is what the model reports (sim_model.h: a step in progress, or for the null model
// at least one request in flight). The energy counter integrates that exactly since the server
// started, per accelerator, in millijoules:
//     E(t) = 1e-6 * (idle_w * (t - start_ns) + dynamic_w * busy_ns(t))     (W x ns = 1e-6 mJ)
// and the power gauge is P averaged over the last `window_ns` (1 s):
//     idle_w + dynamic_w * (busy_ns(t) - busy_ns(t - window)) / window.
//
// SimBusyState is the model's busy bookkeeping (SimModelStats::busy_*); SimPowerMeter keeps the
// states a worker published, with the wall time of each, so that another thread can read busy
// time now and a window ago. A state is published after every change to the model; busy time in
// model time can only grow, so a reading never goes down (a step that ended while the worker was
// late counts from its model start once the worker catches up).
//
// Thread safety: publish() from the worker's thread, read() from any (a mutex).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>

namespace agentperf {

struct SimBusyState {
  int64_t busy_ns = 0;                ///< closed busy intervals
  int64_t since_ns = -1;              ///< start of the open interval; -1: idle
  int64_t until_ns = INT64_MAX;       ///< its end when known

  /// Busy time up to `t` by this state.
  int64_t busy_at(int64_t t) const {
    if (since_ns < 0 || t <= since_ns) return busy_ns;
    return busy_ns + (t < until_ns ? t : until_ns) - since_ns;
  }
  bool operator==(const SimBusyState& o) const {
    return busy_ns == o.busy_ns && since_ns == o.since_ns && until_ns == o.until_ns;
  }
};

/// Energy of one accelerator, in mJ, after `elapsed_ns` of which `busy_ns` busy.
inline double sim_energy_mj(double idle_w, double dynamic_w, int64_t elapsed_ns, int64_t busy_ns) {
  return 1e-6 * (idle_w * static_cast<double>(elapsed_ns) + dynamic_w * static_cast<double>(busy_ns));
}

struct SimPowerReading {
  int64_t elapsed_ns = 0;       ///< since start
  int64_t busy_ns = 0;          ///< busy time since start
  double window_busy = 0;       ///< busy fraction over the last window (the whole run when shorter)
};

class SimPowerMeter {
 public:
  explicit SimPowerMeter(int64_t start_ns, int64_t window_ns = 1'000'000'000);

  /// The model's state as of wall time `now_ns` (no-op when unchanged).
  void publish(int64_t now_ns, const SimBusyState& s);
  SimPowerReading read(int64_t now_ns) const;
  int64_t start_ns() const { return start_ns_; }

 private:
  struct Entry {
    int64_t from_ns;     ///< wall time the state was published
    SimBusyState state;
  };
  int64_t busy_at_locked(int64_t t) const;

  const int64_t start_ns_;
  const int64_t window_ns_;
  mutable std::mutex mu_;
  std::deque<Entry> history_;  ///< by from_ns; the first one covers the window's start
};

}  // namespace agentperf
