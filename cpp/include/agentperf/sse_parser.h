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
//   - error: a top-level "error" key (whose value is not null or false), or `event: error`.
//   - malformed: the data is neither "[DONE]" nor one complete JSON object (not an object at all,
//     cut short, broken inside, or followed by anything but whitespace). What the walk found before
//     the fault (output, usage) is still reported.
// Events are never counted as tokens: output token counts come from usage.
//
// Thread safety: none; one parser per stream, owned by the thread that feeds it.
// Allocation: the parser keeps two internal buffers, reused across feeds and events: one for a
// line that spans feeds, one for an event's data that spans feeds or data lines. Both are bounded:
// a line or an event's joined data larger than max_event_bytes (1 MiB unless set) makes the parser
// stop (overflowed(): no more events until reset(), nothing more buffered). A
// complete single-data-line event that lies wholly inside one feed is inspected in place, without
// copying; inspect_sse_data never allocates. Events shaped like the last text event (the same bytes
// around another string) are recognised without walking their JSON again (see Shape below).
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
  /// The raw (still JSON-escaped, without quotes) value of the first non-empty "content" or "text"
  /// string of the chunk; empty when none. Valid only during the on_event callback (it points into
  /// the fed bytes or the parser's buffer). Used to feed generated output back (history=generated).
  std::string_view text;
  bool operator==(const SseEvent&) const = default;
};

/// Inspects one event's joined data (exposed for tests and for non-streaming bodies, which are a
/// single JSON object with the same keys: choices[].message.content, usage).
SseEvent inspect_sse_data(std::string_view data);

class SseParser {
 public:
  /// Feeds `n` bytes; calls `on_event(const SseEvent&)` for every event completed by them, in order.
  /// Never blocks. The callback must not feed this parser (it may call reset(), which drops the
  /// rest of the current feed).
  template <class F>
  void feed(const char* data, size_t n, F&& on_event);

  /// Forgets any partial event (start of a new response). Keeps the buffers' capacity unless one
  /// grew past 64 KiB.
  void reset();
  /// True when bytes of an unfinished event are buffered (used to tell a clean end from a cut one):
  /// an unterminated line, or field lines of an event whose closing blank line has not come yet.
  bool has_partial() const { return !line_.empty() || in_event_; }
  /// The bound on one line or one event's joined data (see the header comment).
  void set_max_event_bytes(size_t n) { max_event_bytes_ = n; }
  size_t max_event_bytes() const { return max_event_bytes_; }
  /// A line or an event passed the bound: the stream is beyond what the parser keeps. Sticky until
  /// reset(); feeds are ignored meanwhile.
  bool overflowed() const { return overflowed_; }
  /// The joined data of the event being reported, valid only during the on_event callback (for
  /// showing a malformed or error event).
  std::string_view event_data() const { return event_data_; }
  /// Events recognised by the shape of an earlier one, without walking their JSON (see Shape).
  uint64_t shape_hits() const { return shape_hits_; }

 private:
  // feed<F> (sse_parser_inl.h) is a thin loop over these non-template steps (sse_parser.cpp).
  /// The fast path: when nothing is pending and the feed is exactly one event made of one data line
  /// (`data: ...` + LF LF, no CR, no other line break inside), inspects it in place (true, *out
  /// filled) with the same result and state the line-by-line path would leave. Else false, nothing
  /// consumed. Servers write one such event per chunk or frame, so most feeds take this path.
  bool whole_event(const char* data, size_t n, SseEvent* out);
  /// inspect_sse_data(data), short-cut by the shape of the last text event (see Shape).
  SseEvent inspect(std::string_view data);
  void begin_feed(const char* data, size_t n);
  /// Consumes lines of the current feed until one event completes (true, *out filled) or the feed
  /// is used up (false; an unterminated tail line is kept in line_, in-place data copied to data_).
  bool next_event(SseEvent* out);
  /// Handles one complete line (without its terminator). `in_place`: the line lies in the caller's
  /// buffer for the rest of this feed (not in line_). Returns true when the line completed an event.
  bool process_line(std::string_view line, bool in_place, SseEvent* out);
  void save_pending();
  /// Marks the parser overflowed, drops the feed's rest and what is buffered.
  void overflow();

  // The one-event fast path (whole_event, inspect) reads only the members up to line_'s size: they
  // come first, so that an event touches few cache lines of a parser among thousands.

  /// A server streams its output events in one shape: the same bytes before the output string's
  /// value (id, model, choices, delta, key) and after it (the closing of the objects). After a full
  /// inspection of an event whose only output is one non-empty string (content, text, reasoning; no
  /// usage, error or fault), the keyed hashes of the bytes up to and including the value's opening
  /// quote (head) and from its closing quote (tail) are kept. An event whose head and tail hash the
  /// same, around a non-empty string, is that event with another string: the walk would find the
  /// same, so it is reported without walking its JSON again. Anything else is walked.
  struct Shape {
    uint64_t head_hash = 0;
    uint64_t tail_hash = 0;
    uint32_t head_len = 0;  ///< 0: no shape yet
    uint32_t tail_len = 0;
    bool is_text = false;  ///< the string is the event's text (content or text, not reasoning)
  };
  Shape shape_;
  uint64_t shape_hits_ = 0;
  bool in_event_ = false;     ///< a field line of an unfinished event has been seen
  bool last_was_cr_ = false;  ///< previous feed ended with CR: a leading LF belongs to it
  bool overflowed_ = false;
  size_t max_event_bytes_ = size_t{1} << 20;
  std::string_view event_data_;  ///< the event being reported (see event_data())
  std::string line_;  ///< bytes of the current unterminated line (spanning feeds)
  std::string data_;  ///< joined data of the current event when it cannot be viewed in place
  std::string_view pending_;    ///< the event's data, in place in the current feed's buffer
  const char* cur_ = nullptr;   ///< next unconsumed byte of the current feed
  const char* end_ = nullptr;   ///< end of the current feed
  const char* next_lf_ = nullptr;  ///< first '\n' at or after cur_ (end_ if none); cached
  const char* next_cr_ = nullptr;  ///< first '\r' at or after cur_ (end_ if none); cached
  bool saw_data_ = false;     ///< the current event has at least one data line
  bool data_in_place_ = false;  ///< the event's data is pending_ (else data_)
  bool event_error_ = false;  ///< `event: error` seen for the current event
};

}  // namespace agentperf

#include "agentperf/sse_parser_inl.h"
