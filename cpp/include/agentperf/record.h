// Per-request records: what one model call of one agent measured.
//
// Every timestamp is monotonic nanoseconds (agentperf::now_ns()); 0 means "did not happen".
// The Python layer receives these as a numpy structured array with the same field names
// (see cpp/bindings/register_engine.cpp, which defines the dtype from this struct's layout).
#pragma once

#include <cstdint>

namespace agentperf {

/// Why a request failed. Values are stable (they appear in results files).
enum class ErrorKind : uint8_t {
  kNone = 0,        ///< completed: 2xx status, a complete response, at least one output event
  kConnect = 1,     ///< TCP connect failed or was refused
  kHttpStatus = 2,  ///< the server answered with a non-2xx status (see http_status)
  kProtocol = 3,    ///< the response was not valid HTTP/1.1 (or HTTP/2) framing
  kTruncated = 4,   ///< the connection closed cleanly before the response was complete
  kReset = 5,       ///< the connection was reset (ECONNRESET / EPIPE) mid-request
  kTimeout = 6,     ///< no complete response within the request timeout
  kSseMalformed = 7,  ///< the stream held data that is neither a JSON object nor [DONE]
  kStreamError = 8,   ///< the stream carried an error object / `event: error`
  kNoOutput = 9,      ///< a complete 2xx response with no output event at all
  kCancelled = 10,    ///< the engine stopped (or the agent was removed) while it was in flight
  kWrite = 11,        ///< writing the request failed
  /// The response had begun (headers received) and then no byte came for the stream idle timeout
  /// (EngineConfig::stream_idle_timeout_ns): a server that stopped mid-stream.
  kIdleTimeout = 12,
  /// The response passed a size bound: its header block (64 KiB) or one SSE event (line or joined
  /// data, EngineConfig::max_event_bytes). The stream is dropped; memory stays bounded.
  kOversized = 13,
};
constexpr int kErrorKindCount = 14;

/// Stable lower-case name of an error kind ("none", "connect", "http_status", ...).
const char* to_string(ErrorKind kind);

/// Flags on a record.
enum RecordFlags : uint8_t {
  kFlagTokensEstimated = 1,  ///< output_tokens is the count of output events (no usage from server)
  kFlagNewConnection = 2,    ///< the request opened a new connection (connect time inside TTFT)
  kFlagUnderGenerated = 4,   ///< fewer output tokens than the requested exact length
  /// Some response bytes of this request came without a kernel receive stamp (see
  /// client/read_stamp.h): its times are (partly) user-space stamps, client_delay_us is a floor.
  kFlagUserStamps = 8,
};

/// One request. Plain data, 128 bytes; written by the worker that ran it, moved to readers in bulk.
struct RequestRecord {
  int64_t scheduled_ns;    ///< when the agent became ready to send (previous turn done + tool delay)
  int64_t sent_ns;         ///< when the first request byte was written
  int64_t first_byte_ns;   ///< first response byte
  int64_t first_token_ns;  ///< first output event (content, reasoning or tool call)
  int64_t last_token_ns;   ///< last output event
  int64_t done_ns;         ///< response complete, or the time the failure was seen
  int64_t output_tokens;   ///< usage.completion_tokens, else the output event count (flagged)
  int64_t prompt_tokens;   ///< usage.prompt_tokens, -1 if not reported
  int64_t cached_tokens;   ///< usage.prompt_tokens_details.cached_tokens, -1 if not reported
  int64_t request_bytes;   ///< request body size
  int64_t agent_id;        ///< engine-wide agent id
  int32_t conversation;    ///< index of the conversation in the workload
  int32_t turn;            ///< turn index inside the conversation
  int32_t max_tokens;      ///< max_tokens asked for (-1: none)
  int32_t output_events;   ///< SSE events that carried output (not tokens)
  int32_t http_status;     ///< HTTP status, 0 if none was received
  int32_t worker;          ///< worker thread index
  uint8_t error_kind;      ///< ErrorKind
  uint8_t flags;           ///< RecordFlags
  uint8_t pad_[2];          ///< (the Python layer writes the shard index here)
  /// Client-added delay: the most any of this request's reads waited between the kernel's receive
  /// stamp and the client seeing the bytes, in microseconds (0 without kernel stamps).
  uint32_t client_delay_us;
  uint64_t request_id;     ///< its X-Request-Id (unique within the run; also on a request that never reached the server)
};
static_assert(sizeof(RequestRecord) == 128, "RequestRecord layout is part of the numpy contract");

}  // namespace agentperf
