#include "bench/baseline_reader.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "agentperf/clock.h"
#include "client/resolve.h"
#include "common/thread_name.h"

namespace agentperf {

namespace {

constexpr size_t kReadBuf = 64 * 1024;
constexpr int kCarry = 10;  // the longest pattern - 1
constexpr int kMaxEvents = 1024;
constexpr char kContent[] = "\"content\":\"";  // 11 bytes
constexpr char kEnd[] = "\r\n0\r\n\r\n";        // the last chunk, 7 bytes
// X-Request-Id values of this reader: high nibble 0xB, so they never meet the engine's
// (worker << 40 | sequence) on one server.
constexpr uint64_t kIdBase = uint64_t{0xB} << 60;

}  // namespace

struct BaselineReader::Conn {
  int fd = -1;
  bool connected = false;
  bool due = false;             // its first request may go out (start time reached)
  bool sending = false;         // a request is being written or awaited
  bool at_start = true;         // the next byte read is the first of a response
  bool content_pending = false; // the previous read ended right after `"content":"`
  int carry_len = 0;
  char carry[kCarry];
  int64_t start_ns = 0;
  std::string request;          // this connection's copy of the request (its id is rewritten)
  size_t out_off = 0;
  BaselineStamp stamp;
};

struct BaselineReader::Loop {
  int epfd = -1;
  ResolvedAddress addr;
  std::vector<Conn> conns;
  size_t id_offset = 0;  // where the 16 hex digits of X-Request-Id sit in the request
  uint64_t next_id = 0;
  size_t next_start = 0;  // conns[next_start..] have not reached their start time
  std::vector<char> buf = std::vector<char>(kReadBuf + kCarry);
  ~Loop() {
    for (Conn& c : conns)
      if (c.fd >= 0) ::close(c.fd);
    if (epfd >= 0) ::close(epfd);
  }
};

BaselineReader::BaselineReader(BaselineConfig config) : config_(std::move(config)), loop_(std::make_unique<Loop>()) {
  if (config_.streams < 1) throw std::invalid_argument("streams must be >= 1");
  if (config_.spawn_interval_ns < 0) throw std::invalid_argument("spawn_interval must be >= 0");
  std::string err = resolve_address(config_.host, config_.port, loop_->addr);
  if (!err.empty()) throw std::invalid_argument(err);
}

BaselineReader::~BaselineReader() { stop(); }

BaselineCounters BaselineReader::counters() const {
  BaselineCounters c;
  c.events = events_.get();
  c.output_events = output_events_.get();
  c.responses = responses_.get();
  c.errors = errors_.get();
  c.reconnects = reconnects_.get();
  c.reads = reads_.get();
  c.bytes = bytes_.get();
  c.epoll_waits = waits_.get();
  c.requests_started = started_.get();
  return c;
}

std::vector<BaselineStamp> BaselineReader::drain_stamps() {
  std::vector<BaselineStamp> out;
  std::lock_guard<std::mutex> lock(mu_);
  out.swap(stamps_);
  return out;
}

std::string BaselineReader::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

void BaselineReader::start() {
  if (thread_.joinable()) return;
  Loop& L = *loop_;
  L.epfd = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (L.epfd < 0 || wake_fd_ < 0) throw std::runtime_error(std::string("epoll/eventfd: ") + std::strerror(errno));
  epoll_event wev{};
  wev.events = EPOLLIN;
  wev.data.ptr = nullptr;
  epoll_ctl(L.epfd, EPOLL_CTL_ADD, wake_fd_, &wev);

  std::string head = "POST " + config_.path + " HTTP/1.1\r\nHost: " + config_.host + ":" +
                     std::to_string(config_.port) +
                     "\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nX-Request-Id: ";
  L.id_offset = head.size();
  std::string request = head + std::string(16, '0') + "\r\nContent-Length: " + std::to_string(config_.body.size()) +
                        "\r\n\r\n" + config_.body;
  L.conns.resize(static_cast<size_t>(config_.streams));
  int64_t t0 = now_ns();
  for (size_t i = 0; i < L.conns.size(); ++i) {
    Conn& c = L.conns[i];
    c.request = request;
    c.start_ns = t0 + static_cast<int64_t>(i) * config_.spawn_interval_ns;
  }
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void BaselineReader::stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  uint64_t one = 1;
  ssize_t w = ::write(wake_fd_, &one, sizeof one);
  (void)w;
  thread_.join();
  for (Conn& c : loop_->conns) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
  }
  if (loop_->epfd >= 0) ::close(loop_->epfd);
  loop_->epfd = -1;
  ::close(wake_fd_);
  wake_fd_ = -1;
}

void BaselineReader::run() {
  name_this_thread("apn-baseline", 0);
  Loop& L = *loop_;
  char* buf = L.buf.data();

  auto fail = [&](const std::string& why) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.empty()) error_ = why;
  };
  auto arm = [&](Conn& c, uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = &c;
    epoll_ctl(L.epfd, op, c.fd, &ev);
  };
  auto open_conn = [&](Conn& c) -> bool {
    c.fd = ::socket(L.addr.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return false;
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&L.addr.addr), L.addr.len) < 0 && errno != EINPROGRESS) {
      ::close(c.fd);
      c.fd = -1;
      return false;
    }
    c.connected = false;
    c.sending = false;
    c.at_start = true;
    c.content_pending = false;
    c.carry_len = 0;
    arm(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
    return true;
  };
  // Writes (the rest of) the current request: 0 done, 1 the socket is full (EPOLLOUT armed), -1 error.
  auto send_rest = [&](Conn& c) -> int {
    while (c.out_off < c.request.size()) {
      ssize_t w = ::write(c.fd, c.request.data() + c.out_off, c.request.size() - c.out_off);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          arm(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
          return 1;
        }
        if (errno == EINTR) continue;
        return -1;
      }
      c.out_off += static_cast<size_t>(w);
    }
    return 0;
  };
  auto new_request = [&](Conn& c) -> int {
    uint64_t id = kIdBase | ++L.next_id;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(id));
    std::memcpy(c.request.data() + L.id_offset, hex, 16);
    c.out_off = 0;
    c.sending = true;
    c.at_start = true;
    c.content_pending = false;
    c.carry_len = 0;
    c.stamp = BaselineStamp{};
    c.stamp.request_id = id;
    started_.add();
    return send_rest(c);
  };
  auto reconnect = [&](Conn& c) {
    errors_.add();
    reconnects_.add();
    if (c.fd >= 0) {
      epoll_ctl(L.epfd, EPOLL_CTL_DEL, c.fd, nullptr);
      ::close(c.fd);
      c.fd = -1;
    }
    if (!open_conn(c)) {
      fail(std::string("reconnect failed: ") + std::strerror(errno));
      stop_ = true;
    }
  };
  // One read(): counts what ends in the new bytes (matches ending in the carried tail were counted
  // with the previous read).
  auto on_readable = [&](Conn& c) {
    char* win = buf + kCarry - c.carry_len;  // [carry | new bytes] is contiguous
    std::memcpy(win, c.carry, static_cast<size_t>(c.carry_len));
    ssize_t n = ::read(c.fd, buf + kCarry, kReadBuf);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      reconnect(c);  // EOF or reset: the server never closes a healthy keep-alive stream
      return;
    }
    reads_.add();
    bytes_.add(static_cast<uint64_t>(n));
    const char* data = buf + kCarry;
    const char* end = data + n;
    if (c.at_start) {
      c.at_start = false;
      if (n < 12 || std::memcmp(data, "HTTP/1.1 200", 12) != 0) errors_.add();
    }
    uint64_t out = 0;
    if (c.content_pending) {
      c.content_pending = false;
      if (data[0] != '"') ++out;
    }
    uint64_t events = 0;
    for (const char* p = data - (c.carry_len > 0); p < end;) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      if (!nl || nl + 1 >= end) break;
      if (nl[1] == '\n') {
        ++events;
        p = nl + 2;
      } else {
        p = nl + 1;
      }
    }
    for (const char* scan = win; scan < end;) {
      const char* m = static_cast<const char*>(memmem(scan, static_cast<size_t>(end - scan), kContent, sizeof kContent - 1));
      if (!m) break;
      const char* after = m + sizeof kContent - 1;
      if (after > data) {
        if (after == end) c.content_pending = true;
        else if (*after != '"') ++out;
      }
      scan = m + 1;
    }
    if (events) events_.add(events);
    if (out) {
      int64_t t = now_ns();
      output_events_.add(out);
      if (c.stamp.first_token_ns == 0) c.stamp.first_token_ns = t;
      c.stamp.last_token_ns = t;
      c.stamp.output_events += static_cast<int32_t>(out);
    }
    const char* last = static_cast<const char*>(memmem(win, static_cast<size_t>(end - win), kEnd, sizeof kEnd - 1));
    if (last && last + sizeof kEnd - 1 > data) {
      responses_.add();
      if (last + sizeof kEnd - 1 != end) errors_.add();  // bytes after the end: out of step
      {
        std::lock_guard<std::mutex> lock(mu_);
        stamps_.push_back(c.stamp);
      }
      c.sending = false;
      if (!stop_ && new_request(c) < 0) reconnect(c);
      return;
    }
    int keep = std::min<int>(static_cast<int>(end - win), kCarry);
    std::memmove(c.carry, end - keep, static_cast<size_t>(keep));
    c.carry_len = keep;
  };
  auto on_writable = [&](Conn& c) {
    if (!c.connected) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        reconnect(c);
        return;
      }
      c.connected = true;
    }
    int r = 0;
    if (c.sending) r = send_rest(c);
    else if (c.due) r = new_request(c);
    if (r < 0) reconnect(c);
    else if (r == 0) arm(c, EPOLLIN, EPOLL_CTL_MOD);
  };

  for (Conn& c : L.conns) {
    if (!open_conn(c)) {
      fail(std::string("cannot open a connection: ") + std::strerror(errno));
      return;
    }
  }
  epoll_event evs[kMaxEvents];
  while (!stop_) {
    int64_t now = now_ns();
    while (L.next_start < L.conns.size() && L.conns[L.next_start].start_ns <= now) {
      Conn& c = L.conns[L.next_start++];
      c.due = true;
      if (c.connected && !c.sending) {
        int r = new_request(c);
        if (r < 0) reconnect(c);
      }
    }
    int timeout_ms = -1;
    if (L.next_start < L.conns.size())
      timeout_ms = static_cast<int>((L.conns[L.next_start].start_ns - now + kNsPerMs - 1) / kNsPerMs);
    int k = epoll_wait(L.epfd, evs, kMaxEvents, timeout_ms);
    waits_.add();
    if (k < 0) {
      if (errno == EINTR) continue;
      fail(std::string("epoll_wait: ") + std::strerror(errno));
      return;
    }
    for (int i = 0; i < k; ++i) {
      Conn* c = static_cast<Conn*>(evs[i].data.ptr);
      if (!c) continue;  // the wake-up eventfd: stop_ is set
      uint32_t e = evs[i].events;
      if (!c->connected || (e & EPOLLOUT)) {
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(*c);
        if (!c->connected || c->fd < 0) continue;
      }
      if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(*c);
    }
  }
}

}  // namespace agentperf
