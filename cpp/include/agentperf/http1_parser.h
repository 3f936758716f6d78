// Incremental (sans-IO) HTTP/1.1 response parser for the client side.
//
// Feed it the bytes read from a connection, in pieces split anywhere; it reports the status line,
// the headers that matter (Content-Length, Transfer-Encoding: chunked, Connection: close), and the
// decoded body bytes (chunked framing removed) through a callbacks object. It handles
// content-length bodies, chunked bodies (chunk extensions and trailers ignored), bodies delimited by
// connection close (no length, no chunking: finish with on_eof()), 1xx interim responses (skipped),
// and responses to which no body belongs (204, 304). One parser per connection, reused for the
// responses of successive requests (keep-alive) through reset().
//
// Thread safety: none (owned by the connection's worker thread). No allocation on the body path;
// header lines that span feeds are buffered in a small internal string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace agentperf {

enum class Http1ParseError : uint8_t {
  kNone = 0,
  kBadStatusLine,    ///< the first line is not "HTTP/1.x NNN ..."
  kBadHeader,        ///< a header line without ':' or over the size limit (64 KiB of headers)
  kBadChunk,         ///< a chunk-size line that is not hex, or a missing CRLF after chunk data
  kBadContentLength, ///< Content-Length not a decimal number, or conflicting values
  kTruncated,        ///< on_eof() came before the message was complete
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
};

class Http1ResponseParser {
 public:
  enum class State : uint8_t { kStatusLine, kHeaders, kBody, kChunkSize, kChunkData, kChunkDataEnd,
                               kTrailers, kBodyUntilClose, kComplete, kError };

  /// `head_request`: a response to HEAD has no body.
  void reset(bool head_request = false);

  /// Consumes bytes; returns the number consumed. It stops early (returning < n) only right after
  /// a complete response (bytes after it belong to the next response; pipelining is not used by
  /// the engine, so they are unexpected) or on error. Check error() after each call.
  size_t feed(const char* data, size_t n, Http1Callbacks& cb);
  /// The peer closed the connection: completes a close-delimited body, or sets kTruncated when a
  /// message was in progress. Returns error().
  Http1ParseError on_eof(Http1Callbacks& cb);

  State state() const { return state_; }
  Http1ParseError error() const { return error_; }
  bool complete() const { return state_ == State::kComplete; }
  /// True after a "Connection: close" header or an HTTP/1.0 response without keep-alive: the
  /// connection must not be reused.
  bool connection_close() const { return connection_close_; }
  /// True once any byte of the current response has been consumed.
  bool started() const { return started_; }
  int status_code() const { return status_code_; }

 private:
  // Free to change: implementation state.
  State state_ = State::kStatusLine;
  Http1ParseError error_ = Http1ParseError::kNone;
  bool head_request_ = false;
  bool connection_close_ = false;
  bool chunked_ = false;
  bool started_ = false;
  bool http10_ = false;
  int status_code_ = 0;
  int64_t content_length_ = -1;
  uint64_t remaining_ = 0;
  size_t header_bytes_ = 0;
  std::string line_;
};

}  // namespace agentperf
