// The built-in simulated inference server (native): an OpenAI-compatible streaming endpoint on
// loopback with a configurable time to first token, token count and pace, plus fault injection.
//
// This is the seed of the simulator: today it is a "null" server whose answer is known exactly
// (first output event at receipt + ttft_ns, then one event every itl_ns), which makes it the ground
// truth for the engine's tests and the embedded default for demos.
//
// Protocol: HTTP/1.1 keep-alive. POST /v1/chat/completions and /v1/completions (streaming SSE with
// chunked transfer encoding, or one JSON body when "stream":false), GET /v1/models, GET /health,
// GET /metrics (Prometheus text). Output length: the request's max_tokens when given, else
// output_tokens. Usage is sent when the request asks for stream_options.include_usage (and always
// in non-streaming bodies); prompt_tokens = request body bytes / 4 (a deterministic rule, not a
// tokenizer); cached_tokens = 0.
//
// Thread safety: start()/stop() from one controlling thread; metrics() from any thread. Each worker
// thread runs its own event loop over its own accepted connections (SO_REUSEPORT listeners).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace agentperf {

struct SimServerConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 0;                 ///< 0: an ephemeral port (see SimServer::port())
  int workers = 1;                   ///< event-loop threads
  int64_t ttft_ns = 200'000'000;     ///< request fully received → first output event
  int64_t itl_ns = 10'000'000;       ///< gap between output events
  int32_t output_tokens = 100;       ///< tokens per response when the request has no max_tokens
  int32_t tokens_per_chunk = 1;      ///< tokens carried by one event (speculative-decoding shape)
  std::string model = "agentperf-sim";
  uint64_t seed = 1;
  // Fault injection: each is a probability per generation request, all 0 (off) by default.
  double fault_http_500 = 0;   ///< answer 500 with a JSON error body
  double fault_http_429 = 0;   ///< answer 429
  double fault_http_503 = 0;   ///< answer 503
  double fault_reset = 0;      ///< reset the connection (RST) halfway through the stream
  double fault_truncate = 0;   ///< close the connection (FIN) halfway, without the last chunk
  double fault_malformed = 0;  ///< send a data line that is not JSON halfway through the stream
  double fault_stall = 0;      ///< send nothing for stall_ns (0: never answer) before responding
  double fault_slow_headers = 0;  ///< delay the response headers by slow_headers_ns
  int64_t stall_ns = 0;
  int64_t slow_headers_ns = 1'000'000'000;
};

/// Counters since start(); read with relaxed atomics, so a snapshot may be a few events stale.
struct SimServerMetrics {
  uint64_t connections_accepted = 0;
  uint64_t requests_total = 0;
  uint64_t requests_running = 0;
  uint64_t tokens_generated = 0;
  uint64_t faults_http_500 = 0, faults_http_429 = 0, faults_http_503 = 0, faults_reset = 0,
           faults_truncate = 0, faults_malformed = 0, faults_stall = 0, faults_slow_headers = 0;
};

class SimWorker;

class SimServer {
 public:
  /// Throws std::invalid_argument for a bad config.
  explicit SimServer(SimServerConfig config);
  ~SimServer();
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  /// Binds, listens and starts the worker threads; returns once the server accepts connections.
  /// Throws std::system_error when it cannot bind.
  void start();
  /// Stops the workers and closes the listeners and every connection; blocks until the threads
  /// have exited. metrics() keeps returning the final counts.
  void stop();
  uint16_t port() const { return port_; }
  const SimServerConfig& config() const { return config_; }
  SimServerMetrics metrics() const;

 private:
  SimServerConfig config_;
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<SimWorker>> workers_;
  SimServerMetrics final_metrics_;  ///< metrics() after stop()
  bool running_ = false;
};

}  // namespace agentperf
