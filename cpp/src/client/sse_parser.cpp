// Incremental SSE parser and the per-event key scanner (see sse_parser.h for the contract).
//
// Line splitting: memchr for '\n' and '\r', with the next position of each cached for the rest of
// the feed, so a feed is scanned once whatever the line-ending style (LF, CRLF, bare CR). A line
// lying wholly inside the feed is handled in place; only a line cut by the end of a feed is copied
// (into line_), and only an event whose data spans feeds or several data lines is copied (data_).
//
// Inspection: a small structural JSON walker (no DOM, no allocation, no exceptions). It skips
// strings with memchr (honouring backslash escapes), so text inside string values can never be
// taken for a key, and it knows which object it is in: "usage" figures are read only inside the
// usage object, "cached_tokens" only inside usage.prompt_tokens_details, "error" only at top level.
// Malformed or truncated JSON stops the walk; what was found before the fault is kept, and the
// event is marked malformed.
#include "agentperf/sse_parser.h"

#include <cstring>

#include "common/byte_scan.h"
#include "common/keyed_hash.h"

namespace agentperf {

namespace {

inline bool is_json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

inline bool key_is(std::string_view key, std::string_view want) { return key == want; }

// The closing quote of a JSON string whose body starts at p (just after an opening quote, which
// bounds the backslash count), or e when it is not terminated before e.
const char* string_end(const char* p, const char* e) {
  for (;;) {
    const char* quote = find_byte(p, e, '"');
    if (quote == e) return e;
    const char* b = quote;
    while (b[-1] == '\\') --b;  // stops at the opening quote at the latest
    if (((quote - b) & 1) == 0) return quote;  // an even run of backslashes: not escaped
    p = quote + 1;
  }
}

enum class Ctx : uint8_t {
  kTop,            ///< members of the top-level object
  kAny,            ///< members of any other object outside usage
  kUsage,          ///< members of the usage object
  kPromptDetails,  ///< members of usage.prompt_tokens_details
};

// Nesting deeper than this is skipped without looking at keys (bounds the recursion).
constexpr int kMaxDepth = 48;

class Scanner {
 public:
  Scanner(const char* p, const char* e, SseEvent* ev) : p_(p), e_(e), ev_(ev) {}

  // At '{'. Returns false when the JSON is cut or malformed (the walk stops there).
  bool object(Ctx ctx, int depth) {
    ++p_;
    ws();
    if (p_ < e_ && *p_ == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      ws();
      if (p_ >= e_ || *p_ != '"') return false;
      const char* ks = p_ + 1;
      if (!skip_string()) return false;
      std::string_view key(ks, static_cast<size_t>(p_ - 1 - ks));
      ws();
      if (p_ >= e_ || *p_ != ':') return false;
      ++p_;
      ws();
      if (p_ >= e_) return false;
      if (!member(ctx, key, depth)) return false;
      ws();
      if (p_ >= e_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == '}') {
        ++p_;
        return true;
      }
      return false;
    }
  }

  int64_t cached_tokens = -1;
  int64_t cache_hit_tokens = -1;
  int outputs = 0;  ///< output values found (non-empty strings and tool_calls arrays)
  std::string_view first_output;  ///< the first output value's string body, if it was a string
  /// Only whitespace left after the value.
  bool at_end() {
    ws();
    return p_ == e_;
  }

 private:
  void ws() {
    while (p_ < e_ && is_json_ws(*p_)) ++p_;
  }

  // At '"'; moves past the closing quote. False when the string is not terminated.
  bool skip_string() {
    const char* q = string_end(p_ + 1, e_);
    p_ = q == e_ ? e_ : q + 1;
    return q != e_;
  }

  // A number or literal: up to the next structural character or whitespace.
  bool skip_scalar() {
    const char* s = p_;
    while (p_ < e_) {
      char c = *p_;
      if (c == ',' || c == '}' || c == ']' || is_json_ws(c)) break;
      if (c == '"' || c == '{' || c == '[' || c == ':') return false;
      ++p_;
    }
    return p_ > s;
  }

  // Skips any value without looking inside (non-recursive).
  bool skip_value() {
    char c = *p_;
    if (c == '"') return skip_string();
    if (c != '{' && c != '[') return skip_scalar();
    int depth = 0;
    while (p_ < e_) {
      c = *p_;
      if (c == '"') {
        if (!skip_string()) return false;
        continue;
      }
      if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) {
          ++p_;
          return true;
        }
      }
      ++p_;
    }
    return false;
  }

  bool array(int depth) {
    ++p_;
    ws();
    if (p_ < e_ && *p_ == ']') {
      ++p_;
      return true;
    }
    for (;;) {
      ws();
      if (p_ >= e_ || !value(Ctx::kAny, depth)) return false;
      ws();
      if (p_ >= e_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == ']') {
        ++p_;
        return true;
      }
      return false;
    }
  }

  // Any value, looking for keys inside objects and arrays.
  bool value(Ctx ctx, int depth) {
    char c = *p_;
    if (c == '{') return depth < kMaxDepth ? object(ctx, depth + 1) : skip_value();
    if (c == '[') return depth < kMaxDepth ? array(depth + 1) : skip_value();
    if (c == '"') return skip_string();
    return skip_scalar();
  }

  // A non-negative integer figure; -1 for null, strings, negative numbers and the like.
  bool read_count(int64_t* out) {
    char c = *p_;
    if (c < '0' || c > '9') {
      *out = -1;
      return skip_value();
    }
    int64_t v = 0;
    while (p_ < e_ && *p_ >= '0' && *p_ <= '9') {
      if (v < (INT64_MAX - 9) / 10) v = v * 10 + (*p_ - '0');
      ++p_;
    }
    *out = v;
    if (p_ < e_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) return skip_scalar();  // 12.0 -> 12
    return true;
  }

  bool member(Ctx ctx, std::string_view key, int depth) {
    const char c = *p_;
    switch (ctx) {
      case Ctx::kUsage:
        if (key_is(key, "prompt_tokens")) return read_count(&ev_->usage.prompt_tokens);
        if (key_is(key, "completion_tokens")) return read_count(&ev_->usage.completion_tokens);
        if (key_is(key, "prompt_cache_hit_tokens")) return read_count(&cache_hit_tokens);
        if (c == '{' && depth < kMaxDepth && key_is(key, "prompt_tokens_details")) {
          return object(Ctx::kPromptDetails, depth + 1);
        }
        return skip_value();
      case Ctx::kPromptDetails:
        if (key_is(key, "cached_tokens")) return read_count(&cached_tokens);
        return skip_value();
      case Ctx::kTop:
      case Ctx::kAny:
        break;
    }
    switch (key.size()) {
      case 4:   // text
      case 9:   // reasoning
      case 17:  // reasoning_content
      case 7:   // content, timings
        if (c == '"' && (key_is(key, "content") || key_is(key, "text") || key_is(key, "reasoning") ||
                         key_is(key, "reasoning_content"))) {
          const bool non_empty = p_ + 1 < e_ && p_[1] != '"';
          const char* start = p_ + 1;
          if (!skip_string()) return false;  // a cut string is not counted
          if (non_empty) {
            ev_->has_output = true;
            if (outputs++ == 0) first_output = std::string_view(start, static_cast<size_t>(p_ - 1 - start));
            if (ev_->text.empty() && (key_is(key, "content") || key_is(key, "text")))
              ev_->text = std::string_view(start, static_cast<size_t>(p_ - 1 - start));
          }
          return true;
        }
        if (key_is(key, "timings")) return skip_value();  // llama.cpp's figures: nothing to find
        break;
      case 10:  // tool_calls
        if (c == '[' && key_is(key, "tool_calls")) {
          const char* q = p_ + 1;
          while (q < e_ && is_json_ws(*q)) ++q;
          const bool non_empty = q < e_ && *q != ']';
          if (!skip_value()) return false;
          if (non_empty) {
            ev_->has_output = true;
            ++outputs;  // not a string: first_output stays empty
          }
          return true;
        }
        break;
      case 5:  // usage, error
        if (c == '{' && !ev_->has_usage && depth < kMaxDepth && key_is(key, "usage")) {
          ev_->has_usage = true;
          return object(Ctx::kUsage, depth + 1);
        }
        if (ctx == Ctx::kTop && c != 'n' && c != 'f' && key_is(key, "error")) {  // not null/false
          ev_->error = true;
          return skip_value();
        }
        break;
      case 8:  // logprobs: large, and its "content" is an array of token records, not output
        if (key_is(key, "logprobs")) return skip_value();
        break;
      default:
        break;
    }
    return value(Ctx::kAny, depth);
  }

  const char* p_;
  const char* e_;
  SseEvent* ev_;
};

}  // namespace

namespace {

// inspect_sse_data, also telling how many output values the event holds and, when the first was a
// string, its body.
SseEvent inspect_json(std::string_view data, int* outputs, std::string_view* first_output) {
  SseEvent ev;
  if (data == "[DONE]") {
    ev.done = true;
    return ev;
  }
  const char* p = data.data();
  const char* e = p + data.size();
  while (p < e && is_json_ws(*p)) ++p;
  if (p == e || *p != '{') {
    ev.malformed = true;
    return ev;
  }
  Scanner s(p, e, &ev);
  // Broken JSON (cut, a missing colon, garbage after the object): what was found before the fault
  // is kept, and the event is malformed.
  if (!s.object(Ctx::kTop, 1) || !s.at_end()) ev.malformed = true;
  if (ev.has_usage) {
    ev.usage.cached_tokens = s.cached_tokens >= 0 ? s.cached_tokens : s.cache_hit_tokens;
  }
  *outputs = s.outputs;
  *first_output = s.first_output;
  return ev;
}

}  // namespace

SseEvent inspect_sse_data(std::string_view data) {
  int outputs = 0;
  std::string_view first_output;
  return inspect_json(data, &outputs, &first_output);
}

SseEvent SseParser::inspect(std::string_view data) {
  const char* p = data.data();
  const char* e = p + data.size();
  const Shape& sh = shape_;
  if (sh.head_len != 0 && data.size() > size_t{sh.head_len} + sh.tail_len && p[sh.head_len - 1] == '"' &&
      keyed_hash(p, sh.head_len) == sh.head_hash) {
    const char* value = p + sh.head_len;
    const char* close = string_end(value, e);
    if (close != value && close != e && static_cast<size_t>(e - close) == sh.tail_len &&
        keyed_hash(close, sh.tail_len) == sh.tail_hash) {
      ++shape_hits_;
      SseEvent ev;
      ev.has_output = true;
      if (sh.is_text) ev.text = std::string_view(value, static_cast<size_t>(close - value));
      return ev;
    }
  }
  int outputs = 0;
  std::string_view output;
  SseEvent ev = inspect_json(data, &outputs, &output);
  if (outputs == 1 && !output.empty() && !ev.has_usage && !ev.error && !ev.malformed) {
    // One string is the event's only output: remember the shape around it.
    const char* close = output.data() + output.size();
    shape_.head_len = static_cast<uint32_t>(output.data() - p);
    shape_.head_hash = keyed_hash(p, shape_.head_len);
    shape_.tail_len = static_cast<uint32_t>(e - close);
    shape_.tail_hash = keyed_hash(close, shape_.tail_len);
    shape_.is_text = ev.text.data() == output.data();
  }
  return ev;
}

namespace {
// Buffers that grew past this for one huge line or event are given back on reset(), so that a
// long-lived parser does not keep the largest response it ever saw.
constexpr size_t kKeepCapacity = 64 * 1024;

void clear_buffer(std::string& s) {
  if (s.capacity() > kKeepCapacity) {
    std::string().swap(s);
  } else {
    s.clear();
  }
}
}  // namespace

void SseParser::reset() {
  clear_buffer(line_);
  clear_buffer(data_);
  pending_ = {};
  cur_ = end_ = nullptr;
  next_lf_ = next_cr_ = nullptr;
  saw_data_ = data_in_place_ = in_event_ = event_error_ = last_was_cr_ = overflowed_ = false;
  event_data_ = {};
}

void SseParser::overflow() {
  overflowed_ = true;
  cur_ = end_;
  clear_buffer(line_);
  clear_buffer(data_);
  pending_ = {};
  event_data_ = {};
  saw_data_ = data_in_place_ = false;
}

bool SseParser::whole_event(const char* data, size_t n, SseEvent* out) {
  constexpr size_t kPrefix = 5;  // "data:"
  if (n < kPrefix + 2 || n - 2 > max_event_bytes_ || overflowed_ || last_was_cr_ || in_event_ || !line_.empty())
    return false;
  if (std::memcmp(data, "data:", kPrefix) != 0 || data[n - 2] != '\n' || data[n - 1] != '\n') return false;
  // Any byte below 14 inside (CR, LF; also tab, form feed...): the line-by-line path decides.
  if (any_byte_below(data + kPrefix, data + n - 2, '\r' + 1)) return false;
  std::string_view value(data + kPrefix, n - 2 - kPrefix);
  if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  event_data_ = value;
  *out = inspect(value);
  return true;
}

void SseParser::begin_feed(const char* data, size_t n) {
  cur_ = data;
  end_ = data + n;
  next_lf_ = next_cr_ = nullptr;
  if (n == 0 || overflowed_) {
    cur_ = end_;
    return;
  }
  if (last_was_cr_ && *data == '\n') ++cur_;  // the LF of a CRLF split between feeds
  last_was_cr_ = false;
}

void SseParser::save_pending() {
  if (data_in_place_) {
    data_.assign(pending_.data(), pending_.size());
    data_in_place_ = false;
  }
  pending_ = {};
}

bool SseParser::next_event(SseEvent* out) {
  while (cur_ < end_) {
    const size_t left = static_cast<size_t>(end_ - cur_);
    if (!next_lf_ || next_lf_ < cur_) {
      const void* q = std::memchr(cur_, '\n', left);
      next_lf_ = q ? static_cast<const char*>(q) : end_;
    }
    if (!next_cr_ || next_cr_ < cur_) {
      const void* q = std::memchr(cur_, '\r', left);
      next_cr_ = q ? static_cast<const char*>(q) : end_;
    }
    const char* eol = next_lf_ < next_cr_ ? next_lf_ : next_cr_;
    if (eol == end_) {  // an unterminated line: keep it for the next feed
      if (line_.size() + left > max_event_bytes_) {
        overflow();
        return false;
      }
      line_.append(cur_, left);
      cur_ = end_;
      break;
    }
    if (line_.size() + static_cast<size_t>(eol - cur_) > max_event_bytes_) {
      overflow();
      return false;
    }
    const char* next = eol + 1;
    if (*eol == '\r') {
      if (next < end_) {
        if (*next == '\n') ++next;
      } else {
        last_was_cr_ = true;
      }
    }
    bool completed;
    if (line_.empty()) {
      completed = process_line(std::string_view(cur_, static_cast<size_t>(eol - cur_)), true, out);
    } else {
      line_.append(cur_, static_cast<size_t>(eol - cur_));
      completed = process_line(line_, false, out);
      line_.clear();
    }
    if (overflowed_) return false;
    cur_ = next;
    if (completed) return true;
  }
  save_pending();
  return false;
}

bool SseParser::process_line(std::string_view line, bool in_place, SseEvent* out) {
  if (line.empty()) {  // dispatch
    const bool had_data = saw_data_;
    if (had_data) {
      // data_ keeps its bytes until the next event's first data line overwrites them: event_data()
      // stays valid through the callback.
      event_data_ = data_in_place_ ? pending_ : std::string_view(data_);
      *out = inspect(event_data_);
      if (event_error_) out->error = true;
    }
    saw_data_ = data_in_place_ = in_event_ = event_error_ = false;
    pending_ = {};
    return had_data;
  }
  if (line[0] == ':') return false;  // comment
  in_event_ = true;
  std::string_view field = line;
  std::string_view value;
  if (const void* c = std::memchr(line.data(), ':', line.size())) {
    const size_t colon = static_cast<size_t>(static_cast<const char*>(c) - line.data());
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (!saw_data_) {
      saw_data_ = true;
      if (in_place) {
        pending_ = value;
        data_in_place_ = true;
      } else {
        data_.assign(value.data(), value.size());
        data_in_place_ = false;
      }
    } else {
      const size_t joined = (data_in_place_ ? pending_.size() : data_.size()) + 1 + value.size();
      if (joined > max_event_bytes_) {
        overflow();
        return false;
      }
      if (data_in_place_) {
        data_.assign(pending_.data(), pending_.size());
        data_in_place_ = false;
        pending_ = {};
      }
      data_.push_back('\n');
      data_.append(value.data(), value.size());
    }
  } else if (field == "event") {
    event_error_ = value == "error";
  }
  return false;
}

}  // namespace agentperf
