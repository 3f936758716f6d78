#include "sim/sim_power.h"

#include <algorithm>

namespace agentperf {

void SimPowerMeter::add_busy(int64_t start_ns, int64_t end_ns) {
  if (end_ns <= start_ns) return;
  std::lock_guard<std::mutex> lock(mu_);
  recent_.push_back({start_ns, end_ns});
  // Fold what no reader can ask about any more (it only counts in totals from the start).
  while (!recent_.empty() && recent_.front().end_ns < start_ns - kHistoryNs) {
    folded_busy_ns_ += recent_.front().end_ns - recent_.front().start_ns;
    folded_until_ns_ = recent_.front().end_ns;
    recent_.pop_front();
  }
}

int64_t SimPowerMeter::busy_ns(int64_t from_ns, int64_t to_ns) const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t busy = from_ns <= start_ns_ && folded_until_ns_ <= to_ns ? folded_busy_ns_ : 0;
  for (const Interval& v : recent_) {
    if (v.start_ns >= to_ns) break;
    int64_t a = std::max(v.start_ns, from_ns), b = std::min(v.end_ns, to_ns);
    if (b > a) busy += b - a;
  }
  return busy;
}

std::vector<SimAcceleratorPower> sim_power(const SimPowerParams& p, const std::vector<const SimPowerMeter*>& meters,
                                           int64_t now_ns, int64_t window_ns) {
  std::vector<SimAcceleratorPower> out(static_cast<size_t>(std::max(p.accelerators, 0)));
  const int a_count = p.accelerators, w_count = static_cast<int>(meters.size());
  if (w_count == 0) return out;
  const int64_t start = meters[0]->start_ns();
  const int64_t elapsed = std::max<int64_t>(0, now_ns - start);
  const int64_t window = std::min(window_ns, elapsed);
  for (int i = 0; i < a_count; ++i) {
    double busy_total = 0, busy_window = 0;
    int hosted = 0;
    for (int w = 0; w < w_count; ++w) {
      bool on_i = a_count >= w_count ? w == i % w_count : w % a_count == i;
      if (!on_i) continue;
      ++hosted;
      busy_total += static_cast<double>(meters[w]->busy_ns(start, now_ns));
      if (window > 0) busy_window += static_cast<double>(meters[w]->busy_ns(now_ns - window, now_ns));
    }
    if (hosted == 0) hosted = 1;
    SimAcceleratorPower& a = out[static_cast<size_t>(i)];
    a.utilisation = window > 0 ? busy_window / hosted / static_cast<double>(window) : 0.0;
    a.power_w = p.idle_w + p.dynamic_w * a.utilisation;
    // J = W * s; mJ = W * ms = W * ns / 1e6.
    a.energy_mj = (p.idle_w * static_cast<double>(elapsed) + p.dynamic_w * busy_total / hosted) / 1e6;
  }
  return out;
}

}  // namespace agentperf
