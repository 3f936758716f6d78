// The simulated server's HTTP/2 side (h2c with prior knowledge), on nghttp2.
//
// A connection whose first bytes are the HTTP/2 client preface hands its bytes to a
// SimHttp2Session: each request stream (HEADERS, optional DATA, END_STREAM) becomes a SimExchange
// whose responder is the stream (":status", "content-type", "content-length" when known, then DATA
// frames; END_STREAM ends the response). Faults map to HTTP/2: `reset` sends RST_STREAM
// (INTERNAL_ERROR) on that stream only; `truncate` closes the TCP connection, so every stream
// open on it ends truncated; the others behave as on HTTP/1.1. A stream the client resets or that
// dies with the connection aborts its exchange (its model request is cancelled).
//
// The session writes through a SimHttp2Transport (the socket owner) and never touches the socket.
// Thread safety: one worker thread. Re-entrancy: responder calls made while nghttp2 is parsing
// input are queued and written when feed() returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sim/sim_exchange.h"

struct nghttp2_session;

namespace agentperf {

/// The socket under an HTTP/2 session.
class SimHttp2Transport {
 public:
  virtual ~SimHttp2Transport() = default;
  /// Appends bytes to the connection's output and tries to send them.
  virtual void h2_write(std::string_view bytes) = 0;
  /// Closes the TCP connection now (FIN); the transport then calls abort_all().
  virtual void h2_close() = 0;
};

/// The client connection preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").
constexpr std::string_view kHttp2Preface{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24};

/// Implemented by an exchange host that can lend exchanges to HTTP/2 streams.
class SimExchangePool {
 public:
  virtual ~SimExchangePool() = default;
  virtual SimExchange* acquire() = 0;
};

class SimHttp2Session {
 public:
  /// Throws std::runtime_error when nghttp2 cannot create a session. Queues the server SETTINGS.
  SimHttp2Session(SimExchangePool& pool, SimHttp2Transport& transport);
  ~SimHttp2Session();
  SimHttp2Session(const SimHttp2Session&) = delete;
  SimHttp2Session& operator=(const SimHttp2Session&) = delete;

  /// Bytes from the client (the preface included). Returns false on a connection error: the caller
  /// closes the connection.
  bool feed(const char* data, size_t n);
  /// The connection is gone: aborts every open exchange; nothing more is written.
  void abort_all();
  /// Writes what nghttp2 has to send (called after any responder call from outside feed()).
  void pump();

 private:
  struct Stream;
  static Stream* stream_of(nghttp2_session* s, int32_t id);

  nghttp2_session* s_ = nullptr;
  SimExchangePool& pool_;
  SimHttp2Transport& transport_;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  bool in_feed_ = false;
  bool dead_ = false;
};

}  // namespace agentperf
