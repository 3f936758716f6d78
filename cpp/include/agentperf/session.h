// The protocol session interface: sans-IO, one implementation per protocol (HTTP/1.1 now,
// HTTP/2 next), chosen in one place (make_session()).
//
// A Session never touches sockets. The connection that owns it feeds it the bytes it reads
// (on_read), asks it for bytes to write (pending_output / consumed_output), and tells it when the
// transport ends (on_close). The session reports each request's progress to the StreamHandler given
// at submit(). Thread safety: none; a session belongs to one worker thread.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "agentperf/record.h"

namespace agentperf {

/// Receives one request's response. `now_ns` is the monotonic time the bytes were read.
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  virtual void on_response_headers(int status, int64_t now_ns) = 0;
  virtual void on_response_data(const char* data, size_t n, int64_t now_ns) = 0;
  virtual void on_response_complete(int64_t now_ns) = 0;
  /// The stream ended without a complete response; `kind` says why. Called at most once, and
  /// never after on_response_complete.
  virtual void on_stream_failed(ErrorKind kind, int64_t now_ns) = 0;
};

enum class Protocol : uint8_t { kHttp1 = 1 };

class Session {
 public:
  virtual ~Session() = default;
  /// True when another request can be submitted now.
  virtual bool can_submit() const = 0;
  /// Queues a request whose bytes are `slices` (HTTP head included for HTTP/1.1). The slices must
  /// stay valid until the stream ends. Returns a stream id (> 0), or -1 when it cannot be taken.
  virtual int32_t submit(const iovec* slices, size_t count, StreamHandler* handler) = 0;
  /// Bytes read from the transport. Returns false when the connection must be closed (the
  /// affected streams have already been failed or completed).
  virtual bool on_read(const char* data, size_t n, int64_t now_ns) = 0;
  /// The transport ended: `kind` is kTruncated for a clean close, kReset for a reset. Fails the
  /// streams still in flight (a close-delimited body completes instead).
  virtual void on_close(ErrorKind kind, int64_t now_ns) = 0;
  /// Up to `max` slices of bytes waiting to be written; returns how many were filled.
  virtual size_t pending_output(iovec* out, size_t max) = 0;
  /// `n` bytes of pending_output() were written.
  virtual void consumed_output(size_t n) = 0;
  /// False once the connection cannot be reused (Connection: close, protocol error).
  virtual bool reusable() const = 0;
  /// Streams submitted and not yet ended.
  virtual size_t active_streams() const = 0;
  /// Forgets a stream without calling its handler again (timeout or cancel). For HTTP/1.1 this makes
  /// the connection unusable (reusable() turns false).
  virtual void abandon(int32_t stream_id) = 0;
};

std::unique_ptr<Session> make_session(Protocol protocol);

}  // namespace agentperf
