#include "agentperf/h2_server_session.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>

namespace agentperf {

namespace {

H2ServerSession* self_of(void* user) { return static_cast<H2ServerSession*>(user); }

int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
    self_of(user)->streams()[frame->hd.stream_id];
  return 0;
}

int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
              const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  H2ServerSession::Stream* s = self_of(user)->stream(frame->hd.stream_id);
  if (!s) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":method") s->method.assign(v);
  else if (n == ":path") s->path.assign(v);
  return 0;
}

int on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* user) {
  if (H2ServerSession::Stream* s = self_of(user)->stream(stream_id))
    s->body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    H2ServerSession* self = self_of(user);
    if (H2ServerSession::Stream* s = self->stream(frame->hd.stream_id))
      self->handler().on_h2_request(frame->hd.stream_id, s->method, s->path, s->body);
  }
  return 0;
}

int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  H2ServerSession* self = self_of(user);
  if (self->streams().erase(stream_id)) self->handler().on_h2_stream_closed(stream_id);
  return 0;
}

ssize_t read_body(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* flags,
                  nghttp2_data_source*, void* user) {
  H2ServerSession::Stream* s = self_of(user)->stream(stream_id);
  if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = std::min(length, s->out.size() - s->out_off);
  std::memcpy(buf, s->out.data() + s->out_off, n);
  s->out_off += n;
  if (s->out_off == s->out.size()) {
    s->out.clear();
    s->out_off = 0;
    if (s->ended) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
      s->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

}  // namespace

H2ServerSession::H2ServerSession(Handler& handler, uint32_t max_concurrent_streams) : handler_(handler) {
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_server_new(&session_, cbs, this);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16u << 20},  // large request bodies never wait for us
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, 1 << 30);
}

H2ServerSession::~H2ServerSession() { nghttp2_session_del(session_); }

H2ServerSession::Stream* H2ServerSession::stream(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : &it->second;
}

bool H2ServerSession::on_read(const char* data, size_t n) {
  ssize_t r = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), n);
  if (r < 0) {
    fatal_ = true;
    return false;
  }
  return true;
}

void H2ServerSession::respond(int32_t id, int status, std::string_view content_type) {
  Stream* s = stream(id);
  if (!s || s->responded) return;
  s->responded = true;
  std::string st = std::to_string(status);
  nghttp2_nv headers[] = {
      {(uint8_t*)":status", (uint8_t*)st.data(), 7, st.size(), NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)"content-type", (uint8_t*)content_type.data(), 12, content_type.size(), NGHTTP2_NV_FLAG_NONE},
  };
  nghttp2_data_provider provider{};
  provider.read_callback = read_body;
  nghttp2_submit_response(session_, id, headers, 2, &provider);
}

void H2ServerSession::send(int32_t id, std::string_view data, bool end) {
  Stream* s = stream(id);
  if (!s) return;
  s->out.append(data);
  s->ended = s->ended || end;
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
}

void H2ServerSession::reset(int32_t id) { nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR); }

void H2ServerSession::pump() {
  for (;;) {
    const uint8_t* data;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n <= 0) {
      if (n < 0) fatal_ = true;
      return;
    }
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

size_t H2ServerSession::pending_output(const char** data) {
  pump();
  *data = out_.data() + out_off_;
  return out_.size() - out_off_;
}

void H2ServerSession::consumed(size_t n) {
  out_off_ += n;
  if (out_off_ >= out_.size()) {
    out_.clear();
    out_off_ = 0;
  }
}

bool H2ServerSession::alive() const {
  return !fatal_ && (nghttp2_session_want_read(session_) || nghttp2_session_want_write(session_));
}

}  // namespace agentperf
