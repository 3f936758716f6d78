// The agent's tool time between two turns, drawn from the workload's ToolDelayPolicy.
#pragma once

#include <cstdint>

#include "agentperf/workload.h"
#include "common/rng.h"

namespace agentperf {

/// A delay in ns (>= 0) for a turn whose recorded delay is `recorded_ns`, drawn from `rng` (which
/// is not touched for kRecorded, kNone and kFixed).
int64_t draw_tool_delay_ns(const ToolDelayPolicy& policy, int64_t recorded_ns, Rng& rng);

}  // namespace agentperf
