// HTTP/1.1 implementation of Session: one request at a time per connection (no pipelining).
#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "client/http1_parser.h"
#include "client/session.h"

namespace agentperf {
namespace {

class Http1Session final : public Session, private Http1Callbacks {
 public:
  Protocol protocol() const override { return Protocol::kHttp1; }
  void on_connected() override {}
  bool can_submit() const override { return handler_ == nullptr && reusable_; }

  int32_t submit(const RequestHead& h, const iovec* body, size_t count, StreamHandler* handler) override {
    if (!can_submit()) return -1;
    head_.assign(h.method).append(" ").append(h.path).append(" HTTP/1.1\r\nHost: ").append(h.authority);
    head_.append("\r\n");
    if (h.json_stream) head_.append("Content-Type: application/json\r\nAccept: text/event-stream\r\n");
    if (!h.authorization.empty()) head_.append("Authorization: ").append(h.authorization).append("\r\n");
    if (!h.request_id.empty()) head_.append("X-Request-Id: ").append(h.request_id).append("\r\n");
    for (size_t i = 0; i < h.header_count; ++i)
      head_.append(h.headers[i].name).append(": ").append(h.headers[i].value).append("\r\n");
    if (sends_content_length(h)) {
      char len[48];
      int n = std::snprintf(len, sizeof len, "Content-Length: %llu\r\n", static_cast<unsigned long long>(h.content_length));
      head_.append(len, static_cast<size_t>(n));
    }
    head_.append("\r\n");
    parser_.reset(h.method == "HEAD");
    out_.clear();
    out_.push_back({head_.data(), head_.size()});
    out_.insert(out_.end(), body, body + count);
    out_pos_ = 0;
    handler_ = handler;
    return ++stream_id_;
  }

  bool on_read(const char* data, size_t n, int64_t now_ns) override {
    now_ns_ = now_ns;
    if (!handler_) {
      // Bytes nobody asked for (or after an abandoned stream): the connection is out of step.
      reusable_ = false;
      return false;
    }
    size_t used = parser_.feed(data, n, *this);
    if (parser_.error() != Http1ParseError::kNone) {
      fail(parser_.error() == Http1ParseError::kHeadersTooLarge ? ErrorKind::kOversized : ErrorKind::kProtocol);
      reusable_ = false;
      return false;
    }
    if (parser_.complete() && used < n) reusable_ = false;  // unexpected extra bytes
    return reusable_ || handler_ != nullptr;
  }

  void on_close(ErrorKind kind, int64_t now_ns) override {
    now_ns_ = now_ns;
    reusable_ = false;
    if (!handler_) return;
    if (kind == ErrorKind::kTruncated) {
      if (parser_.on_eof(*this) == Http1ParseError::kNone && !handler_) return;  // close-delimited
    }
    fail(kind);
  }

  size_t pending_output(iovec* out, size_t max) override {
    size_t n = std::min(max, out_.size() - out_pos_);
    std::copy_n(out_.begin() + static_cast<ptrdiff_t>(out_pos_), n, out);
    return n;
  }

  void consumed_output(size_t n) override {
    while (n > 0 && out_pos_ < out_.size()) {
      iovec& v = out_[out_pos_];
      if (n >= v.iov_len) {
        n -= v.iov_len;
        ++out_pos_;
      } else {
        v.iov_base = static_cast<char*>(v.iov_base) + n;
        v.iov_len -= n;
        n = 0;
      }
    }
  }

  bool reusable() const override { return reusable_; }
  size_t active_streams() const override { return handler_ ? 1 : 0; }
  StreamHandler::Bytes hot_bytes() const override { return {this, sizeof *this}; }

  void abandon(int32_t) override {
    handler_ = nullptr;
    reusable_ = false;
    out_.clear();
    out_pos_ = 0;
  }

 private:
  void on_http_headers(int status_code) override { handler_->on_response_headers(status_code, now_ns_); }
  bool wants_http_headers() const override { return handler_ && handler_->wants_headers(); }
  void on_http_header(std::string_view name, std::string_view value) override {
    handler_->on_response_header(name, value);
  }
  void on_http_body(const char* data, size_t n) override { handler_->on_response_data(data, n, now_ns_); }
  void on_http_complete() override {
    StreamHandler* h = handler_;
    handler_ = nullptr;
    if (parser_.connection_close()) reusable_ = false;
    if (out_pos_ < out_.size()) reusable_ = false;  // answered before the whole request was written
    out_.clear();
    out_pos_ = 0;
    h->on_response_complete(now_ns_);
  }
  void fail(ErrorKind kind) {
    StreamHandler* h = handler_;
    handler_ = nullptr;
    out_.clear();
    out_pos_ = 0;
    if (h) h->on_stream_failed(kind, now_ns_);
  }

  Http1ResponseParser parser_;
  std::string head_;
  StreamHandler* handler_ = nullptr;
  std::vector<iovec> out_;
  size_t out_pos_ = 0;
  int32_t stream_id_ = 0;
  int64_t now_ns_ = 0;
  bool reusable_ = true;
};

}  // namespace

std::unique_ptr<Session> make_http1_session() { return std::make_unique<Http1Session>(); }

}  // namespace agentperf
