#include "client/tool_delay.h"

#include <algorithm>
#include <cmath>

namespace agentperf {

int64_t draw_tool_delay_ns(const ToolDelayPolicy& p, int64_t recorded_ns, Rng& rng) {
  double d = 0;
  switch (p.kind) {
    case ToolDelayKind::kRecorded: d = static_cast<double>(recorded_ns); break;
    case ToolDelayKind::kNone: d = 0; break;
    case ToolDelayKind::kFixed: d = static_cast<double>(p.a_ns); break;
    case ToolDelayKind::kUniform:
      d = static_cast<double>(p.a_ns) + static_cast<double>(p.b_ns - p.a_ns) * rng.uniform01();
      break;
    case ToolDelayKind::kLognormal:
      d = static_cast<double>(p.a_ns) * std::exp(p.sigma * rng.normal());
      break;
  }
  if (p.cap_ns >= 0) d = std::min(d, static_cast<double>(p.cap_ns));
  // Far beyond any sensible delay (~290 years) clamps instead of overflowing.
  return static_cast<int64_t>(std::clamp(d, 0.0, 9.0e18));
}

}  // namespace agentperf
