// Incremental Server-Sent Events parser for OpenAI-compatible streaming responses.
//
// Input: the decoded HTTP body (after chunked transfer decoding), fed in pieces of any size, split
// at any byte. Output: one SseEvent per complete event (an event ends at a blank line), holding only
// what timing needs. The parser follows the WHATWG event-stream rules: lines end in CRLF, LF or CR;
// a line starting with ':' is a comment; "data:" lines of one event are joined with '\n'; a single
// space after the colon is dropped; fields other than data (event, id, retry) are ignored except
// that `event: error` marks the event as an error; an event with no data line produces nothing.
//
// The event's data is inspected with a key scanner (not a full JSON parser):
//   - has_output: the data is a JSON chunk with a non-empty string value for "content", "text",
//     "reasoning_content" or "reasoning", or a non-empty "tool_calls" array (OpenAI chat deltas,
//     /v1/completions text, vLLM/SGLang reasoning fields, llama.cpp's fields). null or "" is not
//     output. The role-only first chunk of OpenAI/vLLM is not output.
//   - usage: when the chunk holds a non-null "usage" object, its "prompt_tokens",
//     "completion_tokens" and "cached_tokens" (inside prompt_tokens_details) or llama.cpp/DeepSeek's
//     "prompt_cache_hit_tokens" figures; a figure that is absent is -1.
//   - done: the data is exactly "[DONE]".
//   - error: a top-level "error" key, or `event: error`.
//   - malformed: the data is neither "[DONE]" nor starts (after whitespace) with '{'.
// Events are never counted as tokens: output token counts come from usage.
//
// Thread safety: none; one parser per stream, owned by the thread that feeds it.
// Allocation: the parser keeps one internal buffer for a partial line/event, reused across feeds;
// a complete event that lies wholly inside one feed is inspected in place without copying.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace agentperf {

struct SseUsage {
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  int64_t cached_tokens = -1;
  bool operator==(const SseUsage&) const = default;
};

struct SseEvent {
  bool has_output = false;  ///< carries generated output (content, text, reasoning, tool calls)
  bool done = false;        ///< data was [DONE]
  bool has_usage = false;   ///< a non-null usage object was present (see usage)
  bool error = false;       ///< an error object / `event: error`
  bool malformed = false;   ///< data is not a JSON object nor [DONE]
  SseUsage usage;
  bool operator==(const SseEvent&) const = default;
};

/// Inspects one event's joined data (exposed for tests and for non-streaming bodies, which are a
/// single JSON object with the same keys: choices[].message.content, usage).
SseEvent inspect_sse_data(std::string_view data);

class SseParser {
 public:
  /// Feeds `n` bytes; calls `on_event(const SseEvent&)` for every event completed by them, in order.
  /// Never blocks. The callback must not feed this parser.
  template <class F>
  void feed(const char* data, size_t n, F&& on_event);

  /// Forgets any partial event (start of a new response).
  void reset();
  /// True when bytes of an unfinished event are buffered (used to tell a clean end from a cut one).
  bool has_partial() const { return !line_.empty() || !data_.empty() || saw_data_; }

 private:
  // Implementation state; see sse_parser.cpp. Kept public-in-header so feed<F> can be inlined.
  bool process_line(std::string_view line, SseEvent* out);  // returns true when an event completed
  std::string line_;   ///< bytes of the current unterminated line
  std::string data_;   ///< joined data of the current event when it spans feeds/lines
  bool saw_data_ = false;
  bool event_error_ = false;
  bool last_was_cr_ = false;  ///< previous feed ended with CR: a leading LF belongs to it
};

}  // namespace agentperf

#include "agentperf/sse_parser_inl.h"
