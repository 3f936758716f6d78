#include "agentperf/sim_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>

#include "agentperf/clock.h"
#include "common/event_loop.h"
#include "common/json_escape.h"
#include "sim/sim_exchange.h"
#include "sim/sim_http2.h"
#include "sim/sim_power.h"

namespace agentperf {

namespace {

constexpr size_t kMaxRequestBytes = 64 * 1024 * 1024;
// Null model: events due within this much of now go out in the same wake-up (the kernel's default
// timer slack is 50 us, so a timer is that late anyway): at most this early, far fewer wake-ups.
constexpr int64_t kCoalesceNs = 50'000;

void append_chunk(std::string& out, std::string_view payload) {
  char size[24];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  out.append(size, static_cast<size_t>(n));
  out.append(payload);
  out.append("\r\n");
}

}  // namespace

class SimConn;

// One event-loop thread: its listener, its connections, its exchanges and its model.
class SimWorker final : public IoHandler, public TimerTarget, public SimModelSink, public SimExchangeHost,
                        public SimExchangePool {
 public:
  SimWorker(const SimServerConfig& config, int listen_fd, int index, const SimServer* owner, int64_t start_ns)
      : config_(config),
        owner_(owner),
        listen_fd_(listen_fd),
        model_(make_sim_model(config.model_params)),
        rng_(config.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index)),
        model_json_(json_escape(config.model)),
        power_(start_ns) {
    loop_.add(listen_fd_, EPOLLIN, this);
    counters_.kv_capacity.set(config_.model_params.kind == SimModelKind::kBatching
                                  ? config_.model_params.kv_capacity_tokens
                                  : 0);
  }
  ~SimWorker() override;

  void start() { thread_ = std::thread([this] { run(); }); }
  void stop() {
    stop_.store(true);
    loop_.wake();
    if (thread_.joinable()) thread_.join();
  }
  void on_io(uint32_t) override;                // accept
  void on_timer(uint64_t token) override;       // the model's next deadline
  void on_emit(const SimEmission& e) override;  // route to the exchange

  // SimExchangeHost
  const SimServerConfig& config() const override { return config_; }
  SimModel& model() override { return *model_; }
  EventLoop& loop() override { return loop_; }
  std::mt19937_64& rng() override { return rng_; }
  SimCounters& counters() override { return counters_; }
  void model_changed() override;
  std::string metrics_text() const override { return owner_->metrics_text(); }
  const std::string& model_json() const override { return model_json_; }
  const std::string& token_event(bool chat, int32_t tokens) override;
  void release(SimExchange* e) override { free_exchanges_.push_back(e); }
  void log_stamps(const SimRequestStamps& s) override {
    std::lock_guard<std::mutex> lock(stamps_mu_);
    if (stamps_.size() < config_.stamp_log_capacity) {
      stamps_.push_back(s);
    } else if (!stamps_.empty()) {
      stamps_[stamps_head_] = s;  // a ring once full: the oldest goes
      stamps_head_ = (stamps_head_ + 1) % stamps_.size();
    }
  }
  void stamps_into(std::vector<SimRequestStamps>& out) const {
    std::lock_guard<std::mutex> lock(stamps_mu_);
    out.insert(out.end(), stamps_.begin(), stamps_.end());
  }
  // SimExchangePool
  SimExchange* acquire() override;

  const SimCounters& counters() const { return counters_; }
  const SimPowerMeter& power() const { return power_; }
  void release(SimConn* c) { free_conns_.push_back(c); }
  // While the model emits, HTTP/2 connections collect their frames and send them once at the end
  // (one write per connection per wake-up instead of one per event).
  bool in_advance() const { return in_advance_; }
  void defer_flush(SimConn* c) { deferred_.push_back(c); }

 private:
  void run() {
    while (!stop_.load(std::memory_order_relaxed)) loop_.run_once(-1);
  }

  const SimServerConfig& config_;
  const SimServer* owner_;
  int listen_fd_;
  EventLoop loop_;
  std::unique_ptr<SimModel> model_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mt19937_64 rng_;
  std::string model_json_;
  SimCounters counters_;
  SimPowerMeter power_;
  mutable std::mutex stamps_mu_;  // guards stamps_: written at the end of each request, read by stamps()
  std::vector<SimRequestStamps> stamps_;
  size_t stamps_head_ = 0;
  bool in_advance_ = false;
  std::vector<SimConn*> deferred_;  ///< connections with output to send after the model's advance
  int64_t armed_ns_ = 0;       ///< deadline of the newest model timer still pending; 0: none
  uint64_t armed_token_ = 0;
  SimModelStats published_;    ///< the model's counters as last published
  std::vector<std::string> chat_events_, text_events_;  ///< by token count
  // Pools: never freed while the worker runs (timers and model cookies may name their members).
  std::vector<std::unique_ptr<SimExchange>> exchanges_;
  std::vector<SimExchange*> free_exchanges_;
  std::vector<std::unique_ptr<SimConn>> conns_;
  std::vector<SimConn*> free_conns_;
};

// One accepted connection: HTTP/1.1 (one exchange at a time, pipelined requests in order), or
// HTTP/2 when it opens with the client preface.
class SimConn final : public IoHandler, public SimResponder, public SimHttp2Transport {
 public:
  explicit SimConn(SimWorker& w) : w_(w) {}
  ~SimConn() override { close_fd(); }

  void open(int fd) {
    fd_ = fd;
    in_.clear();
    out_.clear();
    out_off_ = 0;
    exchange_ = nullptr;
    close_after_ = false;
    decided_ = false;
    h2_.reset();
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    want_out_ = false;
    w_.loop().add(fd_, EPOLLIN, this);
  }

  void on_io(uint32_t events) override {
    if (fd_ < 0) return;
    if (events & EPOLLOUT) {
      flush();
      if (fd_ < 0) return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_ready();
  }

  // --- SimResponder (HTTP/1.1) ---
  void respond_head(int status, const char* reason, const char* content_type, int64_t content_length) override {
    chunked_ = content_length < 0;
    char head[320];
    int n = chunked_ ? std::snprintf(head, sizeof head,
                                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
                                     "Transfer-Encoding: chunked\r\n%s\r\n",
                                     status, reason, content_type, close_after_ ? "Connection: close\r\n" : "")
                     : std::snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %lld\r\n%s\r\n",
                                     status, reason, content_type, static_cast<long long>(content_length),
                                     close_after_ ? "Connection: close\r\n" : "");
    out_.append(head, static_cast<size_t>(n));
    if (chunked_) flush();  // a streaming response's headers go out at once
  }
  void respond_body(std::string_view bytes) override {
    if (chunked_) {
      append_chunk(out_, bytes);
    } else {
      out_.append(bytes);
    }
    flush();
  }
  void respond_end() override {
    exchange_ = nullptr;
    if (chunked_) out_.append("0\r\n\r\n");
    flush();
    if (fd_ >= 0) after_response();
  }
  void respond_reset() override {
    exchange_ = nullptr;
    flush();
    if (fd_ < 0) return;
    linger lg{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close_fd();
  }
  void respond_truncate() override {
    exchange_ = nullptr;
    flush();
    close_fd();
  }

  // --- SimHttp2Transport ---
  void h2_write(std::string_view bytes) override {
    if (fd_ < 0) return;
    out_.append(bytes);
    if (!w_.in_advance()) return flush();
    if (!flush_deferred_) {
      flush_deferred_ = true;
      w_.defer_flush(this);
    }
  }
  void deferred_flush() {
    flush_deferred_ = false;
    flush();
  }
  void h2_close() override {
    flush();
    close_fd();
  }

 private:
  void read_ready() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) {
        if (h2_) {
          if (!h2_->feed(buf, static_cast<size_t>(n))) return close_fd();
          if (fd_ < 0) return;
          continue;
        }
        in_.append(buf, static_cast<size_t>(n));
        if (in_.size() > kMaxRequestBytes) return close_fd();
        if (!decided_ && !decide_protocol()) return;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      return close_fd();  // peer closed or reset
    }
    if (!h2_ && decided_ && !exchange_) try_request();
  }

  // HTTP/2 when the connection opens with the client preface (h2c with prior knowledge), else
  // HTTP/1.1. Returns false when the connection was closed.
  bool decide_protocol() {
    size_t n = std::min(in_.size(), kHttp2Preface.size());
    if (std::string_view(in_.data(), n) != kHttp2Preface.substr(0, n)) {
      decided_ = true;  // HTTP/1.1
      return true;
    }
    if (in_.size() < kHttp2Preface.size()) return true;  // wait for the rest of the preface
    decided_ = true;
    try {
      h2_ = std::make_unique<SimHttp2Session>(w_, *this);
    } catch (const std::exception&) {
      close_fd();
      return false;
    }
    std::string bytes;
    bytes.swap(in_);
    if (!h2_->feed(bytes.data(), bytes.size())) {
      close_fd();
      return false;
    }
    return fd_ >= 0;
  }

  void try_request() {
    while (fd_ >= 0 && !exchange_) {
      size_t end = in_.find("\r\n\r\n");
      if (end == std::string::npos) return;
      std::string_view head(in_.data(), end);
      size_t body_len = 0;
      bool conn_close = false, chunked = false;
      uint64_t request_id = 0;
      // Header scan: Content-Length, Transfer-Encoding and Connection: close (case-insensitive names).
      size_t line = head.find("\r\n");
      while (line != std::string_view::npos && line < head.size()) {
        size_t next = head.find("\r\n", line + 2);
        std::string_view h = head.substr(line + 2, (next == std::string_view::npos ? head.size() : next) - line - 2);
        size_t colon = h.find(':');
        if (colon != std::string_view::npos) {
          std::string name(h.substr(0, colon));
          for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          std::string_view value = h.substr(colon + 1);
          while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
          if (name == "content-length") body_len = std::strtoull(std::string(value).c_str(), nullptr, 10);
          if (name == "connection" && (value == "close" || value == "Close")) conn_close = true;
          if (name == "transfer-encoding") chunked = true;
          if (name == "x-request-id") {
            while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
            request_id = parse_request_id(value);
          }
        }
        line = next;
      }
      if (chunked) {  // not supported: answer and close
        close_after_ = true;
        in_.clear();
        static constexpr std::string_view kBody = "{\"error\":{\"message\":\"send the body with Content-Length\"}}";
        respond_head(411, "Length Required", "application/json", static_cast<int64_t>(kBody.size()));
        respond_body(kBody);
        return respond_end();
      }
      if (in_.size() < end + 4 + body_len) return;  // body not complete yet
      int64_t received = now_ns();
      close_after_ = conn_close;
      std::string_view request_line = head.substr(0, head.find("\r\n"));
      size_t sp1 = request_line.find(' ');
      std::string method(request_line.substr(0, sp1));
      std::string path;
      if (sp1 != std::string_view::npos) {
        size_t sp2 = request_line.find(' ', sp1 + 1);
        path = std::string(request_line.substr(sp1 + 1, sp2 == std::string_view::npos ? std::string_view::npos : sp2 - sp1 - 1));
      }
      size_t q = path.find('?');
      if (q != std::string::npos) path.resize(q);
      std::string body = in_.substr(end + 4, body_len);
      in_.erase(0, end + 4 + body_len);
      exchange_ = w_.acquire();
      exchange_->start(this, method, path, body, received, request_id);  // may answer (and recurse) at once
      return;
    }
  }

  // A response is complete: close (Connection: close) or serve the next pipelined request.
  void after_response() {
    if (close_after_) {
      if (out_off_ >= out_.size()) close_fd();
      return;
    }
    if (!in_.empty() && !exchange_) try_request();
  }

  void flush() {
    while (fd_ >= 0 && out_off_ < out_.size()) {
      ssize_t n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
      if (n > 0) {
        out_off_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        set_want_out(true);
        return;
      }
      if (n < 0 && errno == EINTR) continue;
      close_fd();
      return;
    }
    out_.clear();
    out_off_ = 0;
    set_want_out(false);
    if (close_after_ && !exchange_ && !h2_ && fd_ >= 0) close_fd();
  }

  void set_want_out(bool want) {
    if (want == want_out_ || fd_ < 0) return;
    want_out_ = want;
    w_.loop().modify(fd_, EPOLLIN | (want ? uint32_t{EPOLLOUT} : 0u), this);
  }

  void close_fd() {
    if (fd_ < 0) return;
    w_.loop().remove(fd_);
    ::close(fd_);
    fd_ = -1;
    if (exchange_) {
      SimExchange* e = exchange_;
      exchange_ = nullptr;
      e->abort();
    }
    if (h2_) h2_->abort_all();  // the session itself goes when the connection is reused
    w_.release(this);
  }

  SimWorker& w_;
  int fd_ = -1;
  std::string in_, out_;
  size_t out_off_ = 0;
  bool want_out_ = false;
  bool close_after_ = false;
  bool chunked_ = false;               ///< the response in progress is chunked (HTTP/1.1)
  bool decided_ = false;               ///< HTTP/1.1 or HTTP/2 is known
  bool flush_deferred_ = false;        ///< queued in the worker's deferred_ list
  SimExchange* exchange_ = nullptr;    ///< HTTP/1.1: the request being answered
  std::unique_ptr<SimHttp2Session> h2_;
};

SimWorker::~SimWorker() {
  stop();
  conns_.clear();  // closes the connections (aborting their exchanges) while the pools still exist
  exchanges_.clear();
  loop_.remove(listen_fd_);
  ::close(listen_fd_);
}

void SimWorker::on_io(uint32_t) {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    counters_.accepted.add();
    SimConn* c;
    if (free_conns_.empty()) {
      conns_.push_back(std::make_unique<SimConn>(*this));
      c = conns_.back().get();
    } else {
      c = free_conns_.back();
      free_conns_.pop_back();
    }
    c->open(fd);
  }
}

SimExchange* SimWorker::acquire() {
  if (!free_exchanges_.empty()) {
    SimExchange* e = free_exchanges_.back();
    free_exchanges_.pop_back();
    return e;
  }
  exchanges_.push_back(std::make_unique<SimExchange>(*this, static_cast<uint32_t>(exchanges_.size())));
  return exchanges_.back().get();
}

const std::string& SimWorker::token_event(bool chat, int32_t tokens) {
  auto& cache = chat ? chat_events_ : text_events_;
  while (static_cast<int32_t>(cache.size()) <= tokens) {
    std::string text;
    for (size_t i = 0; i < cache.size(); ++i) text += "tok ";
    cache.push_back(chat ? "data: {\"id\":\"chatcmpl-sim\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"" +
                               model_json_ + "\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + text +
                               "\"},\"finish_reason\":null}]}\n\n"
                         : "data: {\"id\":\"cmpl-sim\",\"object\":\"text_completion\",\"created\":0,\"model\":\"" +
                               model_json_ + "\",\"choices\":[{\"index\":0,\"text\":\"" + text +
                               "\",\"finish_reason\":null}]}\n\n");
  }
  return cache[static_cast<size_t>(tokens)];
}

void SimWorker::on_timer(uint64_t token) {
  if (token == armed_token_) armed_ns_ = 0;
  // The null model's streams are independent: deliver what falls within the slack together. A
  // batching step is never ended early (an arrival just before its end must still join it).
  bool null = config_.model_params.kind == SimModelKind::kNull;
  in_advance_ = true;
  model_->advance(now_ns() + (null ? kCoalesceNs : 0), *this);
  in_advance_ = false;
  for (size_t i = 0; i < deferred_.size(); ++i) deferred_[i]->deferred_flush();  // may not grow it
  deferred_.clear();
  model_changed();
}

void SimWorker::on_emit(const SimEmission& e) {
  uint32_t slot = static_cast<uint32_t>(e.cookie >> 32);
  if (slot >= exchanges_.size()) return;
  SimExchange* ex = exchanges_[slot].get();
  if (ex->cookie_matches(e.cookie)) ex->on_emit(e);
}

void SimWorker::model_changed() {
  SimModelStats st = model_->stats();
  counters_.running.set(st.running);
  counters_.waiting.set(st.waiting + counters_.stalled);
  counters_.kv_used.set(st.kv_used_tokens);
  counters_.cache_blocks.set(st.cache_blocks);
  counters_.prompt_tokens.add(st.prompt_tokens - published_.prompt_tokens);
  counters_.cache_queries.add(st.cache_query_tokens - published_.cache_query_tokens);
  counters_.cache_hits.add(st.cache_hit_tokens - published_.cache_hit_tokens);
  counters_.steps.add(st.steps - published_.steps);
  published_ = st;
  power_.publish(now_ns(), SimBusyState{st.busy_ns, st.busy_since_ns, st.busy_until_ns});
  int64_t d = model_->next_deadline_ns();
  if (d >= 0 && (armed_ns_ == 0 || d < armed_ns_)) {
    armed_ns_ = std::max<int64_t>(d, 1);
    loop_.schedule(armed_ns_, this, ++armed_token_);
  }
}

// ---------------------------------------------------------------------------------------------

SimServer::SimServer(SimServerConfig config) : config_(std::move(config)) {
  if (config_.workers < 1) throw std::invalid_argument("workers must be >= 1");
  if (config_.output_tokens < 1) throw std::invalid_argument("output_tokens must be >= 1");
  if (!(config_.early_stop_probability >= 0 && config_.early_stop_probability <= 1))
    throw std::invalid_argument("early_stop_probability must be in [0, 1]");
  if (config_.stall_ns < 0 || config_.slow_headers_ns < 0)
    throw std::invalid_argument("stall and slow_headers times must be >= 0");
  std::string err = validate_sim_model_params(config_.model_params);
  if (!err.empty()) throw std::invalid_argument(err);
  if (config_.accelerators < 1 || config_.accelerators > 4096)
    throw std::invalid_argument("accelerators must be in [1, 4096]");
  if (!(config_.idle_w >= 0) || !std::isfinite(config_.idle_w) || !(config_.dynamic_w >= 0) ||
      !std::isfinite(config_.dynamic_w))
    throw std::invalid_argument("idle_w and dynamic_w must be finite and >= 0");
  char host[256] = {};
  hostname_ = gethostname(host, sizeof host - 1) == 0 && host[0] ? host : "localhost";
}

SimServer::~SimServer() { stop(); }

void SimServer::start() {
  if (running_) return;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  uint16_t port = config_.port;
  const int64_t start_ns = now_ns();  // every replica's energy counts from here
  for (int i = 0; i < config_.workers; ++i) {
    std::string port_s = std::to_string(port);
    int rc = getaddrinfo(config_.host.c_str(), port_s.c_str(), &hints, &res);
    if (rc != 0) {
      workers_.clear();
      throw std::runtime_error("cannot resolve '" + config_.host + "': " + gai_strerror(rc));
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (config_.reuse_port || config_.workers > 1) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
      int err = errno;
      freeaddrinfo(res);
      if (fd >= 0) ::close(fd);
      workers_.clear();
      throw std::system_error(err, std::generic_category(),
                              "cannot listen on " + config_.host + ":" + std::to_string(port));
    }
    if (port == 0) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    }
    freeaddrinfo(res);
    res = nullptr;
    workers_.push_back(std::make_unique<SimWorker>(config_, fd, i, this, start_ns));
  }
  port_ = port;
  for (auto& w : workers_) w->start();
  running_ = true;
}

void SimServer::stop() {
  if (!running_) return;
  running_ = false;
  for (auto& w : workers_) w->stop();
  final_metrics_ = metrics();
  final_stamps_ = stamps();
  workers_.clear();  // closes the listeners and every connection
}

std::vector<SimRequestStamps> SimServer::stamps() const {
  if (workers_.empty()) return final_stamps_;
  std::vector<SimRequestStamps> out;
  for (const auto& w : workers_) static_cast<const SimWorker&>(*w).stamps_into(out);
  std::sort(out.begin(), out.end(),
            [](const SimRequestStamps& a, const SimRequestStamps& b) { return a.received_ns < b.received_ns; });
  return out;
}

SimServerMetrics SimServer::metrics() const {
  if (workers_.empty()) return final_metrics_;
  SimServerMetrics m;
  for (const auto& w : workers_) {
    const SimCounters& c = static_cast<const SimWorker&>(*w).counters();
    m.connections_accepted += c.accepted.get();
    m.requests_total += c.requests.get();
    m.requests_rejected += c.rejected.get();
    m.requests_running += c.running.get();
    m.requests_waiting += c.waiting.get();
    m.tokens_generated += c.tokens.get();
    m.prompt_tokens += c.prompt_tokens.get();
    m.cache_query_tokens += c.cache_queries.get();
    m.cache_hit_tokens += c.cache_hits.get();
    m.cache_blocks += c.cache_blocks.get();
    m.kv_used_tokens += c.kv_used.get();
    m.kv_capacity_tokens += c.kv_capacity.get();
    m.steps += c.steps.get();
    m.faults_http_500 += c.f500.get();
    m.faults_http_429 += c.f429.get();
    m.faults_http_503 += c.f503.get();
    m.faults_reset += c.freset.get();
    m.faults_truncate += c.ftruncate.get();
    m.faults_malformed += c.fmalformed.get();
    m.faults_stall += c.fstall.get();
    m.faults_slow_headers += c.fslow.get();
  }
  int64_t now = now_ns();
  for (const auto& w : workers_) {
    SimPowerReading r = static_cast<const SimWorker&>(*w).power().read(now);
    double power = config_.idle_w + config_.dynamic_w * r.window_busy;
    double energy = sim_energy_mj(config_.idle_w, config_.dynamic_w, r.elapsed_ns, r.busy_ns);
    for (int a = 0; a < config_.accelerators; ++a) {
      m.power_w.push_back(power);
      m.energy_mj.push_back(energy);
    }
    m.utilisation.push_back(r.elapsed_ns > 0 ? static_cast<double>(r.busy_ns) / static_cast<double>(r.elapsed_ns) : 0.0);
  }
  return m;
}

std::string SimServer::metrics_text() const {
  SimServerMetrics m = metrics();
  std::string s;
  char line[512];
  auto put = [&](const char* name, const char* type, const char* help, double v) {
    std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
    s += line;
  };
  const SimModelParams& p = config_.model_params;
  std::snprintf(line, sizeof line,
                "# HELP agentperf_sim_info The simulator's model kind, preset and served model name.\n"
                "# TYPE agentperf_sim_info gauge\n"
                "agentperf_sim_info{model_kind=\"%s\",preset=\"%s\",model=\"%s\",workers=\"%d\"} 1\n",
                p.kind == SimModelKind::kNull ? "null" : "batching", json_escape(config_.preset).c_str(),
                json_escape(config_.model).c_str(), config_.workers);
  s += line;
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  put("agentperf_sim_connections_accepted_total", "counter", "Connections accepted.", d(m.connections_accepted));
  put("agentperf_sim_requests_total", "counter", "Generation requests received.", d(m.requests_total));
  put("agentperf_sim_requests_rejected_total", "counter", "Generation requests answered 400.", d(m.requests_rejected));
  put("agentperf_sim_requests_running", "gauge", "Requests in the running batch.", d(m.requests_running));
  put("agentperf_sim_requests_waiting", "gauge", "Requests waiting for a batch slot (or stalled).", d(m.requests_waiting));
  put("agentperf_sim_generation_tokens_total", "counter", "Output tokens sent.", d(m.tokens_generated));
  put("agentperf_sim_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", d(m.prompt_tokens));
  put("agentperf_sim_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.",
      d(m.cache_query_tokens));
  put("agentperf_sim_prefix_cache_hits_total", "counter", "Prompt tokens served from the prefix cache.",
      d(m.cache_hit_tokens));
  put("agentperf_sim_prefix_cache_hit_rate", "gauge", "Prefix-cache hits / queries (tokens) since start.",
      m.cache_query_tokens ? d(m.cache_hit_tokens) / d(m.cache_query_tokens) : 0.0);
  put("agentperf_sim_prefix_cache_blocks", "gauge", "Blocks held by the prefix cache.", d(m.cache_blocks));
  put("agentperf_sim_kv_cache_usage_tokens", "gauge", "KV tokens held by running requests.", d(m.kv_used_tokens));
  put("agentperf_sim_kv_cache_capacity_tokens", "gauge", "KV capacity in tokens (0: unlimited).", d(m.kv_capacity_tokens));
  put("agentperf_sim_kv_cache_usage_ratio", "gauge", "KV usage / capacity (0 when unlimited).",
      m.kv_capacity_tokens ? d(m.kv_used_tokens) / d(m.kv_capacity_tokens) : 0.0);
  put("agentperf_sim_steps_total", "counter", "Batching steps run.", d(m.steps));
  s += "# HELP agentperf_sim_faults_injected_total Faults injected, by kind.\n"
       "# TYPE agentperf_sim_faults_injected_total counter\n";
  const std::pair<const char*, uint64_t> faults[] = {
      {"http_500", m.faults_http_500}, {"http_429", m.faults_http_429}, {"http_503", m.faults_http_503},
      {"reset", m.faults_reset},       {"truncate", m.faults_truncate}, {"malformed", m.faults_malformed},
      {"stall", m.faults_stall},       {"slow_headers", m.faults_slow_headers}};
  for (auto& [k, v] : faults) {
    std::snprintf(line, sizeof line, "agentperf_sim_faults_injected_total{kind=\"%s\"} %llu\n", k,
                  static_cast<unsigned long long>(v));
    s += line;
  }
  // Power, as dcgm-exporter names and labels it (one series per simulated accelerator).
  std::string host = json_escape(hostname_);
  auto series = [&](const char* name, const char* type, const char* help, const std::vector<double>& v, bool whole) {
    std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    s += line;
    for (size_t i = 0; i < v.size(); ++i) {
      int n = std::snprintf(line, sizeof line,
                            "%s{gpu=\"%zu\",UUID=\"SIM-%llu-%zu\",modelName=\"agentperf-sim\",Hostname=\"%s\"} ", name,
                            i, static_cast<unsigned long long>(config_.seed), i, host.c_str());
      s.append(line, static_cast<size_t>(std::min<int>(n, sizeof line - 1)));
      std::snprintf(line, sizeof line, whole ? "%.0f\n" : "%.3f\n", whole ? std::floor(v[i]) : v[i]);
      s += line;
    }
  };
  series("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", m.power_w, false);
  series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ; boot: the simulator's start).",
         m.energy_mj, true);
  return s;
}

}  // namespace agentperf
