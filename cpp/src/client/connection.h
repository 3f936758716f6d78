// A transport connection as the agents see it, and its socket implementation.
//
// Connection (the base) holds the protocol session and the agents waiting for it; what moves bytes
// is the subclass: SocketConnection (a non-blocking socket, optional TLS, on an EventLoop) for the
// load and the one-shot client, an in-memory one in the tests. Thread safety: none; a connection
// belongs to the thread of its host (a worker).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agentperf/protocol.h"
#include "client/read_stamp.h"
#include "client/session.h"
#include "common/event_loop.h"
#include "common/prefetch.h"

namespace agentperf {

class Connection;
class TlsConnection;
class TlsContext;

/// An agent (or a one-shot request) waiting for a connection that is still being set up.
class ConnectionWaiter {
 public:
  virtual ~ConnectionWaiter() = default;
  /// The session is up. The waiter re-checks has_room(): a connection may be fuller than expected.
  virtual void on_connection_ready(Connection* c) = 0;
  virtual void on_connection_failed(Connection* c, int64_t now_ns) = 0;
};

/// One transport connection and the protocol session over it.
class Connection {
 public:
  explicit Connection(uint32_t streams_per_connection) : streams_per_connection_(streams_per_connection) {}
  virtual ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// HTTP/1.1: the agent this connection belongs to (one keep-alive connection per agent).
  const void* owner = nullptr;

  virtual bool is_open() const = 0;
  /// Before a request is written on an idle keep-alive connection: whether the peer has closed it
  /// (EOF or a reset waiting on the socket). Servers such as llama.cpp's close after every streamed
  /// response while announcing keep-alive; writing the next request into that socket would fail it.
  virtual bool peer_closed() { return false; }
  /// Closes the transport: streams in flight fail with `kind`, waiters are told. Idempotent.
  virtual void close(ErrorKind kind, int64_t now_ns) = 0;
  /// Writes what the session has to send (as much as the transport takes now).
  virtual void flush() = 0;
  /// After a submit: flush() now, or (SocketConnection on a shared connection) once the host's
  /// loop iteration ends, so requests submitted together go out in one write.
  virtual void flush_submitted() { flush(); }
  /// Set while this connection waits in its host's list of connections to flush.
  bool flush_deferred = false;

  bool ready() const { return is_open() && session_ != nullptr; }
  Session* session() { return session_.get(); }
  /// Room for one more stream, counting the waiters already promised one.
  bool has_room() const;
  /// HTTP/2 (or, before the session exists, a connection expected to be HTTP/2): many agents share it.
  bool shareable() const { return !session_ ? expected_capacity_ > 1 : session_->protocol() == Protocol::kHttp2; }

  void add_waiter(ConnectionWaiter* w) { waiters_.push_back(w); }
  void remove_waiter(ConnectionWaiter* w);

  /// Submits a request on the ready session and flushes; the stream id, or -1.
  int32_t submit(const RequestHead& head, const iovec* body, size_t n, StreamHandler* handler);
  /// Forgets a stream (timeout, cancel); closes the connection when nothing else can use it.
  void abandon(int32_t stream_id);

 protected:
  /// The transport is up and speaks `protocol`: makes the session, flushes its preface, then tells
  /// the waiters (unless the flush closed the connection).
  void become_ready(Protocol protocol, bool tls);
  /// The base part of close(): drops the session (failing its streams with `kind`) and tells the
  /// waiters. The subclass has already released its transport.
  void end(ErrorKind kind, int64_t now_ns);
  /// Closes once the session is no longer reusable and nothing is left on it.
  void close_if_done();

  uint32_t streams_per_connection_;
  uint32_t expected_capacity_ = 1;  // streams this connection is expected to take before it is up
  std::unique_ptr<Session> session_;
  std::vector<ConnectionWaiter*> waiters_;
  // What a read touches beyond this object: the session's state and, over HTTP/1.1, the handler of
  // its one stream (the last one submitted; a stale one costs a wasted hint, nothing more). A
  // socket read prefetches them before its system call, so that their cache misses (each event
  // lands on another connection, cold by then) overlap the kernel's work instead of coming one
  // pointer at a time after it.
  StreamHandler::Bytes session_hot_{}, stream_hot_{};
};

/// What a socket connection needs from the thread that runs it (a Worker, the one-shot client).
class ConnectionHost {
 public:
  virtual ~ConnectionHost() = default;
  virtual EventLoop& loop() = 0;
  virtual const sockaddr* addr() const = 0;
  virtual socklen_t addr_len() const = 0;
  virtual const TlsContext* tls() const = 0;  ///< nullptr: plain TCP
  virtual ProtocolChoice protocol_choice() const = 0;
  /// Scratch buffers of kReadBufferBytes, shared by the host's connections (one thread).
  virtual char* read_buffer() = 0;
  virtual char* plain_buffer() = 0;
  /// The protocol ALPN selected on this host's last TLS handshake (0: none yet).
  virtual Protocol negotiated() const = 0;
  virtual void set_negotiated(Protocol p) = 0;
  virtual void connection_opened() = 0;
  virtual void connection_closed(Connection* c) = 0;
  /// A connect / TLS failure, in words.
  virtual void connection_error(const std::string& what) = 0;
  /// A TLS failure (handshake, certificate, ALPN refusal), in words; by default a connection_error.
  virtual void tls_error(const std::string& what) { connection_error(what); }
  /// Whether sockets ask the kernel for receive stamps (EngineConfig::kernel_stamps).
  virtual bool kernel_stamps() const { return true; }
  /// The stamps of the read whose bytes are being delivered now (before the session sees them).
  virtual void set_read_stamp(const ReadStamp& stamp) {}
  /// Takes `c` to be flushed when the current loop iteration ends (false: flush it now). Requests
  /// that several agents submit in one iteration on one HTTP/2 connection then go out in one
  /// write: one system call, and the server sees them arrive together, as they were sent.
  virtual bool defer_flush(Connection* c) { return false; }
};

constexpr size_t kReadBufferBytes = 256 * 1024;

/// A non-blocking socket (with optional TLS) registered on the host's event loop.
class SocketConnection final : public Connection, public IoHandler {
 public:
  SocketConnection(ConnectionHost& host, uint32_t streams_per_connection);
  ~SocketConnection() override;

  /// Starts a non-blocking connect. Returns false when the socket cannot be created or connect()
  /// fails at once (the reason went to ConnectionHost::connection_error).
  bool open();

  bool is_open() const override { return fd_ >= 0; }
  bool peer_closed() override;
  void close(ErrorKind kind, int64_t now_ns) override;
  void flush() override;
  void flush_submitted() override {
    if (!shareable() || !host_.defer_flush(this)) flush();
  }
  void on_io(uint32_t events) override;

 private:
  void fail_tls();
  void write_failed();
  void set_want_out(bool want);
  bool deliver(const char* data, size_t n, int64_t now_ns);
  void read_ready();

  ConnectionHost& host_;
  int fd_ = -1;
  bool connecting_ = false;
  bool want_out_ = false;
  int64_t last_read_ns_ = 0;  ///< the last read's stamp: a connection's stamps never go back
  std::unique_ptr<TlsConnection> tls_;
};

}  // namespace agentperf
