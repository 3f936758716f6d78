// The HTTP/2 session against an in-memory nghttp2 server session: bytes are pumped between the two,
// no sockets. The server answers each request with a known SSE body, so every client-side callback
// can be checked exactly.
#include <nghttp2/nghttp2.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agentperf/clock.h"
#include "client/session.h"
#include "testing.h"

namespace agentperf {
std::unique_ptr<Session> make_http2_session(const SessionOptions& options, bool tls);
}

namespace {

using namespace agentperf;

#if NGHTTP2_VERSION_NUM >= 0x013c00
using h2_ssize = nghttp2_ssize;
using h2_data_provider = nghttp2_data_provider2;
h2_ssize server_mem_recv(nghttp2_session* s, const uint8_t* in, size_t n) { return nghttp2_session_mem_recv2(s, in, n); }
h2_ssize server_mem_send(nghttp2_session* s, const uint8_t** out) { return nghttp2_session_mem_send2(s, out); }
int server_submit_response(nghttp2_session* s, int32_t id, const nghttp2_nv* nva, size_t n, const h2_data_provider* d) {
  return nghttp2_submit_response2(s, id, nva, n, d);
}
#else
using h2_ssize = ssize_t;
using h2_data_provider = nghttp2_data_provider;
h2_ssize server_mem_recv(nghttp2_session* s, const uint8_t* in, size_t n) { return nghttp2_session_mem_recv(s, in, n); }
h2_ssize server_mem_send(nghttp2_session* s, const uint8_t** out) { return nghttp2_session_mem_send(s, out); }
int server_submit_response(nghttp2_session* s, int32_t id, const nghttp2_nv* nva, size_t n, const h2_data_provider* d) {
  return nghttp2_submit_response(s, id, nva, n, d);
}
#endif

nghttp2_nv nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

// One SSE event of the response to stream `id`, padded to `event_bytes` when that is larger.
std::string sse_event(int32_t id, int k, size_t event_bytes) {
  std::string e = "data: {\"stream\":" + std::to_string(id) + ",\"event\":" + std::to_string(k) + ",\"pad\":\"";
  const std::string tail = "\"}\n\n";
  if (event_bytes > e.size() + tail.size()) e.append(event_bytes - e.size() - tail.size(), 'x');
  return e + tail;
}

std::string sse_body(int32_t id, int events, size_t event_bytes) {
  std::string b;
  for (int k = 0; k < events; ++k) b += sse_event(id, k, event_bytes);
  return b;
}

std::string pattern_body(size_t n, unsigned seed) {
  std::string b(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    b[i] = static_cast<char>('a' + (x >> 24) % 26);
  }
  return b;
}

struct ResponseSpec {
  int status = 200;
  int events = 3;            ///< DATA frames (one event each, when the windows allow)
  size_t event_bytes = 0;    ///< 0: short events
  bool informational = false;  ///< a 100 (Continue) HEADERS frame first
  bool trailers = false;       ///< END_STREAM on a trailing HEADERS frame
  int pad_headers = 0;         ///< this many extra 1000-byte header fields (x-pad-N)

  ResponseSpec with_status(int s) const { ResponseSpec r = *this; r.status = s; return r; }
  ResponseSpec with_informational() const { ResponseSpec r = *this; r.informational = true; return r; }
  ResponseSpec with_trailers() const { ResponseSpec r = *this; r.trailers = true; return r; }
};

ResponseSpec events(int n, size_t event_bytes = 0) {
  ResponseSpec r;
  r.events = n;
  r.event_bytes = event_bytes;
  return r;
}

struct ServerOptions {
  uint32_t max_concurrent_streams = 0;  ///< 0: not announced
  bool hold = false;                    ///< respond only when the test says so
  bool respond_on_headers = false;      ///< respond before the request body has arrived
  ResponseSpec response;

  ServerOptions held() const { ServerOptions o = *this; o.hold = true; return o; }
  ServerOptions max_streams(uint32_t n) const { ServerOptions o = *this; o.max_concurrent_streams = n; return o; }
  ServerOptions early() const { ServerOptions o = *this; o.respond_on_headers = true; return o; }
  ServerOptions answering(ResponseSpec r) const { ServerOptions o = *this; o.response = r; return o; }
};

struct ServerStream {
  std::map<std::string, std::string> headers;
  std::string body;
  bool request_complete = false;
  bool rst_received = false;
  uint32_t rst_code = 0;
  bool closed = false;
  // The response: `out` is sent one event per DATA frame (windows permitting).
  std::string out;
  std::vector<size_t> event_ends;
  size_t out_pos = 0;
  size_t next_event = 0;
  bool trailers = false;
};

// An nghttp2 server session that answers every request with a known SSE body.
class TestServer {
 public:
  explicit TestServer(ServerOptions o = {}) : o_(o) {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &TestServer::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, &TestServer::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &TestServer::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &TestServer::on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &TestServer::on_stream_close);
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_max_send_header_block_length(opt, 1 << 20);  // oversized responses are sent
    nghttp2_session_server_new2(&s_, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[1] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o_.max_concurrent_streams}};
    nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, iv, o_.max_concurrent_streams ? 1 : 0);
  }
  ~TestServer() { nghttp2_session_del(s_); }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  void respond(int32_t id) { respond(id, o_.response); }
  void respond(int32_t id, const ResponseSpec& spec) {
    ServerStream& st = streams[id];
    if (spec.informational) {
      std::vector<nghttp2_nv> info = {nv(":status", "100")};
      CHECK(nghttp2_submit_headers(s_, NGHTTP2_FLAG_NONE, id, nullptr, info.data(), info.size(), nullptr) >= 0);
    }
    for (int k = 0; k < spec.events; ++k) {
      st.out += sse_event(id, k, spec.event_bytes);
      st.event_ends.push_back(st.out.size());
    }
    st.trailers = spec.trailers;
    char status[8];
    std::snprintf(status, sizeof status, "%03d", spec.status);  // 31 goes out as "031"
    std::vector<nghttp2_nv> nva = {nv(":status", status), nv("content-type", "text/event-stream")};
    std::vector<std::string> pad_names;
    const std::string pad(1000, 'p');
    for (int i = 0; i < spec.pad_headers; ++i) pad_names.push_back("x-pad-" + std::to_string(i));
    for (const std::string& name : pad_names) nva.push_back(nv(name, pad));
    h2_data_provider body{};
    body.source.ptr = &st;
    body.read_callback = &TestServer::read_body;
    bool has_body = spec.events > 0 || spec.trailers;
    CHECK_EQ(server_submit_response(s_, id, nva.data(), nva.size(), has_body ? &body : nullptr), 0);
  }
  void reset(int32_t id, uint32_t code = NGHTTP2_INTERNAL_ERROR) {
    CHECK_EQ(nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, id, code), 0);
  }
  void set_max_streams(uint32_t n) {
    nghttp2_settings_entry iv[1] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, n}};
    CHECK_EQ(nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, iv, 1), 0);
  }
  void goaway(int32_t last_stream_id) {
    CHECK_EQ(nghttp2_submit_goaway(s_, NGHTTP2_FLAG_NONE, last_stream_id, NGHTTP2_NO_ERROR, nullptr, 0), 0);
  }

  void feed(const uint8_t* data, size_t n) {
    h2_ssize rv = server_mem_recv(s_, data, n);
    CHECK_EQ(rv, static_cast<h2_ssize>(n));
  }
  std::string drain() {
    std::string out;
    const uint8_t* p;
    h2_ssize n;
    while ((n = server_mem_send(s_, &p)) > 0) out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    CHECK(n == 0);
    return out;
  }

  size_t open_requests() const {
    size_t n = 0;
    for (const auto& [id, st] : streams) n += !st.closed;
    return n;
  }

  std::map<int32_t, ServerStream> streams;
  int32_t min_stream_window = INT32_MAX;      ///< smallest send window seen before a DATA frame
  int32_t min_connection_window = INT32_MAX;

 private:
  static TestServer& self(void* p) { return *static_cast<TestServer*>(p); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* f, void* p) {
    self(p).streams[f->hd.stream_id];
    return 0;
  }
  static int on_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* p) {
    self(p).streams[f->hd.stream_id].headers[std::string(reinterpret_cast<const char*>(name), namelen)] =
        std::string(reinterpret_cast<const char*>(value), valuelen);
    return 0;
  }
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* p) {
    TestServer& s = self(p);
    int32_t id = f->hd.stream_id;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
      s.streams[id].rst_received = true;
      s.streams[id].rst_code = f->rst_stream.error_code;
      return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end) s.streams[id].request_complete = true;
    if (s.o_.hold) return 0;
    if (s.o_.respond_on_headers ? f->hd.type == NGHTTP2_HEADERS : end) s.respond(id);
    return 0;
  }
  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t n, void* p) {
    self(p).streams[id].body.append(reinterpret_cast<const char*>(data), n);
    return 0;
  }
  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t, void* p) {
    self(p).streams[id].closed = true;
    return 0;
  }
  static h2_ssize read_body(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                            nghttp2_data_source* source, void* p) {
    TestServer& s = self(p);
    s.min_stream_window = std::min(s.min_stream_window, nghttp2_session_get_stream_remote_window_size(session, id));
    s.min_connection_window = std::min(s.min_connection_window, nghttp2_session_get_remote_window_size(session));
    ServerStream& st = *static_cast<ServerStream*>(source->ptr);
    size_t n = 0;
    if (st.next_event < st.event_ends.size()) {
      n = std::min(length, st.event_ends[st.next_event] - st.out_pos);
      std::memcpy(buf, st.out.data() + st.out_pos, n);
      st.out_pos += n;
      if (st.out_pos == st.event_ends[st.next_event]) ++st.next_event;
    }
    if (st.next_event == st.event_ends.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (st.trailers) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> t = {nv("x-done", "1")};
        CHECK_EQ(nghttp2_submit_trailer(session, id, t.data(), t.size()), 0);
      }
    }
    return static_cast<h2_ssize>(n);
  }

  ServerOptions o_;
  nghttp2_session* s_ = nullptr;
};

// Records every callback of one stream; `log` (shared) keeps the order of headers and endings.
struct Recorder final : StreamHandler {
  int32_t id = 0;
  int status = 0;
  int headers_calls = 0;
  int data_calls = 0;
  std::string body;
  int completions = 0;
  int failures = 0;
  ErrorKind failure = ErrorKind::kNone;
  int calls_after_end = 0;
  int64_t sent_ns = 0;  ///< on_request_sent
  int sent_calls = 0;
  std::vector<std::string>* log = nullptr;
  std::function<void(Recorder&)> on_data;      ///< test hook, after the bytes are stored
  std::function<void(Recorder&)> on_complete;  ///< test hook
  std::function<void(Recorder&)> on_failed;    ///< test hook

  bool ended() const { return completions + failures > 0; }
  void note(const std::string& what) {
    if (log) log->push_back(std::to_string(id) + " " + what);
  }
  void on_request_sent(int64_t now) override {
    sent_ns = now;
    ++sent_calls;
  }
  void on_response_headers(int s, int64_t) override {
    calls_after_end += ended();
    status = s;
    ++headers_calls;
    note("headers " + std::to_string(s));
  }
  void on_response_data(const char* d, size_t n, int64_t) override {
    calls_after_end += ended();
    ++data_calls;
    body.append(d, n);
    if (on_data) on_data(*this);
  }
  void on_response_complete(int64_t) override {
    calls_after_end += ended();
    ++completions;
    note("complete");
    if (on_complete) on_complete(*this);
  }
  void on_stream_failed(ErrorKind k, int64_t) override {
    calls_after_end += ended();
    ++failures;
    failure = k;
    note(std::string("failed ") + to_string(k));
    if (on_failed) on_failed(*this);
  }
};

// Moves bytes between a client session and the test server until neither has anything to say.
struct Pump {
  Session& client;
  TestServer& server;
  bool one_byte = false;                 ///< server->client bytes fed one at a time
  size_t client_write_bytes = SIZE_MAX;  ///< at most this much taken per pending_output()
  int64_t now = 0;
  bool read_ok = true;  ///< false once client.on_read() asked for the connection to close
  int rounds = 0;

  bool client_to_server() {
    bool moved = false;
    iovec iov[8];
    size_t n;
    while ((n = client.pending_output(iov, 8)) > 0) {
      size_t taken = 0;
      for (size_t i = 0; i < n && taken < client_write_bytes; ++i) {
        size_t k = std::min(iov[i].iov_len, client_write_bytes - taken);
        server.feed(static_cast<const uint8_t*>(iov[i].iov_base), k);
        taken += k;
      }
      client.consumed_output(taken);
      moved = true;
    }
    return moved;
  }

  bool server_to_client() {
    if (!read_ok) return false;
    std::string bytes = server.drain();
    if (bytes.empty()) return false;
    if (one_byte) {
      for (size_t i = 0; i < bytes.size() && read_ok; ++i) read_ok = client.on_read(&bytes[i], 1, ++now);
    } else {
      read_ok = client.on_read(bytes.data(), bytes.size(), ++now);
    }
    return true;
  }

  void run() {
    for (;;) {
      bool moved = client_to_server();
      moved |= server_to_client();
      if (!moved) return;
      if (++rounds > 100000) {
        CHECK_MSG(false, "the pump does not settle");
        return;
      }
    }
  }
};

RequestHead head(uint64_t content_length, std::string_view authorization = "Bearer sk-test") {
  RequestHead h;
  h.path = "/v1/chat/completions";
  h.authority = "127.0.0.1:8000";
  h.authorization = authorization;
  h.content_length = content_length;
  return h;
}

// A request body with its slice, kept alive beside the stream.
struct Body {
  explicit Body(std::string s) : text(std::move(s)), slice{text.data(), text.size()} {}
  std::string text;
  iovec slice;
};

int32_t submit(Session& c, Body& b, Recorder& r) {
  int32_t id = c.submit(head(b.text.size()), &b.slice, 1, &r);
  r.id = id;
  return id;
}

void check_complete(const Recorder& r, int status, const std::string& body) {
  CHECK_EQ(r.status, status);
  CHECK_EQ(r.headers_calls, 1);
  CHECK_EQ(r.completions, 1);
  CHECK_EQ(r.failures, 0);
  CHECK_EQ(r.calls_after_end, 0);
  CHECK_MSG(r.body == body, "stream " << r.id << ": body of " << r.body.size() << " bytes, want " << body.size());
}

void check_failed(const Recorder& r, ErrorKind kind) {
  CHECK_EQ(r.completions, 0);
  CHECK_EQ(r.failures, 1);
  CHECK_EQ(to_string(r.failure), to_string(kind));
  CHECK_EQ(r.calls_after_end, 0);
}

void check_silent(const Recorder& r) {
  CHECK_EQ(r.headers_calls, 0);
  CHECK_EQ(r.data_calls, 0);
  CHECK_EQ(r.completions, 0);
  CHECK_EQ(r.failures, 0);
}

TEST(h2_single_stream_headers_and_body) {
  TestServer server(ServerOptions().answering(events(5)));
  auto c = make_http2_session({}, false);
  CHECK(c->protocol() == Protocol::kHttp2);
  c->on_connected();
  Body body(R"({"model":"m","stream":true,"messages":[]})");
  Recorder r;
  CHECK(c->can_submit());
  const int64_t before_submit = now_ns();
  CHECK_EQ(submit(*c, body, r), 1);
  CHECK_EQ(c->active_streams(), 1u);
  // The request's time is when its HEADERS go into a write, not when it was submitted.
  CHECK_EQ(r.sent_calls, 0);
  const int64_t before_write = now_ns();
  Pump p{*c, server};
  p.run();
  CHECK(p.read_ok);
  CHECK_EQ(r.sent_calls, 1);
  CHECK(before_submit <= before_write && before_write <= r.sent_ns && r.sent_ns <= now_ns());
  check_complete(r, 200, sse_body(1, 5, 0));
  CHECK_EQ(r.data_calls, 5);  // one call per DATA frame: straight from the frame, no reassembly
  CHECK_EQ(c->active_streams(), 0u);
  CHECK(c->reusable());
  CHECK(c->can_submit());
  const ServerStream& s = server.streams[1];
  CHECK_EQ(s.headers.at(":method"), "POST");
  CHECK_EQ(s.headers.at(":scheme"), "http");
  CHECK_EQ(s.headers.at(":authority"), "127.0.0.1:8000");
  CHECK_EQ(s.headers.at(":path"), "/v1/chat/completions");
  CHECK_EQ(s.headers.at("content-type"), "application/json");
  CHECK_EQ(s.headers.at("accept"), "text/event-stream");
  CHECK_EQ(s.headers.at("content-length"), std::to_string(body.text.size()));
  CHECK_EQ(s.headers.at("authorization"), "Bearer sk-test");
  CHECK(s.request_complete);
  CHECK_EQ(s.body, body.text);
}

TEST(h2_tls_scheme_and_no_authorization) {
  TestServer server;
  auto c = make_http2_session({}, true);
  c->on_connected();
  Body body("{}");
  Recorder r;
  CHECK_EQ(c->submit(head(2, ""), &body.slice, 1, &r), 1);
  Pump p{*c, server};
  p.run();
  check_complete(r, 200, sse_body(1, 3, 0));
  CHECK_EQ(server.streams[1].headers.at(":scheme"), "https");
  CHECK_EQ(server.streams[1].headers.count("authorization"), 0u);
}

TEST(h2_empty_body_request) {
  TestServer server;
  auto c = make_http2_session({}, false);
  c->on_connected();
  Recorder r;
  CHECK_EQ(c->submit(head(0), nullptr, 0, &r), 1);
  Pump p{*c, server};
  p.run();
  check_complete(r, 200, sse_body(1, 3, 0));
  CHECK_EQ(server.streams[1].headers.at("content-length"), "0");
  CHECK(server.streams[1].body.empty());
}

TEST(h2_hundred_concurrent_streams) {
  TestServer server(ServerOptions().held().answering(events(4)));
  auto c = make_http2_session({}, false);
  c->on_connected();
  std::vector<std::unique_ptr<Body>> bodies;
  std::vector<Recorder> rec(100);
  for (int i = 0; i < 100; ++i) {
    CHECK(c->can_submit());
    bodies.push_back(std::make_unique<Body>(pattern_body(100 + static_cast<size_t>(i) * 37, i)));
    CHECK_EQ(submit(*c, *bodies.back(), rec[i]), 2 * i + 1);
  }
  CHECK(!c->can_submit());  // stream_limit (100), also nghttp2's default before the peer's SETTINGS
  Recorder extra;
  CHECK_EQ(c->submit(head(0), nullptr, 0, &extra), -1);
  CHECK_EQ(c->active_streams(), 100u);
  Pump p{*c, server};
  p.run();
  CHECK_EQ(server.open_requests(), 100u);  // all open at once on the server
  for (int i = 0; i < 100; ++i) {
    const ServerStream& s = server.streams[2 * i + 1];
    CHECK(s.request_complete);
    CHECK(s.body == bodies[i]->text);
    server.respond(2 * i + 1);
  }
  p.run();
  for (int i = 0; i < 100; ++i) check_complete(rec[i], 200, sse_body(2 * i + 1, 4, 0));
  CHECK_EQ(c->active_streams(), 0u);
  CHECK(c->can_submit());
  check_silent(extra);
}

TEST(h2_large_request_bodies_respect_server_window) {
  // The server keeps nghttp2's default 64 KiB windows: the client must wait for WINDOW_UPDATEs.
  TestServer server;
  auto c = make_http2_session({}, false);
  c->on_connected();
  std::string text = pattern_body(200 * 1024, 7);
  // Three requests, each body in three uneven slices (one empty).
  iovec slices[4] = {{text.data(), 1}, {text.data() + 1, 100000}, {text.data() + 100001, 0},
                     {text.data() + 100001, text.size() - 100001}};
  Recorder rec[3];
  for (int i = 0; i < 3; ++i) {
    rec[i].id = c->submit(head(text.size()), slices, 4, &rec[i]);
    CHECK_EQ(rec[i].id, 2 * i + 1);
  }
  Pump p{*c, server};
  p.client_write_bytes = 1000;  // short writes: consumed_output() in small steps
  p.run();
  for (int i = 0; i < 3; ++i) {
    const ServerStream& s = server.streams[2 * i + 1];
    CHECK(s.request_complete);
    CHECK_EQ(s.body.size(), text.size());
    CHECK(s.body == text);
    check_complete(rec[i], 200, sse_body(2 * i + 1, 3, 0));
  }
  CHECK(p.rounds > 3);  // it did take WINDOW_UPDATE round trips
}

TEST(h2_long_response_does_not_stall_on_client_windows) {
  // 5000 events of 1 KiB: ~5 MB, more than any default window.
  TestServer server(ServerOptions().answering(events(5000, 1024)));
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder r;
  submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  check_complete(r, 200, sse_body(1, 5000, 1024));
  // Our SETTINGS (16 MiB stream window) and connection WINDOW_UPDATE (1 GiB) arrived before the
  // response: the server's send windows never came near zero.
  CHECK(server.min_stream_window > (8 << 20));
  CHECK(server.min_connection_window > (512 << 20));
  CHECK(p.rounds <= 3);
}

TEST(h2_long_response_with_small_windows_updates_them) {
  // With 64 KiB windows the server stalls unless the client keeps sending WINDOW_UPDATEs.
  TestServer server(ServerOptions().answering(events(5000, 1024)));
  SessionOptions o;
  o.stream_window_bytes = 65535;
  o.connection_window_bytes = 65535;
  auto c = make_http2_session(o, false);
  c->on_connected();
  Body body("{}");
  Recorder r;
  submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  check_complete(r, 200, sse_body(1, 5000, 1024));
  CHECK(p.rounds > 10);
}

TEST(h2_server_reset_fails_only_that_stream) {
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder rec[3];
  for (auto& r : rec) submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  server.reset(3);
  server.respond(1);
  server.respond(5);
  p.run();
  check_complete(rec[0], 200, sse_body(1, 3, 0));
  check_failed(rec[1], ErrorKind::kReset);
  check_complete(rec[2], 200, sse_body(5, 3, 0));
  CHECK(c->reusable());
  CHECK_EQ(c->active_streams(), 0u);
  CHECK(p.read_ok);
}

TEST(h2_headers_only_response_completes) {
  TestServer server(ServerOptions().answering(events(0)));
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder r;
  submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  check_complete(r, 200, "");  // END_STREAM on the HEADERS frame
}

TEST(h2_server_reset_mid_response) {
  // Small client windows: the server sends 64 KiB, then stalls until our WINDOW_UPDATE arrives;
  // it resets the stream before that.
  TestServer server(ServerOptions().held());
  SessionOptions o;
  o.stream_window_bytes = 65535;
  o.connection_window_bytes = 65535;
  auto c = make_http2_session(o, false);
  c->on_connected();
  Body body("{}");
  Recorder r;
  submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  server.respond(1, events(1000, 1024));
  p.server_to_client();
  CHECK_EQ(r.status, 200);
  CHECK(r.body.size() >= 60000u);
  CHECK(r.body.size() <= 65535u);
  server.reset(1, NGHTTP2_CANCEL);
  p.run();
  check_failed(r, ErrorKind::kReset);
  CHECK(c->reusable());
  CHECK_EQ(c->active_streams(), 0u);
}

TEST(h2_goaway_lets_lower_streams_finish) {
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder rec[5];
  for (auto& r : rec) submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  CHECK_EQ(server.open_requests(), 5u);
  server.goaway(5);
  for (int32_t id : {1, 3, 5}) server.respond(id);
  p.run();
  check_complete(rec[0], 200, sse_body(1, 3, 0));
  check_complete(rec[1], 200, sse_body(3, 3, 0));
  check_complete(rec[2], 200, sse_body(5, 3, 0));
  check_failed(rec[3], ErrorKind::kReset);
  check_failed(rec[4], ErrorKind::kReset);
  CHECK(!c->reusable());
  CHECK(!c->can_submit());
  Recorder late;
  CHECK_EQ(c->submit(head(0), nullptr, 0, &late), -1);
  CHECK_EQ(c->active_streams(), 0u);
  CHECK(!p.read_ok);  // GOAWAY and nothing left: the connection is done
}

TEST(h2_goaway_fails_streams_not_yet_written) {
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder rec[3];
  submit(*c, body, rec[0]);
  submit(*c, body, rec[1]);
  Pump p{*c, server};
  p.run();
  CHECK_EQ(submit(*c, body, rec[2]), 5);  // queued in the client, HEADERS not yet written
  server.goaway(3);
  server.respond(1);
  server.respond(3);
  p.server_to_client();  // the GOAWAY arrives before stream 5 leaves the client
  check_failed(rec[2], ErrorKind::kReset);
  p.run();
  check_complete(rec[0], 200, sse_body(1, 3, 0));
  check_complete(rec[1], 200, sse_body(3, 3, 0));
  CHECK_EQ(rec[2].failures, 1);
  CHECK_EQ(server.streams.count(5), 0u);  // never sent
  CHECK(!c->reusable());
  CHECK_EQ(c->active_streams(), 0u);
}

TEST(h2_goaway_fails_requests_held_back_by_peer_limit) {
  // Six requests queued; the server lowers MAX_CONCURRENT_STREAMS to 2 before they are written,
  // so nghttp2 writes two and holds four. A GOAWAY must fail those four at once, not when a slot
  // frees up.
  TestServer server(ServerOptions().max_streams(10).held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Pump p{*c, server};
  p.run();  // handshake
  Body body("{}");
  Recorder rec[6];
  for (auto& r : rec) submit(*c, body, r);
  server.set_max_streams(2);
  p.server_to_client();
  p.client_to_server();
  CHECK_EQ(server.open_requests(), 2u);
  server.goaway(3);
  p.server_to_client();
  for (int i = 2; i < 6; ++i) check_failed(rec[i], ErrorKind::kReset);
  CHECK_EQ(c->active_streams(), 2u);
  server.respond(1);
  server.respond(3);
  p.run();
  check_complete(rec[0], 200, sse_body(1, 3, 0));
  check_complete(rec[1], 200, sse_body(3, 3, 0));
  for (int i = 2; i < 6; ++i) CHECK_EQ(rec[i].failures, 1);
  CHECK_EQ(server.streams.size(), 2u);  // the held requests never left
  CHECK(!p.read_ok);
}

TEST(h2_graceful_goaway_then_final_goaway) {
  // Shutdown as servers do it: GOAWAY(2^31-1) first, then the real last stream id.
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder rec[2];
  for (auto& r : rec) submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  server.goaway(INT32_MAX);
  p.run();
  CHECK(!c->reusable());
  CHECK_EQ(c->active_streams(), 2u);
  server.goaway(1);
  server.respond(1);
  p.run();
  check_complete(rec[0], 200, sse_body(1, 3, 0));
  check_failed(rec[1], ErrorKind::kReset);
}

TEST(h2_respects_server_max_concurrent_streams) {
  TestServer server(ServerOptions().max_streams(10).held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Pump p{*c, server};
  p.run();  // handshake: the server's SETTINGS arrive
  Body body("{}");
  std::vector<Recorder> rec(14);
  size_t n = 0;
  while (n < std::size(rec) && c->can_submit()) submit(*c, body, rec[n++]);
  CHECK_EQ(n, 10u);
  p.run();
  CHECK_EQ(server.open_requests(), 10u);
  server.respond(1);
  server.respond(3);
  p.run();
  while (n < std::size(rec) && c->can_submit()) submit(*c, body, rec[n++]);
  CHECK_EQ(n, 12u);
  p.run();
  for (size_t i = 2; i < n; ++i) server.respond(rec[i].id);
  p.run();
  for (size_t i = 0; i < n; ++i) check_complete(rec[i], 200, sse_body(rec[i].id, 3, 0));
}

TEST(h2_stream_limit_below_peer_limit) {
  TestServer server(ServerOptions().max_streams(10));
  SessionOptions o;
  o.stream_limit = 4;
  auto c = make_http2_session(o, false);
  c->on_connected();
  Pump p{*c, server};
  p.run();
  Body body("{}");
  Recorder rec[5];
  size_t n = 0;
  while (n < std::size(rec) && c->can_submit()) submit(*c, body, rec[n++]);
  CHECK_EQ(n, 4u);
}

TEST(h2_abandon_sends_rst_and_silences_stream) {
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder rec[2];
  for (auto& r : rec) submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  c->abandon(1);
  CHECK_EQ(c->active_streams(), 1u);
  c->abandon(1);  // twice: no-op
  p.run();
  CHECK(server.streams[1].rst_received);
  CHECK_EQ(server.streams[1].rst_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  server.respond(3);
  p.run();
  check_silent(rec[0]);
  check_complete(rec[1], 200, sse_body(3, 3, 0));
  CHECK(c->reusable());
  CHECK(c->can_submit());
}

TEST(h2_abandon_from_inside_data_callback) {
  TestServer server(ServerOptions().answering(events(50, 100)));
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder rec[2];
  rec[0].on_data = [&](Recorder& r) { c->abandon(r.id); };
  for (auto& r : rec) submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  CHECK_EQ(rec[0].data_calls, 1);
  CHECK_EQ(rec[0].completions + rec[0].failures, 0);
  check_complete(rec[1], 200, sse_body(3, 50, 100));
  CHECK(server.streams[1].rst_received);
  CHECK_EQ(c->active_streams(), 0u);
  CHECK(c->reusable());
}

TEST(h2_abandon_before_headers_are_written) {
  TestServer server;
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder r1, r2;
  CHECK_EQ(submit(*c, body, r1), 1);
  c->abandon(1);
  CHECK_EQ(c->active_streams(), 0u);
  CHECK_EQ(submit(*c, body, r2), 3);
  Pump p{*c, server};
  p.run();
  CHECK_EQ(server.streams.count(1), 0u);  // the request never left
  check_silent(r1);
  check_complete(r2, 200, sse_body(3, 3, 0));
}

TEST(h2_early_response_stops_reading_the_body) {
  // The server answers on HEADERS; the client completes and drops (here: frees) the body while
  // it is still being sent. ASan catches any later read of it.
  TestServer server(ServerOptions().early());
  auto c = make_http2_session({}, false);
  c->on_connected();
  auto text = std::make_unique<std::string>(pattern_body(300 * 1024, 3));
  iovec slice{text->data(), text->size()};
  Recorder r;
  r.on_complete = [&](Recorder&) { text.reset(); };
  CHECK_EQ(c->submit(head(slice.iov_len), &slice, 1, &r), 1);
  Pump p{*c, server};
  p.run();
  check_complete(r, 200, sse_body(1, 3, 0));
  CHECK(text == nullptr);
  CHECK(server.streams[1].closed);
  CHECK(!server.streams[1].request_complete);
  CHECK(server.streams[1].body.size() < 300u * 1024);
  // The connection is still good.
  Body body("{}");
  Recorder r2;
  CHECK(c->can_submit());
  submit(*c, body, r2);
  p.run();
  check_complete(r2, 200, sse_body(3, 3, 0));
}

TEST(h2_non_2xx_informational_and_trailers) {
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder rec[3];
  for (auto& r : rec) submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  server.respond(1, events(1).with_status(503));
  server.respond(3, events(2).with_informational());
  server.respond(5, events(2).with_trailers());
  p.run();
  check_complete(rec[0], 503, sse_body(1, 1, 0));
  check_complete(rec[1], 200, sse_body(3, 2, 0));  // 100 is not reported
  check_complete(rec[2], 200, sse_body(5, 2, 0));
}

TEST(h2_status_below_100_fails_only_that_stream) {
  // ":status: 031" has three digits, so nghttp2 lets it through as a final status and hands its DATA
  // on; HTTP has no such status. That stream fails as a protocol error, hearing no headers or data
  // (found by fuzzing), and the connection goes on.
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder r1, r2;
  int32_t id1 = submit(*c, body, r1);
  int32_t id2 = submit(*c, body, r2);
  Pump p{*c, server};
  p.run();
  server.respond(id1, events(2).with_status(31));
  server.respond(id2, events(2));
  p.run();
  check_failed(r1, ErrorKind::kProtocol);
  CHECK_EQ(r1.headers_calls, 0);
  CHECK_EQ(r1.data_calls, 0);
  CHECK(server.streams[id1].rst_received);
  check_complete(r2, 200, sse_body(id2, 2, 0));
  CHECK(p.read_ok && c->reusable());
}

TEST(h2_on_close_fails_streams_in_flight) {
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder rec[3];
  for (auto& r : rec) submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  // A handler that abandons another stream from its own failure callback: that one hears nothing.
  rec[1].on_failed = [&](Recorder&) { c->abandon(rec[2].id); };
  c->on_close(ErrorKind::kTruncated, 99);
  check_failed(rec[0], ErrorKind::kTruncated);
  check_failed(rec[1], ErrorKind::kTruncated);
  check_silent(rec[2]);
  CHECK(!c->reusable());
  CHECK(!c->can_submit());
  CHECK_EQ(c->active_streams(), 0u);
  c->on_close(ErrorKind::kReset, 100);  // again: nothing more
  CHECK_EQ(rec[0].failures, 1);
}

TEST(h2_not_http2_peer_is_a_protocol_error) {
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder r;
  submit(*c, body, r);
  iovec iov[4];
  size_t n;
  while ((n = c->pending_output(iov, 4)) > 0) c->consumed_output(iov[0].iov_len);
  const std::string reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
  CHECK(!c->on_read(reply.data(), reply.size(), 1));
  check_failed(r, ErrorKind::kProtocol);
  CHECK(!c->reusable());
  CHECK(!c->on_read(reply.data(), reply.size(), 2));
}

TEST(h2_connection_error_is_a_protocol_error) {
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  Body body("{}");
  Recorder r;
  submit(*c, body, r);
  Pump p{*c, server};
  p.run();
  // A DATA frame on stream 0: a connection error; nghttp2 answers with its own GOAWAY.
  const char frame[9] = {0, 0, 0, 0 /*DATA*/, 0, 0, 0, 0, 0};
  CHECK(!c->on_read(frame, sizeof frame, 5));
  check_failed(r, ErrorKind::kProtocol);
  CHECK(!c->reusable());
  CHECK_EQ(c->active_streams(), 0u);
}

// A mixed scenario, run with the server's bytes in one piece per round or one byte at a time.
std::string run_scenario(bool one_byte) {
  TestServer server(ServerOptions().held());
  auto c = make_http2_session({}, false);
  c->on_connected();
  std::vector<std::string> log;
  std::vector<std::unique_ptr<Body>> bodies;
  std::vector<Recorder> rec(7);
  for (size_t i = 0; i < rec.size(); ++i) {
    bodies.push_back(std::make_unique<Body>(pattern_body(i == 2 ? 100 * 1024 : 50 + i, static_cast<unsigned>(i))));
    rec[i].log = &log;
    submit(*c, *bodies.back(), rec[i]);
  }
  Pump p{*c, server, one_byte};
  p.run();
  server.respond(1, events(20, 300));
  server.respond(3, events(1).with_status(503));
  server.reset(5);
  server.respond(7, events(3).with_trailers());
  server.respond(9, events(2).with_informational());
  server.respond(11, events(200, 1000));
  server.goaway(11);
  p.run();
  std::string out;
  for (const Recorder& r : rec) {
    out += std::to_string(r.id) + ": status " + std::to_string(r.status) + " headers " +
           std::to_string(r.headers_calls) + " complete " + std::to_string(r.completions) + " failed " +
           std::to_string(r.failures) + " " + to_string(r.failure) + " after " + std::to_string(r.calls_after_end) +
           " body " + std::to_string(r.body.size()) + " " + std::to_string(std::hash<std::string>{}(r.body)) + "\n";
  }
  for (const std::string& l : log) out += l + "\n";
  out += c->reusable() ? "reusable\n" : "not reusable\n";
  out += p.read_ok ? "open\n" : "done\n";
  // The expectations themselves, not just agreement between the two modes.
  check_complete(rec[0], 200, sse_body(1, 20, 300));
  check_complete(rec[1], 503, sse_body(3, 1, 0));
  check_failed(rec[2], ErrorKind::kReset);
  check_complete(rec[3], 200, sse_body(7, 3, 0));
  check_complete(rec[4], 200, sse_body(9, 2, 0));
  check_complete(rec[5], 200, sse_body(11, 200, 1000));
  check_failed(rec[6], ErrorKind::kReset);  // stream 13: above GOAWAY's last stream id
  CHECK(!c->reusable());
  return out;
}

TEST(h2_byte_split_gives_identical_results) {
  std::string whole = run_scenario(false);
  std::string bytewise = run_scenario(true);
  CHECK_MSG(whole == bytewise, "\n--- whole ---\n" << whole << "--- one byte at a time ---\n" << bytewise);
}

}  // namespace

TEST(h2_get_with_request_id_extra_headers_and_response_headers) {
  TestServer server;
  auto c = make_http2_session({}, false);
  c->on_connected();
  struct HeaderRecorder final : StreamHandler {
    std::vector<std::pair<std::string, std::string>> fields;
    int status = 0, completions = 0;
    bool wants_headers() const override { return true; }
    void on_response_header(std::string_view n, std::string_view v) override { fields.emplace_back(n, v); }
    void on_response_headers(int s, int64_t) override { status = s; }
    void on_response_data(const char*, size_t, int64_t) override {}
    void on_response_complete(int64_t) override { ++completions; }
    void on_stream_failed(ErrorKind, int64_t) override {}
  } r;
  const HeaderField extra[] = {{"x-extra", "1"}, {"accept", "application/json"}};
  RequestHead h;
  h.method = "GET";
  h.path = "/v1/models";
  h.authority = "127.0.0.1:8000";
  h.request_id = "00000000000000ab";
  h.json_stream = false;
  h.headers = extra;
  h.header_count = 2;
  CHECK_EQ(c->submit(h, nullptr, 0, &r), 1);
  Pump p{*c, server};
  p.run();
  CHECK_EQ(r.status, 200);
  CHECK_EQ(r.completions, 1);
  const ServerStream& s = server.streams[1];
  CHECK_EQ(s.headers.at(":method"), "GET");
  CHECK_EQ(s.headers.at("x-request-id"), "00000000000000ab");
  CHECK_EQ(s.headers.at("x-extra"), "1");
  CHECK_EQ(s.headers.at("accept"), "application/json");
  CHECK_EQ(s.headers.count("content-length"), 0u);  // an empty GET carries none
  CHECK_EQ(s.headers.count("content-type"), 0u);
  bool pseudo = false;
  for (const auto& f : r.fields) pseudo |= !f.first.empty() && f.first[0] == ':';
  CHECK(!pseudo);  // :status is reported as the status, not as a field
  CHECK_EQ(r.fields.size(), size_t{1});
  if (!r.fields.empty()) CHECK_EQ(r.fields[0].first + "=" + r.fields[0].second, "content-type=text/event-stream");
}

TEST(h2_oversized_response_headers_fail_only_that_stream) {
  // 80 header fields of 1000 bytes: past the 64 KiB bound (as HTTP/1.1's parser): that stream fails
  // as oversized, the connection and the other streams go on.
  TestServer server(ServerOptions{}.held());
  auto client = make_http2_session(SessionOptions{}, false);
  client->on_connected();
  Pump pump{*client, server};
  Body b1("{\"a\":1}"), b2("{\"b\":2}");
  Recorder r1, r2;
  int32_t id1 = submit(*client, b1, r1);
  int32_t id2 = submit(*client, b2, r2);
  pump.run();
  ResponseSpec big = events(2);
  big.pad_headers = 80;
  server.respond(id1, big);
  pump.run();
  check_failed(r1, ErrorKind::kOversized);
  CHECK_EQ(r1.headers_calls, 0);
  CHECK(server.streams[id1].rst_received);
  server.respond(id2, events(2));
  pump.run();
  check_complete(r2, 200, sse_body(id2, 2, 0));
  CHECK(pump.read_ok && client->reusable());
  // Just under the bound (60 fields): fine.
  Body b3("{\"c\":3}");
  Recorder r3;
  int32_t id3 = submit(*client, b3, r3);
  pump.run();
  ResponseSpec fits = events(1);
  fits.pad_headers = 60;
  server.respond(id3, fits);
  pump.run();
  check_complete(r3, 200, sse_body(id3, 1, 0));
}
