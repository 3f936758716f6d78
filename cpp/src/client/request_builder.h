// Request formation: a turn of a conversation becomes a list of slices (scatter-gather), without
// copying the shared fragments (see agentperf/workload.h for the body layout).
//
// Thread safety: a RequestBuilder is immutable once built and may be shared; RequestSlices and
// GeneratedHistory belong to one agent.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "agentperf/engine.h"
#include "agentperf/workload.h"
#include "client/session.h"

namespace agentperf {

/// history=generated: the reply text (JSON-escaped, no quotes) an agent received for each turn of
/// its current conversation.
class GeneratedHistory {
 public:
  /// The reply received for `turn`, or nullptr when none was.
  const std::string* reply(int32_t turn) const {
    return turn >= 0 && static_cast<size_t>(turn) < ok_.size() && ok_[turn] ? &text_[turn] : nullptr;
  }
  /// Takes `text` (swapped out) as the reply of `turn` of a conversation of `turns` turns.
  void keep(int32_t turn, size_t turns, std::string& text);
  /// Forgets every reply (a new conversation). Keeps the buffers.
  void clear();

 private:
  std::vector<std::string> text_;
  std::vector<bool> ok_;
};

/// One request being sent: the small per-request JSON head, the slices and the HTTP head. The
/// slices point into the workload, into this object and into the agent's prefix / history, which
/// must all stay unchanged until the stream ends.
struct RequestSlices {
  std::string json_head;  ///< {"model":..,"stream":true,..,"max_tokens":N ... <open>
  std::string json_tail;  ///< <close>}
  std::vector<iovec> body;
  RequestHead head;
  char request_id[17] = {};  ///< the X-Request-Id value: 16 hex digits
  uint64_t body_bytes = 0;
};

/// Builds requests for one engine (one workload, one endpoint).
class RequestBuilder {
 public:
  /// `workload` must outlive the builder.
  RequestBuilder(const Workload& workload, const EngineConfig& config);

  /// Fills `out` with turn `turn` of conversation `conversation`. `isolation_prefix`: inserted at
  /// the turn's insert_at (nullptr: none); `generated`: replies that replace recorded ones
  /// (nullptr: the recorded history); `request_id`: sent as X-Request-Id (0: no header).
  void build(int32_t conversation, int32_t turn, const std::string* isolation_prefix,
             const GeneratedHistory* generated, uint64_t request_id, RequestSlices& out) const;

  const std::string& authority() const { return authority_; }

 private:
  const Workload& workload_;
  std::string json_prefix_;  // {"model":..,"stream":true[,"stream_options":..][,"ignore_eos":true]<extra_body>
  std::string authority_;
  std::string authorization_;
};

/// An agent's cache-isolation prefix: a pure function of (seed, run_nonce, agent id, epoch), written
/// in the workload's isolation style ("[rid:<16 hex>] " or isolation_tokens token ids, each with ',').
std::string isolation_prefix(const RequestOptions& options, uint64_t seed, uint64_t run_nonce, int64_t agent_id,
                             uint64_t epoch);

}  // namespace agentperf
