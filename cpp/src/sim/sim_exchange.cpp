#include "sim/sim_exchange.h"

#include <algorithm>
#include <cstdio>

#include "agentperf/clock.h"
#include "common/json_escape.h"
#include "common/rng.h"
#include "sim/sim_request.h"

namespace agentperf {

namespace {

constexpr int32_t kMaxOutputTokens = 1 << 30;

// Exchange timer kinds (the low bits of a timer token; the rest is the exchange's generation).
constexpr uint64_t kTimerStallOver = 1;
constexpr uint64_t kTimerHeadersDue = 2;

constexpr std::string_view kGarbageEvent = "data: <html>upstream sent garbage</html>\n\n";

}  // namespace

void SimExchange::start(SimResponder* responder, std::string_view method, std::string_view path,
                        std::string_view body, int64_t received_ns, uint64_t request_id) {
  ++gen_;
  active_ = true;
  responder_ = responder;
  received_ns_ = received_ns;
  head_sent_ = fault_fired_ = done_ = false;
  fault_ = Fault::kNone;
  handle_ = 0;
  headers_due_ns_ = 0;
  sent_ = 0;
  cached_ = 0;
  pending_.clear();
  stamps_ = SimRequestStamps{};
  stamps_.request_id = request_id;
  stamps_.received_ns = received_ns;
  status_ = 0;
  if (method == "GET" && path == "/health") return respond_simple(200, "OK", "application/json", "{\"status\":\"ok\"}");
  if (method == "GET" && path == "/v1/models")
    return respond_simple(200, "OK", "application/json",
                          "{\"object\":\"list\",\"data\":[{\"id\":\"" + host_.model_json() +
                              "\",\"object\":\"model\",\"created\":0,\"owned_by\":\"agentperf-native\"}]}");
  if (method == "GET" && path == "/metrics")
    return respond_simple(200, "OK", "text/plain; version=0.0.4", host_.metrics_text());
  bool chat = path == "/v1/chat/completions";
  if (method != "POST" || !(chat || path == "/v1/completions"))
    return respond_error(404, "Not Found", "no route " + std::string(method) + " " + std::string(path),
                         "not_found_error");
  generate(chat, body);
}

SimResponder* SimExchange::finish() {
  SimResponder* r = responder_;
  if (handle_) {  // still in the model (a fault, or the client went away)
    host_.model().cancel(handle_);
    handle_ = 0;
    host_.model_changed();
  } else if (fault_ == Fault::kStall) {  // still held by the stall
    --host_.counters().stalled;
    fault_ = Fault::kNone;
    host_.model_changed();
  }
  if (stamps_.request_id != 0) {
    stamps_.status = status_;
    stamps_.complete = done_ && head_sent_;
    host_.log_stamps(stamps_);
  }
  responder_ = nullptr;
  active_ = false;
  ++gen_;  // stale cookies and timers are ignored from now on
  host_.release(this);
  return r;
}

void SimExchange::abort() {
  if (active_) finish();
}

bool SimExchange::head(int status, const char* reason, const char* content_type, int64_t content_length) {
  uint32_t g = gen_;
  status_ = status;
  responder_->respond_head(status, reason, content_type, content_length);
  return active_ && gen_ == g;
}

bool SimExchange::body(std::string_view bytes) {
  uint32_t g = gen_;
  responder_->respond_body(bytes);
  return active_ && gen_ == g;
}

void SimExchange::respond_simple(int status, const char* reason, const char* content_type, const std::string& text) {
  int64_t write_ns = now_ns();
  if (head(status, reason, content_type, static_cast<int64_t>(text.size())) && body(text)) {
    if (done_ && status == 200) stamp_token_event(sent_, write_ns);  // a whole non-streaming completion
    finish()->respond_end();
  }
}

void SimExchange::stamp_token_event(int32_t tokens, int64_t now) {
  // Only bytes that went to the transport count (slow_headers holds them back until the head).
  if (!head_sent_) return;
  if (stamps_.first_token_ns == 0) stamps_.first_token_ns = now;
  stamps_.last_token_ns = now;
  ++stamps_.output_events;
  stamps_.output_tokens += tokens;
}

uint64_t parse_request_id(std::string_view v) {
  if (v.empty() || v.size() > 16) return 0;
  uint64_t id = 0;
  for (char c : v) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    id = id << 4 | static_cast<uint64_t>(d);
  }
  return id;
}

void SimExchange::respond_error(int status, const char* reason, const std::string& message, const char* type) {
  respond_simple(status, reason, "application/json",
                 "{\"error\":{\"message\":\"" + json_escape(message) + "\",\"type\":\"" + type +
                     "\",\"code\":" + std::to_string(status) + "}}");
}

void SimExchange::generate(bool chat, std::string_view body) {
  const SimServerConfig& cfg = host_.config();
  SimCounters& c = host_.counters();
  c.requests.add();
  SimRequest req;
  std::string err = parse_sim_request(body, chat, cfg.model_params.block_tokens, &req);
  if (!err.empty()) {
    c.rejected.add();
    return respond_error(400, "Bad Request", err, "invalid_request_error");
  }
  int64_t max_tokens = req.max_tokens > 0 ? std::min<int64_t>(req.max_tokens, kMaxOutputTokens) : cfg.output_tokens;
  if (!host_.model().fits(req.prompt_tokens, static_cast<int32_t>(max_tokens))) {
    c.rejected.add();
    return respond_error(400, "Bad Request",
                         "this request needs " + std::to_string(req.prompt_tokens + max_tokens) +
                             " tokens of KV cache (prompt " + std::to_string(req.prompt_tokens) + " + max_tokens " +
                             std::to_string(max_tokens) + ") but the simulated engine holds " +
                             std::to_string(cfg.model_params.kv_capacity_tokens),
                         "invalid_request_error");
  }
  Fault fault = draw_fault();
  switch (fault) {
    case Fault::k500: c.f500.add(); return respond_error(500, "Internal Server Error", "injected fault: http_500", "server_error");
    case Fault::k429: c.f429.add(); return respond_error(429, "Too Many Requests", "injected fault: http_429", "rate_limit_error");
    case Fault::k503: c.f503.add(); return respond_error(503, "Service Unavailable", "injected fault: http_503", "server_error");
    case Fault::kReset: c.freset.add(); break;
    case Fault::kTruncate: c.ftruncate.add(); break;
    case Fault::kMalformed: c.fmalformed.add(); break;
    default: break;
  }
  chat_ = chat;
  stream_ = req.stream;
  include_usage_ = req.include_usage || req.continuous_usage_stats;
  continuous_usage_ = req.continuous_usage_stats;
  prompt_tokens_ = req.prompt_tokens;
  max_tokens_ = static_cast<int32_t>(max_tokens);
  target_ = output_length(req.min_tokens, req.ignore_eos, req.prompt_hash, max_tokens_);
  spec_.prompt_tokens = req.prompt_tokens;
  spec_.output_tokens = target_;
  spec_.block_hashes = std::move(req.block_hashes);
  spec_.cookie = cookie_of();
  if (fault == Fault::kStall) {
    c.fstall.add();
    fault_ = Fault::kStall;
    ++c.stalled;
    host_.model_changed();
    if (cfg.stall_ns > 0)
      host_.loop().schedule(received_ns_ + cfg.stall_ns, this, (uint64_t{gen_} << 2) | kTimerStallOver);
    return;  // stall_ns = 0: never answered
  }
  fault_ = fault;
  if (fault == Fault::kSlowHeaders) {
    c.fslow.add();
    headers_due_ns_ = received_ns_ + std::max<int64_t>(1, cfg.slow_headers_ns);
    host_.loop().schedule(headers_due_ns_, this, (uint64_t{gen_} << 2) | kTimerHeadersDue);
  }
  if (stream_ && !headers_due_ns_ && !send_head()) return;
  submit(received_ns_);
}

void SimExchange::submit(int64_t arrival_ns) {
  handle_ = host_.model().submit(std::move(spec_), arrival_ns);
  host_.model_changed();
}

int32_t SimExchange::output_length(int64_t min_tokens, bool ignore_eos, uint64_t prompt_hash, int32_t max_tokens) const {
  const SimServerConfig& cfg = host_.config();
  if (ignore_eos || cfg.early_stop_probability <= 0 || max_tokens < 2) return max_tokens;
  uint64_t h = splitmix64_hash(cfg.seed ^ splitmix64_hash(prompt_hash ^ (static_cast<uint64_t>(max_tokens) << 1)));
  double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  if (u >= cfg.early_stop_probability) return max_tokens;
  int64_t lo = std::max<int64_t>(1, min_tokens), hi = max_tokens - 1;
  if (lo > hi) return max_tokens;
  return static_cast<int32_t>(lo + static_cast<int64_t>(splitmix64_hash(h) % static_cast<uint64_t>(hi - lo + 1)));
}

SimExchange::Fault SimExchange::draw_fault() {
  const SimServerConfig& c = host_.config();
  double p[] = {c.fault_http_500, c.fault_http_429, c.fault_http_503, c.fault_reset,
                c.fault_truncate, c.fault_malformed, c.fault_stall, c.fault_slow_headers};
  double sum = 0;
  for (double x : p) sum += x;
  if (sum <= 0) return Fault::kNone;
  double u = std::uniform_real_distribution<double>(0, 1)(host_.rng());
  for (int i = 0; i < 8; ++i) {
    if (u < p[i]) return static_cast<Fault>(i + 1);
    u -= p[i];
  }
  return Fault::kNone;
}

// Streaming responses only: the headers, then the role-only chunk that vLLM and OpenAI send.
bool SimExchange::send_head() {
  head_sent_ = true;
  if (!head(200, "OK", "text/event-stream", -1)) return false;
  if (!chat_) return true;
  return body("data: {\"id\":\"chatcmpl-sim\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"" +
              host_.model_json() +
              "\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n");
}

bool SimExchange::write(std::string_view bytes) {
  if (head_sent_) return body(bytes);
  pending_.append(bytes);
  return true;
}

void SimExchange::on_timer(uint64_t token) {
  if (!active_ || (token >> 2) != gen_) return;
  if ((token & 3) == kTimerStallOver) {
    --host_.counters().stalled;
    fault_ = Fault::kNone;  // the stall is over
    if (stream_ && !send_head()) return;
    submit(now_ns());
    return;
  }
  if ((token & 3) != kTimerHeadersDue) return;
  headers_due_ns_ = 0;
  if (!stream_) {
    if (!done_) return;  // the body goes out with its headers when it is complete
    std::string held;
    held.swap(pending_);
    respond_simple(200, "OK", "application/json", held);
    return;
  }
  std::string held;
  held.swap(pending_);
  if (!send_head() || (!held.empty() && !body(held))) return;
  if (done_) finish()->respond_end();
}

void SimExchange::on_emit(const SimEmission& e) {
  if (e.first) cached_ = e.cached_tokens;
  if (e.last) handle_ = 0;
  bool half = sent_ >= target_ / 2 || e.last;
  if (!fault_fired_ && half && (fault_ == Fault::kReset || fault_ == Fault::kTruncate || fault_ == Fault::kMalformed)) {
    fault_fired_ = true;
    if (fault_ == Fault::kReset) return finish()->respond_reset();
    if (fault_ == Fault::kTruncate) {
      // Non-streaming: a body shorter than its Content-Length.
      if (!stream_ && !(head(200, "OK", "application/json", 1000) && body("{\"id\":"))) return;
      return finish()->respond_truncate();
    }
    if (stream_ && !write(kGarbageEvent)) return;
  }
  sent_ += e.tokens;
  host_.counters().tokens.add(static_cast<uint64_t>(e.tokens));
  if (!stream_) {
    if (!e.last) return;
    done_ = true;
    std::string whole = fault_ == Fault::kMalformed ? "<html>upstream sent garbage</html>" : whole_body();
    if (headers_due_ns_) {
      pending_ = std::move(whole);
      return;
    }
    respond_simple(200, "OK", "application/json", whole);
    return;
  }
  int64_t write_ns = now_ns();  // before the write: a stamp the client's read can only follow
  if (!continuous_usage_) {
    if (!write(host_.token_event(chat_, e.tokens))) return;
    stamp_token_event(e.tokens, write_ns);
  } else {
    std::string text;
    for (int32_t i = 0; i < e.tokens; ++i) text += "tok ";
    std::string data = chat_ ? "data: {\"id\":\"chatcmpl-sim\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"" +
                                   host_.model_json() + "\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + text +
                                   "\"},\"finish_reason\":null}],"
                             : "data: {\"id\":\"cmpl-sim\",\"object\":\"text_completion\",\"created\":0,\"model\":\"" +
                                   host_.model_json() + "\",\"choices\":[{\"index\":0,\"text\":\"" + text +
                                   "\",\"finish_reason\":null}],";
    data.append(usage_json()).append("}\n\n");
    write_ns = now_ns();
    if (!write(data)) return;
    stamp_token_event(e.tokens, write_ns);
  }
  if (!e.last) return;
  done_ = true;
  if (!write(finish_events())) return;
  if (head_sent_) finish()->respond_end();  // else when the headers are due
}

std::string SimExchange::usage_json() const {
  char buf[256];
  int n = std::snprintf(buf, sizeof buf,
                        "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%d,\"total_tokens\":%lld,"
                        "\"prompt_tokens_details\":{\"cached_tokens\":%lld}}",
                        static_cast<long long>(prompt_tokens_), sent_, static_cast<long long>(prompt_tokens_ + sent_),
                        static_cast<long long>(cached_));
  return std::string(buf, static_cast<size_t>(n));
}

std::string SimExchange::whole_body() const {
  std::string content;
  content.reserve(static_cast<size_t>(sent_) * 4);
  for (int32_t i = 0; i < sent_; ++i) content += "tok ";
  const std::string& m = host_.model_json();
  std::string out = chat_ ? "{\"id\":\"chatcmpl-sim\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"" + m +
                                "\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"" + content +
                                "\"},\"finish_reason\":\""
                          : "{\"id\":\"cmpl-sim\",\"object\":\"text_completion\",\"created\":0,\"model\":\"" + m +
                                "\",\"choices\":[{\"index\":0,\"text\":\"" + content + "\",\"finish_reason\":\"";
  out.append(finish_reason()).append("\"}],").append(usage_json()).append("}");
  return out;
}

// The chunk with finish_reason, the usage chunk (when asked for) and [DONE].
std::string SimExchange::finish_events() const {
  const std::string& m = host_.model_json();
  std::string out = chat_ ? "data: {\"id\":\"chatcmpl-sim\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"" +
                                m + "\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\""
                          : "data: {\"id\":\"cmpl-sim\",\"object\":\"text_completion\",\"created\":0,\"model\":\"" + m +
                                "\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"";
  out.append(finish_reason()).append("\"}]");
  if (continuous_usage_) out.append(",").append(usage_json());
  out.append("}\n\n");
  if (include_usage_) {
    out.append("data: {\"id\":\"").append(chat_ ? "chatcmpl-sim" : "cmpl-sim").append("\",\"object\":\"");
    out.append(chat_ ? "chat.completion.chunk" : "text_completion").append("\",\"created\":0,\"model\":\"");
    out.append(m).append("\",\"choices\":[],").append(usage_json()).append("}\n\n");
  }
  out.append("data: [DONE]\n\n");
  return out;
}

}  // namespace agentperf
