// The server side of HTTP/2 for the built-in simulator (h2c with prior knowledge), sans-IO on
// nghttp2: bytes in, bytes out, requests and responses as calls.
//
// Thread safety: none; one session per connection, owned by the server's worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

typedef struct nghttp2_session nghttp2_session;

namespace agentperf {

class H2ServerSession {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    /// A complete request (headers and body). The handler answers later with respond()/send().
    virtual void on_h2_request(int32_t stream_id, std::string_view method, std::string_view path,
                               const std::string& body) = 0;
    /// The stream is gone (completed, reset by the peer, or the connection is closing).
    virtual void on_h2_stream_closed(int32_t stream_id) = 0;
  };

  /// `max_concurrent_streams` is announced in SETTINGS.
  H2ServerSession(Handler& handler, uint32_t max_concurrent_streams);
  ~H2ServerSession();
  H2ServerSession(const H2ServerSession&) = delete;
  H2ServerSession& operator=(const H2ServerSession&) = delete;

  /// Bytes from the client (the connection preface first). False on a fatal protocol error.
  bool on_read(const char* data, size_t n);
  /// Starts the response of `stream_id`: status and content type; the body follows with send().
  void respond(int32_t stream_id, int status, std::string_view content_type);
  /// Appends body bytes; `end` finishes the stream after them.
  void send(int32_t stream_id, std::string_view data, bool end);
  /// Resets a stream (RST_STREAM INTERNAL_ERROR): an injected mid-stream failure.
  void reset(int32_t stream_id);
  /// Serialised bytes waiting to be written (valid until consumed()).
  size_t pending_output(const char** data);
  void consumed(size_t n);
  /// False once the session has nothing more to do (GOAWAY exchanged or fatal error).
  bool alive() const;

  // nghttp2 glue (internal).
  struct Stream {
    std::string method, path, body, out;
    size_t out_off = 0;
    bool responded = false, ended = false, deferred = false;
  };
  Stream* stream(int32_t id);
  Handler& handler() { return handler_; }
  std::unordered_map<int32_t, Stream>& streams() { return streams_; }

 private:
  void pump();
  Handler& handler_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, Stream> streams_;
  std::string out_;
  size_t out_off_ = 0;
  bool fatal_ = false;
};

}  // namespace agentperf
