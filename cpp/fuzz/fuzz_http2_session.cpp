// libFuzzer target: the client's HTTP/2 session (cpp/src/client/http2_session.cpp) fed server bytes
// through the in-memory transport of the unit tests (cpp/tests/memory_transport.h).
// Input: one byte (bits 0-1: 1..4 requests submitted up front; bit 2: one more is submitted after
// the first piece when the session allows; bit 3: the second stream is abandoned after the first
// piece; bits 5-7 with the rest: how the bytes are cut, fuzz_split.h), then what the server sends.
// Checks the StreamHandler contract whatever the server sends: headers at most once and before any
// data, nothing after a stream ended or was abandoned, and, once the transport closes, every stream
// not abandoned ended exactly once.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_split.h"
#include "memory_transport.h"

namespace {

using namespace agentperf;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_http2_session: %s\n", what);
  std::abort();
}

struct Stream final : StreamHandler {
  bool headers = false, ended = false, abandoned = false, wants = false;
  void alive() const {
    if (ended) fail("a callback after the stream ended");
    if (abandoned) fail("a callback after the stream was abandoned");
  }
  bool wants_headers() const override { return wants; }
  void on_response_header(std::string_view, std::string_view) override {
    alive();
    if (headers) fail("a header field after the response headers");
  }
  void on_response_headers(int status, int64_t) override {
    alive();
    if (headers) fail("response headers twice");
    if (status < 200 || status > 999) fail("a final status outside 200..999");
    headers = true;
  }
  void on_response_data(const char*, size_t n, int64_t) override {
    alive();
    if (!headers) fail("response data before the headers");
  }
  void on_response_complete(int64_t) override {
    alive();
    if (!headers) fail("a response complete without headers");
    ended = true;
  }
  void on_stream_failed(ErrorKind kind, int64_t) override {
    alive();
    if (kind == ErrorKind::kNone) fail("a stream failed without a reason");
    ended = true;
  }
};

struct Request {
  RequestHead head;
  std::string body = "{\"model\":\"m\",\"stream\":true}";
  iovec iov{};
  Request() {
    head.path = "/v1/chat/completions";
    head.authority = "127.0.0.1:8000";
    head.request_id = "00000000000000a1";
    head.content_length = body.size();
    iov.iov_base = body.data();
    iov.iov_len = body.size();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  const uint8_t cfg = bytes[0];
  const char* data = reinterpret_cast<const char*>(bytes + 1);
  const size_t n = size - 1;

  Request request;
  std::vector<std::unique_ptr<Stream>> streams;
  std::vector<int32_t> ids;
  agentperf_testing::MemoryConnection conn(8);
  conn.up(Protocol::kHttp2);
  auto submit = [&] {
    streams.push_back(std::make_unique<Stream>());
    streams.back()->wants = streams.size() % 2 == 0;
    int32_t id = conn.submit(request.head, &request.iov, 1, streams.back().get());
    if (id <= 0) streams.back()->abandoned = true;  // never taken: must hear nothing
    ids.push_back(id);
  };
  for (int i = 0; i <= (cfg & 3); ++i) submit();

  const std::vector<size_t> sizes = agentperf_fuzz::piece_sizes(n, static_cast<uint8_t>(cfg >> 5));
  size_t off = 0;
  for (size_t k = 0; k < sizes.size() && conn.is_open(); ++k) {
    conn.deliver(std::string(data + off, sizes[k]), static_cast<int64_t>(k) + 1);
    off += sizes[k];
    if (conn.is_open()) conn.flush();  // what the session answers (SETTINGS ACK, WINDOW_UPDATE, ...)
    conn.take_sent();
    if (k == 0 && conn.is_open()) {
      if ((cfg & 4) && conn.has_room()) submit();
      if ((cfg & 8) && streams.size() > 1 && ids[1] > 0 && !streams[1]->ended) {
        streams[1]->abandoned = true;
        conn.abandon(ids[1]);
      }
    }
  }
  conn.close(ErrorKind::kTruncated, static_cast<int64_t>(sizes.size()) + 2);
  for (const auto& s : streams)
    if (!s->abandoned && !s->ended) fail("a stream never ended");
  return 0;
}
