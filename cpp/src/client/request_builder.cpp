#include "client/request_builder.h"

#include <algorithm>
#include <cstdio>

#include "common/json_escape.h"
#include "common/rng.h"

namespace agentperf {

void GeneratedHistory::keep(int32_t turn, size_t turns, std::string& text) {
  if (text_.size() < turns) {
    text_.resize(turns);
    ok_.resize(turns, false);
  }
  text_[turn].swap(text);
  ok_[turn] = true;
}

void GeneratedHistory::clear() {
  for (auto& t : text_) t.clear();
  std::fill(ok_.begin(), ok_.end(), false);
}

RequestBuilder::RequestBuilder(const Workload& workload, const EngineConfig& config)
    : workload_(workload), authorization_(config.authorization) {
  const RequestOptions& ro = workload.request;
  json_prefix_ = "{\"model\":" + json_quote(ro.model) + ",\"stream\":true";
  if (ro.include_usage) json_prefix_ += ",\"stream_options\":{\"include_usage\":true}";
  if (ro.ignore_eos) json_prefix_ += ",\"ignore_eos\":true";
  json_prefix_ += ro.extra_body;
  bool v6 = config.host.find(':') != std::string::npos;
  authority_ = config.host_header.empty()
                   ? (v6 ? "[" + config.host + "]" : config.host) + ":" + std::to_string(config.port)
                   : config.host_header;
}

void RequestBuilder::build(int32_t conversation, int32_t turn_index, const std::string* prefix,
                           const GeneratedHistory* generated, uint64_t request_id, RequestSlices& out) const {
  const Workload& wl = workload_;
  const Conversation& conv = wl.conversations[conversation];
  const TurnSpec& turn = conv.turns[turn_index];
  std::string& json = out.json_head;
  json = json_prefix_;
  char num[64];
  if (turn.max_tokens >= 0) {
    std::snprintf(num, sizeof num, ",\"max_tokens\":%d", turn.max_tokens);
    json += num;
  }
  if (turn.min_tokens >= 0) {
    std::snprintf(num, sizeof num, ",\"min_tokens\":%d", turn.min_tokens);
    json += num;
  }
  json += conv.members;
  json += ',';
  json += wl.request.open;
  if (turn.insert_at < 0) prefix = nullptr;
  if (conv.reply_of.empty()) generated = nullptr;

  std::vector<iovec>& iov = out.body;
  iov.clear();
  iov.push_back({json.data(), json.size()});
  uint64_t body = json.size() + wl.request.close.size() + 1;
  for (uint32_t i = turn.piece_begin; i < turn.piece_end; ++i) {
    if (prefix && static_cast<int32_t>(i - turn.piece_begin) == turn.insert_at) {
      iov.push_back({const_cast<char*>(prefix->data()), prefix->size()});
      body += prefix->size();
    }
    const uint32_t f = conv.pieces[i];
    const std::string* text = &conv.fragments[f];
    if (generated && conv.reply_of[f] >= 0) {
      if (const std::string* g = generated->reply(conv.reply_of[f])) text = g;
    }
    iov.push_back({const_cast<char*>(text->data()), text->size()});
    body += text->size();
  }
  if (prefix && static_cast<uint32_t>(turn.insert_at) == turn.piece_end - turn.piece_begin) {
    iov.push_back({const_cast<char*>(prefix->data()), prefix->size()});
    body += prefix->size();
  }
  out.json_tail = wl.request.close;
  out.json_tail += '}';
  iov.push_back({out.json_tail.data(), out.json_tail.size()});

  out.head.path = wl.request.path;
  out.head.authority = authority_;
  out.head.authorization = authorization_;
  out.head.content_length = body;
  if (request_id != 0) {
    std::snprintf(out.request_id, sizeof out.request_id, "%016llx", static_cast<unsigned long long>(request_id));
    out.head.request_id = std::string_view(out.request_id, 16);
  } else {
    out.head.request_id = {};
  }
  out.body_bytes = body;
}

std::string isolation_prefix(const RequestOptions& ro, uint64_t seed, uint64_t run_nonce, int64_t agent_id,
                             uint64_t epoch) {
  uint64_t state = seed_of(seed, run_nonce, static_cast<uint64_t>(agent_id), epoch);
  char buf[32];
  std::string prefix;
  if (ro.isolation_style == IsolationStyle::kTokenIds) {
    const uint64_t span = static_cast<uint64_t>(ro.isolation_token_hi - ro.isolation_token_lo);
    for (int i = 0; i < ro.isolation_tokens; ++i) {
      int n = std::snprintf(buf, sizeof buf, "%lld,",
                            static_cast<long long>(ro.isolation_token_lo + splitmix64_next(state) % span));
      prefix.append(buf, static_cast<size_t>(n));
    }
  } else {
    int n = std::snprintf(buf, sizeof buf, "[rid:%016llx] ", static_cast<unsigned long long>(splitmix64_next(state)));
    prefix.append(buf, static_cast<size_t>(n));
  }
  return prefix;
}

}  // namespace agentperf
