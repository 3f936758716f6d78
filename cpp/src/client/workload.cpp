#include "agentperf/workload.h"

#include <stdexcept>
#include <string>

namespace agentperf {

namespace {
std::invalid_argument bad(size_t c, const std::string& what) {
  return std::invalid_argument("conversation " + std::to_string(c) + ": " + what);
}
}  // namespace

void Workload::finalize() {
  if (conversations.empty()) throw std::invalid_argument("workload has no conversations");
  if (request.isolation_style == IsolationStyle::kTokenIds &&
      (request.isolation_tokens < 1 || request.isolation_token_lo < 0 ||
       request.isolation_token_hi <= request.isolation_token_lo))
    throw std::invalid_argument("token-id isolation needs isolation_tokens >= 1 and 0 <= lo < hi");
  const ToolDelayPolicy& td = tool_delay;
  switch (td.kind) {
    case ToolDelayKind::kRecorded:
    case ToolDelayKind::kNone:
      break;
    case ToolDelayKind::kFixed:
      if (td.a_ns < 0) throw std::invalid_argument("a fixed tool delay must be >= 0");
      break;
    case ToolDelayKind::kUniform:
      if (td.a_ns < 0 || td.b_ns < td.a_ns) throw std::invalid_argument("a uniform tool delay needs 0 <= a <= b");
      break;
    case ToolDelayKind::kLognormal:
      if (td.a_ns <= 0 || !(td.sigma >= 0)) throw std::invalid_argument("a lognormal tool delay needs median > 0 and sigma >= 0");
      break;
  }
  for (size_t c = 0; c < conversations.size(); ++c) {
    Conversation& conv = conversations[c];
    if (conv.turns.empty()) throw bad(c, "has no turns");
    if (!conv.reply_of.empty() && conv.reply_of.size() != conv.fragments.size())
      throw bad(c, "reply_of must have one entry per fragment");
    for (uint32_t p : conv.pieces)
      if (p >= conv.fragments.size()) throw bad(c, "piece index " + std::to_string(p) + " out of range");
    conv.turn_bytes.assign(conv.turns.size(), 0);
    for (size_t t = 0; t < conv.turns.size(); ++t) {
      const TurnSpec& turn = conv.turns[t];
      std::string where = "turn " + std::to_string(t) + ": ";
      if (turn.piece_begin >= turn.piece_end || turn.piece_end > conv.pieces.size())
        throw bad(c, where + "piece range [" + std::to_string(turn.piece_begin) + ", " +
                         std::to_string(turn.piece_end) + ") is empty or out of range");
      if (turn.insert_at > static_cast<int32_t>(turn.piece_end - turn.piece_begin))
        throw bad(c, where + "insert_at past the end of the turn's pieces");
      if (turn.tool_delay_ns < 0) throw bad(c, where + "negative tool delay");
      uint64_t bytes = 0;
      for (uint32_t i = turn.piece_begin; i < turn.piece_end; ++i) bytes += conv.fragments[conv.pieces[i]].size();
      conv.turn_bytes[t] = bytes;
    }
  }
}

}  // namespace agentperf
