// One request/response of the simulated server, independent of the HTTP version that carries it.
//
// A connection (HTTP/1.1 in sim_server.cpp, HTTP/2 in sim_http2.h) parses a request and hands it
// to a SimExchange with a SimResponder: the exchange decides the answer (routes, errors, faults),
// hands generation requests to the worker's model, formats what the model emits (SSE events or
// one JSON body, usage, finish reasons) and writes it through the responder. See sim_server.h for
// the behaviour it implements.
//
// Lifetime: exchanges are pooled by their worker and never freed while it runs (model cookies and
// loop timers may still name one); a generation counter makes stale cookies and timers harmless.
// An exchange ends in exactly one of: respond_end / respond_reset / respond_truncate called on its
// responder (the exchange has already returned itself to the pool by then, and may even be reused
// from inside that call), or abort() called by the transport (the client went away).
//
// Thread safety: everything runs on the owning worker's thread. Counters are relaxed atomics that
// other threads read for /metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "common/event_loop.h"
#include "common/single_writer_counter.h"
#include "agentperf/sim_model.h"
#include "agentperf/sim_server.h"

namespace agentperf {

/// A gauge written by one thread and read by any.
struct SimGauge {
  std::atomic<int64_t> v{0};
  void set(int64_t x) { v.store(x, std::memory_order_relaxed); }
  uint64_t get() const {
    int64_t x = v.load(std::memory_order_relaxed);
    return x > 0 ? static_cast<uint64_t>(x) : 0;
  }
};

/// One worker's counters and gauges (summed by SimServer::metrics()).
struct SimCounters {
  SingleWriterCounter accepted, requests, rejected, tokens;
  SingleWriterCounter f500, f429, f503, freset, ftruncate, fmalformed, fstall, fslow;
  SingleWriterCounter prompt_tokens, cache_queries, cache_hits, steps;
  SimGauge running, waiting, kv_used, kv_capacity, cache_blocks;
  int64_t stalled = 0;  ///< requests held by the stall fault (counted as waiting); worker thread only
};

/// How an exchange writes its answer. Implemented per HTTP version.
class SimResponder {
 public:
  virtual ~SimResponder() = default;
  /// The response head. `content_length` < 0: a streaming body (text/event-stream).
  virtual void respond_head(int status, const char* reason, const char* content_type, int64_t content_length) = 0;
  /// Body bytes (streaming: one SSE event or more).
  virtual void respond_body(std::string_view bytes) = 0;
  /// The response is complete.
  virtual void respond_end() = 0;
  /// Fault `reset`: abort the response abruptly (HTTP/1.1: RST the connection; HTTP/2: RST_STREAM).
  virtual void respond_reset() = 0;
  /// Fault `truncate`: close the connection without ending the response (FIN).
  virtual void respond_truncate() = 0;
};

class SimExchange;

/// What an exchange needs from the worker that runs it (all on the worker's thread).
class SimExchangeHost {
 public:
  virtual ~SimExchangeHost() = default;
  virtual const SimServerConfig& config() const = 0;
  virtual SimModel& model() = 0;
  virtual EventLoop& loop() = 0;
  virtual std::mt19937_64& rng() = 0;
  virtual SimCounters& counters() = 0;
  /// After any change to the model: publish its gauges and arm a timer for its next deadline.
  virtual void model_changed() = 0;
  virtual std::string metrics_text() const = 0;
  /// The served model name, JSON-escaped.
  virtual const std::string& model_json() const = 0;
  /// A content SSE event carrying `tokens` tokens (cached per worker); chat or text completion.
  virtual const std::string& token_event(bool chat, int32_t tokens) = 0;
  /// Returns an exchange to the pool.
  virtual void release(SimExchange* e) = 0;
  /// An exchange that carried a request id has ended.
  virtual void log_stamps(const SimRequestStamps& s) = 0;
};

class SimExchange final : public TimerTarget {
 public:
  SimExchange(SimExchangeHost& host, uint32_t slot) : host_(host), slot_(slot) {}

  /// Serves one request received (whole) at `received_ns`. Answers through `responder`, which
  /// must stay valid until the exchange ends (see the file comment). `request_id`: its
  /// X-Request-Id (parse_request_id), 0 when none: its stamps are logged only when non-zero.
  void start(SimResponder* responder, std::string_view method, std::string_view path, std::string_view body,
             int64_t received_ns, uint64_t request_id = 0);
  /// The transport went away before the exchange ended: cancels its model request, releases it.
  void abort();
  /// A model emission whose cookie names this exchange (the worker checks cookie_matches()).
  void on_emit(const SimEmission& e);
  void on_timer(uint64_t token) override;

  bool cookie_matches(uint64_t cookie) const { return active_ && cookie == cookie_of(); }
  uint32_t slot() const { return slot_; }

 private:
  enum class Fault : uint8_t { kNone, k500, k429, k503, kReset, kTruncate, kMalformed, kStall, kSlowHeaders };

  uint64_t cookie_of() const { return (uint64_t{slot_} << 32) | gen_; }
  void respond_simple(int status, const char* reason, const char* content_type, const std::string& text);
  void respond_error(int status, const char* reason, const std::string& message, const char* type);
  void generate(bool chat, std::string_view body);
  void submit(int64_t arrival_ns);
  int32_t output_length(int64_t min_tokens, bool ignore_eos, uint64_t prompt_hash, int32_t max_tokens) const;
  Fault draw_fault();
  // Each responder call may end this exchange (a write error closes the connection, which aborts
  // it): these return whether it is still the same live exchange.
  bool head(int status, const char* reason, const char* content_type, int64_t content_length);
  bool body(std::string_view bytes);
  bool send_head();
  bool write(std::string_view bytes);
  std::string usage_json() const;
  /// A token event was handed to the transport; `write_ns`: taken just before the write call.
  void stamp_token_event(int32_t tokens, int64_t write_ns);
  const char* finish_reason() const { return sent_ >= max_tokens_ ? "length" : "stop"; }
  std::string whole_body() const;
  std::string finish_events() const;
  // Ends the exchange: invalidates cookies and timers and returns it to the pool; then (last) lets
  // the responder act, which may reuse this object.
  SimResponder* finish();

  SimExchangeHost& host_;
  const uint32_t slot_;
  uint32_t gen_ = 0;
  bool active_ = false;
  SimResponder* responder_ = nullptr;
  bool chat_ = true, stream_ = false, include_usage_ = false, continuous_usage_ = false;
  bool head_sent_ = false, fault_fired_ = false, done_ = false;
  Fault fault_ = Fault::kNone;
  SimSequenceSpec spec_;   ///< the request until it enters the model
  uint64_t handle_ = 0;    ///< its model handle; 0: not in the model
  int32_t max_tokens_ = 0, target_ = 0, sent_ = 0;
  int64_t prompt_tokens_ = 0, cached_ = 0;
  int64_t received_ns_ = 0, headers_due_ns_ = 0;
  SimRequestStamps stamps_;  ///< this request's own stamps (logged at finish() when it has an id)
  int status_ = 0;
  std::string pending_;    ///< output held until the headers are due (slow_headers)
};

/// An X-Request-Id value as the engine writes it (1 to 16 hex digits) as a number; 0 otherwise.
uint64_t parse_request_id(std::string_view value);

}  // namespace agentperf
