#include "sim/sim_request.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace agentperf {

namespace {

constexpr uint64_t kChainSeed = 0x6a09e667f3bcc908ULL;  // block -1 of every chain
constexpr int kMaxDepth = 64;

inline uint64_t mix(uint64_t h, uint64_t w) {
  h ^= w;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 32;
  return h;
}

inline uint64_t finish(uint64_t h) {
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 29;
  return h;
}

// A forward-only scanner over JSON text; every method leaves `p` after what it consumed.
class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}

  void ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\n' || s_[p_] == '\r' || s_[p_] == '\t')) ++p_;
  }
  bool eat(char c) {
    ws();
    if (p_ < s_.size() && s_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool peek(char c) {
    ws();
    return p_ < s_.size() && s_[p_] == c;
  }
  bool at_end() {
    ws();
    return p_ == s_.size();
  }
  size_t pos() const { return p_; }

  // A string; `raw` is its text between the quotes, escapes not decoded.
  bool string(std::string_view* raw) {
    ws();
    if (p_ >= s_.size() || s_[p_] != '"') return false;
    size_t start = ++p_;
    while (p_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[p_]);
      if (c == '\\') {
        p_ += 2;
        continue;
      }
      if (c == '"') {
        *raw = s_.substr(start, p_ - start);
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      ++p_;
    }
    return false;
  }

  bool boolean(bool* v) {
    ws();
    if (s_.substr(p_, 4) == "true") {
      p_ += 4;
      *v = true;
      return true;
    }
    if (s_.substr(p_, 5) == "false") {
      p_ += 5;
      *v = false;
      return true;
    }
    if (s_.substr(p_, 4) == "null") {  // null: the default
      p_ += 4;
      return true;
    }
    return false;
  }

  // An integer (a JSON number without fraction or exponent). null leaves *v unchanged.
  bool integer(int64_t* v) {
    ws();
    if (s_.substr(p_, 4) == "null") {
      p_ += 4;
      return true;
    }
    bool neg = p_ < s_.size() && s_[p_] == '-';
    if (neg) ++p_;
    size_t start = p_;
    int64_t x = 0;
    while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') {
      if (x > (INT64_MAX - 9) / 10) return false;
      x = x * 10 + (s_[p_++] - '0');
    }
    if (p_ == start) return false;
    if (p_ < s_.size() && (s_[p_] == '.' || s_[p_] == 'e' || s_[p_] == 'E')) return false;
    *v = neg ? -x : x;
    return true;
  }

  bool skip_value(int depth = 0) {
    ws();
    if (p_ >= s_.size()) return false;
    char c = s_[p_];
    if (c == '"') {
      std::string_view raw;
      return string(&raw);
    }
    if (c == '{' || c == '[') {
      if (depth >= kMaxDepth) return false;
      const char close = c == '{' ? '}' : ']';
      ++p_;
      if (eat(close)) return true;
      for (;;) {
        if (c == '{') {
          std::string_view key;
          if (!string(&key) || !eat(':')) return false;
        }
        if (!skip_value(depth + 1)) return false;
        if (eat(',')) continue;
        return eat(close);
      }
    }
    size_t start = p_;
    while (p_ < s_.size() && ((s_[p_] >= '0' && s_[p_] <= '9') || (s_[p_] >= 'a' && s_[p_] <= 'z') ||
                              s_[p_] == '-' || s_[p_] == '+' || s_[p_] == '.' || s_[p_] == 'E')) {
      ++p_;
    }
    return p_ > start;
  }

 private:
  std::string_view s_;
  size_t p_ = 0;
};

void hash_blocks(const unsigned char* data, size_t len, size_t block_bytes, SimRequest* out) {
  uint64_t h = kChainSeed;
  size_t full = len / block_bytes;
  out->block_hashes.resize(full);
  for (size_t i = 0; i < full; ++i) {
    h = sim_hash_bytes(data + i * block_bytes, block_bytes, h);
    out->block_hashes[i] = h;
  }
  out->prompt_hash = sim_hash_bytes(data + full * block_bytes, len - full * block_bytes, h);
}

std::string parse_stream_options(Scanner& sc, SimRequest* out) {
  if (!sc.peek('{')) {
    bool ignored = false;
    if (sc.peek('n') && sc.boolean(&ignored)) return "";  // null
    return "'stream_options' must be an object";
  }
  sc.eat('{');
  if (sc.eat('}')) return "";
  for (;;) {
    std::string_view key;
    if (!sc.string(&key) || !sc.eat(':')) return "malformed JSON in 'stream_options'";
    bool ok = key == "include_usage"            ? sc.boolean(&out->include_usage)
              : key == "continuous_usage_stats" ? sc.boolean(&out->continuous_usage_stats)
                                                : sc.skip_value(1);
    if (!ok) return "stream_options." + std::string(key) + " must be a boolean";
    if (sc.eat(',')) continue;
    if (sc.eat('}')) return "";
    return "malformed JSON in 'stream_options'";
  }
}

std::string parse_token_ids(Scanner& sc, std::vector<uint32_t>* ids) {
  // sc is after '['.
  if (sc.eat(']')) return "'prompt' must not be empty";
  for (;;) {
    if (sc.peek('"') || sc.peek('['))
      return "'prompt' must be one string or one array of token ids (batched prompts are not supported)";
    int64_t id = -1;
    if (!sc.integer(&id) || id < 0 || id > UINT32_MAX) return "'prompt' token ids must be integers in [0, 2^32)";
    ids->push_back(static_cast<uint32_t>(id));
    if (sc.eat(',')) continue;
    if (sc.eat(']')) return "";
    return "malformed JSON in 'prompt'";
  }
}

}  // namespace

uint64_t sim_hash_bytes(const void* data, size_t len, uint64_t seed) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ULL);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = mix(h, w);
  }
  uint64_t tail = 0;
  for (size_t k = 0; i + k < len; ++k) tail |= static_cast<uint64_t>(p[i + k]) << (8 * k);
  return finish(mix(h, tail));
}

std::string parse_sim_request(std::string_view body, bool chat, int32_t block_tokens, SimRequest* out) {
  *out = SimRequest{};
  if (block_tokens < 1) block_tokens = 1;
  Scanner sc(body);
  if (!sc.eat('{')) return "the request body must be a JSON object";
  std::string_view prompt_text;
  std::vector<uint32_t> ids;
  bool have_prompt = false;
  if (!sc.eat('}')) {
    for (;;) {
      std::string_view key;
      if (!sc.string(&key) || !sc.eat(':')) return "malformed JSON in the request body";
      std::string err;
      bool ok = true;
      if (key == "stream") {
        ok = sc.boolean(&out->stream);
        if (!ok) err = "'stream' must be a boolean";
      } else if (key == "stream_options") {
        err = parse_stream_options(sc, out);
      } else if (key == "max_tokens" || key == "max_completion_tokens") {
        ok = sc.integer(&out->max_tokens);
        if (!ok) err = "'" + std::string(key) + "' must be an integer";
      } else if (key == "min_tokens") {
        ok = sc.integer(&out->min_tokens);
        if (!ok) err = "'min_tokens' must be an integer";
      } else if (key == "ignore_eos") {
        ok = sc.boolean(&out->ignore_eos);
        if (!ok) err = "'ignore_eos' must be a boolean";
      } else if (key == "messages" && chat) {
        sc.ws();
        size_t start = sc.pos();
        if (!sc.peek('[')) return "'messages' must be an array";
        if (!sc.skip_value()) return "malformed JSON in 'messages'";
        prompt_text = body.substr(start, sc.pos() - start);
        have_prompt = true;
      } else if (key == "prompt" && !chat) {
        if (sc.peek('"')) {
          ok = sc.string(&prompt_text);
          if (!ok) err = "malformed JSON string in 'prompt'";
        } else if (sc.eat('[')) {
          err = parse_token_ids(sc, &ids);
          out->token_ids = true;
        } else {
          err = "'prompt' must be a string or an array of token ids";
        }
        have_prompt = true;
      } else {
        ok = sc.skip_value();
        if (!ok) err = "malformed JSON in '" + std::string(key) + "'";
      }
      if (!err.empty()) return err;
      if (sc.eat(',')) continue;
      if (sc.eat('}')) break;
      return "malformed JSON in the request body";
    }
  }
  if (!sc.at_end()) return "trailing data after the JSON body";
  if (!have_prompt) return chat ? "'messages' is required" : "'prompt' is required";
  if (out->max_tokens == 0 || out->max_tokens < -1) return "'max_tokens' must be >= 1";
  if (out->min_tokens < -1) return "'min_tokens' must be >= 0";
  if (out->max_tokens > 0 && out->min_tokens > out->max_tokens) return "'min_tokens' must not exceed 'max_tokens'";
  size_t block = static_cast<size_t>(block_tokens);
  if (out->token_ids) {
    out->prompt_tokens = static_cast<int64_t>(ids.size());
    hash_blocks(reinterpret_cast<const unsigned char*>(ids.data()), ids.size() * sizeof(uint32_t),
                block * sizeof(uint32_t), out);
  } else {
    out->prompt_tokens = std::max<int64_t>(1, static_cast<int64_t>((prompt_text.size() + 3) / 4));
    hash_blocks(reinterpret_cast<const unsigned char*>(prompt_text.data()), prompt_text.size(), block * 4, out);
  }
  return "";
}

}  // namespace agentperf
