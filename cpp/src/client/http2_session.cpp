// HTTP/2 implementation of Session (client side), on nghttp2: h2c with prior knowledge, or h2 over
// TLS (the caller did the handshake and ALPN; this file only picks :scheme).
//
// Stream life: submit() creates a Stream (owned by streams_) and hands it to nghttp2 as both the
// stream's user data and the body's data source. The Stream lives until nghttp2 reports the stream
// closed (on_stream_close), even when its handler was detached earlier (completion, abandon,
// failure): nghttp2 may still hold pointers to it until then. "Detached" means: no handler (no more
// callbacks) and no body (the caller may free it; the data source stops reading it).
//
// Terminal callbacks, exactly one per stream unless abandoned:
//   - END_STREAM received (HEADERS or DATA, validated by nghttp2)  -> on_response_complete. If our
//     request body is still being sent (the server answered early), the stream is reset (CANCEL).
//   - RST_STREAM from the peer                                     -> on_stream_failed(kReset)
//   - GOAWAY whose last_stream_id is below the stream              -> on_stream_failed(kReset),
//     at once, whether or not its HEADERS were already written
//   - closed by nghttp2 for an invalid response (stream error)     -> on_stream_failed(kProtocol)
//   - response header fields past kMaxHeaderListBytes (reset here) -> on_stream_failed(kOversized)
//   - connection error (ours or nghttp2's), on_close()             -> kProtocol / the given kind
//
// Re-entrancy: handler callbacks run inside nghttp2_session_mem_recv (from on_read) and, rarely,
// inside nghttp2_session_mem_send (from on_read / pending_output: a request nghttp2 refuses to send).
// From inside a callback a handler may call abandon() on any stream (nghttp2 allows submitting
// RST_STREAM from callbacks), and can_submit()/reusable()/active_streams(). submit() is allowed by
// nghttp2 too, but the engine defers it to a timer. A handler must not call on_read(), on_close()
// or consumed_output() nor destroy the session from a callback; pending_output() from a callback
// only returns what is already serialized (nghttp2 is not re-entrant).
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <new>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agentperf/clock.h"
#include "client/h2_frame_walk.h"
#include "client/session.h"
#include "common/prefetch.h"

namespace agentperf {

/// Declared here until session.h names it; make_session() calls it for Protocol::kHttp2.
/// `tls`: the transport is TLS (":scheme: https"), else h2c with prior knowledge (":scheme: http").
std::unique_ptr<Session> make_http2_session(const SessionOptions& options, bool tls);

namespace {

// nghttp2 1.60 renamed the ssize_t entry points (the old ones are deprecated there).
#if NGHTTP2_VERSION_NUM >= 0x013c00
using h2_ssize = nghttp2_ssize;
using h2_data_provider = nghttp2_data_provider2;
inline h2_ssize h2_mem_recv(nghttp2_session* s, const uint8_t* in, size_t n) { return nghttp2_session_mem_recv2(s, in, n); }
inline h2_ssize h2_mem_send(nghttp2_session* s, const uint8_t** out) { return nghttp2_session_mem_send2(s, out); }
inline int32_t h2_submit_request(nghttp2_session* s, const nghttp2_nv* nva, size_t n, const h2_data_provider* body,
                                 void* user_data) {
  return nghttp2_submit_request2(s, nullptr, nva, n, body, user_data);
}
#else
using h2_ssize = ssize_t;
using h2_data_provider = nghttp2_data_provider;
inline h2_ssize h2_mem_recv(nghttp2_session* s, const uint8_t* in, size_t n) { return nghttp2_session_mem_recv(s, in, n); }
inline h2_ssize h2_mem_send(nghttp2_session* s, const uint8_t** out) { return nghttp2_session_mem_send(s, out); }
inline int32_t h2_submit_request(nghttp2_session* s, const nghttp2_nv* nva, size_t n, const h2_data_provider* body,
                                 void* user_data) {
  return nghttp2_submit_request(s, nullptr, nva, n, body, user_data);
}
#endif

/// pending_output() stops asking nghttp2 for frames once this much is waiting to be written.
constexpr size_t kOutputHighWaterBytes = 256 * 1024;
constexpr uint32_t kMaxWindowBytes = (1u << 31) - 1;
/// A stream's response header fields (headers and trailers, each counted as name + value + 32 as in
/// SETTINGS_MAX_HEADER_LIST_SIZE) beyond this are refused: the HTTP/1.1 parser's bound.
constexpr size_t kMaxHeaderListBytes = 64 * 1024;

nghttp2_nv header(std::string_view name, std::string_view value, bool copy_name = false) {
  // Our names are literals: nghttp2 need not copy them. Values (and callers' names) are copied.
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    static_cast<uint8_t>(copy_name ? NGHTTP2_NV_FLAG_NONE : NGHTTP2_NV_FLAG_NO_COPY_NAME)};
}

class Http2Session final : public Session {
 public:
  Http2Session(const SessionOptions& options, bool tls) : options_(options), tls_(tls) {
    nghttp2_session_callbacks* cb = nullptr;
    if (nghttp2_session_callbacks_new(&cb) != 0) throw std::bad_alloc();
    nghttp2_session_callbacks_set_on_header_callback(cb, &Http2Session::on_header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Http2Session::on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Http2Session::on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Http2Session::on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, &Http2Session::on_frame_send_cb);
    int rv = nghttp2_session_client_new(&s_, cb, this);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) throw std::bad_alloc();
    streams_.reserve(options_.stream_limit);
    size_t slots = 16;
    while (slots < 4 * size_t{options_.stream_limit} && slots < 65536) slots <<= 1;
    table_.assign(slots, Slot{});
  }

  ~Http2Session() override { nghttp2_session_del(s_); }  // calls no callbacks

  Protocol protocol() const override { return Protocol::kHttp2; }

  void on_connected() override {
    // The 24-byte client magic is queued by nghttp2 itself; SETTINGS must be the first frame.
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, std::min(options_.stream_window_bytes, kMaxWindowBytes)},
    };
    if (nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0 ||
        nghttp2_session_set_local_window_size(
            s_, NGHTTP2_FLAG_NONE, 0,
            static_cast<int32_t>(std::min(options_.connection_window_bytes, kMaxWindowBytes))) != 0) {
      die(ErrorKind::kProtocol);
      return;
    }
    produce();
  }

  bool can_submit() const override {
    if (!reusable()) return false;
    uint32_t peer_limit = nghttp2_session_get_remote_settings(s_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    // streams_ also holds streams detached but not yet closed (a RST_STREAM still to be written):
    // they count against the peer's limit until then.
    return streams_.size() < std::min<size_t>(options_.stream_limit, peer_limit);
  }

  int32_t submit(const RequestHead& head, const iovec* body, size_t count, StreamHandler* handler) override {
    if (!can_submit() || handler == nullptr) return -1;
    auto st = std::make_unique<Stream>();
    st->handler = handler;
    st->body.assign(body, body + count);

    char length[24];
    auto [end, ec] = std::to_chars(length, length + sizeof length, head.content_length);
    (void)ec;
    nva_.clear();
    nva_.push_back(header(":method", head.method));
    nva_.push_back(header(":scheme", tls_ ? "https" : "http"));
    nva_.push_back(header(":authority", head.authority));
    nva_.push_back(header(":path", head.path));
    if (head.json_stream) {
      nva_.push_back(header("content-type", "application/json"));
      nva_.push_back(header("accept", "text/event-stream"));
    }
    if (sends_content_length(head))
      nva_.push_back(header("content-length", std::string_view(length, static_cast<size_t>(end - length))));
    if (!head.authorization.empty()) nva_.push_back(header("authorization", head.authorization));
    if (!head.request_id.empty()) nva_.push_back(header("x-request-id", head.request_id));
    for (size_t i = 0; i < head.header_count; ++i) nva_.push_back(header(head.headers[i].name, head.headers[i].value, true));
    h2_data_provider provider{};
    provider.source.ptr = st.get();
    provider.read_callback = &Http2Session::read_body_cb;
    bool has_body = false;
    for (const iovec& v : st->body) has_body |= v.iov_len > 0;
    st->body_done = !has_body;

    int32_t id = h2_submit_request(s_, nva_.data(), nva_.size(), has_body ? &provider : nullptr, st.get());
    if (id < 0) return -1;
    st->id = id;
    Slot& slot = table_[slot_of(id)];
    if (slot.stream == nullptr) {  // else a long-lived stream holds it
      const StreamHandler::Bytes hot = handler->hot_bytes();
      slot = Slot{id, static_cast<uint32_t>(hot.size), handler, st.get(), static_cast<const char*>(hot.data)};
    }
    streams_.emplace(id, std::move(st));
    ++live_;
    return id;
  }

  bool on_read(const char* data, size_t n, int64_t now_ns) override {
    now_ns_ = now_ns;
    if (dead_ || busy_) return false;
    list_data_frames(reinterpret_cast<const uint8_t*>(data), n);
    h2_ssize rv;
    {
      Busy busy(*this);
      rv = h2_mem_recv(s_, reinterpret_cast<const uint8_t*>(data), n);
    }
    if (rv < 0) {
      die(ErrorKind::kProtocol);
      return false;
    }
    produce();  // SETTINGS ACK, WINDOW_UPDATE, PING ACK, RST_STREAM; requests refused after GOAWAY
    if (dead_) return false;
    if (terminated()) {
      // nghttp2 found a connection error in what the peer sent and queued its own GOAWAY.
      die(ErrorKind::kProtocol);
      return false;
    }
    if (nghttp2_session_want_read(s_) == 0 && nghttp2_session_want_write(s_) == 0) {
      // GOAWAY received and every stream it allowed has ended: nothing more will come.
      die(ErrorKind::kReset);
      return false;
    }
    return true;
  }

  void on_close(ErrorKind kind, int64_t now_ns) override {
    now_ns_ = now_ns;
    die(kind);
  }

  size_t pending_output(iovec* out, size_t max) override {
    produce();
    if (max == 0 || out_pos_ == out_.size()) return 0;
    out[0].iov_base = out_.data() + out_pos_;
    out[0].iov_len = out_.size() - out_pos_;
    return 1;
  }

  void consumed_output(size_t n) override {
    out_pos_ = std::min(out_.size(), out_pos_ + n);
    if (out_pos_ == out_.size()) {
      out_.clear();
      out_pos_ = 0;
    }
  }

  bool reusable() const override {
    return !dead_ && !goaway_received_ && nghttp2_session_check_request_allowed(s_) != 0;
  }

  size_t active_streams() const override { return live_; }

  void abandon(int32_t stream_id) override {
    auto it = streams_.find(stream_id);
    if (it == streams_.end() || it->second->handler == nullptr) return;
    detach(*it->second);
    // Cancels the HEADERS too when they are still queued; the stream closes once this is written.
    if (!dead_) nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
  }

 private:
  struct Stream {
    int32_t id = 0;
    StreamHandler* handler = nullptr;  ///< null once detached: no more callbacks
    std::vector<iovec> body;           ///< the caller's slices; not read once body_done
    size_t body_index = 0;             ///< next slice to copy
    size_t body_offset = 0;            ///< bytes of body[body_index] already copied
    bool body_done = false;            ///< EOF given to nghttp2, or the body was dropped
    int final_status = 0;              ///< :status of the HEADERS frame being received
    bool status_reported = false;
    bool rst_received = false;
    bool oversized = false;            ///< its header fields passed kMaxHeaderListBytes
    size_t header_bytes = 0;
  };

  // Marks nghttp2 calls that may run our callbacks: nghttp2 is not re-entrant.
  struct Busy {
    explicit Busy(Http2Session& s) : s_(s) { ++s_.busy_; }
    ~Busy() { --s_.busy_; }
    Http2Session& s_;
  };

  static Http2Session& self(void* user_data) { return *static_cast<Http2Session*>(user_data); }
  // The flat stream table: our stream ids are odd and rise by 2, and at most stream_limit are open,
  // so (id / 2) mod a power of two >= 4 x stream_limit almost never collides; a stream whose slot
  // was taken at submit is found through nghttp2's own map. One indexed load per DATA chunk instead
  // of nghttp2's hash lookup (lock-step arrivals bring every stream's chunk in the same read).
  // The slot also holds the stream's handler, so a DATA chunk reaches its agent without touching
  // the Stream (a cold cache line when thousands of streams take turns), and where the handler's
  // hot bytes are (list_data_frames).
  struct Slot {
    int32_t id = 0;
    uint32_t hot_size = 0;
    StreamHandler* handler = nullptr;  ///< the stream's handler, null once detached
    Stream* stream = nullptr;
    const char* hot = nullptr;  ///< StreamHandler::hot_bytes()
  };
  size_t slot_of(int32_t id) const { return (static_cast<uint32_t>(id) >> 1) & (table_.size() - 1); }
  Stream* stream(int32_t id) {
    const Slot& slot = table_[slot_of(id)];
    if (slot.stream != nullptr && slot.id == id) return slot.stream;
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(s_, id));
  }
  /// The handler of stream `id` (null: none, or detached).
  StreamHandler* handler_of(int32_t id) {
    const Slot& slot = table_[slot_of(id)];
    if (slot.stream != nullptr && slot.id == id) return slot.handler;
    Stream* st = static_cast<Stream*>(nghttp2_session_get_stream_user_data(s_, id));
    return st != nullptr ? st->handler : nullptr;
  }

  // In lock-step, one read carries a DATA frame for each of dozens of streams, whose agents lie far
  // apart in memory and are cold. The read's DATA frames are listed first (their headers only), and
  // while nghttp2 hands over frame i, the agent of frame i + kPrefetchAhead is prefetched, so that
  // its cache misses overlap with the work on the frames before it.
  static constexpr size_t kPrefetchAhead = 4;
  /// At most this many frames of one read are listed (a read of tiny frames could hold 29,000; the
  /// list's memory stays with the session), the rest are parsed without prefetch.
  static constexpr size_t kMaxListed = 1024;
  void list_data_frames(const uint8_t* data, size_t n) {
    ahead_.clear();
    ahead_pos_ = 0;
    walk_.feed(data, n, [this](uint8_t type, uint8_t, int32_t id, uint32_t) {  // walks every header
      if (type != NGHTTP2_DATA || ahead_.size() == kMaxListed) return;
      const Slot& slot = table_[slot_of(id)];
      if (slot.id == id && slot.hot != nullptr) ahead_.push_back(&slot);  // table_ never reallocates
    });
    for (size_t i = 0; i < kPrefetchAhead && i < ahead_.size(); ++i) prefetch(*ahead_[i]);
  }
  static void prefetch(const Slot& slot) {  // the slot may have been emptied since it was listed
    prefetch_span(slot.hot, slot.hot_size);
  }
  // A DATA chunk of stream `id` arrived: prefetch further down the list.
  void advance_prefetch(int32_t id) {
    if (ahead_pos_ < ahead_.size() && ahead_[ahead_pos_]->id == id) {
      ++ahead_pos_;
      if (ahead_pos_ + kPrefetchAhead - 1 < ahead_.size()) prefetch(*ahead_[ahead_pos_ + kPrefetchAhead - 1]);
    }
  }

  // Serializes queued frames into out_ until nghttp2 has nothing more or out_ is full enough.
  void produce() {
    if (busy_ || dead_) return;
    while (out_.size() - out_pos_ < kOutputHighWaterBytes) {
      const uint8_t* data = nullptr;
      h2_ssize n;
      {
        Busy busy(*this);
        n = h2_mem_send(s_, &data);
      }
      if (n < 0) {
        die(ErrorKind::kProtocol);
        return;
      }
      if (n == 0) return;
      if (out_pos_ > 0 && out_pos_ >= out_.size() / 2) {
        out_.erase(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(out_pos_));
        out_pos_ = 0;
      }
      out_.insert(out_.end(), data, data + n);
    }
  }

  // True when nghttp2 has queued (or sent) its own GOAWAY: it will not read the connection again.
  bool terminated() const {
    if (local_goaway_sent_) return true;
    return !goaway_received_ && nghttp2_session_check_request_allowed(s_) == 0 &&
           nghttp2_session_get_next_stream_id(s_) <= static_cast<uint32_t>(std::numeric_limits<int32_t>::max());
  }

  // No more callbacks for the stream; its body is no longer read.
  void detach(Stream& st) {
    st.handler = nullptr;
    Slot& slot = table_[slot_of(st.id)];
    if (slot.stream == &st) {
      slot.handler = nullptr;
      slot.hot = nullptr;
    }
    st.body_done = true;
    --live_;
  }

  void complete(Stream& st) {
    StreamHandler* h = st.handler;
    bool still_sending = !st.body_done;
    detach(st);
    if (still_sending) nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, st.id, NGHTTP2_CANCEL);
    h->on_response_complete(now_ns_);
  }

  void fail(Stream& st, ErrorKind kind) {
    StreamHandler* h = st.handler;
    detach(st);
    h->on_stream_failed(kind, now_ns_);
  }

  // Fails every live stream whose id passes `pred`, in stream order. Each is looked up again before
  // its callback: an earlier handler may have abandoned it (then it hears nothing).
  template <typename Pred>
  void fail_where(ErrorKind kind, Pred pred) {
    std::vector<int32_t> ids;
    for (const auto& [id, st] : streams_)
      if (st->handler != nullptr && pred(id)) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    for (int32_t id : ids) {
      auto it = streams_.find(id);
      if (it != streams_.end() && it->second->handler != nullptr) fail(*it->second, kind);
    }
  }

  void die(ErrorKind kind) {
    dead_ = true;
    fail_where(kind, [](int32_t) { return true; });
  }

  // --- nghttp2 callbacks -------------------------------------------------------------------------

  static h2_ssize read_body_cb(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                               nghttp2_data_source* source, void*) {
    Stream& st = *static_cast<Stream*>(source->ptr);
    if (st.body_done) return NGHTTP2_ERR_DEFERRED;  // dropped: a RST_STREAM is queued ahead of us
    size_t n = 0;
    while (n < length && st.body_index < st.body.size()) {
      const iovec& v = st.body[st.body_index];
      size_t take = std::min(length - n, v.iov_len - st.body_offset);
      std::memcpy(buf + n, static_cast<const char*>(v.iov_base) + st.body_offset, take);
      n += take;
      st.body_offset += take;
      if (st.body_offset == v.iov_len) {
        ++st.body_index;
        st.body_offset = 0;
      }
    }
    if (st.body_index == st.body.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      st.body_done = true;
    }
    return static_cast<h2_ssize>(n);
  }

  static int on_header_cb(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                          const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* st = self(user_data).stream(frame->hd.stream_id);
    if (st == nullptr) return 0;
    st->header_bytes += namelen + valuelen + 32;
    if (st->header_bytes > kMaxHeaderListBytes) {
      // nghttp2 resets the stream (the rest of the block is still decoded, for HPACK's state);
      // on_stream_close reports it.
      st->oversized = true;
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (st->status_reported) return 0;
    if (namelen != 7 || std::memcmp(name, ":status", 7) != 0) {
      // A field of the response's header block (not trailers: status_reported is still false).
      if (st->final_status >= 200 && st->handler && st->handler->wants_headers() && namelen > 0 && name[0] != ':')
        st->handler->on_response_header(std::string_view(reinterpret_cast<const char*>(name), namelen),
                                        std::string_view(reinterpret_cast<const char*>(value), valuelen));
      return 0;
    }
    int status = 0;
    const char* v = reinterpret_cast<const char*>(value);
    std::from_chars(v, v + valuelen, status);  // nghttp2 has checked it is three digits
    if (status < 100) {
      // "0xx" is no HTTP status (RFC 9110 15), yet nghttp2 takes it for a final one and would pass
      // its DATA on: the response is broken (as HTTP/1.1's parser says), only this stream fails.
      if (st->handler != nullptr) self(user_data).fail(*st, ErrorKind::kProtocol);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // nghttp2 resets the stream
    }
    st->final_status = status;
    return 0;
  }

  static int on_frame_recv_cb(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    Http2Session& s = self(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_DATA:
        if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;  // its bytes went to on_data_chunk
        [[fallthrough]];
      case NGHTTP2_HEADERS: {
        Stream* st = s.stream(frame->hd.stream_id);
        if (st == nullptr || st->handler == nullptr) return 0;
        if (frame->hd.type == NGHTTP2_HEADERS && !st->status_reported) {
          if (st->final_status < 200) return 0;  // informational (1xx): the final response follows
          st->status_reported = true;
          st->handler->on_response_headers(st->final_status, s.now_ns_);
          if (st->handler == nullptr) return 0;  // abandoned from inside the callback
        }
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) s.complete(*st);
        return 0;
      }
      case NGHTTP2_RST_STREAM: {
        Stream* st = s.stream(frame->hd.stream_id);
        if (st != nullptr) st->rst_received = true;  // on_stream_close follows
        return 0;
      }
      case NGHTTP2_GOAWAY: {
        // Streams above last_stream_id were not (and will not be) processed: fail them now, also
        // those whose HEADERS are still queued. nghttp2 closes them right after this callback.
        s.goaway_received_ = true;
        int32_t last = frame->goaway.last_stream_id;
        s.fail_where(ErrorKind::kReset, [last](int32_t id) { return id > last; });
        return 0;
      }
      default:
        return 0;
    }
  }

  static int on_data_chunk_cb(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                              void* user_data) {
    Http2Session& s = self(user_data);
    s.advance_prefetch(stream_id);
    if (StreamHandler* h = s.handler_of(stream_id)) h->on_response_data(reinterpret_cast<const char*>(data), len, s.now_ns_);
    return 0;
  }

  static int on_stream_close_cb(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
    Http2Session& s = self(user_data);
    auto it = s.streams_.find(stream_id);
    if (it == s.streams_.end()) return 0;
    Stream& st = *it->second;
    if (st.handler != nullptr) {
      // Closed without END_STREAM from the peer. Reset by the peer, or refused (a request nghttp2
      // would not send after GOAWAY): kReset. Closed by nghttp2 because the response broke the
      // protocol (bad headers, content-length, flow control): kProtocol.
      bool reset = st.rst_received || error_code == NGHTTP2_REFUSED_STREAM;
      s.fail(st, st.oversized ? ErrorKind::kOversized : reset ? ErrorKind::kReset : ErrorKind::kProtocol);
    }
    Slot& slot = s.table_[s.slot_of(stream_id)];
    if (slot.stream == &st) slot = Slot{};
    s.streams_.erase(stream_id);  // by key: the handler may have submitted (rehashed) meanwhile
    return 0;
  }

  static int on_frame_send_cb(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    Http2Session& s = self(user_data);
    // We never submit GOAWAY ourselves: one going out is nghttp2 ending the connection on an error.
    if (frame->hd.type == NGHTTP2_GOAWAY) s.local_goaway_sent_ = true;
    if (frame->hd.type == NGHTTP2_HEADERS)
      if (StreamHandler* h = s.handler_of(frame->hd.stream_id)) h->on_request_sent(agentperf::now_ns());
    return 0;
  }

  SessionOptions options_;
  bool tls_;
  nghttp2_session* s_ = nullptr;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;  ///< submitted, not yet closed by nghttp2
  std::vector<Slot> table_;  ///< slot_of(id) -> the stream holding it (see stream())
  FrameWalk walk_;           ///< the received frames' headers (list_data_frames)
  std::vector<const Slot*> ahead_;  ///< the slots of the DATA frames of the read being parsed
  size_t ahead_pos_ = 0;            ///< ahead_[ahead_pos_] is the next DATA frame nghttp2 hands over
  std::vector<nghttp2_nv> nva_;  ///< submit(): the request's header list (reused)
  size_t live_ = 0;                                               ///< streams with a handler
  std::vector<uint8_t> out_;                                      ///< serialized frames to write
  size_t out_pos_ = 0;                                            ///< bytes of out_ already written
  int64_t now_ns_ = 0;     ///< time of the last on_read / on_close (stamps callbacks)
  int busy_ = 0;           ///< inside nghttp2_session_mem_recv / mem_send
  bool dead_ = false;      ///< fatal error or transport closed: no more I/O
  bool goaway_received_ = false;
  bool local_goaway_sent_ = false;
};

}  // namespace

std::unique_ptr<Session> make_http2_session(const SessionOptions& options, bool tls) {
  return std::make_unique<Http2Session>(options, tls);
}

}  // namespace agentperf
