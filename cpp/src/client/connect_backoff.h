// How long an agent waits before its next connect attempt: capped exponential backoff with jitter.
//
// A server that refuses connections (stopped, restarting) must not be hammered by every agent ten
// times a second: after n consecutive failed attempts the wait is uniform in [b/2, b] with
// b = min(cap, base · 2^(n-1)). The jitter comes from the agent's own random stream (reproducible
// from the seed) and keeps agents that failed together from retrying together.
#pragma once

#include <algorithm>
#include <cstdint>

namespace agentperf {

/// The ceiling b of the wait after `failures` (>= 1) consecutive failures: base · 2^(failures-1),
/// at most `cap_ns` (never below `base_ns`).
inline int64_t connect_backoff_ceiling_ns(int failures, int64_t base_ns, int64_t cap_ns) {
  cap_ns = std::max(cap_ns, base_ns);
  int64_t b = std::max<int64_t>(base_ns, 0);
  for (int i = 1; i < failures && b < cap_ns; ++i) b = b > cap_ns / 2 ? cap_ns : b * 2;
  return std::min(b, cap_ns);
}

/// The wait itself: uniform in [b/2, b] for `u01` uniform in [0, 1).
inline int64_t connect_backoff_ns(int failures, int64_t base_ns, int64_t cap_ns, double u01) {
  const int64_t b = connect_backoff_ceiling_ns(failures, base_ns, cap_ns);
  return b / 2 + static_cast<int64_t>(static_cast<double>(b - b / 2) * u01);
}

}  // namespace agentperf
