#include "sim/sim_http2.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "agentperf/clock.h"

namespace agentperf {

namespace {

// nghttp2 1.60 renamed the ssize_t entry points (the old ones are deprecated there).
#if NGHTTP2_VERSION_NUM >= 0x013c00
using sim_h2_ssize = nghttp2_ssize;
using sim_h2_data_provider = nghttp2_data_provider2;
inline sim_h2_ssize sim_h2_mem_recv(nghttp2_session* s, const uint8_t* in, size_t n) {
  return nghttp2_session_mem_recv2(s, in, n);
}
inline sim_h2_ssize sim_h2_mem_send(nghttp2_session* s, const uint8_t** out) { return nghttp2_session_mem_send2(s, out); }
inline int sim_h2_submit_response(nghttp2_session* s, int32_t id, const nghttp2_nv* nva, size_t n,
                                  const sim_h2_data_provider* body) {
  return nghttp2_submit_response2(s, id, nva, n, body);
}
#else
using sim_h2_ssize = ssize_t;
using sim_h2_data_provider = nghttp2_data_provider;
inline sim_h2_ssize sim_h2_mem_recv(nghttp2_session* s, const uint8_t* in, size_t n) {
  return nghttp2_session_mem_recv(s, in, n);
}
inline sim_h2_ssize sim_h2_mem_send(nghttp2_session* s, const uint8_t** out) { return nghttp2_session_mem_send(s, out); }
inline int sim_h2_submit_response(nghttp2_session* s, int32_t id, const nghttp2_nv* nva, size_t n,
                                  const sim_h2_data_provider* body) {
  return nghttp2_submit_response(s, id, nva, n, body);
}
#endif

constexpr size_t kMaxRequestBodyBytes = 64 * 1024 * 1024;
constexpr uint32_t kMaxConcurrentStreams = 4096;
constexpr int32_t kWindowBytes = 1 << 24;

nghttp2_nv header(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

// One request stream; the responder of its exchange.
struct SimHttp2Session::Stream final : SimResponder {
  SimHttp2Session& session;
  const int32_t id;
  std::string method, path, body;
  uint64_t request_id = 0;  ///< x-request-id, parsed
  SimExchange* exchange = nullptr;  ///< set while the exchange runs
  std::string out;                  ///< response body bytes not yet taken by nghttp2
  size_t out_off = 0;
  bool eof = false, deferred = false, responded = false;

  Stream(SimHttp2Session& s, int32_t stream_id) : session(s), id(stream_id) {}

  void respond_head(int status, const char*, const char* content_type, int64_t content_length) override {
    if (session.dead_) return;
    std::string status_s = std::to_string(status), length_s = std::to_string(content_length);
    std::vector<nghttp2_nv> nva{header(":status", status_s), header("content-type", content_type)};
    if (content_length >= 0) nva.push_back(header("content-length", length_s));
    if (content_length < 0) nva.push_back(header("cache-control", "no-cache"));
    sim_h2_data_provider provider{};
    provider.source.ptr = this;
    provider.read_callback = &read_cb;
    responded = true;
    if (sim_h2_submit_response(session.s_, id, nva.data(), nva.size(), &provider) != 0) {
      nghttp2_submit_rst_stream(session.s_, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
    }
    session.pump();
  }

  void respond_body(std::string_view bytes) override {
    if (session.dead_) return;
    out.append(bytes);
    resume();
  }

  void respond_end() override {
    exchange = nullptr;
    if (session.dead_) return;
    eof = true;
    resume();
  }

  void respond_reset() override {
    exchange = nullptr;
    if (session.dead_) return;
    nghttp2_submit_rst_stream(session.s_, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
    session.pump();
  }

  void respond_truncate() override {
    exchange = nullptr;
    if (session.dead_) return;
    session.transport_.h2_close();  // aborts the other streams' exchanges through abort_all()
  }

  void resume() {
    if (deferred) {
      deferred = false;
      nghttp2_session_resume_data(session.s_, id);
    }
    session.pump();
  }

  static sim_h2_ssize read_cb(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                              nghttp2_data_source* source, void*) {
    Stream& st = *static_cast<Stream*>(source->ptr);
    size_t n = std::min(length, st.out.size() - st.out_off);
    if (n > 0) std::memcpy(buf, st.out.data() + st.out_off, n);
    st.out_off += n;
    if (st.out_off == st.out.size()) {
      st.out.clear();
      st.out_off = 0;
      if (st.eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
      } else if (n == 0) {
        st.deferred = true;
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<sim_h2_ssize>(n);
  }
};

SimHttp2Session::Stream* SimHttp2Session::stream_of(nghttp2_session* s, int32_t id) {
  return static_cast<Stream*>(nghttp2_session_get_stream_user_data(s, id));
}

SimHttp2Session::SimHttp2Session(SimExchangePool& pool, SimHttp2Transport& transport)
    : pool_(pool), transport_(transport) {
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) throw std::runtime_error("nghttp2: out of memory");

  nghttp2_session_callbacks_set_on_begin_headers_callback(
      cb, [](nghttp2_session* s, const nghttp2_frame* frame, void* user) -> int {
        auto& self = *static_cast<SimHttp2Session*>(user);
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
        auto st = std::make_unique<Stream>(self, frame->hd.stream_id);
        nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, st.get());
        self.streams_[frame->hd.stream_id] = std::move(st);
        return 0;
      });
  nghttp2_session_callbacks_set_on_header_callback(
      cb, [](nghttp2_session* s, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
             const uint8_t* value, size_t valuelen, uint8_t, void*) -> int {
        if (frame->hd.type != NGHTTP2_HEADERS) return 0;
        Stream* st = stream_of(s, frame->hd.stream_id);
        if (st == nullptr) return 0;
        std::string_view n(reinterpret_cast<const char*>(name), namelen);
        std::string_view v(reinterpret_cast<const char*>(value), valuelen);
        if (n == ":method") st->method = v;
        if (n == ":path") st->path = v.substr(0, v.find('?'));
        if (n == "x-request-id") st->request_id = parse_request_id(v);
        return 0;
      });
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      cb, [](nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len, void*) -> int {
        Stream* st = stream_of(s, id);
        if (st == nullptr) return 0;
        if (st->body.size() + len > kMaxRequestBodyBytes) {
          nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
          return 0;
        }
        st->body.append(reinterpret_cast<const char*>(data), len);
        return 0;
      });
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      cb, [](nghttp2_session* s, const nghttp2_frame* frame, void* user) -> int {
        auto& self = *static_cast<SimHttp2Session*>(user);
        if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
            !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
          return 0;
        Stream* st = stream_of(s, frame->hd.stream_id);
        if (st == nullptr || st->responded || st->exchange != nullptr) return 0;
        SimExchange* ex = self.pool_.acquire();
        st->exchange = ex;
        ex->start(st, st->method, st->path, st->body, now_ns(), st->request_id);
        std::string().swap(st->body);
        return 0;
      });
  nghttp2_session_callbacks_set_on_stream_close_callback(
      cb, [](nghttp2_session*, int32_t id, uint32_t, void* user) -> int {
        auto& self = *static_cast<SimHttp2Session*>(user);
        auto it = self.streams_.find(id);
        if (it == self.streams_.end()) return 0;
        std::unique_ptr<Stream> st = std::move(it->second);
        self.streams_.erase(it);
        if (st->exchange != nullptr) st->exchange->abort();  // the client reset it, or it was refused
        return 0;
      });

  int rv = nghttp2_session_server_new(&s_, cb, this);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) throw std::runtime_error(std::string("nghttp2: ") + nghttp2_strerror(rv));
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
                                       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kWindowBytes}};
  nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(s_, NGHTTP2_FLAG_NONE, 0, kWindowBytes);
}

SimHttp2Session::~SimHttp2Session() {
  abort_all();
  nghttp2_session_del(s_);
}

bool SimHttp2Session::feed(const char* data, size_t n) {
  if (dead_) return false;
  in_feed_ = true;
  sim_h2_ssize rv = sim_h2_mem_recv(s_, reinterpret_cast<const uint8_t*>(data), n);
  in_feed_ = false;
  if (dead_) return false;
  if (rv < 0) return false;
  pump();
  return !dead_ && (nghttp2_session_want_read(s_) || nghttp2_session_want_write(s_));
}

void SimHttp2Session::pump() {
  if (in_feed_ || dead_) return;  // feed() writes when nghttp2 is done parsing
  for (;;) {
    const uint8_t* data = nullptr;
    sim_h2_ssize n = sim_h2_mem_send(s_, &data);
    if (n <= 0) break;
    transport_.h2_write(std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(n)));
    if (dead_) return;
  }
}

void SimHttp2Session::abort_all() {
  if (dead_) return;
  dead_ = true;
  // Aborting may not touch streams_ (exchanges only call back into their responder when they
  // answer, and an aborted one does not): collect first, then abort.
  std::vector<SimExchange*> open;
  for (auto& [id, st] : streams_) {
    if (st->exchange != nullptr) open.push_back(st->exchange);
    st->exchange = nullptr;
  }
  for (SimExchange* ex : open) ex->abort();
}

}  // namespace agentperf
