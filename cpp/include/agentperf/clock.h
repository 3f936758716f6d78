// The one clock of agentperf-native.
//
// Every measurement is a CLOCK_MONOTONIC reading in integer nanoseconds. Wall time is only an
// anchor written into reports (see wall_anchor()); it is never subtracted from a monotonic stamp.
#pragma once

#include <cstdint>
#include <ctime>

namespace agentperf {

/// Monotonic nanoseconds since an arbitrary epoch (CLOCK_MONOTONIC). Thread-safe, never blocks,
/// no allocation (a vDSO call, ~20 ns).
inline int64_t now_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
}

/// Wall-clock (CLOCK_REALTIME) nanoseconds since the Unix epoch, for report anchors only.
inline int64_t wall_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
}

constexpr int64_t kNsPerMs = 1'000'000;
constexpr int64_t kNsPerS = 1'000'000'000;

}  // namespace agentperf
