// http_request(): one request on its own event loop, through SocketConnection and the sessions.
#include "agentperf/http_request.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "agentperf/clock.h"
#include "client/connection.h"
#include "client/resolve.h"
#include "client/session.h"
#include "common/event_loop.h"
#include "common/tls.h"

namespace agentperf {

namespace {

class OneShot final : public ConnectionHost, public ConnectionWaiter, public StreamHandler, public TimerTarget {
 public:
  OneShot(const HttpRequestOptions& o, HttpResponse& r) : o_(o), r_(r) {}

  void run() {
    const int64_t deadline = now_ns() + o_.timeout_ns;
    if (!resolve()) return;
    if (o_.tls) {
      TlsOptions t;
      t.verify = o_.tls_verify;
      t.ca_file = o_.ca_file;
      t.server_name = o_.server_name.empty() ? o_.host : o_.server_name;
      t.alpn = alpn_offer(o_.protocol);
      try {
        tls_ = std::make_unique<TlsContext>(t);
      } catch (const std::exception& e) {
        r_.tls_failure = true;
        return fail(ErrorKind::kConnect, e.what());
      }
      plain_.reset(new char[kReadBufferBytes]);
    }
    read_.reset(new char[kReadBufferBytes]);
    authority_ = o_.host_header;
    if (authority_.empty()) {
      bool v6 = o_.host.find(':') != std::string::npos;
      authority_ = (v6 ? "[" + o_.host + "]" : o_.host) + ":" + std::to_string(o_.port);
    }
    // Lower-case names (HTTP/2 requires them; HTTP/1.1 does not care). names_ is complete before
    // fields_ points into it.
    for (const auto& header : o_.headers) {
      std::string lower = header.first;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      names_.push_back(std::move(lower));
    }
    for (size_t i = 0; i < o_.headers.size(); ++i) fields_.push_back({names_[i], o_.headers[i].second});

    conn_ = std::make_unique<SocketConnection>(*this, 1);
    if (!conn_->open()) return fail(ErrorKind::kConnect, last_error_);
    conn_->add_waiter(this);
    loop_.schedule(deadline, this, 0);
    while (!done_) loop_.run_once(-1);
    conn_->close(ErrorKind::kCancelled, now_ns());
  }

  // ConnectionHost.
  EventLoop& loop() override { return loop_; }
  const sockaddr* addr() const override { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t addr_len() const override { return addr_len_; }
  const TlsContext* tls() const override { return tls_.get(); }
  ProtocolChoice protocol_choice() const override { return o_.protocol; }
  char* read_buffer() override { return read_.get(); }
  char* plain_buffer() override { return plain_.get(); }
  Protocol negotiated() const override { return negotiated_; }
  void set_negotiated(Protocol p) override { negotiated_ = p; }
  void connection_opened() override {}
  void connection_closed(Connection*) override {}
  void connection_error(const std::string& what) override { last_error_ = what; }
  void tls_error(const std::string& what) override {
    last_error_ = what;
    tls_failed_ = true;
  }

  // ConnectionWaiter.
  void on_connection_ready(Connection* c) override {
    if (done_) return;
    r_.protocol = c->session()->protocol();
    RequestHead h;
    h.method = o_.method;
    h.path = o_.path;
    h.authority = authority_;
    h.json_stream = false;
    h.headers = fields_.data();
    h.header_count = fields_.size();
    h.content_length = o_.body.size();
    iovec body{const_cast<char*>(o_.body.data()), o_.body.size()};
    stream_id_ = c->submit(h, &body, o_.body.empty() ? 0 : 1, this);
    if (stream_id_ <= 0 && !done_) fail(ErrorKind::kWrite, "the request could not be submitted on the connection");
  }
  void on_connection_failed(Connection*, int64_t) override {
    if (done_) return;
    r_.tls_failure = tls_failed_;
    fail(ErrorKind::kConnect, last_error_.empty() ? "the connection failed" : last_error_);
  }

  // StreamHandler.
  bool wants_headers() const override { return true; }
  void on_response_header(std::string_view name, std::string_view value) override {
    r_.headers.emplace_back(std::string(name), std::string(value));
  }
  void on_response_headers(int status, int64_t) override { r_.status = status; }
  void on_response_data(const char* data, size_t n, int64_t) override {
    if (done_) return;
    if (r_.body.size() + n > kMaxResponseBodyBytes)  // the connection is closed once the loop returns
      return fail(ErrorKind::kOversized, "the response body passed " + std::to_string(kMaxResponseBodyBytes >> 20) + " MiB");
    r_.body.append(data, n);
  }
  void on_response_complete(int64_t) override { done_ = true; }
  void on_stream_failed(ErrorKind kind, int64_t) override {
    if (done_) return;
    std::string why = std::string("the response ended early (") + to_string(kind) + ")";
    if (!last_error_.empty()) why += ": " + last_error_;
    r_.tls_failure = tls_failed_;
    fail(kind, why);
  }

  // TimerTarget: the deadline.
  void on_timer(uint64_t) override {
    if (done_) return;
    if (stream_id_ > 0 && conn_->session()) conn_->abandon(stream_id_);
    conn_->remove_waiter(this);
    fail(ErrorKind::kTimeout, "no complete response within " + std::to_string(o_.timeout_ns / 1'000'000) + " ms");
  }

 private:
  bool resolve() {
    ResolvedAddress resolved;
    if (std::string why = resolve_address(o_.host, o_.port, resolved); !why.empty()) {
      fail(ErrorKind::kConnect, why);
      return false;
    }
    addr_ = resolved.addr;
    addr_len_ = resolved.len;
    return true;
  }

  void fail(ErrorKind kind, const std::string& why) {
    done_ = true;
    r_.error_kind = kind;
    r_.error = why;
  }

  const HttpRequestOptions& o_;
  HttpResponse& r_;
  EventLoop loop_;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  std::unique_ptr<TlsContext> tls_;
  std::unique_ptr<char[]> read_, plain_;
  Protocol negotiated_{};
  std::string authority_;
  std::vector<std::string> names_;
  std::vector<HeaderField> fields_;
  std::unique_ptr<SocketConnection> conn_;
  std::string last_error_;
  bool tls_failed_ = false;
  bool done_ = false;
  int32_t stream_id_ = 0;
};

bool is_token(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f || std::strchr("()<>@,;:\\\"/[]?={}", c)) return false;
  return true;
}

}  // namespace

HttpResponse http_request(const HttpRequestOptions& options) {
  if (!is_token(options.method)) throw std::invalid_argument("invalid HTTP method '" + options.method + "'");
  if (options.path.empty() || options.path[0] != '/' ||
      options.path.find_first_of("\r\n ") != std::string::npos)
    throw std::invalid_argument("the path must start with '/' and hold no spaces or line breaks");
  for (const auto& [name, value] : options.headers)
    if (!is_token(name) || value.find_first_of("\r\n") != std::string::npos)
      throw std::invalid_argument("invalid header '" + name + "'");
  HttpResponse r;
  OneShot(options, r).run();
  return r;
}

}  // namespace agentperf
