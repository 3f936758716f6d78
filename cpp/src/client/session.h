// The protocol session interface: sans-IO, one implementation per protocol (HTTP/1.1 and HTTP/2),
// chosen in one place (make_session()).
//
// A Session never touches sockets (nor TLS). The connection that owns it feeds it the plaintext
// bytes it reads (on_read), asks it for plaintext to write (pending_output / consumed_output), and
// tells it when the transport ends (on_close). The session reports each request's progress to the
// StreamHandler given at submit(). Thread safety: none; a session belongs to one worker thread.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agentperf/protocol.h"
#include "agentperf/record.h"

namespace agentperf {

/// Receives one request's response. `now_ns` is the monotonic time the bytes were read.
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  /// HTTP/2: the request's HEADERS frame went into the connection's next write, at `now_ns` (a
  /// request submitted on a shared connection can wait for the rest of the loop iteration).
  virtual void on_request_sent(int64_t now_ns) {}
  virtual void on_response_headers(int status, int64_t now_ns) = 0;
  /// The response's header fields, one by one before on_response_headers(), when wants_headers()
  /// (HTTP/2: lower-case names, pseudo-headers left out). Views are valid only during the call.
  virtual bool wants_headers() const { return false; }
  virtual void on_response_header(std::string_view name, std::string_view value) {}
  virtual void on_response_data(const char* data, size_t n, int64_t now_ns) = 0;
  virtual void on_response_complete(int64_t now_ns) = 0;
  /// The stream ended without a complete response; `kind` says why. Called at most once, and
  /// never after on_response_complete.
  virtual void on_stream_failed(ErrorKind kind, int64_t now_ns) = 0;
  /// The handler's bytes that every response chunk touches, which a session may prefetch before it
  /// parses a read carrying many streams' chunks; none by default.
  struct Bytes {
    const void* data = nullptr;
    size_t size = 0;
  };
  virtual Bytes hot_bytes() const { return {}; }
};

/// One extra request header. HTTP/2 needs the name in lower case (the caller's job).
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

/// The protocol-independent part of a request. Strings are not copied: they must outlive the stream.
struct RequestHead {
  std::string_view method = "POST";
  std::string_view path;           ///< e.g. /v1/chat/completions
  std::string_view authority;      ///< Host header / :authority, e.g. 127.0.0.1:8000
  std::string_view authorization;  ///< full header value, empty: none
  std::string_view request_id;     ///< X-Request-Id value, empty: none
  /// Send Content-Type: application/json and Accept: text/event-stream (the streaming API).
  bool json_stream = true;
  const HeaderField* headers = nullptr;  ///< more headers, sent as given
  size_t header_count = 0;
  /// Total size of the body slices. Content-Length is sent unless it is 0 on a GET or HEAD.
  uint64_t content_length = 0;
};

/// Whether a request with this head carries Content-Length (shared by both sessions).
inline bool sends_content_length(const RequestHead& h) {
  return h.content_length > 0 || (h.method != "GET" && h.method != "HEAD");
}

class Session {
 public:
  virtual ~Session() = default;
  virtual Protocol protocol() const = 0;
  /// The transport is established: the session may queue its preface (HTTP/2 SETTINGS).
  virtual void on_connected() = 0;
  /// True when another request can be submitted now (HTTP/1.1: none in flight; HTTP/2: fewer than
  /// the peer's SETTINGS_MAX_CONCURRENT_STREAMS and `stream_limit` open, no GOAWAY received).
  virtual bool can_submit() const = 0;
  /// Queues a request. The body slices (and the head's strings) must stay valid until the stream
  /// ends. Returns a stream id (> 0), or -1 when it cannot be taken.
  virtual int32_t submit(const RequestHead& head, const iovec* body, size_t count, StreamHandler* handler) = 0;
  /// Bytes read from the transport. Returns false when the connection must be closed (the
  /// affected streams have already been failed or completed).
  virtual bool on_read(const char* data, size_t n, int64_t now_ns) = 0;
  /// The transport ended: `kind` is kTruncated for a clean close, kReset for a reset. Fails the
  /// streams still in flight (a close-delimited HTTP/1.1 body completes instead).
  virtual void on_close(ErrorKind kind, int64_t now_ns) = 0;
  /// Up to `max` slices of bytes waiting to be written; returns how many were filled. The slices stay
  /// valid until consumed_output() or the next call into the session.
  virtual size_t pending_output(iovec* out, size_t max) = 0;
  /// `n` bytes of pending_output() were written.
  virtual void consumed_output(size_t n) = 0;
  /// False once no new stream may be started on this connection (Connection: close, GOAWAY,
  /// protocol error); streams already open may still finish.
  virtual bool reusable() const = 0;
  /// Streams submitted and not yet ended.
  virtual size_t active_streams() const = 0;
  /// Forgets a stream without calling its handler again (timeout or cancel). HTTP/1.1: the
  /// connection becomes unusable (reusable() turns false). HTTP/2: the stream is reset (CANCEL).
  virtual void abandon(int32_t stream_id) = 0;
  /// The session's bytes that every read touches, which its connection may prefetch before the
  /// read; none by default.
  virtual StreamHandler::Bytes hot_bytes() const { return {}; }
};

struct SessionOptions {
  /// HTTP/2: at most this many concurrent streams from us (also bounded by the peer's setting).
  uint32_t stream_limit = 100;
  /// HTTP/2: our receive windows, so long streams never stall on the client.
  uint32_t stream_window_bytes = 16u << 20;
  uint32_t connection_window_bytes = 1u << 30;
};

/// The one place the protocol is decided. `want`: what the user asked for; `tls`: the transport is
/// TLS; `alpn`: the protocol ALPN selected on it ("h2", "http/1.1"; empty: none, or plain TCP).
/// Before a handshake, pass the ALPN the last handshake selected (or "h2" before the first) to
/// predict the protocol. Returns false, with the reason in `*error` (when given), when the server
/// refused what was asked (h2 over TLS whose ALPN did not select h2).
bool choose_protocol(ProtocolChoice want, bool tls, std::string_view alpn, Protocol* out, std::string* error = nullptr);

/// The ALPN protocols to offer over TLS for `want`, in preference order.
std::vector<std::string> alpn_offer(ProtocolChoice want);

/// The one place a session is made (`tls`: the transport is TLS, so HTTP/2 uses :scheme https).
/// Throws std::runtime_error if the protocol is unavailable.
std::unique_ptr<Session> make_session(Protocol protocol, const SessionOptions& options = {}, bool tls = false);

}  // namespace agentperf
