#include "agentperf/workload.h"

#include <stdexcept>
#include <string>

namespace agentperf {

void Workload::finalize() {
  if (conversations.empty()) throw std::invalid_argument("workload has no conversations");
  for (size_t c = 0; c < conversations.size(); ++c) {
    Conversation& conv = conversations[c];
    if (conv.turns.empty())
      throw std::invalid_argument("conversation " + std::to_string(c) + " has no turns");
    if (conv.insert_at > static_cast<int32_t>(conv.fragments.size()))
      throw std::invalid_argument("conversation " + std::to_string(c) + ": insert_at past the last fragment");
    uint32_t previous_end = 0;
    for (size_t t = 0; t < conv.turns.size(); ++t) {
      const TurnSpec& turn = conv.turns[t];
      if (turn.fragment_end == 0 || turn.fragment_end > conv.fragments.size() || turn.fragment_end < previous_end)
        throw std::invalid_argument("conversation " + std::to_string(c) + " turn " + std::to_string(t) +
                                    ": fragment_end " + std::to_string(turn.fragment_end) +
                                    " must be in [previous turn's end, number of fragments] and > 0");
      if (turn.tool_delay_ns < 0)
        throw std::invalid_argument("conversation " + std::to_string(c) + " turn " + std::to_string(t) +
                                    ": negative tool delay");
      previous_end = turn.fragment_end;
    }
    conv.cumulative_bytes.assign(conv.fragments.size() + 1, 0);
    for (size_t i = 0; i < conv.fragments.size(); ++i)
      conv.cumulative_bytes[i + 1] = conv.cumulative_bytes[i] + conv.fragments[i].size();
  }
}

}  // namespace agentperf
