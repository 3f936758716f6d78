// The simulator's power model: accelerators that draw idle_w, plus dynamic_w while their model is
// executing a step, exported as a DCGM exporter would (W and mJ).
//
// Instantaneous power of accelerator i: idle_w + dynamic_w * busy_i(t), with busy_i(t) the share of
// the workers hosted on it that are inside a step at t. Exported:
//   DCGM_FI_DEV_POWER_USAGE               its mean over the last second (as NVML's power usage is),
//                                         = idle_w + dynamic_w * utilisation over that second;
//   DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION  its integral since the server started, in mJ: exact,
//                                         because every step's interval is known when it starts.
// So (energy(t2) - energy(t1)) / (t2 - t1) is exactly the mean power over [t1, t2], and the power
// gauge is that over the last second. The null model runs no steps: its accelerators idle.
//
// Accelerators and workers (model replicas): with A accelerators and W workers, accelerator i hosts
// worker i % W when A >= W (a replica spread over several accelerators), else the workers w with
// w % A == i (several replicas on one accelerator; its utilisation is their mean).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "agentperf/sim_server.h"

namespace agentperf {

/// One worker's busy intervals. Written by the worker thread (add_busy), read by any thread.
class SimPowerMeter {
 public:
  explicit SimPowerMeter(int64_t start_ns) : start_ns_(start_ns) {}
  /// A step runs over [start_ns, end_ns). Intervals come in time order and do not overlap.
  void add_busy(int64_t start_ns, int64_t end_ns);
  /// Busy time within [from_ns, to_ns]; from_ns no earlier than to_ns minus kHistoryNs.
  int64_t busy_ns(int64_t from_ns, int64_t to_ns) const;
  int64_t start_ns() const { return start_ns_; }

  /// How far back busy_ns() can look exactly (intervals older than this are folded into a total).
  static constexpr int64_t kHistoryNs = 4'000'000'000;

 private:
  struct Interval {
    int64_t start_ns, end_ns;
  };
  const int64_t start_ns_;
  mutable std::mutex mu_;          // guards the rest: one lock per step (worker) and per read
  std::deque<Interval> recent_;    // in time order
  int64_t folded_busy_ns_ = 0;     // busy time of the intervals dropped from recent_
  int64_t folded_until_ns_ = INT64_MIN;  // they all ended by then
};

struct SimPowerParams {
  int accelerators = 1;
  double idle_w = 100.0;     ///< per accelerator, when no hosted model is in a step
  double dynamic_w = 600.0;  ///< added per accelerator while its hosted models are all in a step
};

/// The power of every accelerator at `now_ns`, from its workers' meters (meters[w]: worker w).
/// `window_ns`: the averaging window of the power gauge (shorter at the start).
std::vector<SimAcceleratorPower> sim_power(const SimPowerParams& params,
                                           const std::vector<const SimPowerMeter*>& meters, int64_t now_ns,
                                           int64_t window_ns = 1'000'000'000);

}  // namespace agentperf
