// libFuzzer target: the HTTP/1.1 response parser (cpp/src/client/http1_parser.cpp).
// Input: one byte (how the rest is cut, fuzz_split.h; bit 3: a response to HEAD; bit 4: header
// callbacks wanted), then the bytes a server sent, possibly several responses in a row. Drives the
// parser as the HTTP/1.1 session does (reset after each complete response, on_eof at the end) and
// checks its contract: feed() stops early only when complete or in error, and what it reports
// (statuses, headers, body bytes, completions, the error) does not depend on how the input is cut.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "client/http1_parser.h"
#include "fuzz_split.h"

namespace {

using agentperf::Http1Callbacks;
using agentperf::Http1ParseError;
using agentperf::Http1ResponseParser;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_http1_parser: %s\n", what);
  std::abort();
}

// Everything the parser reported, as text; body bytes are joined (their cutting may differ).
struct Log final : Http1Callbacks {
  explicit Log(bool headers) : headers_wanted(headers) {}
  bool headers_wanted;
  std::string text, body;
  void flush_body() {
    if (body.empty()) return;
    text += "body[" + body + "]";
    body.clear();
  }
  void on_http_headers(int status) override {
    flush_body();
    text += "headers " + std::to_string(status) + ";";
  }
  void on_http_body(const char* d, size_t n) override { body.append(d, n); }
  void on_http_complete() override {
    flush_body();
    text += "complete;";
  }
  bool wants_http_headers() const override { return headers_wanted; }
  void on_http_header(std::string_view name, std::string_view value) override {
    text += "field ";
    text.append(name);
    text += "=";
    text.append(value);
    text += ";";
  }
};

std::string run(const char* data, const std::vector<size_t>& sizes, bool head, bool headers) {
  Http1ResponseParser p;
  p.reset(head);
  Log log(headers);
  size_t off = 0;
  bool error = false;
  for (size_t s : sizes) {
    size_t at = 0;
    while (at < s && !error) {
      size_t used = p.feed(data + off + at, s - at, log);
      if (used > s - at) fail("feed() consumed more than it was given");
      at += used;
      if (p.error() != Http1ParseError::kNone) {
        error = true;
      } else if (p.complete()) {
        log.text += p.connection_close() ? "close;" : "keep;";
        p.reset(head);
      } else if (at < s) {
        fail("feed() stopped early without a complete response or an error");
      }
    }
    off += s;
    if (error) break;
  }
  Http1ParseError e = error ? p.error() : p.on_eof(log);
  log.flush_body();
  log.text += std::string("end ") + agentperf::to_string(e) + (p.started() ? " started" : "");
  return log.text;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  const char* data = reinterpret_cast<const char*>(bytes + 1);
  const size_t n = size - 1;
  const bool head = bytes[0] & 8, headers = bytes[0] & 16;
  std::string whole = run(data, {n}, head, headers);
  std::string cut = run(data, agentperf_fuzz::piece_sizes(n, bytes[0]), head, headers);
  if (cut != whole) {
    std::fprintf(stderr, "whole: %s\ncut:   %s\n", whole.c_str(), cut.c_str());
    fail("cutting the input changed what the parser reported");
  }
  return 0;
}
