#include "agentperf/sim_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "agentperf/clock.h"
#include "agentperf/event_loop.h"

namespace agentperf {

namespace {

constexpr size_t kMaxRequestBytes = 64 * 1024 * 1024;

struct Counter {
  std::atomic<uint64_t> v{0};
  void add(int64_t n = 1) { v.store(v.load(std::memory_order_relaxed) + static_cast<uint64_t>(n), std::memory_order_relaxed); }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

// Finds `"key"` followed by ':' and returns the integer after it, or -1.
int64_t find_int(std::string_view body, std::string_view key) {
  size_t pos = 0;
  while ((pos = body.find(key, pos)) != std::string_view::npos) {
    size_t p = pos + key.size();
    pos = p;
    if (pos < key.size() + 1 || body[p - key.size() - 1] != '"' || p >= body.size() || body[p] != '"') continue;
    ++p;
    while (p < body.size() && (body[p] == ' ' || body[p] == ':')) ++p;
    if (p >= body.size() || body[p] < '0' || body[p] > '9') return -1;
    int64_t v = 0;
    while (p < body.size() && body[p] >= '0' && body[p] <= '9') v = v * 10 + (body[p++] - '0');
    return v;
  }
  return -1;
}

bool find_bool(std::string_view body, std::string_view key, bool value) {
  std::string a = "\"" + std::string(key) + "\":" + (value ? "true" : "false");
  std::string b = "\"" + std::string(key) + "\": " + (value ? "true" : "false");
  return body.find(a) != std::string_view::npos || body.find(b) != std::string_view::npos;
}

void append_chunk(std::string& out, std::string_view payload) {
  char size[24];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  out.append(size, static_cast<size_t>(n));
  out.append(payload);
  out.append("\r\n");
}

enum class Fault : uint8_t { kNone, k500, k429, k503, kReset, kTruncate, kMalformed, kStall, kSlowHeaders };

}  // namespace

class SimConn;

class SimWorker final : public IoHandler {
 public:
  SimWorker(const SimServerConfig& config, int listen_fd, int index)
      : config_(config), listen_fd_(listen_fd), rng_(config.seed * 0x9E3779B97F4A7C15ULL + index) {
    loop_.add(listen_fd_, EPOLLIN, this);
    std::string payload;
    token_text_ = "tok ";
    for (int i = 1; i < config_.tokens_per_chunk; ++i) token_text_ += "tok ";
    chat_token_ = "data: {\"id\":\"chatcmpl-sim\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"" +
                  config_.model + "\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + token_text_ +
                  "\"},\"finish_reason\":null}]}\n\n";
    text_token_ = "data: {\"id\":\"cmpl-sim\",\"object\":\"text_completion\",\"created\":0,\"model\":\"" +
                  config_.model + "\",\"choices\":[{\"index\":0,\"text\":\"" + token_text_ +
                  "\",\"finish_reason\":null}]}\n\n";
  }
  ~SimWorker() override;

  void start() { thread_ = std::thread([this] { run(); }); }
  void stop() {
    stop_.store(true);
    loop_.wake();
    if (thread_.joinable()) thread_.join();
  }
  void on_io(uint32_t) override;  // accept

  EventLoop& loop() { return loop_; }
  const SimServerConfig& config() const { return config_; }
  std::mt19937_64& rng() { return rng_; }
  const std::string& chat_token() const { return chat_token_; }
  const std::string& text_token() const { return text_token_; }
  void release(SimConn* c);

  Counter accepted, requests, running, tokens;
  Counter f500, f429, f503, freset, ftruncate, fmalformed, fstall, fslow;
  const SimServer* owner = nullptr;

 private:
  void run() {
    while (!stop_.load(std::memory_order_relaxed)) loop_.run_once(-1);
  }

  const SimServerConfig& config_;
  int listen_fd_;
  EventLoop loop_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mt19937_64 rng_;
  std::string token_text_, chat_token_, text_token_;
  std::vector<std::unique_ptr<SimConn>> pool_;  // never freed while running (timers may point here)
  std::vector<SimConn*> free_;
};

// One accepted connection: reads requests, writes responses, paces stream events with timers.
class SimConn final : public IoHandler, public TimerTarget {
 public:
  explicit SimConn(SimWorker& w) : w_(w) {}
  ~SimConn() override { close_fd(false); }

  void open(int fd) {
    fd_ = fd;
    in_.clear();
    out_.clear();
    out_off_ = 0;
    streaming_ = false;
    close_after_ = false;
    ++gen_;
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

  void on_timer(uint64_t token) override {
    if (token != gen_ || fd_ < 0) return;
    step();
  }

 private:
  void read_ready() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        if (in_.size() > kMaxRequestBytes) {
          close_fd(false);
          return;
        }
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      close_fd(false);  // peer closed or reset
      return;
    }
    if (!streaming_) try_request();
  }

  void try_request() {
    size_t end = in_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    std::string_view head(in_.data(), end);
    size_t body_len = 0;
    bool conn_close = false;
    // Header scan: Content-Length and Connection: close (case-insensitive names).
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
      }
      line = next;
    }
    if (in_.size() < end + 4 + body_len) return;  // body not complete yet
    received_ns_ = now_ns();
    std::string_view request_line = head.substr(0, head.find("\r\n"));
    std::string_view body(in_.data() + end + 4, body_len);
    close_after_ = conn_close;
    std::string method(request_line.substr(0, request_line.find(' ')));
    size_t ps = request_line.find(' ');
    std::string path(ps == std::string_view::npos ? "" : request_line.substr(ps + 1, request_line.find(' ', ps + 1) - ps - 1));
    size_t q = path.find('?');
    if (q != std::string::npos) path.resize(q);
    handle(method, path, body);
    in_.erase(0, end + 4 + body_len);
  }

  void respond_simple(int status, const char* reason, const std::string& content_type, const std::string& body) {
    char head[256];
    int n = std::snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                          status, reason, content_type.c_str(), body.size(), close_after_ ? "Connection: close\r\n" : "");
    out_.append(head, static_cast<size_t>(n));
    out_.append(body);
    flush();
    if (close_after_ && fd_ >= 0 && out_.empty()) close_fd(false);
  }

  void handle(const std::string& method, const std::string& path, std::string_view body) {
    const SimServerConfig& cfg = w_.config();
    if (method == "GET" && path == "/health") return respond_simple(200, "OK", "application/json", "{\"status\":\"ok\"}");
    if (method == "GET" && path == "/v1/models")
      return respond_simple(200, "OK", "application/json",
                            "{\"object\":\"list\",\"data\":[{\"id\":\"" + cfg.model +
                                "\",\"object\":\"model\",\"owned_by\":\"agentperf-native\"}]}");
    if (method == "GET" && path == "/metrics") return respond_simple(200, "OK", "text/plain; version=0.0.4", metrics_text());
    bool chat = path == "/v1/chat/completions";
    if (method != "POST" || !(chat || path == "/v1/completions"))
      return respond_simple(404, "Not Found", "application/json", "{\"error\":{\"message\":\"not found\",\"code\":404}}");

    w_.requests.add();
    chat_ = chat;
    int64_t max_tokens = find_int(body, "max_tokens");
    tokens_ = static_cast<int32_t>(max_tokens > 0 ? max_tokens : cfg.output_tokens);
    include_usage_ = find_bool(body, "include_usage", true);
    bool stream = !find_bool(body, "stream", false);
    prompt_tokens_ = static_cast<int64_t>(body.size() / 4);
    fault_ = draw_fault();
    switch (fault_) {
      case Fault::k500: w_.f500.add(); return respond_error(500, "Internal Server Error");
      case Fault::k429: w_.f429.add(); return respond_error(429, "Too Many Requests");
      case Fault::k503: w_.f503.add(); return respond_error(503, "Service Unavailable");
      default: break;
    }
    if (!stream) return respond_whole();
    streaming_ = true;
    w_.running.add(1);
    sent_tokens_ = 0;
    next_event_ = 0;
    n_events_ = (tokens_ + cfg.tokens_per_chunk - 1) / cfg.tokens_per_chunk;
    headers_sent_ = false;
    int64_t headers_at = received_ns_;
    if (fault_ == Fault::kStall) {
      w_.fstall.add();
      if (cfg.stall_ns <= 0) return;  // never answers
      headers_at += cfg.stall_ns;
      received_ns_ += cfg.stall_ns;
    } else if (fault_ == Fault::kSlowHeaders) {
      w_.fslow.add();
      headers_at += cfg.slow_headers_ns;
    } else if (fault_ == Fault::kReset) {
      w_.freset.add();
    } else if (fault_ == Fault::kTruncate) {
      w_.ftruncate.add();
    } else if (fault_ == Fault::kMalformed) {
      w_.fmalformed.add();
    }
    headers_at_ = headers_at;
    if (headers_at <= received_ns_) {
      send_headers();
    }
    schedule_next();
  }

  Fault draw_fault() {
    const SimServerConfig& c = w_.config();
    double p[] = {c.fault_http_500, c.fault_http_429, c.fault_http_503, c.fault_reset,
                  c.fault_truncate, c.fault_malformed, c.fault_stall, c.fault_slow_headers};
    double sum = 0;
    for (double x : p) sum += x;
    if (sum <= 0) return Fault::kNone;
    double u = std::uniform_real_distribution<double>(0, 1)(w_.rng());
    for (int i = 0; i < 8; ++i) {
      if (u < p[i]) return static_cast<Fault>(i + 1);
      u -= p[i];
    }
    return Fault::kNone;
  }

  void respond_error(int status, const char* reason) {
    char body[160];
    std::snprintf(body, sizeof body, "{\"error\":{\"message\":\"injected fault: %s\",\"type\":\"server_error\",\"code\":%d}}",
                  reason, status);
    respond_simple(status, reason, "application/json", body);
  }

  void respond_whole() {
    std::string content;
    for (int32_t i = 0; i < tokens_; ++i) content += "tok ";
    char usage[200];
    std::snprintf(usage, sizeof usage,
                  "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%d,\"total_tokens\":%lld,"
                  "\"prompt_tokens_details\":{\"cached_tokens\":0}}",
                  static_cast<long long>(prompt_tokens_), tokens_, static_cast<long long>(prompt_tokens_ + tokens_));
    std::string body = chat_ ? "{\"id\":\"chatcmpl-sim\",\"object\":\"chat.completion\",\"model\":\"" + w_.config().model +
                                   "\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"" +
                                   content + "\"},\"finish_reason\":\"length\"}]," + usage + "}"
                             : "{\"id\":\"cmpl-sim\",\"object\":\"text_completion\",\"model\":\"" + w_.config().model +
                                   "\",\"choices\":[{\"index\":0,\"text\":\"" + content +
                                   "\",\"finish_reason\":\"length\"}]," + usage + "}";
    w_.tokens.add(tokens_);
    // Non-streaming: the whole answer after the time the stream would have taken.
    respond_simple(200, "OK", "application/json", body);
  }

  void send_headers() {
    headers_sent_ = true;
    out_.append("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n");
    if (close_after_) out_.append("Connection: close\r\n");
    out_.append("\r\n");
    // The role-only first chunk that vLLM and OpenAI send: not output.
    if (chat_) {
      append_chunk(out_, "data: {\"id\":\"chatcmpl-sim\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"" +
                             w_.config().model + "\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n");
    }
    flush();
  }

  int64_t event_time(int32_t i) const { return received_ns_ + w_.config().ttft_ns + i * w_.config().itl_ns; }

  void schedule_next() {
    int64_t at = headers_sent_ ? event_time(next_event_) : headers_at_;
    w_.loop().schedule(at, this, gen_);
  }

  // Timer: send what is due (headers, then every event whose time has come).
  void step() {
    if (!streaming_) return;
    if (!headers_sent_) {
      send_headers();
      if (fd_ < 0) return;
    }
    int64_t now = now_ns();
    const SimServerConfig& cfg = w_.config();
    int32_t half = n_events_ / 2;
    while (next_event_ < n_events_ && event_time(next_event_) <= now) {
      if (next_event_ == half && fault_ == Fault::kReset) return reset();
      if (next_event_ == half && fault_ == Fault::kTruncate) {
        flush();
        close_fd(false);
        return;
      }
      if (next_event_ == half && fault_ == Fault::kMalformed) append_chunk(out_, "data: <html>upstream sent garbage</html>\n\n");
      int32_t k = std::min(cfg.tokens_per_chunk, tokens_ - sent_tokens_);
      append_chunk(out_, chat_ ? w_.chat_token() : w_.text_token());
      sent_tokens_ += k;
      w_.tokens.add(k);
      ++next_event_;
    }
    if (next_event_ >= n_events_) {
      finish_stream();
    } else {
      flush();
      if (fd_ >= 0) schedule_next();
    }
  }

  void finish_stream() {
    char buf[512];
    const char* obj = chat_ ? "chat.completion.chunk" : "text_completion";
    int n = chat_ ? std::snprintf(buf, sizeof buf,
                                  "data: {\"id\":\"chatcmpl-sim\",\"object\":\"%s\",\"created\":0,\"model\":\"%s\","
                                  "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
                                  obj, w_.config().model.c_str())
                  : std::snprintf(buf, sizeof buf,
                                  "data: {\"id\":\"cmpl-sim\",\"object\":\"%s\",\"created\":0,\"model\":\"%s\","
                                  "\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n",
                                  obj, w_.config().model.c_str());
    append_chunk(out_, std::string_view(buf, static_cast<size_t>(n)));
    if (include_usage_) {
      n = std::snprintf(buf, sizeof buf,
                        "data: {\"id\":\"chatcmpl-sim\",\"object\":\"%s\",\"created\":0,\"model\":\"%s\",\"choices\":[],"
                        "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%d,\"total_tokens\":%lld,"
                        "\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n",
                        obj, w_.config().model.c_str(), static_cast<long long>(prompt_tokens_), sent_tokens_,
                        static_cast<long long>(prompt_tokens_ + sent_tokens_));
      append_chunk(out_, std::string_view(buf, static_cast<size_t>(n)));
    }
    append_chunk(out_, "data: [DONE]\n\n");
    out_.append("0\r\n\r\n");
    streaming_ = false;
    w_.running.add(-1);
    flush();
    if (fd_ < 0) return;
    if (close_after_) {
      if (out_.empty()) close_fd(false);
      return;
    }
    if (!in_.empty()) try_request();  // a request that arrived while streaming (not expected)
  }

  void reset() {
    linger lg{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close_fd(false);
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
      close_fd(false);
      return;
    }
    out_.clear();
    out_off_ = 0;
    set_want_out(false);
    if (close_after_ && !streaming_ && fd_ >= 0) close_fd(false);
  }

  void set_want_out(bool want) {
    if (want == want_out_ || fd_ < 0) return;
    want_out_ = want;
    w_.loop().modify(fd_, EPOLLIN | (want ? uint32_t{EPOLLOUT} : 0u), this);
  }

  std::string metrics_text() const;

  void close_fd(bool) {
    if (fd_ < 0) return;
    w_.loop().remove(fd_);
    ::close(fd_);
    fd_ = -1;
    ++gen_;
    if (streaming_) {
      streaming_ = false;
      w_.running.add(-1);
    }
    w_.release(this);
  }

  SimWorker& w_;
  int fd_ = -1;
  uint64_t gen_ = 0;
  std::string in_, out_;
  size_t out_off_ = 0;
  bool want_out_ = false;
  bool streaming_ = false;
  bool close_after_ = false;
  bool chat_ = true;
  bool include_usage_ = false;
  bool headers_sent_ = false;
  Fault fault_ = Fault::kNone;
  int32_t tokens_ = 0, sent_tokens_ = 0, next_event_ = 0, n_events_ = 0;
  int64_t prompt_tokens_ = 0;
  int64_t received_ns_ = 0, headers_at_ = 0;
};

SimWorker::~SimWorker() {
  stop();
  pool_.clear();  // closes the connections while free_ still exists
  loop_.remove(listen_fd_);
  ::close(listen_fd_);
}

void SimWorker::on_io(uint32_t) {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    accepted.add();
    SimConn* c;
    if (free_.empty()) {
      pool_.push_back(std::make_unique<SimConn>(*this));
      c = pool_.back().get();
    } else {
      c = free_.back();
      free_.pop_back();
    }
    c->open(fd);
  }
}

void SimWorker::release(SimConn* c) { free_.push_back(c); }

std::string SimConn::metrics_text() const {
  SimServerMetrics m = w_.owner->metrics();
  std::string s;
  char line[160];
  auto put = [&](const char* name, const char* type, uint64_t v, const char* labels = "") {
    std::snprintf(line, sizeof line, "# TYPE %s %s\n%s%s %llu\n", name, type, name, labels, static_cast<unsigned long long>(v));
    s += line;
  };
  put("agentperf_sim_connections_accepted_total", "counter", m.connections_accepted);
  put("agentperf_sim_requests_total", "counter", m.requests_total);
  put("agentperf_sim_requests_running", "gauge", m.requests_running);
  put("agentperf_sim_requests_waiting", "gauge", 0);
  put("agentperf_sim_generation_tokens_total", "counter", m.tokens_generated);
  s += "# TYPE agentperf_sim_faults_injected_total counter\n";
  const std::pair<const char*, uint64_t> faults[] = {
      {"http_500", m.faults_http_500}, {"http_429", m.faults_http_429}, {"http_503", m.faults_http_503},
      {"reset", m.faults_reset}, {"truncate", m.faults_truncate}, {"malformed", m.faults_malformed},
      {"stall", m.faults_stall}, {"slow_headers", m.faults_slow_headers}};
  for (auto& [k, v] : faults) {
    std::snprintf(line, sizeof line, "agentperf_sim_faults_injected_total{kind=\"%s\"} %llu\n", k,
                  static_cast<unsigned long long>(v));
    s += line;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------

SimServer::SimServer(SimServerConfig config) : config_(std::move(config)) {
  if (config_.workers < 1) throw std::invalid_argument("workers must be >= 1");
  if (config_.ttft_ns < 0 || config_.itl_ns < 0) throw std::invalid_argument("ttft and itl must be >= 0");
  if (config_.output_tokens < 1) throw std::invalid_argument("output_tokens must be >= 1");
  if (config_.tokens_per_chunk < 1) throw std::invalid_argument("tokens_per_chunk must be >= 1");
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
  for (int i = 0; i < config_.workers; ++i) {
    std::string port_s = std::to_string(port);
    int rc = getaddrinfo(config_.host.c_str(), port_s.c_str(), &hints, &res);
    if (rc != 0) throw std::runtime_error("cannot resolve '" + config_.host + "': " + gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
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
    workers_.push_back(std::make_unique<SimWorker>(config_, fd, i));
    workers_.back()->owner = this;
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
  workers_.clear();  // closes the listeners and every connection
}

SimServerMetrics SimServer::metrics() const {
  if (workers_.empty()) return final_metrics_;
  SimServerMetrics m;
  for (const auto& w : workers_) {
    m.connections_accepted += w->accepted.get();
    m.requests_total += w->requests.get();
    m.requests_running += w->running.get();
    m.tokens_generated += w->tokens.get();
    m.faults_http_500 += w->f500.get();
    m.faults_http_429 += w->f429.get();
    m.faults_http_503 += w->f503.get();
    m.faults_reset += w->freset.get();
    m.faults_truncate += w->ftruncate.get();
    m.faults_malformed += w->fmalformed.get();
    m.faults_stall += w->fstall.get();
    m.faults_slow_headers += w->fslow.get();
  }
  return m;
}

}  // namespace agentperf
