// Incremental HTTP/1.1 response parser (see http1_parser.h for the contract).
#include "client/http1_parser.h"

#include <cstring>

namespace agentperf {

namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;     // status line + headers of one response
constexpr size_t kMaxTrailerBytes = 64 * 1024;    // trailers after the last chunk
constexpr size_t kMaxChunkLineBytes = 64 * 1024;  // one chunk-size line with its extensions

inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c; }

/// Case-insensitive equality; `lower` must already be lower case.
inline bool iequals(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (ascii_lower(s[i]) != lower[i]) return false;
  }
  return true;
}

inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

/// Calls f(item) for each non-empty, OWS-trimmed element of a comma-separated field value.
template <class F>
void for_each_list_item(std::string_view v, F&& f) {
  while (true) {
    size_t comma = v.find(',');
    std::string_view item = trim_ows(v.substr(0, comma));
    if (!item.empty()) f(item);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

/// A non-empty run of decimal digits that fits an int64_t.
bool parse_decimal(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (kMax - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// chunk-size [BWS] [; extensions]: the size, or false when the line is malformed or the size
/// does not fit in 63 bits.
bool parse_chunk_size(std::string_view line, uint64_t& out) {
  size_t i = 0;
  uint64_t v = 0;
  for (; i < line.size(); ++i) {
    int h = hex_value(line[i]);
    if (h < 0) break;
    if (v >> 59) return false;  // v * 16 + h would pass 2^63
    v = (v << 4) | static_cast<uint64_t>(h);
  }
  if (i == 0) return false;
  while (i < line.size() && is_ows(line[i])) ++i;
  if (i < line.size() && line[i] != ';') return false;
  out = v;
  return true;
}

}  // namespace

const char* to_string(Http1ParseError e) {
  switch (e) {
    case Http1ParseError::kNone: return "none";
    case Http1ParseError::kBadStatusLine: return "bad status line";
    case Http1ParseError::kBadHeader: return "bad header";
    case Http1ParseError::kBadChunk: return "bad chunk";
    case Http1ParseError::kBadContentLength: return "bad content-length";
    case Http1ParseError::kTruncated: return "truncated";
    case Http1ParseError::kHeadersTooLarge: return "headers too large";
  }
  return "unknown";
}

void Http1ResponseParser::clear_message_headers() {
  http10_ = false;
  chunked_ = false;
  te_present_ = false;
  close_token_ = false;
  keep_alive_token_ = false;
  status_code_ = 0;
  content_length_ = -1;
  line_bytes_ = 0;
}

void Http1ResponseParser::reset(bool head_request) {
  state_ = State::kStatusLine;
  error_ = Http1ParseError::kNone;
  head_request_ = head_request;
  connection_close_ = false;
  started_ = false;
  cr_seen_ = false;
  remaining_ = 0;
  clear_message_headers();
  line_.clear();  // keeps the capacity
}

int Http1ResponseParser::take_line(const char*& p, const char* end, size_t limit,
                                   std::string_view& line) {
  const size_t avail = static_cast<size_t>(end - p);
  const char* nl = static_cast<const char*>(std::memchr(p, '\n', avail));
  if (nl == nullptr) {
    if (line_bytes_ + avail > limit) return -1;
    line_bytes_ += avail;
    line_.append(p, avail);
    p = end;
    return 0;
  }
  const size_t len = static_cast<size_t>(nl - p) + 1;
  if (line_bytes_ + len > limit) return -1;
  line_bytes_ += len;
  if (line_.empty()) {
    line = std::string_view(p, len - 1);
  } else {
    line_.append(p, len - 1);
    line = line_;
  }
  p = nl + 1;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return 1;
}

bool Http1ResponseParser::parse_status_line(std::string_view s) {
  // HTTP/1.x SP 3DIGIT [SP reason-phrase]
  if (s.size() < 12 || s.compare(0, 7, "HTTP/1.") != 0) return false;
  if (s[7] != '0' && s[7] != '1') return false;
  if (s[8] != ' ') return false;
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    code = code * 10 + (s[i] - '0');
  }
  if (s.size() > 12 && s[12] != ' ') return false;
  if (code < 100) return false;
  http10_ = s[7] == '0';
  status_code_ = code;
  return true;
}

bool Http1ResponseParser::parse_header_line(std::string_view line, Http1Callbacks& cb) {
  if (is_ows(line.front())) return true;  // obs-fold continuation: no header we use is folded
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    fail(Http1ParseError::kBadHeader);
    return false;
  }
  std::string_view name = line.substr(0, colon);
  while (!name.empty() && is_ows(name.back())) name.remove_suffix(1);
  if (name.empty()) {
    fail(Http1ParseError::kBadHeader);
    return false;
  }
  if (status_code_ >= 200 && cb.wants_http_headers()) cb.on_http_header(name, trim_ows(line.substr(colon + 1)));
  // Only three names matter; the length check rejects almost every other header at once.
  switch (name.size()) {
    case 14:  // content-length
      if (iequals(name, "content-length")) {
        std::string_view value = trim_ows(line.substr(colon + 1));
        bool ok = true, any = false;
        uint64_t v = 0;
        for_each_list_item(value, [&](std::string_view item) {
          uint64_t x = 0;
          if (!parse_decimal(item, x) || (any && x != v)) {
            ok = false;
          } else {
            v = x;
            any = true;
          }
        });
        if (!ok || !any ||
            (content_length_ >= 0 && static_cast<uint64_t>(content_length_) != v)) {
          fail(Http1ParseError::kBadContentLength);
          return false;
        }
        content_length_ = static_cast<int64_t>(v);
      }
      break;
    case 17:  // transfer-encoding
      if (iequals(name, "transfer-encoding")) {
        bool any = false, last_chunked = false;
        for_each_list_item(line.substr(colon + 1), [&](std::string_view item) {
          item = trim_ows(item.substr(0, item.find(';')));  // drop transfer-parameters
          any = true;
          last_chunked = iequals(item, "chunked");
        });
        if (any) {  // the last coding of the last field is the outermost one
          te_present_ = true;
          chunked_ = last_chunked;
        }
      }
      break;
    case 10:  // connection
      if (iequals(name, "connection")) {
        for_each_list_item(line.substr(colon + 1), [&](std::string_view item) {
          if (iequals(item, "close")) close_token_ = true;
          else if (iequals(item, "keep-alive")) keep_alive_token_ = true;
        });
      }
      break;
    default:
      break;
  }
  return true;
}

bool Http1ResponseParser::end_of_headers(Http1Callbacks& cb) {
  const int code = status_code_;
  if (code < 200 && code != 101) {
    // Interim response (100 Continue, 103 Early Hints...): the final one follows.
    clear_message_headers();
    state_ = State::kStatusLine;
    return false;
  }
  connection_close_ = close_token_ || (http10_ && !keep_alive_token_) || code == 101;
  if (head_request_ || code == 204 || code == 304 || code == 101) {
    state_ = State::kComplete;
  } else if (chunked_) {
    state_ = State::kChunkSize;
    line_bytes_ = 0;
  } else if (te_present_ || content_length_ < 0) {
    // A transfer coding other than chunked last, or no framing at all: read until close.
    state_ = State::kBodyUntilClose;
    connection_close_ = true;
  } else if (content_length_ == 0) {
    state_ = State::kComplete;
  } else {
    state_ = State::kBody;
    remaining_ = static_cast<uint64_t>(content_length_);
  }
  const bool done = state_ == State::kComplete;
  cb.on_http_headers(code);
  if (done) cb.on_http_complete();
  return done;
}

size_t Http1ResponseParser::feed(const char* data, size_t n, Http1Callbacks& cb) {
  const char* p = data;
  const char* const end = data + n;
  while (p < end) {
    switch (state_) {
      case State::kChunkData: {
        const size_t avail = static_cast<size_t>(end - p);
        const size_t take = remaining_ < avail ? static_cast<size_t>(remaining_) : avail;
        const char* chunk = p;
        p += take;
        remaining_ -= take;
        if (remaining_ == 0) {
          state_ = State::kChunkDataEnd;
          cr_seen_ = false;
        }
        cb.on_http_body(chunk, take);
        break;
      }
      case State::kChunkDataEnd: {
        const char c = *p;
        if (c == '\r' && !cr_seen_) {
          cr_seen_ = true;
          ++p;
        } else if (c == '\n') {
          ++p;
          state_ = State::kChunkSize;
          line_bytes_ = 0;
        } else {
          fail(Http1ParseError::kBadChunk);
          return static_cast<size_t>(p - data);
        }
        break;
      }
      case State::kBody: {
        const size_t avail = static_cast<size_t>(end - p);
        const size_t take = remaining_ < avail ? static_cast<size_t>(remaining_) : avail;
        const char* chunk = p;
        p += take;
        remaining_ -= take;
        cb.on_http_body(chunk, take);
        if (remaining_ == 0) {
          state_ = State::kComplete;
          cb.on_http_complete();
          return static_cast<size_t>(p - data);
        }
        break;
      }
      case State::kBodyUntilClose: {
        const char* chunk = p;
        p = end;
        cb.on_http_body(chunk, static_cast<size_t>(end - chunk));
        break;
      }
      case State::kStatusLine:
      case State::kHeaders:
      case State::kChunkSize:
      case State::kTrailers: {
        const size_t limit = state_ == State::kChunkSize ? kMaxChunkLineBytes
                             : state_ == State::kTrailers ? kMaxTrailerBytes
                                                          : kMaxHeaderBytes;
        std::string_view line;
        const int r = take_line(p, end, limit, line);
        if (r < 0) {
          fail(state_ == State::kChunkSize ? Http1ParseError::kBadChunk
                                           : Http1ParseError::kHeadersTooLarge);
          return static_cast<size_t>(p - data);
        }
        if (r == 0) {  // the line continues in the next feed
          if (state_ == State::kStatusLine && !started_ && !(line_.size() == 1 && line_[0] == '\r')) {
            started_ = true;
          }
          return n;
        }
        bool stop = false;
        switch (state_) {
          case State::kStatusLine:
            if (line.empty()) break;  // a stray empty line before the status line: skipped
            started_ = true;
            if (!parse_status_line(line)) {
              fail(Http1ParseError::kBadStatusLine);
              stop = true;
            } else {
              state_ = State::kHeaders;
            }
            break;
          case State::kHeaders:
            if (line.empty()) {
              line_.clear();
              if (end_of_headers(cb)) return static_cast<size_t>(p - data);
            } else if (!parse_header_line(line, cb)) {
              stop = true;
            }
            break;
          case State::kChunkSize: {
            uint64_t size = 0;
            if (!parse_chunk_size(line, size)) {
              fail(Http1ParseError::kBadChunk);
              stop = true;
            } else if (size == 0) {
              state_ = State::kTrailers;
              line_bytes_ = 0;
            } else {
              state_ = State::kChunkData;
              remaining_ = size;
            }
            break;
          }
          default:  // kTrailers: their content is ignored; an empty line ends the message
            if (line.empty()) {
              line_.clear();
              state_ = State::kComplete;
              cb.on_http_complete();
              return static_cast<size_t>(p - data);
            }
            break;
        }
        line_.clear();
        if (stop) return static_cast<size_t>(p - data);
        break;
      }
      case State::kComplete:
      case State::kError:
        return static_cast<size_t>(p - data);
    }
  }
  return static_cast<size_t>(p - data);
}

Http1ParseError Http1ResponseParser::on_eof(Http1Callbacks& cb) {
  switch (state_) {
    case State::kStatusLine:
      if (!started_) return Http1ParseError::kNone;  // idle connection closed: no response begun
      fail(Http1ParseError::kTruncated);
      break;
    case State::kBodyUntilClose:
      state_ = State::kComplete;
      cb.on_http_complete();
      return Http1ParseError::kNone;
    case State::kComplete:
    case State::kError:
      break;
    default:
      fail(Http1ParseError::kTruncated);
      break;
  }
  return error_;
}

}  // namespace agentperf
