#include "client/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agentperf/clock.h"
#include "common/tls.h"

namespace agentperf {

namespace {
constexpr size_t kMaxIovPerWrite = 512;
/// Reads of one connection per readiness event at most (4 MiB): a sender faster than the client
/// cannot keep the loop inside one connection, so the others and the timers (a stream given up for
/// an oversized event, a timeout) get their turn; the socket, level-triggered, is reported again.
constexpr int kMaxReadsPerWake = 16;
}  // namespace

// ---------------------------------------------------------------------------------------------
// Connection

bool Connection::has_room() const {
  if (!is_open()) return false;
  if (!session_) return waiters_.size() < expected_capacity_;
  return session_->reusable() && session_->can_submit() &&
         session_->active_streams() + waiters_.size() < streams_per_connection_;
}

void Connection::remove_waiter(ConnectionWaiter* w) {
  for (size_t i = 0; i < waiters_.size(); ++i)
    if (waiters_[i] == w) {
      waiters_.erase(waiters_.begin() + static_cast<ptrdiff_t>(i));
      return;
    }
}

int32_t Connection::submit(const RequestHead& head, const iovec* body, size_t n, StreamHandler* handler) {
  int32_t id = session_->submit(head, body, n, handler);
  if (id <= 0) return id;
  if (session_->protocol() == Protocol::kHttp1) stream_hot_ = handler->hot_bytes();  // its one stream
  flush_submitted();
  return id;
}

void Connection::abandon(int32_t stream_id) {
  if (!session_) return;
  session_->abandon(stream_id);
  flush();
  close_if_done();
}

void Connection::become_ready(Protocol protocol, bool tls) {
  SessionOptions o;
  o.stream_limit = streams_per_connection_;
  session_ = make_session(protocol, o, tls);
  session_hot_ = session_->hot_bytes();
  stream_hot_ = {};
  session_->on_connected();
  flush();
  if (!is_open()) return;
  std::vector<ConnectionWaiter*> waiters;
  waiters.swap(waiters_);
  // Waiters beyond what this connection can take are told to look again (ready() is now true,
  // so they re-check has_room() and open another connection when needed).
  for (ConnectionWaiter* w : waiters) w->on_connection_ready(this);
}

void Connection::end(ErrorKind kind, int64_t now) {
  owner = nullptr;
  std::unique_ptr<Session> s = std::move(session_);
  session_hot_ = stream_hot_ = {};
  std::vector<ConnectionWaiter*> waiters;
  waiters.swap(waiters_);
  if (s) s->on_close(kind, now);
  for (ConnectionWaiter* w : waiters) w->on_connection_failed(this, now);
}

void Connection::close_if_done() {
  if (is_open() && session_ && !session_->reusable() && session_->active_streams() == 0 && waiters_.empty())
    close(ErrorKind::kTruncated, now_ns());
}

// ---------------------------------------------------------------------------------------------
// SocketConnection

SocketConnection::SocketConnection(ConnectionHost& host, uint32_t streams_per_connection)
    : Connection(streams_per_connection), host_(host) {}

SocketConnection::~SocketConnection() { close(ErrorKind::kCancelled, now_ns()); }

bool SocketConnection::open() {
  fd_ = socket(host_.addr()->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    host_.connection_error(std::string("socket(): ") + std::strerror(errno));
    return false;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (host_.kernel_stamps()) enable_receive_stamps(fd_);  // else reads carry user-space stamps (flagged)
  if (connect(fd_, host_.addr(), host_.addr_len()) < 0 && errno != EINPROGRESS) {
    host_.connection_error(std::string("connect(): ") + std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  connecting_ = true;
  want_out_ = true;
  host_.loop().add(fd_, EPOLLIN | EPOLLOUT, this);
  host_.connection_opened();
  // Until the protocol is known, a connection takes one stream (HTTP/1.1) or a full share.
  // Over TLS the prediction is what the last handshake negotiated (HTTP/2 before the first).
  Protocol predicted = Protocol::kHttp1;
  choose_protocol(host_.protocol_choice(), host_.tls() != nullptr,
                  host_.negotiated() == Protocol::kHttp1 ? "http/1.1" : "h2", &predicted);
  expected_capacity_ = predicted == Protocol::kHttp2 ? streams_per_connection_ : 1;
  return true;
}

void SocketConnection::close(ErrorKind kind, int64_t now) {
  if (fd_ < 0) return;
  host_.loop().remove(fd_);
  ::close(fd_);
  fd_ = -1;
  connecting_ = false;
  want_out_ = false;
  tls_.reset();
  host_.connection_closed(this);
  end(kind, now);
}

bool SocketConnection::peer_closed() {
  if (fd_ < 0) return true;
  char c;
  ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;  // FIN: the server closed it
  if (n < 0) return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);  // a reset
  // Bytes on an idle connection (a TLS close_notify, a late error): read them now, which closes
  // the connection when they end it.
  read_ready();
  return !ready() || !has_room();
}

void SocketConnection::on_io(uint32_t events) {
  if (fd_ < 0) return;  // stale event for a connection closed earlier in this batch
  if (connecting_) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      host_.connection_error(std::string("connect to the server failed: ") + std::strerror(err));
      close(ErrorKind::kConnect, now_ns());
      return;
    }
    connecting_ = false;
    if (host_.tls()) {
      tls_ = std::make_unique<TlsConnection>(*host_.tls());
      if (!tls_->handshake()) return fail_tls();
      flush();
      return;
    }
    Protocol p = Protocol::kHttp1;
    choose_protocol(host_.protocol_choice(), false, "", &p);
    become_ready(p, false);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    prefetch_span(session_hot_.data, session_hot_.size);
    prefetch_span(stream_hot_.data, stream_hot_.size);
    read_ready();
  }
  if (fd_ >= 0 && (events & EPOLLOUT)) flush();
}

void SocketConnection::flush() {
  iovec iov[kMaxIovPerWrite];
  while (fd_ >= 0) {
    if (tls_) {
      // Plaintext from the session goes through TLS; then ciphertext to the socket.
      if (session_) {
        size_t n;
        while ((n = session_->pending_output(iov, kMaxIovPerWrite)) > 0) {
          size_t total = 0;
          for (size_t i = 0; i < n; ++i) {
            if (!tls_->write_plain(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len)) return fail_tls();
            total += iov[i].iov_len;
          }
          session_->consumed_output(total);
        }
      }
      const char* data;
      size_t len = tls_->pending_cipher(&data);
      if (len == 0) break;
      ssize_t w = ::send(fd_, data, len, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return set_want_out(true);
        return write_failed();
      }
      tls_->consume_cipher(static_cast<size_t>(w));
      continue;
    }
    if (!session_) break;
    size_t n = session_->pending_output(iov, kMaxIovPerWrite);
    if (n == 0) break;
    // sendmsg, not writev: MSG_NOSIGNAL, so a peer that closed (FIN, then RST) fails the write with
    // EPIPE instead of killing a process that does not ignore SIGPIPE (only Python ignores it).
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    ssize_t w = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return set_want_out(true);
      return write_failed();
    }
    session_->consumed_output(static_cast<size_t>(w));
  }
  set_want_out(false);
}

void SocketConnection::fail_tls() {
  host_.tls_error(tls_ ? tls_->error() : std::string("TLS failure"));
  close(session_ ? ErrorKind::kProtocol : ErrorKind::kConnect, now_ns());
}

void SocketConnection::write_failed() {
  ErrorKind kind = (errno == EPIPE || errno == ECONNRESET) ? ErrorKind::kReset : ErrorKind::kWrite;
  close(kind, now_ns());
}

void SocketConnection::set_want_out(bool want) {
  if (want == want_out_ || fd_ < 0) return;
  want_out_ = want;
  host_.loop().modify(fd_, EPOLLIN | (want ? uint32_t{EPOLLOUT} : 0u), this);
}

// Feeds plaintext to the session; false when the connection was closed.
bool SocketConnection::deliver(const char* data, size_t n, int64_t now) {
  if (!session_->on_read(data, n, now)) {
    close(ErrorKind::kProtocol, now);
    return false;
  }
  return fd_ >= 0;
}

void SocketConnection::read_ready() {
  char* buf = host_.read_buffer();
  for (int reads = 0; fd_ >= 0 && reads < kMaxReadsPerWake; ++reads) {
    ReadStamp stamp;
    ssize_t n = read_stamped(fd_, buf, kReadBufferBytes, &stamp);
    // The bytes' time is when they reached the socket (over TLS: the ciphertext's), not when the
    // client got round to them; the host keeps both for the client-added delay. A kernel-stamped
    // read after an unstamped one can carry an earlier stamp than that read's user-space one: the
    // stamps of one connection's bytes never go back (TCP delivers them in order).
    if (stamp.at_ns < last_read_ns_) stamp.at_ns = last_read_ns_;
    const int64_t now = last_read_ns_ = stamp.at_ns;
    if (n > 0) {
      host_.set_read_stamp(stamp);
      if (tls_) {
        tls_->feed_cipher(buf, static_cast<size_t>(n));
        if (!tls_->handshake_done()) {
          if (!tls_->handshake()) return fail_tls();
          if (!tls_->handshake_done()) {
            flush();
            continue;
          }
          Protocol p;
          std::string refused;
          if (!choose_protocol(host_.protocol_choice(), true, tls_->alpn(), &p, &refused)) {
            host_.tls_error(refused);
            close(ErrorKind::kConnect, now);
            return;
          }
          host_.set_negotiated(p);
          become_ready(p, true);
          if (fd_ < 0) return;
        }
        char* plain = host_.plain_buffer();
        for (;;) {
          long m = tls_->read_plain(plain, kReadBufferBytes);
          if (m > 0) {
            if (!session_ || !deliver(plain, static_cast<size_t>(m), now)) return;
            continue;
          }
          if (m == 0) break;
          if (m == -2) return close(ErrorKind::kTruncated, now);  // close_notify
          return fail_tls();
        }
        flush();  // TLS may owe the peer bytes (key updates); the session may owe WINDOW_UPDATEs
      } else {
        if (!session_ || !deliver(buf, static_cast<size_t>(n), now)) return;
        if (session_ && session_->protocol() == Protocol::kHttp2) flush();
      }
      close_if_done();
      if (static_cast<size_t>(n) < kReadBufferBytes) return;  // drained (level-triggered anyway)
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    close(n == 0 ? ErrorKind::kTruncated : ErrorKind::kReset, now);
    return;
  }
}

}  // namespace agentperf
