// Incremental (sans-IO) HTTP/1.1 response parser for the client side.
//
// Feed it the bytes read from a connection, in pieces split anywhere; it reports the status line,
// the headers that matter (Content-Length, Transfer-Encoding: chunked, Connection: close), and the
// decoded body bytes (chunked framing removed) through a callbacks object. It handles
// content-length bodies, chunked bodies (chunk extensions and trailers ignored), bodies delimited by
// connection close (no length, no chunking: finish with on_eof()), 1xx interim responses (skipped),
// and responses to which no body belongs (204, 304, responses to HEAD). One parser per connection,
// reused for the responses of successive requests (keep-alive) through reset().
//
// Framing rules (RFC 9112 section 6.3): Transfer-Encoding wins over Content-Length; the body is
// chunked when "chunked" is the last transfer coding (other codings, e.g. gzip, are not decoded:
// the body bytes handed over are the chunk payloads as sent); a Transfer-Encoding whose last coding
// is not chunked, or no framing header at all, means a body delimited by connection close.
// Content-Length may repeat (as a list or as several fields) only with identical values.
// Header names are matched case-insensitively; lines may end in CRLF or a bare LF; obs-fold
// continuation lines are ignored. Empty lines before a status line are skipped (a stray CRLF after
// the previous response) and do not count as the start of a response. A 101 response is treated
// as final, without a body, and marks the connection as not reusable.
// Limits: 64 KiB for the status line and headers of one response (likewise for the trailers, and
// for one chunk-size line with its extensions); beyond it, kHeadersTooLarge (kBadChunk for a chunk
// line).
//
// Thread safety: none (owned by the connection's worker thread). No allocation and no copy on the
// body path: body bytes are handed to on_http_body() straight from the fed buffer. Only a header
// (or chunk-size) line that spans feeds is buffered, in a small internal string whose capacity is
// kept across reset().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace agentperf {

enum class Http1ParseError : uint8_t {
  kNone = 0,
  kBadStatusLine,    ///< the first line is not "HTTP/1.x NNN ..."
  kBadHeader,        ///< a header line without ':' or with an empty name
  kBadChunk,         ///< a chunk-size line that is not hex, or a missing CRLF after chunk data
  kBadContentLength, ///< Content-Length not a decimal number, or conflicting values
  kTruncated,        ///< on_eof() came before the message was complete
  kHeadersTooLarge,  ///< the status line and headers (or the trailers) passed 64 KiB
};

/// Human-readable name of an error (static string).
const char* to_string(Http1ParseError e);

/// Callbacks a user of Http1ResponseParser implements; all are called synchronously from feed().
struct Http1Callbacks {
  virtual ~Http1Callbacks() = default;
  /// Status line and headers of a final (non-1xx) response are complete.
  virtual void on_http_headers(int status_code) = 0;
  /// Decoded body bytes (valid only during the call).
  virtual void on_http_body(const char* data, size_t n) = 0;
  /// The whole response has been received.
  virtual void on_http_complete() = 0;
  /// One header line of a final (non-1xx) response, before on_http_headers(); value without
  /// surrounding whitespace. Views are valid only during the call. Called only when
  /// wants_http_headers() is true (the engine's hot path does not look at headers).
  virtual bool wants_http_headers() const { return false; }
  virtual void on_http_header(std::string_view name, std::string_view value) {}
};

class Http1ResponseParser {
 public:
  enum class State : uint8_t { kStatusLine, kHeaders, kBody, kChunkSize, kChunkData, kChunkDataEnd,
                               kTrailers, kBodyUntilClose, kComplete, kError };

  /// `head_request`: a response to HEAD has no body.
  void reset(bool head_request = false);

  /// Consumes bytes; returns the number consumed. It stops early (returning < n) only right after
  /// a complete response (bytes after it belong to the next response; pipelining is not used by
  /// the engine, so they are unexpected: call reset() and feed them again) or on error. Once
  /// complete or in error, it consumes nothing until reset(). Check error() after each call.
  /// Callbacks must not feed this parser; on_http_complete() (the last thing feed() does before
  /// returning) may call reset().
  size_t feed(const char* data, size_t n, Http1Callbacks& cb);
  /// The peer closed the connection: completes a close-delimited body (calling on_http_complete),
  /// or sets kTruncated when a message was in progress (anything of the current response consumed,
  /// a 1xx interim response included). On a parser that has consumed nothing of the current
  /// response (an idle keep-alive connection closed by the server), returns kNone and leaves the
  /// state kStatusLine: check started() to tell. Returns error().
  Http1ParseError on_eof(Http1Callbacks& cb);

  State state() const { return state_; }
  Http1ParseError error() const { return error_; }
  bool complete() const { return state_ == State::kComplete; }
  /// True after a "Connection: close" header or an HTTP/1.0 response without keep-alive: the
  /// connection must not be reused.
  bool connection_close() const { return connection_close_; }
  /// True once any byte of the current response has been consumed (empty lines skipped before the
  /// status line do not count).
  bool started() const { return started_; }
  int status_code() const { return status_code_; }

 private:
  // Free to change: implementation state.
  /// Takes one line ending in LF from [p, end) (the terminator and one CR before it stripped):
  /// returns 1 with `line` set (pointing into the input when the line lies wholly in it, else into
  /// line_), 0 when the input ran out first (the piece appended to line_, p = end), -1 when the
  /// line would pass `limit` bytes counted in line_bytes_ (p unchanged).
  int take_line(const char*& p, const char* end, size_t limit, std::string_view& line);
  bool parse_status_line(std::string_view line);
  /// Handles one header line; false on error (error_ set).
  bool parse_header_line(std::string_view line, Http1Callbacks& cb);
  /// The blank line ending the headers: returns true when the response is complete (no body).
  bool end_of_headers(Http1Callbacks& cb);
  void clear_message_headers();
  void fail(Http1ParseError e) {
    state_ = State::kError;
    error_ = e;
  }

  State state_ = State::kStatusLine;
  Http1ParseError error_ = Http1ParseError::kNone;
  bool head_request_ = false;
  bool connection_close_ = false;
  bool started_ = false;
  // Per message (a 1xx response clears them):
  bool http10_ = false;
  bool chunked_ = false;       ///< last transfer coding is chunked
  bool te_present_ = false;    ///< a non-empty Transfer-Encoding was seen
  bool close_token_ = false;   ///< Connection: close
  bool keep_alive_token_ = false;
  bool cr_seen_ = false;       ///< kChunkDataEnd: the CR of the CRLF after chunk data was consumed
  int status_code_ = 0;
  int64_t content_length_ = -1;
  uint64_t remaining_ = 0;     ///< bytes left in the content-length body / current chunk
  size_t line_bytes_ = 0;      ///< bytes of the current header block / trailers / chunk-size line
  std::string line_;           ///< a line that spans feeds
};

}  // namespace agentperf
