#include "agentperf/engine.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>

#include "agentperf/clock.h"
#include "client/session.h"
#include "common/event_loop.h"
#include "agentperf/sse_parser.h"
#include "common/tls.h"

namespace agentperf {

namespace {

constexpr size_t kReadBufferBytes = 256 * 1024;
constexpr size_t kMaxIovPerWrite = 512;

// Single-writer counter: the owning worker stores, readers load (no read-modify-write needed).
struct Counter {
  std::atomic<uint64_t> v{0};
  void add(uint64_t n = 1) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (ch < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", ch);
          out += buf;
        } else {
          out += static_cast<char>(ch);
        }
    }
  }
  return out + "\"";
}

bool is_2xx(int status) { return status >= 200 && status < 300; }

// A small, well-mixed deterministic generator (SplitMix64) for isolation prefixes.
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

class Agent;
class Connection;

// One worker thread: its event loop, its agents and connections, its histograms and records.
class Worker final : public TimerTarget {
 public:
  Worker(int index, const EngineConfig& config, std::shared_ptr<const Workload> workload,
         const sockaddr_storage& addr, socklen_t addr_len, const std::atomic<uint64_t>& isolation_epoch,
         const TlsContext* tls);
  ~Worker() override;

  void start() { thread_ = std::thread([this] { run(); }); }
  void request_stop() {
    stop_.store(true);
    loop_.wake();
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  void set_target(int64_t agents) {
    target_.store(agents, std::memory_order_relaxed);
    loop_.wake();
  }

  // Read side (any thread).
  void add_to(EngineSnapshot& s) const;
  void drain_into(std::vector<RequestRecord>& out) {
    std::lock_guard<std::mutex> lock(records_mu_);
    out.insert(out.end(), records_.begin(), records_.end());
    records_.clear();
  }

  // Agent and connection side (worker thread only).
  EventLoop& loop() { return loop_; }
  const EngineConfig& config() const { return config_; }
  const Workload& workload() const { return *workload_; }
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t addr_len() const { return addr_len_; }
  const TlsContext* tls() const { return tls_; }
  char* read_buffer() { return read_buffer_.get(); }
  char* plain_buffer() { return plain_buffer_.get(); }
  std::mt19937_64& rng() { return rng_; }
  int index() const { return index_; }
  const std::string& json_prefix() const { return json_prefix_; }
  const std::string& authority() const { return authority_; }
  uint64_t isolation_epoch() const { return isolation_epoch_.load(std::memory_order_relaxed); }
  Histogram& itl() { return itl_; }
  void commit(RequestRecord& rec);
  void count_started() {
    started_.add();
    in_flight_.store(in_flight_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void remove_agent(Agent* agent);  // back to the pool
  void count_engaged(int64_t d) { engaged_.store(engaged_.load(std::memory_order_relaxed) + d, std::memory_order_relaxed); }
  /// A connection with room for one more stream (HTTP/2: shared; HTTP/1.1: a new one), opening one
  /// when needed. nullptr when a socket cannot even be created.
  Connection* connection_for_new_stream();
  void connection_opened() { opened_.add(); open_.store(open_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  void connection_closed(Connection* c);
  /// Closes `c` after the current loop iteration (safe from inside its callbacks).
  void close_later(Connection* c) { to_close_.push_back(c); }
  /// auto over TLS: the protocol ALPN selected on this worker's last handshake (0: none yet).
  Protocol negotiated() const { return negotiated_; }
  void set_negotiated(Protocol p) { negotiated_ = p; }
  void connection_error(const std::string& what) {
    std::lock_guard<std::mutex> lock(error_mu_);
    last_error_ = what;
  }

 private:
  void run();
  void on_timer(uint64_t token) override {  // wake-up handler (0) and ramp ticks (1)
    if (token == 1) spawn_tick_pending_ = false;
    adjust_agents();
  }
  void adjust_agents();

  int index_;
  const EngineConfig& config_;
  std::shared_ptr<const Workload> workload_;
  sockaddr_storage addr_;
  socklen_t addr_len_;
  const TlsContext* tls_;
  EventLoop loop_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> target_{0};
  std::unique_ptr<char[]> read_buffer_;
  std::unique_ptr<char[]> plain_buffer_;
  std::mt19937_64 rng_;
  std::string json_prefix_;
  std::string authority_;
  const std::atomic<uint64_t>& isolation_epoch_;  // the engine's; read per request
  int64_t next_agent_seq_ = 0;
  int64_t next_spawn_ns_ = 0;     // ramp: earliest time of the next agent arrival
  bool spawn_tick_pending_ = false;
  Protocol negotiated_ = static_cast<Protocol>(0);

  // Worker thread only. Agents and connections are pooled: the pools own every object ever made,
  // which is never freed while the worker runs (timers and epoll events may still point to it).
  std::vector<std::unique_ptr<Agent>> pool_;
  std::vector<Agent*> agents_;
  std::vector<Agent*> free_;
  std::vector<std::unique_ptr<Connection>> conn_pool_;
  std::vector<Connection*> shared_conns_;   // HTTP/2 (or not yet known) connections open for sharing
  std::vector<Connection*> closed_conns_;   // closed in this loop iteration: reusable after it
  std::vector<Connection*> free_conns_;
  std::vector<Connection*> to_close_;       // close_later(): closed after the loop iteration
  std::atomic<int64_t> live_{0};
  std::atomic<int64_t> active_{0};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> open_{0};
  std::atomic<int64_t> engaged_{0};

  Histogram ttft_, itl_, e2e_, speed_;
  Counter started_, ok_, failed_, events_, tokens_, opened_;
  std::array<Counter, kErrorKindCount> by_kind_;
  Counter dropped_;

  std::mutex records_mu_;  // guards records_: pushed by the worker per request, drained by readers
  std::vector<RequestRecord> records_;
  mutable std::mutex error_mu_;  // guards last_error_ (rare: connection failures)
  std::string last_error_;
};

// Agents waiting for a connection to become ready.
class ConnectionWaiter {
 public:
  virtual ~ConnectionWaiter() = default;
  virtual void on_connection_ready(Connection* c) = 0;
  virtual void on_connection_failed(Connection* c, int64_t now_ns) = 0;
};

// One transport connection: socket, optional TLS, and the protocol session over it.
class Connection final : public IoHandler {
 public:
  explicit Connection(Worker& w) : w_(w) {}
  ~Connection() override { close(ErrorKind::kCancelled, now_ns()); }

  // Starts a non-blocking connect. Returns false when the socket cannot be created or connect()
  // fails at once.
  bool open() {
    fd_ = socket(w_.addr()->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      w_.connection_error(std::string("socket(): ") + std::strerror(errno));
      return false;
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd_, w_.addr(), w_.addr_len()) < 0 && errno != EINPROGRESS) {
      w_.connection_error(std::string("connect(): ") + std::strerror(errno));
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    connecting_ = true;
    want_out_ = true;
    w_.loop().add(fd_, EPOLLIN | EPOLLOUT, this);
    w_.connection_opened();
    // Until the protocol is known, a connection takes one stream (HTTP/1.1) or a full share.
    // auto over TLS: what the last handshake negotiated, optimistically HTTP/2 before the first.
    const ProtocolChoice p = w_.config().protocol;
    const bool h2 = p == ProtocolChoice::kHttp2 ||
                    (p == ProtocolChoice::kAuto && w_.tls() && w_.negotiated() != Protocol::kHttp1);
    expected_capacity_ = h2 ? w_.config().streams_per_connection : 1;
    return true;
  }

  bool is_open() const { return fd_ >= 0; }
  /// HTTP/1.1: the agent this connection belongs to (one keep-alive connection per agent).
  const void* owner = nullptr;
  bool ready() const { return fd_ >= 0 && session_ != nullptr; }
  Session* session() { return session_.get(); }
  /// Room for one more stream (counting agents already waiting for this connection).
  bool has_room() const {
    if (fd_ < 0) return false;
    if (!session_) return waiters_.size() < expected_capacity_;
    return session_->reusable() && session_->can_submit() &&
           session_->active_streams() + waiters_.size() < w_.config().streams_per_connection;
  }
  bool shareable() const { return !session_ ? expected_capacity_ > 1 : session_->protocol() == Protocol::kHttp2; }

  void add_waiter(ConnectionWaiter* a) { waiters_.push_back(a); }
  void remove_waiter(ConnectionWaiter* a) {
    for (size_t i = 0; i < waiters_.size(); ++i)
      if (waiters_[i] == a) {
        waiters_.erase(waiters_.begin() + static_cast<ptrdiff_t>(i));
        return;
      }
  }

  int32_t submit(const RequestHead& head, const iovec* body, size_t n, StreamHandler* h) {
    int32_t id = session_->submit(head, body, n, h);
    if (id > 0) flush();
    return id;
  }

  void abandon(int32_t stream_id) {
    if (!session_) return;
    session_->abandon(stream_id);
    flush();
    close_if_done();
  }

  // Closes the transport: streams in flight fail with `kind`, waiters are told.
  void close(ErrorKind kind, int64_t now) {
    if (fd_ < 0) return;
    w_.loop().remove(fd_);
    ::close(fd_);
    fd_ = -1;
    owner = nullptr;
    connecting_ = false;
    want_out_ = false;
    tls_.reset();
    std::unique_ptr<Session> s = std::move(session_);
    std::vector<ConnectionWaiter*> waiters;
    waiters.swap(waiters_);
    w_.connection_closed(this);
    if (s) s->on_close(kind, now);
    for (ConnectionWaiter* a : waiters) a->on_connection_failed(this, now);
  }

  void on_io(uint32_t events) override {
    if (fd_ < 0) return;  // stale event for a connection closed earlier in this batch
    if (connecting_) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        w_.connection_error(std::string("connect to the server failed: ") + std::strerror(err));
        close(ErrorKind::kConnect, now_ns());
        return;
      }
      connecting_ = false;
      if (w_.tls()) {
        tls_ = std::make_unique<TlsConnection>(*w_.tls());
        if (!tls_->handshake()) return fail_tls();
        flush();
        return;
      }
      become_ready(w_.config().protocol == ProtocolChoice::kHttp2 ? Protocol::kHttp2 : Protocol::kHttp1);
      return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_ready();
    if (fd_ >= 0 && (events & EPOLLOUT)) flush();
  }

  // Writes what the session (through TLS, if any) has to send.
  void flush() {
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
      ssize_t w = writev(fd_, iov, static_cast<int>(n));
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return set_want_out(true);
        return write_failed();
      }
      session_->consumed_output(static_cast<size_t>(w));
    }
    set_want_out(false);
  }

 private:
  void become_ready(Protocol protocol) {
    SessionOptions o;
    o.stream_limit = w_.config().streams_per_connection;
    session_ = make_session(protocol, o, tls_ != nullptr);
    session_->on_connected();
    flush();
    if (fd_ < 0) return;
    std::vector<ConnectionWaiter*> waiters;
    waiters.swap(waiters_);
    // Waiters beyond what this connection can take are told to look again (ready() is now true,
    // so they re-check has_room() and open another connection when needed).
    for (ConnectionWaiter* a : waiters) a->on_connection_ready(this);
  }

  void fail_tls() {
    w_.connection_error(tls_ ? tls_->error() : std::string("TLS failure"));
    close(session_ ? ErrorKind::kProtocol : ErrorKind::kConnect, now_ns());
  }

  void write_failed() {
    ErrorKind kind = (errno == EPIPE || errno == ECONNRESET) ? ErrorKind::kReset : ErrorKind::kWrite;
    close(kind, now_ns());
  }

  void set_want_out(bool want) {
    if (want == want_out_ || fd_ < 0) return;
    want_out_ = want;
    w_.loop().modify(fd_, EPOLLIN | (want ? uint32_t{EPOLLOUT} : 0u), this);
  }

  void close_if_done() {
    if (fd_ >= 0 && session_ && !session_->reusable() && session_->active_streams() == 0 && waiters_.empty())
      close(ErrorKind::kTruncated, now_ns());
  }

  // Feeds plaintext to the session; false when the connection was closed.
  bool deliver(const char* data, size_t n, int64_t now) {
    if (!session_->on_read(data, n, now)) {
      close(ErrorKind::kProtocol, now);
      return false;
    }
    return fd_ >= 0;
  }

  void read_ready() {
    char* buf = w_.read_buffer();
    while (fd_ >= 0) {
      ssize_t n = ::read(fd_, buf, kReadBufferBytes);
      int64_t now = now_ns();
      if (n > 0) {
        if (tls_) {
          tls_->feed_cipher(buf, static_cast<size_t>(n));
          if (!tls_->handshake_done()) {
            if (!tls_->handshake()) return fail_tls();
            if (!tls_->handshake_done()) {
              flush();
              continue;
            }
            const std::string& alpn = tls_->alpn();
            ProtocolChoice want = w_.config().protocol;
            if (want == ProtocolChoice::kHttp2 && alpn != "h2") {
              w_.connection_error("the server did not agree to HTTP/2 over TLS (ALPN: '" + alpn +
                                  "'); use --protocol h1 or auto");
              close(ErrorKind::kConnect, now);
              return;
            }
            w_.set_negotiated(alpn == "h2" ? Protocol::kHttp2 : Protocol::kHttp1);
            become_ready(w_.negotiated());
            if (fd_ < 0) return;
          }
          char* plain = w_.plain_buffer();
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

  Worker& w_;
  int fd_ = -1;
  bool connecting_ = false;
  bool want_out_ = false;
  uint32_t expected_capacity_ = 1;
  std::unique_ptr<TlsConnection> tls_;
  std::unique_ptr<Session> session_;
  std::vector<ConnectionWaiter*> waiters_;
};

// An agent: replays conversations turn by turn; each request is one stream on a connection.
class Agent final : public TimerTarget, public StreamHandler, public ConnectionWaiter {
 public:
  explicit Agent(Worker& w) : w_(w) {}

  // (Re)starts this object as agent `id`: a random conversation and (optionally) a random start
  // turn. Agent objects are pooled and reused, never freed while the worker runs, so timers still
  // queued for a previous use arrive here and are ignored (gen_).
  void assign(int64_t id) {
    id_ = id;
    leaving = false;
    ++gen_;
    prefix_epoch_ = UINT64_MAX;  // the prefix is derived from (seed, id, epoch) when first needed
    const Workload& wl = w_.workload();
    conv_ = static_cast<int32_t>(std::uniform_int_distribution<size_t>(0, wl.conversations.size() - 1)(w_.rng()));
    size_t turns = wl.conversations[conv_].turns.size();
    turn_ = w_.config().random_start_turn
                ? static_cast<int32_t>(std::uniform_int_distribution<size_t>(0, turns - 1)(w_.rng()))
                : 0;
    clear_generated();
  }

  size_t slot = 0;  // index in the worker's agents_ vector
  bool leaving = false;

  int64_t id() const { return id_; }

  // Spawn: get a ready connection first, so that the first request's TTFT holds no connect time;
  // the first turn is scheduled when the connection is ready.
  void begin() {
    spawn_ns_ = now_ns();
    Connection* c = w_.connection_for_new_stream();
    if (!c) return fail_connect(now_ns(), spawn_ns_);
    if (c->ready()) {
      conn_ = c;
      if (!c->owner && !c->shareable()) c->owner = this;
      scheduled_ns_ = spawn_ns_;
      w_.loop().schedule(scheduled_ns_, this, gen_ << 1);
      return;
    }
    preconnect_ = true;
    wait_for(c);
  }

  // Leave now if idle, else after the in-flight request.
  void leave() {
    leaving = true;
    if (!in_flight_) w_.remove_agent(this);
  }

  // Back to the pool: no connection wait, no live timer. The connection (if any) stays with the
  // worker for other agents (HTTP/2) or is closed (HTTP/1.1: it was this agent's own).
  void release() {
    if (engaged_) w_.count_engaged(-1);
    engaged_ = false;
    stop_waiting();
    // This may run inside the connection's own read callbacks (the agent leaves when its last
    // response completes), so the connection is closed after the loop iteration, not here.
    if (owns(conn_)) {
      conn_->owner = nullptr;
      w_.close_later(conn_);
    }
    conn_ = nullptr;
    in_flight_ = false;
    preconnect_ = false;
    ++gen_;
  }

  // Engine stop: the in-flight request becomes a cancelled record.
  void cancel() {
    stop_waiting();
    if (in_flight_) {
      if (stream_id_ > 0 && conn_) conn_->abandon(stream_id_);
      finish(ErrorKind::kCancelled, now_ns());
    }
  }

  // Timers: token = generation << 1 | kind (0: send the next turn, 1: request timeout).
  void on_timer(uint64_t token) override {
    if ((token >> 1) != gen_) return;  // stale
    if (token & 1) {
      if (in_flight_) {
        stop_waiting();
        if (stream_id_ > 0 && conn_) conn_->abandon(stream_id_);
        finish(ErrorKind::kTimeout, now_ns());
      }
    } else if (!in_flight_ && !leaving) {
      send_request();
    }
  }

  // ConnectionWaiter.
  void on_connection_ready(Connection* c) override {
    waiting_on_ = nullptr;
    if (preconnect_) {
      preconnect_ = false;
      if (leaving) return w_.remove_agent(this);
      conn_ = c;
      scheduled_ns_ = now_ns();
      w_.loop().schedule(scheduled_ns_, this, gen_ << 1);
      return;
    }
    if (in_flight_) submit_on(c);
  }
  void on_connection_failed(Connection*, int64_t now) override {
    waiting_on_ = nullptr;
    if (preconnect_) {
      preconnect_ = false;
      if (leaving) return w_.remove_agent(this);
      return fail_connect(now, spawn_ns_);
    }
    if (in_flight_) finish(ErrorKind::kConnect, now);
  }

  // StreamHandler (called from inside the session's on_read on this thread).
  void on_response_headers(int status, int64_t now) override {
    rec_.http_status = status;
    rec_.first_byte_ns = now;
  }
  void on_response_data(const char* data, size_t n, int64_t now) override {
    if (!is_2xx(rec_.http_status)) return;
    sse_.feed(data, n, [&](const SseEvent& ev) {
      if (capturing_ && !ev.text.empty()) capture_.append(ev.text);
      if (ev.has_output) {
        if (rec_.first_token_ns == 0) {
          rec_.first_token_ns = now;
        } else {
          w_.itl().record(static_cast<uint64_t>(now - rec_.last_token_ns));
        }
        rec_.last_token_ns = now;
        ++rec_.output_events;
      }
      if (ev.has_usage) {
        if (ev.usage.completion_tokens >= 0) usage_completion_ = ev.usage.completion_tokens;
        if (ev.usage.prompt_tokens >= 0) rec_.prompt_tokens = ev.usage.prompt_tokens;
        if (ev.usage.cached_tokens >= 0) rec_.cached_tokens = ev.usage.cached_tokens;
      }
      stream_error_ |= ev.error;
      malformed_ |= ev.malformed;
    });
  }
  void on_response_complete(int64_t now) override {
    ErrorKind kind = ErrorKind::kNone;
    if (!is_2xx(rec_.http_status)) kind = ErrorKind::kHttpStatus;
    else if (malformed_) kind = ErrorKind::kSseMalformed;
    else if (stream_error_) kind = ErrorKind::kStreamError;
    else if (rec_.output_events == 0) kind = ErrorKind::kNoOutput;
    finish(kind, now);
  }
  void on_stream_failed(ErrorKind kind, int64_t now) override { finish(kind, now); }

 private:
  // A connect at spawn failed: one kConnect record for the first turn, retried after a pause.
  void fail_connect(int64_t now, int64_t scheduled) {
    scheduled_ns_ = scheduled;
    start_record();
    w_.count_started();
    in_flight_ = true;
    finish(ErrorKind::kConnect, now);
  }

  void start_record() {
    std::memset(&rec_, 0, sizeof rec_);
    rec_.scheduled_ns = scheduled_ns_;
    rec_.prompt_tokens = -1;
    rec_.cached_tokens = -1;
    rec_.agent_id = id_;
    rec_.conversation = conv_;
    rec_.turn = turn_;
    rec_.worker = w_.index();
    const TurnSpec& turn = w_.workload().conversations[conv_].turns[turn_];
    rec_.max_tokens = turn.max_tokens;
    usage_completion_ = -1;
    stream_error_ = false;
    malformed_ = false;
    sse_.reset();
    capturing_ = w_.config().history_generated && !w_.workload().conversations[conv_].reply_of.empty();
    capture_.clear();
  }

  // The isolation prefix of this agent for the engine's current isolation epoch: a pure function of
  // (seed, agent id, epoch), so a new epoch (a new phase) gives every agent a fresh one.
  const std::string& isolation_prefix() {
    uint64_t epoch = w_.isolation_epoch();
    if (epoch == prefix_epoch_) return prefix_;
    prefix_epoch_ = epoch;
    uint64_t state = w_.config().seed ^ (static_cast<uint64_t>(id_) * 0xD1B54A32D192ED03ULL) ^
                     (epoch * 0x8CB92BA72F3D8DD7ULL);
    const RequestOptions& ro = w_.workload().request;
    char buf[32];
    prefix_.clear();
    if (ro.isolation_style == IsolationStyle::kTokenIds) {
      const uint64_t span = static_cast<uint64_t>(ro.isolation_token_hi - ro.isolation_token_lo);
      for (int i = 0; i < ro.isolation_tokens; ++i) {
        int n = std::snprintf(buf, sizeof buf, "%lld,",
                              static_cast<long long>(ro.isolation_token_lo + splitmix64(state) % span));
        prefix_.append(buf, static_cast<size_t>(n));
      }
    } else {
      int n = std::snprintf(buf, sizeof buf, "[rid:%016llx] ", static_cast<unsigned long long>(splitmix64(state)));
      prefix_.append(buf, static_cast<size_t>(n));
    }
    return prefix_;
  }

  void build_request() {
    const Workload& wl = w_.workload();
    const Conversation& conv = wl.conversations[conv_];
    const TurnSpec& turn = conv.turns[turn_];
    json_ = w_.json_prefix();
    char num[64];
    if (turn.max_tokens >= 0) {
      std::snprintf(num, sizeof num, ",\"max_tokens\":%d", turn.max_tokens);
      json_ += num;
    }
    if (turn.min_tokens >= 0) {
      std::snprintf(num, sizeof num, ",\"min_tokens\":%d", turn.min_tokens);
      json_ += num;
    }
    json_ += conv.members;
    json_ += ',';
    json_ += wl.request.open;
    const bool isolate = w_.config().cache_isolation && turn.insert_at >= 0;
    const std::string* prefix = isolate ? &isolation_prefix() : nullptr;
    const bool generated = w_.config().history_generated && !conv.reply_of.empty();

    iov_.clear();
    iov_.push_back({json_.data(), json_.size()});
    uint64_t body = json_.size() + wl.request.close.size() + 1;
    for (uint32_t i = turn.piece_begin; i < turn.piece_end; ++i) {
      if (prefix && static_cast<int32_t>(i - turn.piece_begin) == turn.insert_at) {
        iov_.push_back({const_cast<char*>(prefix->data()), prefix->size()});
        body += prefix->size();
      }
      const uint32_t f = conv.pieces[i];
      const std::string* text = &conv.fragments[f];
      if (generated && conv.reply_of[f] >= 0 && static_cast<size_t>(conv.reply_of[f]) < generated_.size() &&
          generated_ok_[conv.reply_of[f]])
        text = &generated_[conv.reply_of[f]];
      iov_.push_back({const_cast<char*>(text->data()), text->size()});
      body += text->size();
    }
    if (prefix && static_cast<uint32_t>(turn.insert_at) == turn.piece_end - turn.piece_begin) {
      iov_.push_back({const_cast<char*>(prefix->data()), prefix->size()});
      body += prefix->size();
    }
    tail_ = wl.request.close;
    tail_ += '}';
    iov_.push_back({tail_.data(), tail_.size()});

    head_.path = w_.workload().request.path;
    head_.authority = w_.authority();
    head_.authorization = w_.config().authorization;
    head_.content_length = body;
    rec_.request_bytes = static_cast<int64_t>(body);
  }

  // history=generated: the replies this agent received in its current conversation, by turn.
  void clear_generated() {
    for (auto& g : generated_) g.clear();
    std::fill(generated_ok_.begin(), generated_ok_.end(), false);
    capture_.clear();
  }

  void send_request() {
    start_record();
    build_request();
    w_.count_started();
    in_flight_ = true;
    stream_id_ = 0;
    ++gen_;
    w_.loop().schedule(scheduled_ns_ + w_.config().request_timeout_ns, this, (gen_ << 1) | 1);
    // HTTP/1.1: this agent's own keep-alive connection when it is still good; HTTP/2: the one it
    // used last if it has room. Otherwise one from the worker (a new one if none has room).
    Connection* c = conn_ && conn_->ready() && conn_->has_room() && (owns(conn_) || conn_->shareable()) ? conn_ : nullptr;
    if (!c) {
      if (owns(conn_)) conn_->close(ErrorKind::kCancelled, now_ns());
      c = w_.connection_for_new_stream();
    }
    if (!c) return finish(ErrorKind::kConnect, now_ns());
    if (c->ready()) return submit_on(c);
    rec_.flags |= kFlagNewConnection;  // the connect happens inside this request's TTFT
    wait_for(c);
  }

  void submit_on(Connection* c) {
    conn_ = c;
    if (!c->owner && !c->shareable()) c->owner = this;
    if (!c->has_room()) {  // filled up (HTTP/2 peer limit) while we waited: look again
      Connection* other = w_.connection_for_new_stream();
      if (!other) return finish(ErrorKind::kConnect, now_ns());
      if (!other->ready()) {
        rec_.flags |= kFlagNewConnection;
        return wait_for(other);
      }
      conn_ = c = other;
    }
    rec_.sent_ns = now_ns();
    stream_id_ = c->submit(head_, iov_.data(), iov_.size(), this);
    if (stream_id_ > 0 && !engaged_) {
      engaged_ = true;
      w_.count_engaged(1);
    }
    if (stream_id_ <= 0 && in_flight_) finish(ErrorKind::kWrite, now_ns());
  }

  void wait_for(Connection* c) {
    waiting_on_ = c;
    if (!c->owner && !c->shareable()) c->owner = this;
    c->add_waiter(this);
  }

  // An HTTP/1.1 connection this agent opened for itself (not one recycled for another agent).
  bool owns(Connection* c) const { return c && c->owner == this; }

  void stop_waiting() {
    if (waiting_on_) waiting_on_->remove_waiter(this);
    waiting_on_ = nullptr;
  }

  // Ends the current request: one record, then the next turn (or leaving).
  void finish(ErrorKind kind, int64_t now) {
    if (!in_flight_) return;
    in_flight_ = false;
    ++gen_;  // invalidates the timeout timer
    rec_.done_ns = now;
    rec_.error_kind = static_cast<uint8_t>(kind);
    if (usage_completion_ >= 0) {
      rec_.output_tokens = usage_completion_;
    } else {
      rec_.output_tokens = rec_.output_events;
      rec_.flags |= kFlagTokensEstimated;
    }
    const TurnSpec& turn = w_.workload().conversations[conv_].turns[turn_];
    stream_id_ = 0;
    if (kind == ErrorKind::kNone && turn.max_tokens > 0 &&
        (turn.min_tokens > 0 || w_.workload().request.ignore_eos) && rec_.output_tokens < turn.max_tokens)
      rec_.flags |= kFlagUnderGenerated;
    if (capturing_ && kind == ErrorKind::kNone) {
      size_t turns = w_.workload().conversations[conv_].turns.size();
      if (generated_.size() < turns) {
        generated_.resize(turns);
        generated_ok_.resize(turns, false);
      }
      generated_[turn_].swap(capture_);
      generated_ok_[turn_] = true;
    }
    w_.commit(rec_);

    if (kind == ErrorKind::kCancelled) return;
    if (leaving) {
      w_.remove_agent(this);
      return;
    }
    int64_t delay = turn.tool_delay_ns;
    if (kind == ErrorKind::kConnect) {
      // The request never reached the server: retry the same turn after a pause.
      delay = std::max(delay, w_.config().connect_retry_ns);
    } else {
      advance_turn();
    }
    scheduled_ns_ = now + delay;
    // Never send from inside a callback: a timer at (or before) now fires at the end of this
    // loop iteration.
    w_.loop().schedule(scheduled_ns_, this, gen_ << 1);
  }

  void advance_turn() {
    const Workload& wl = w_.workload();
    if (static_cast<size_t>(turn_ + 1) < wl.conversations[conv_].turns.size()) {
      ++turn_;
      return;
    }
    conv_ = static_cast<int32_t>(std::uniform_int_distribution<size_t>(0, wl.conversations.size() - 1)(w_.rng()));
    turn_ = 0;
    clear_generated();
  }

  Worker& w_;
  int64_t id_ = -1;
  int32_t conv_ = 0;
  int32_t turn_ = 0;
  std::string prefix_;
  uint64_t prefix_epoch_ = UINT64_MAX;
  bool capturing_ = false;
  std::string capture_;                 // raw (escaped) reply text of the request in flight
  std::vector<std::string> generated_;  // by turn: the reply received (history=generated)
  std::vector<bool> generated_ok_;
  std::string tail_;
  Connection* conn_ = nullptr;        // the connection of the current / last request
  Connection* waiting_on_ = nullptr;  // a connection this agent waits for (connecting)
  bool preconnect_ = false;
  bool engaged_ = false;  // has sent a request since it was assigned (counts as active)
  bool in_flight_ = false;
  bool stream_error_ = false;
  bool malformed_ = false;
  int64_t usage_completion_ = -1;
  int64_t spawn_ns_ = 0;
  int64_t scheduled_ns_ = 0;
  uint64_t gen_ = 0;
  int32_t stream_id_ = 0;
  SseParser sse_;
  RequestRecord rec_{};
  std::string json_;
  RequestHead head_;
  std::vector<iovec> iov_;
};

Worker::Worker(int index, const EngineConfig& config, std::shared_ptr<const Workload> workload,
               const sockaddr_storage& addr, socklen_t addr_len, const std::atomic<uint64_t>& isolation_epoch,
               const TlsContext* tls)
    : index_(index),
      config_(config),
      workload_(std::move(workload)),
      addr_(addr),
      addr_len_(addr_len),
      tls_(tls),
      read_buffer_(new char[kReadBufferBytes]),
      plain_buffer_(tls ? new char[kReadBufferBytes] : nullptr),
      rng_(config.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) + 1),
      isolation_epoch_(isolation_epoch) {
  loop_.set_wake_handler(this);
  const RequestOptions& ro = workload_->request;
  json_prefix_ = "{\"model\":" + json_string(ro.model) + ",\"stream\":true";
  if (ro.include_usage) json_prefix_ += ",\"stream_options\":{\"include_usage\":true}";
  if (ro.ignore_eos) json_prefix_ += ",\"ignore_eos\":true";
  json_prefix_ += ro.extra_body;
  bool v6 = config_.host.find(':') != std::string::npos;
  authority_ = config_.host_header.empty()
                   ? (v6 ? "[" + config_.host + "]" : config_.host) + ":" + std::to_string(config_.port)
                   : config_.host_header;
}

Worker::~Worker() {
  request_stop();
  join();
}

void Worker::run() {
  adjust_agents();
  while (!stop_.load(std::memory_order_relaxed)) {
    loop_.run_once(-1);
    for (Connection* c : to_close_)
      if (!c->owner) c->close(ErrorKind::kCancelled, now_ns());  // still nobody's: close it
    to_close_.clear();
    // Connections closed in this iteration may still have events queued in it: reuse them only now.
    free_conns_.insert(free_conns_.end(), closed_conns_.begin(), closed_conns_.end());
    closed_conns_.clear();
  }
  for (Agent* a : agents_) a->cancel();
  for (auto& c : conn_pool_) c->close(ErrorKind::kCancelled, now_ns());
  in_flight_.store(0);
  agents_.clear();
  free_.clear();
  pool_.clear();
  shared_conns_.clear();
  closed_conns_.clear();
  free_conns_.clear();
  conn_pool_.clear();
  live_.store(0);
  active_.store(0);
  engaged_.store(0);
}

Connection* Worker::connection_for_new_stream() {
  // HTTP/2 (or a TLS connection whose protocol ALPN has not decided yet): share a connection.
  for (Connection* c : shared_conns_)
    if (c->has_room() && c->shareable()) return c;
  Connection* c;
  if (free_conns_.empty()) {
    conn_pool_.push_back(std::make_unique<Connection>(*this));
    c = conn_pool_.back().get();
  } else {
    c = free_conns_.back();
    free_conns_.pop_back();
  }
  if (!c->open()) {
    free_conns_.push_back(c);
    return nullptr;
  }
  if (config_.protocol != ProtocolChoice::kHttp1) shared_conns_.push_back(c);
  return c;
}

void Worker::connection_closed(Connection* c) {
  open_.store(open_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  for (size_t i = 0; i < shared_conns_.size(); ++i)
    if (shared_conns_[i] == c) {
      shared_conns_[i] = shared_conns_.back();
      shared_conns_.pop_back();
      break;
    }
  if (!stop_.load(std::memory_order_relaxed)) closed_conns_.push_back(c);
}

void Worker::adjust_agents() {
  if (stop_.load(std::memory_order_relaxed)) return;
  int64_t target = target_.load(std::memory_order_relaxed);
  int64_t active = active_.load(std::memory_order_relaxed);
  const int64_t interval = config_.spawn_interval_ns * config_.workers;  // this worker's share of the ramp
  while (active < target) {
    if (interval > 0) {
      int64_t now = now_ns();
      // Workers interleave their arrivals: worker i starts i gaps after worker 0.
      if (next_spawn_ns_ == 0) next_spawn_ns_ = now + index_ * config_.spawn_interval_ns;
      if (now < next_spawn_ns_) {
        if (!spawn_tick_pending_) {
          spawn_tick_pending_ = true;
          loop_.schedule(next_spawn_ns_, this, 1);
        }
        break;
      }
      next_spawn_ns_ = now + interval;
    }
    int64_t id = next_agent_seq_++ * config_.workers + index_;
    Agent* a;
    if (free_.empty()) {
      pool_.push_back(std::make_unique<Agent>(*this));
      a = pool_.back().get();
    } else {
      a = free_.back();
      free_.pop_back();
    }
    a->assign(id);
    a->slot = agents_.size();
    agents_.push_back(a);
    ++active;
    live_.store(static_cast<int64_t>(agents_.size()), std::memory_order_relaxed);
    active_.store(active, std::memory_order_relaxed);
    a->begin();
  }
  for (size_t i = agents_.size(); i > 0 && active > target; --i) {
    Agent* a = agents_[i - 1];
    if (a->leaving) continue;
    --active;
    active_.store(active, std::memory_order_relaxed);
    a->leave();  // may remove the agent (swap with the last), which is at or after i-1
  }
}

void Worker::remove_agent(Agent* agent) {
  size_t slot = agent->slot;
  if (slot >= agents_.size() || agents_[slot] != agent) return;
  if (!agent->leaving) active_.store(active_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  agent->leaving = true;
  agent->release();
  free_.push_back(agent);
  if (slot + 1 != agents_.size()) {
    agents_[slot] = agents_.back();
    agents_[slot]->slot = slot;
  }
  agents_.pop_back();
  live_.store(static_cast<int64_t>(agents_.size()), std::memory_order_relaxed);
}

void Worker::commit(RequestRecord& rec) {
  in_flight_.store(in_flight_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  events_.add(static_cast<uint64_t>(rec.output_events));
  auto kind = static_cast<ErrorKind>(rec.error_kind);
  if (kind == ErrorKind::kNone) {
    ok_.add();
    tokens_.add(static_cast<uint64_t>(rec.output_tokens));
    ttft_.record(static_cast<uint64_t>(rec.first_token_ns - rec.scheduled_ns));
    e2e_.record(static_cast<uint64_t>(rec.done_ns - rec.scheduled_ns));
    int64_t span = rec.last_token_ns - rec.first_token_ns;
    if (rec.output_tokens > 1 && span > 0)
      speed_.record(static_cast<uint64_t>(static_cast<double>(rec.output_tokens - 1) * 1e12 / static_cast<double>(span)));
  } else {
    failed_.add();
  }
  by_kind_[rec.error_kind].add();
  std::lock_guard<std::mutex> lock(records_mu_);
  if (records_.size() >= config_.record_buffer_limit) {
    records_.erase(records_.begin());
    dropped_.add();
  }
  records_.push_back(rec);
}

void Worker::add_to(EngineSnapshot& s) const {
  s.agents_live += live_.load(std::memory_order_relaxed);
  s.agents_active += active_.load(std::memory_order_relaxed);
  s.agents_engaged += engaged_.load(std::memory_order_relaxed);
  s.requests_in_flight += in_flight_.load(std::memory_order_relaxed);
  s.requests_started += started_.get();
  s.requests_ok += ok_.get();
  s.requests_failed += failed_.get();
  for (int k = 0; k < kErrorKindCount; ++k) s.failures_by_kind[k] += by_kind_[k].get();
  s.output_events += events_.get();
  s.output_tokens += tokens_.get();
  s.records_dropped += dropped_.get();
  s.connections_open += open_.load(std::memory_order_relaxed);
  s.connections_opened += opened_.get();
  {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (!last_error_.empty()) s.last_connection_error = last_error_;
  }
  s.ttft_ns.merge(ttft_.snapshot());
  s.itl_ns.merge(itl_.snapshot());
  s.e2e_ns.merge(e2e_.snapshot());
  s.output_speed_mtps.merge(speed_.snapshot());
}

// ---------------------------------------------------------------------------------------------

Engine::Engine(EngineConfig config, std::shared_ptr<const Workload> workload)
    : config_(std::move(config)), workload_(std::move(workload)) {
  if (!workload_ || workload_->conversations.empty()) throw std::invalid_argument("the workload is empty");
  for (const Conversation& c : workload_->conversations)
    if (c.turn_bytes.size() != c.turns.size())
      throw std::invalid_argument("the workload was not finalized (call Workload::finalize())");
  if (config_.workers < 1) throw std::invalid_argument("workers must be >= 1");
  if (config_.request_timeout_ns <= 0) throw std::invalid_argument("request_timeout_ns must be > 0");
}

Engine::~Engine() { stop(); }

void Engine::start() {
  if (running_.load()) return;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(config_.port);
  int rc = getaddrinfo(config_.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res)
    throw std::runtime_error("cannot resolve host '" + config_.host + "': " + gai_strerror(rc));
  sockaddr_storage addr{};
  std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
  socklen_t len = res->ai_addrlen;
  freeaddrinfo(res);

  workers_.clear();
  if (config_.tls && !tls_) {
    TlsOptions o;
    o.verify = config_.tls_verify;
    o.ca_file = config_.ca_file;
    o.server_name = config_.tls_server_name.empty() ? config_.host : config_.tls_server_name;
    if (config_.protocol == ProtocolChoice::kHttp1) o.alpn = {"http/1.1"};
    else if (config_.protocol == ProtocolChoice::kHttp2) o.alpn = {"h2"};
    else o.alpn = {"h2", "http/1.1"};
    tls_ = std::make_unique<TlsContext>(o);
  }
  for (int i = 0; i < config_.workers; ++i)
    workers_.push_back(std::make_unique<Worker>(i, config_, workload_, addr, len, isolation_epoch_, tls_.get()));
  running_.store(true);
  set_concurrency(target_.load());
  for (auto& w : workers_) w->start();
}

void Engine::set_concurrency(int64_t agents) {
  if (agents < 0) agents = 0;
  target_.store(agents);
  if (!running_.load()) return;
  int64_t n = static_cast<int64_t>(workers_.size());
  for (int64_t i = 0; i < n; ++i) workers_[i]->set_target(agents / n + (i < agents % n ? 1 : 0));
}

void Engine::stop() {
  if (!running_.exchange(false)) return;
  for (auto& w : workers_) w->request_stop();
  for (auto& w : workers_) w->join();
  // Keep the workers (and their final records and counters) readable until the next start().
}

EngineSnapshot Engine::snapshot() const {
  EngineSnapshot s;
  s.taken_ns = now_ns();
  s.agents_target = target_.load();
  for (const auto& w : workers_) w->add_to(s);
  return s;
}

std::vector<RequestRecord> Engine::drain_records() {
  std::vector<RequestRecord> out;
  for (auto& w : workers_) w->drain_into(out);
  return out;
}

}  // namespace agentperf
