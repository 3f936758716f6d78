// Tests for the incremental HTTP/1.1 response parser: every response is parsed whole, split into
// two pieces at every byte offset, and one byte at a time, and must give the same result each way.
#include <cstdio>
#include <string>
#include <vector>

#include "client/http1_parser.h"
#include "testing.h"

using agentperf::Http1Callbacks;
using agentperf::Http1ParseError;
using agentperf::Http1ResponseParser;

namespace {

std::ostream& operator<<(std::ostream& os, Http1ParseError e) { return os << agentperf::to_string(e); }

/// One parsed response as the callbacks saw it.
struct Response {
  int status = 0;              ///< from on_http_headers
  std::string body;            ///< concatenated on_http_body bytes
  int headers_calls = 0;
  int complete_calls = 0;
  bool order_ok = true;        ///< no body before headers, nothing after complete
  bool connection_close = false;
  Http1ParseError error = Http1ParseError::kNone;
};

struct Recorder : Http1Callbacks {
  Response r;
  // When set, every body piece must lie inside [lo, hi) (handed over straight from the input).
  const char* lo = nullptr;
  const char* hi = nullptr;
  bool body_in_input = true;
  void on_http_headers(int status_code) override {
    if (r.headers_calls > 0 || r.complete_calls > 0) r.order_ok = false;
    ++r.headers_calls;
    r.status = status_code;
  }
  void on_http_body(const char* data, size_t n) override {
    if (r.headers_calls != 1 || r.complete_calls > 0 || n == 0) r.order_ok = false;
    if (lo != nullptr && (data < lo || data + n > hi)) body_in_input = false;
    r.body.append(data, n);
  }
  void on_http_complete() override {
    if (r.headers_calls != 1) r.order_ok = false;
    ++r.complete_calls;
  }
};

/// Drives a parser the way the engine does: feeds the pieces in order; when a response completes
/// inside a piece, records it, resets the parser (with the next HEAD flag) and feeds the rest of
/// that piece again; stops at an error. `eof`: then calls on_eof(). Returns the responses seen
/// (the last one possibly unfinished or in error).
std::vector<Response> drive(const std::string& raw, const std::vector<size_t>& piece_sizes, bool eof,
                            const std::vector<bool>& head = {}) {
  std::vector<Response> out;
  Http1ResponseParser parser;
  size_t index = 0;
  parser.reset(!head.empty() && head[0]);
  Recorder rec;
  size_t pos = 0;
  bool stopped = false;
  for (size_t size : piece_sizes) {
    const char* p = raw.data() + pos;
    size_t left = size;
    pos += size;
    while (left > 0 && !stopped) {
      size_t used = parser.feed(p, left, rec);
      if (used > left) {
        rec.r.order_ok = false;
        used = left;
      }
      p += used;
      left -= used;
      if (parser.error() != Http1ParseError::kNone) {
        rec.r.error = parser.error();
        stopped = true;
      } else if (parser.complete()) {
        rec.r.connection_close = parser.connection_close();
        // A complete parser takes nothing more until reset().
        if (left > 0 && parser.feed(p, left, rec) != 0) rec.r.order_ok = false;
        out.push_back(rec.r);
        rec.r = Response{};
        ++index;
        parser.reset(index < head.size() && head[index]);
      } else if (left != 0) {
        rec.r.order_ok = false;  // stopped early without completing or failing
        stopped = true;
      }
    }
    if (stopped) break;
  }
  if (!stopped && eof) {
    if (!parser.started()) {
      // Idle close: no response begun, nothing to report.
      if (parser.on_eof(rec) != Http1ParseError::kNone ||
          parser.state() != Http1ResponseParser::State::kStatusLine) {
        rec.r.order_ok = false;
        out.push_back(rec.r);
      }
      return out;
    }
    rec.r.error = parser.on_eof(rec);
    rec.r.connection_close = parser.connection_close();
    out.push_back(rec.r);
  } else if (stopped || parser.started()) {
    out.push_back(rec.r);
  }
  return out;
}

std::vector<size_t> whole(const std::string& raw) { return {raw.size()}; }
std::vector<size_t> split_at(const std::string& raw, size_t k) { return {k, raw.size() - k}; }
std::vector<size_t> bytewise(const std::string& raw) { return std::vector<size_t>(raw.size(), 1); }

std::string chunk(const std::string& payload, const char* ext = "") {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx", payload.size());
  return std::string(size) + ext + "\r\n" + payload + "\r\n";
}

bool same(const Response& a, const Response& b) {
  return a.status == b.status && a.body == b.body && a.headers_calls == b.headers_calls &&
         a.complete_calls == b.complete_calls && a.order_ok == b.order_ok &&
         a.connection_close == b.connection_close && a.error == b.error;
}

std::string describe(const std::vector<Response>& rs) {
  std::string s = std::to_string(rs.size()) + " responses:";
  for (const auto& r : rs) {
    s += " [status " + std::to_string(r.status) + ", body " + std::to_string(r.body.size()) +
         " bytes, headers " + std::to_string(r.headers_calls) + ", complete " +
         std::to_string(r.complete_calls) + ", order " + (r.order_ok ? "ok" : "BAD") + ", close " +
         (r.connection_close ? "1" : "0") + ", error " + agentperf::to_string(r.error) + "]";
  }
  return s;
}

/// Parses `raw` whole, split in two at every offset, and byte by byte; all must equal `want`.
void check_all_splits(const char* name, const std::string& raw, bool eof,
                      const std::vector<Response>& want, const std::vector<bool>& head = {}) {
  auto check = [&](const std::vector<size_t>& pieces, const std::string& how) {
    std::vector<Response> got = drive(raw, pieces, eof, head);
    bool ok = got.size() == want.size();
    for (size_t i = 0; ok && i < got.size(); ++i) ok = same(got[i], want[i]);
    CHECK_MSG(ok, name << " (" << how << "): got " << describe(got) << "; want " << describe(want));
    return ok;
  };
  if (!check(whole(raw), "whole")) return;
  if (!check(bytewise(raw), "byte by byte")) return;
  for (size_t k = 0; k <= raw.size(); ++k) {
    if (!check(split_at(raw, k), "split at " + std::to_string(k))) return;
  }
}

Response ok_response(int status, std::string body, bool close = false) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.headers_calls = 1;
  r.complete_calls = 1;
  r.connection_close = close;
  return r;
}

Response failed(Http1ParseError e, int status = 0, std::string body = {}) {
  Response r;
  r.status = status;
  r.headers_calls = status != 0 ? 1 : 0;
  r.body = std::move(body);
  r.error = e;
  return r;
}

struct Case {
  const char* name;
  std::string raw;
  bool eof;  // close-delimited: ends with on_eof()
  Response want;
  bool head = false;
};

std::vector<Case> good_cases() {
  const std::string sse1 = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n";
  const std::string sse2 = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n";
  const std::string sse3 = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":1}}\n\n";
  const std::string sse4 = "data: [DONE]\n\n";
  const std::string json = "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi\"}}]}";
  const std::string err429 = "{\"error\":{\"message\":\"rate limited\",\"type\":\"rate_limit\"}}";
  const std::string err500 = "{\"error\":{\"message\":\"internal error\",\"code\":500}}";
  std::vector<Case> cases;
  cases.push_back({"content-length",
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                       std::to_string(json.size()) + "\r\nX-Request-Id: abc\r\n\r\n" + json,
                   false, ok_response(200, json)});
  cases.push_back({"chunked SSE",
                   "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n" +
                       chunk(sse1) + chunk(sse2) + chunk(sse3) + chunk(sse4) + "0\r\n\r\n",
                   false, ok_response(200, sse1 + sse2 + sse3 + sse4)});
  cases.push_back({"chunked, extensions, trailers, other codings",
                   "HTTP/1.1 200 OK\r\ntransfer-ENCODING: gzip, Chunked\r\n\r\n" +
                       chunk(sse1, ";foo=bar") + chunk(sse2, ";a;b=\"q;x\"") + "0005 \r\nabcde\r\n" +
                       "0000;last=1\r\nX-Trailer: 1\r\nServer-Timing: total;dur=12\r\n\r\n",
                   false, ok_response(200, sse1 + sse2 + "abcde")});
  cases.push_back({"chunked, upper-case hex, long chunk",
                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1A\r\n" +
                       std::string(26, 'z') + "\r\n" + chunk(std::string(300, 'y')) + "0\r\n\r\n",
                   false, ok_response(200, std::string(26, 'z') + std::string(300, 'y'))});
  cases.push_back({"Transfer-Encoding over Content-Length",
                   "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" +
                       chunk("hello") + "0\r\n\r\n",
                   false, ok_response(200, "hello")});
  cases.push_back({"close-delimited",
                   "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until the server closes",
                   true, ok_response(200, "read until the server closes", true)});
  cases.push_back({"close-delimited, non-chunked transfer coding",
                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 2\r\n\r\nabcdef",
                   true, ok_response(200, "abcdef", true)});
  cases.push_back({"100 Continue then 200",
                   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                   false, ok_response(200, "hello")});
  cases.push_back({"100 and 103 with headers then chunked",
                   "HTTP/1.1 100 Continue\r\nConnection: close\r\nContent-Length: 99\r\n\r\n"
                   "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                       chunk(sse2) + "0\r\n\r\n",
                   false, ok_response(200, sse2)});
  cases.push_back({"204 No Content",
                   "HTTP/1.1 204 No Content\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n", false,
                   ok_response(204, "")});
  cases.push_back({"304 with a Content-Length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 120\r\n\r\n",
                   false, ok_response(304, "")});
  cases.push_back({"HEAD with a Content-Length",
                   "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nTransfer-Encoding: chunked\r\n\r\n", false,
                   ok_response(200, ""), true});
  cases.push_back({"Content-Length 0", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false,
                   ok_response(200, "")});
  cases.push_back({"HTTP/1.0 content-length", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", false,
                   ok_response(200, "hello", true)});
  cases.push_back({"HTTP/1.0 keep-alive",
                   "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\nhello", false,
                   ok_response(200, "hello", false)});
  cases.push_back({"HTTP/1.0 close-delimited", "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nuntil close", true,
                   ok_response(200, "until close", true)});
  cases.push_back({"429 JSON",
                   "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                   "Content-Length: " + std::to_string(err429.size()) + "\r\n\r\n" + err429,
                   false, ok_response(429, err429)});
  cases.push_back({"500 JSON chunked",
                   "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n" + chunk(err500.substr(0, 10)) +
                       chunk(err500.substr(10)) + "0\r\n\r\n",
                   false, ok_response(500, err500)});
  cases.push_back({"Connection: close",
                   "HTTP/1.1 200 OK\r\nconnection: Upgrade, CLOSE\r\nContent-Length: 2\r\n\r\nok", false,
                   ok_response(200, "ok", true)});
  cases.push_back({"bare LF, no reason phrase, odd spacing, repeated Content-Length",
                   "HTTP/1.1 200\nContent-Length:7\ncontent-length :  7 , 7\t\nX-Folded: a\n  b\n\nabcdefg",
                   false, ok_response(200, "abcdefg")});
  cases.push_back({"stray CRLF before the status line",
                   "\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", false, ok_response(200, "x")});
  return cases;
}

}  // namespace

TEST(http1_good_responses_all_splits) {
  for (const Case& c : good_cases()) {
    check_all_splits(c.name, c.raw, c.eof, {c.want}, {c.head});
  }
}

TEST(http1_body_handed_from_input_without_copy) {
  const std::string raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("data: a\n\n", ";x=1") +
                          chunk(std::string(5000, 'q')) + "0\r\n\r\n";
  for (size_t k : {size_t(0), size_t(50), size_t(60), size_t(70), raw.size() - 3, raw.size()}) {
    Http1ResponseParser p;
    Recorder rec;
    size_t used = 0;
    for (auto [off, len] : {std::pair<size_t, size_t>{0, k}, {k, raw.size() - k}}) {
      rec.lo = raw.data() + off;
      rec.hi = rec.lo + len;
      used += p.feed(raw.data() + off, len, rec);
    }
    CHECK_EQ(used, raw.size());
    CHECK(p.complete());
    CHECK(rec.body_in_input);
    CHECK_EQ(rec.r.body, "data: a\n\n" + std::string(5000, 'q'));
  }
}

TEST(http1_keep_alive_reuse) {
  const std::string first = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("data: 1\n\n") +
                            chunk("data: [DONE]\n\n") + "0\r\nTrailer: x\r\n\r\n";
  const std::string second = "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 4\r\n\r\nslow";
  const std::string third = "HTTP/1.1 204 No Content\r\n\r\n";
  const std::string fourth = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";  // answers a HEAD
  const std::string fifth = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye";
  const std::string raw = first + second + third + fourth + fifth;

  // By hand: the first feed stops right after the first response; the rest is fed again.
  {
    Http1ResponseParser p;
    Recorder rec;
    size_t used = p.feed(raw.data(), raw.size(), rec);
    CHECK_EQ(used, first.size());
    CHECK(p.complete());
    CHECK(!p.connection_close());
    CHECK_EQ(rec.r.body, "data: 1\n\ndata: [DONE]\n\n");
    CHECK_EQ(p.feed(raw.data() + used, raw.size() - used, rec), size_t(0));  // complete: takes nothing
    p.reset();
    CHECK(!p.started());
    CHECK_EQ(p.status_code(), 0);
    Recorder rec2;
    size_t used2 = p.feed(raw.data() + used, raw.size() - used, rec2);
    CHECK_EQ(used2, second.size());
    CHECK(p.complete());
    CHECK_EQ(p.status_code(), 429);
    CHECK_EQ(rec2.r.body, "slow");
  }

  std::vector<Response> want = {ok_response(200, "data: 1\n\ndata: [DONE]\n\n"), ok_response(429, "slow"),
                                ok_response(204, ""), ok_response(200, ""), ok_response(200, "bye", true)};
  check_all_splits("keep-alive sequence", raw, true, want, {false, false, false, true, false});

  // The server closes the idle connection after the last complete response: no error.
  check_all_splits("idle close after a response", first + second, true,
                   {ok_response(200, "data: 1\n\ndata: [DONE]\n\n"), ok_response(429, "slow")});
}

TEST(http1_idle_eof_is_not_an_error) {
  Http1ResponseParser p;
  Recorder rec;
  CHECK(!p.started());
  CHECK_EQ(p.on_eof(rec), Http1ParseError::kNone);
  CHECK(p.state() == Http1ResponseParser::State::kStatusLine);
  CHECK_EQ(rec.r.complete_calls, 0);
  CHECK_EQ(p.feed("", 0, rec), size_t(0));
  CHECK(!p.started());

  // After a reset, a single byte of a new response makes EOF a truncation.
  p.reset();
  CHECK_EQ(p.feed("H", 1, rec), size_t(1));
  CHECK(p.started());
  CHECK_EQ(p.on_eof(rec), Http1ParseError::kTruncated);
  CHECK(p.state() == Http1ResponseParser::State::kError);

  // A 100 Continue alone, then EOF: truncated.
  p.reset();
  const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
  CHECK_EQ(p.feed(cont.data(), cont.size(), rec), cont.size());
  CHECK(p.started());
  CHECK(p.state() == Http1ResponseParser::State::kStatusLine);
  CHECK_EQ(p.on_eof(rec), Http1ParseError::kTruncated);
  CHECK_EQ(rec.r.headers_calls, 0);
}

TEST(http1_truncated_at_every_offset) {
  const std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("data: x\n\n", ";e=1") +
                              chunk("data: [DONE]\n\n") + "0\r\nT: 1\r\n\r\n";
  const std::string clen = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
  const std::string chunked_body = "data: x\n\ndata: [DONE]\n\n";
  for (const std::string* raw : {&chunked, &clen}) {
    const bool is_chunked = raw == &chunked;
    const size_t head_end = raw->find("\r\n\r\n", raw->find("200 OK")) + 4;
    const std::string body = is_chunked ? chunked_body : raw->substr(head_end);
    for (size_t k = 1; k < raw->size(); ++k) {
      const std::string cut = raw->substr(0, k);
      for (const auto& pieces : {whole(cut), bytewise(cut)}) {
        std::vector<Response> got = drive(cut, pieces, true);
        const bool ok = got.size() == 1 && got[0].error == Http1ParseError::kTruncated &&
                        got[0].complete_calls == 0 && got[0].order_ok &&
                        got[0].headers_calls == (k >= head_end ? 1 : 0) &&
                        body.compare(0, got[0].body.size(), got[0].body) == 0 &&
                        (is_chunked || got[0].body.size() == (k > head_end ? k - head_end : 0));
        CHECK_MSG(ok, (is_chunked ? "chunked" : "content-length") << " cut at " << k << ": " << describe(got));
        if (!ok) return;
      }
    }
  }
}

TEST(http1_errors) {
  const std::string hdr = "HTTP/1.1 200 OK\r\n";
  const std::string te = hdr + "Transfer-Encoding: chunked\r\n\r\n";
  struct ErrCase {
    const char* name;
    std::string raw;
    Response want;
  };
  std::vector<ErrCase> cases = {
      {"HTTP/2 status line", "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", failed(Http1ParseError::kBadStatusLine)},
      {"garbage status line", "FOO BAR\r\n\r\n", failed(Http1ParseError::kBadStatusLine)},
      {"letters in status", "HTTP/1.1 2x0 OK\r\n\r\n", failed(Http1ParseError::kBadStatusLine)},
      {"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", failed(Http1ParseError::kBadStatusLine)},
      {"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", failed(Http1ParseError::kBadStatusLine)},
      {"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", failed(Http1ParseError::kBadStatusLine)},
      {"lower-case http", "http/1.1 200 OK\r\n\r\n", failed(Http1ParseError::kBadStatusLine)},
      {"header without colon", hdr + "Content-Length 5\r\n\r\nhello", failed(Http1ParseError::kBadHeader)},
      {"header with empty name", hdr + ": x\r\n\r\n", failed(Http1ParseError::kBadHeader)},
      {"non-hex chunk size", te + "zz\r\nabc\r\n0\r\n\r\n", failed(Http1ParseError::kBadChunk, 200)},
      {"empty chunk size", te + "\r\nabc\r\n0\r\n\r\n", failed(Http1ParseError::kBadChunk, 200)},
      {"junk after chunk size", te + "3 x\r\nabc\r\n0\r\n\r\n", failed(Http1ParseError::kBadChunk, 200)},
      {"negative chunk size", te + "-3\r\nabc\r\n0\r\n\r\n", failed(Http1ParseError::kBadChunk, 200)},
      {"chunk size overflow", te + "10000000000000000\r\nabc\r\n", failed(Http1ParseError::kBadChunk, 200)},
      {"no CRLF after chunk data", te + "3\r\nabcX\r\n0\r\n\r\n", failed(Http1ParseError::kBadChunk, 200, "abc")},
      {"CR then junk after chunk data", te + "3\r\nabc\rX\n0\r\n\r\n",
       failed(Http1ParseError::kBadChunk, 200, "abc")},
      {"non-numeric Content-Length", hdr + "Content-Length: abc\r\n\r\n", failed(Http1ParseError::kBadContentLength)},
      {"negative Content-Length", hdr + "Content-Length: -1\r\n\r\n", failed(Http1ParseError::kBadContentLength)},
      {"empty Content-Length", hdr + "Content-Length: \r\n\r\n", failed(Http1ParseError::kBadContentLength)},
      {"Content-Length with a sign", hdr + "Content-Length: +5\r\n\r\nhello",
       failed(Http1ParseError::kBadContentLength)},
      {"conflicting Content-Length list", hdr + "Content-Length: 5, 6\r\n\r\nhello",
       failed(Http1ParseError::kBadContentLength)},
      {"conflicting Content-Length fields", hdr + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
       failed(Http1ParseError::kBadContentLength)},
      {"Content-Length overflow", hdr + "Content-Length: 99999999999999999999\r\n\r\n",
       failed(Http1ParseError::kBadContentLength)},
  };
  for (const ErrCase& c : cases) {
    check_all_splits(c.name, c.raw, true, {c.want});
    // The same with no on_eof(): the error is reported by feed() itself.
    check_all_splits(c.name, c.raw, false, {c.want});
  }
}

TEST(http1_truncated_bodies) {
  const std::string te = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  check_all_splits("truncated chunk data", te + "a\r\n01234", true,
                   {failed(Http1ParseError::kTruncated, 200, "01234")});
  check_all_splits("truncated chunk-size line", te + "5\r\nabcde\r\n1", true,
                   {failed(Http1ParseError::kTruncated, 200, "abcde")});
  check_all_splits("truncated before the last chunk's trailers end", te + "5\r\nabcde\r\n0\r\n", true,
                   {failed(Http1ParseError::kTruncated, 200, "abcde")});
  check_all_splits("truncated content-length body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", true,
                   {failed(Http1ParseError::kTruncated, 200, "12345")});
  check_all_splits("truncated headers", "HTTP/1.1 200 OK\r\nContent-Len", true,
                   {failed(Http1ParseError::kTruncated)});
}

TEST(http1_header_size_limit) {
  // One huge header line.
  const std::string big = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\nContent-Length: 0\r\n\r\n";
  for (const auto& pieces : {whole(big), bytewise(big), split_at(big, 30000)}) {
    std::vector<Response> got = drive(big, pieces, true);
    CHECK_MSG(got.size() == 1 && got[0].error == Http1ParseError::kHeadersTooLarge && got[0].headers_calls == 0,
              describe(got));
  }
  // Many small headers adding up past the limit.
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 3000; ++i) many += "X-Header-" + std::to_string(i) + ": some value\r\n";
  many += "Content-Length: 0\r\n\r\n";
  CHECK(many.size() > 64 * 1024);
  for (const auto& pieces : {whole(many), bytewise(many)}) {
    std::vector<Response> got = drive(many, pieces, false);
    CHECK_MSG(got.size() == 1 && got[0].error == Http1ParseError::kHeadersTooLarge, describe(got));
  }
  // A status line that never ends.
  const std::string endless = "HTTP/1.1 200 " + std::string(65 * 1024, 'r');
  std::vector<Response> got = drive(endless, whole(endless), false);
  CHECK_MSG(got.size() == 1 && got[0].error == Http1ParseError::kHeadersTooLarge, describe(got));

  // Just under the limit is fine.
  const std::string prefix = "HTTP/1.1 200 OK\r\nX-Big: ";
  const std::string suffix = "\r\nContent-Length: 2\r\n\r\n";
  const std::string fits = prefix + std::string(64 * 1024 - prefix.size() - suffix.size(), 'b') + suffix + "ok";
  for (const auto& pieces : {whole(fits), bytewise(fits), split_at(fits, 40000)}) {
    std::vector<Response> got2 = drive(fits, pieces, false);
    CHECK_MSG(got2.size() == 1 && same(got2[0], ok_response(200, "ok")), describe(got2));
  }
  // One byte more is not.
  const std::string over = prefix + std::string(64 * 1024 - prefix.size() - suffix.size() + 1, 'b') + suffix + "ok";
  got = drive(over, whole(over), false);
  CHECK_MSG(got.size() == 1 && got[0].error == Http1ParseError::kHeadersTooLarge, describe(got));
}

TEST(http1_long_stream_and_line_limits) {
  // Far more than 64 KiB of chunk framing and headers over a long stream: the limits apply per
  // header block / per chunk-size line, not per connection.
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Pad: " + std::string(60000, 'p') +
                           "\r\n\r\n";
  std::string raw = head;
  std::string want;
  for (int i = 0; i < 30000; ++i) {
    const std::string ev = "data: {\"i\":" + std::to_string(i) + "}\n\n";
    raw += chunk(ev, ";e=1");
    want += ev;
  }
  raw += "0\r\nX-T: " + std::string(60000, 't') + "\r\n\r\n";
  const std::string two = raw + raw;
  for (const auto& pieces : {whole(two), bytewise(two), split_at(two, raw.size() / 2), split_at(two, raw.size() + 7)}) {
    std::vector<Response> got = drive(two, pieces, true);
    CHECK_MSG(got.size() == 2 && same(got[0], ok_response(200, want)) && same(got[1], ok_response(200, want)),
              describe(got));
  }
  // A chunk-size line (extensions) or trailers past 64 KiB fail.
  const std::string te = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string long_ext = te + "5;x=" + std::string(65 * 1024, 'e') + "\r\nabcde\r\n0\r\n\r\n";
  const std::string long_trailers = te + "5\r\nabcde\r\n0\r\nX-T: " + std::string(65 * 1024, 't') + "\r\n\r\n";
  for (const auto& pieces : {whole(long_ext), bytewise(long_ext)}) {
    std::vector<Response> got = drive(long_ext, pieces, true);
    CHECK_MSG(got.size() == 1 && same(got[0], failed(Http1ParseError::kBadChunk, 200)), describe(got));
  }
  for (const auto& pieces : {whole(long_trailers), bytewise(long_trailers)}) {
    std::vector<Response> got = drive(long_trailers, pieces, true);
    CHECK_MSG(got.size() == 1 && same(got[0], failed(Http1ParseError::kHeadersTooLarge, 200, "abcde")), describe(got));
  }
}

TEST(http1_reset_clears_state) {
  Http1ResponseParser p;
  Recorder rec;
  const std::string bad = "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n";
  p.feed(bad.data(), bad.size(), rec);
  CHECK_EQ(p.error(), Http1ParseError::kBadContentLength);
  CHECK_EQ(p.feed("HTTP", 4, rec), size_t(0));  // in error: takes nothing
  const std::string close10 = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nz";
  p.reset();
  CHECK_EQ(p.error(), Http1ParseError::kNone);
  Recorder rec2;
  CHECK_EQ(p.feed(close10.data(), close10.size(), rec2), close10.size());
  CHECK(p.complete());
  CHECK(p.connection_close());
  // reset() forgets connection_close and a half-read line.
  p.reset();
  CHECK(!p.connection_close());
  p.feed("HTTP/1.1 2", 10, rec2);
  p.reset();
  Recorder rec3;
  const std::string ok = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
  CHECK_EQ(p.feed(ok.data(), ok.size(), rec3), ok.size());
  CHECK_EQ(rec3.r.status, 201);
  CHECK(p.complete());
  CHECK_EQ(std::string(agentperf::to_string(Http1ParseError::kTruncated)), "truncated");
}

TEST(http1_reports_header_fields_of_the_final_response_only_when_asked) {
  struct Fields : Http1Callbacks {
    bool want = true;
    std::vector<std::string> fields;
    int status = 0;
    bool wants_http_headers() const override { return want; }
    void on_http_header(std::string_view n, std::string_view v) override {
      fields.push_back(std::string(n) + "=" + std::string(v));
    }
    void on_http_headers(int s) override { status = s; }
    void on_http_body(const char*, size_t) override {}
    void on_http_complete() override {}
  };
  const std::string wire =
      "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Type:  text/plain \r\nX-Request-Id: 00ab\r\nContent-Length: 2\r\n\r\nok";
  // Split at every offset: the same fields each time.
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    Http1ResponseParser p;
    p.reset();
    Fields f;
    p.feed(wire.data(), cut, f);
    p.feed(wire.data() + cut, wire.size() - cut, f);
    CHECK(p.complete());
    CHECK_EQ(f.status, 200);
    CHECK_MSG((f.fields == std::vector<std::string>{"Content-Type=text/plain", "X-Request-Id=00ab", "Content-Length=2"}),
              "cut " << cut);
  }
  Http1ResponseParser p;
  p.reset();
  Fields quiet;
  quiet.want = false;
  p.feed(wire.data(), wire.size(), quiet);
  CHECK(p.complete());
  CHECK(quiet.fields.empty());
}
