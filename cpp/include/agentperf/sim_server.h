// The built-in simulated inference server (native): an OpenAI-compatible endpoint on loopback
// whose timing comes from a performance model (sim_model.h), plus fault injection.
//
// Protocol: HTTP/1.1 keep-alive, and HTTP/2 cleartext with prior knowledge (h2c) on the same port:
// a connection that opens with the HTTP/2 client preface is served by sim_http2.h. The per-request
// behaviour below is the same on both (sim_exchange.h).
//   POST /v1/chat/completions, POST /v1/completions   generation; streaming SSE (chunked transfer
//       encoding) when "stream": true, else one JSON body sent when the last token is generated.
//       The request is read as sim_request.h describes (prompt-token rule, token-id prompts).
//   GET /v1/models, GET /health, GET /metrics (Prometheus text format 0.0.4).
// Anything else: 404. A body that is not a valid request: 400 with an OpenAI-style error object.
//
// Output length. max_tokens (or max_completion_tokens; output_tokens when absent) caps a response.
// With "ignore_eos": true it generates exactly that many tokens (finish_reason "length"). Without,
// a request stops early with probability early_stop_probability (default 0: never), at a length
// drawn uniformly from [max(1, min_tokens), max_tokens - 1] (finish_reason "stop"); the draw is a
// hash of (seed, prompt, max_tokens), so the same request always stops at the same length.
//
// Streaming: the response headers go out when the request is accepted (chat: then a role-only
// chunk, as vLLM and OpenAI send it), then one SSE event per model emission carrying its tokens as
// "tok " each, then a chunk with finish_reason, then (stream_options.include_usage) a chunk with
// "choices": [] and usage, then "data: [DONE]". stream_options.continuous_usage_stats puts the
// usage so far in every chunk. Usage: prompt_tokens, completion_tokens, total_tokens and
// prompt_tokens_details.cached_tokens (always present in non-streaming bodies).
//
// Faults: each a probability per generation request, drawn from the worker's seeded generator
// (one fault at most per request), all 0 (off) by default, each counted in /metrics:
//   http_500, http_429, http_503   answer at once with that status and a JSON error body;
//   reset                          RST the connection halfway through the output (after half the
//                                  tokens were sent); HTTP/2: RST_STREAM on that stream only;
//   truncate                       close (FIN) halfway, without the rest or the chunked terminator
//                                  (HTTP/2: every stream open on the connection ends truncated);
//   malformed                      send a data line that is not JSON halfway, then go on normally;
//   stall                          hold the request stall_ns before it enters the model
//                                  (stall_ns = 0: never answer);
//   slow_headers                   hold the response headers (and any output) slow_headers_ns
//                                  after the request arrived; the model runs meanwhile.
//
// Power (sim_power.h): each replica runs on `accelerators` simulated accelerators that draw
// idle_w + dynamic_w * busy each (busy: a batching step in progress; null model: a response in
// flight). /metrics exports them as dcgm-exporter does, one series per accelerator (replica r,
// accelerator a: gpu = r * accelerators + a), labels gpu, UUID ("SIM-<seed>-<gpu>"), modelName
// ("agentperf-sim") and Hostname:
//   DCGM_FI_DEV_POWER_USAGE               gauge, W, averaged over the last second;
//   DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION  counter, mJ since the server started (whole mJ), the
//                                         exact integral of the instantaneous power.
//
// Workers: each worker thread runs its own event loop, its own model and prefix cache over the
// connections the kernel gives its SO_REUSEPORT listener; with the batching model, each worker is
// one independent engine replica (the closed form in SIMULATOR.md describes one replica).
//
// Thread safety: start()/stop() from one controlling thread; metrics() from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agentperf/sim_model.h"

namespace agentperf {

struct SimServerConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 0;              ///< 0: an ephemeral port (see SimServer::port())
  int workers = 1;                ///< event-loop threads (batching: engine replicas)
  /// SO_REUSEPORT on the listeners, so that other processes can listen on the same port (serve-sim
  /// --processes). Always on when workers > 1 (the workers share the port that way); off otherwise,
  /// so that a second server on a taken port fails instead of silently sharing it.
  bool reuse_port = false;
  SimModelParams model_params;    ///< the performance model (default: null, 200 ms TTFT, 10 ms ITL)
  int32_t output_tokens = 100;    ///< response length when the request has no max_tokens
  double early_stop_probability = 0;  ///< requests without ignore_eos that stop before max_tokens
  std::string model = "agentperf-sim";  ///< the model name served
  std::string preset;             ///< a label reported in /metrics (agentperf_sim_info)
  uint64_t seed = 1;              ///< seeds the fault draws and the early-stop draws
  // Fault injection: each is a probability per generation request, all 0 (off) by default.
  double fault_http_500 = 0;
  double fault_http_429 = 0;
  double fault_http_503 = 0;
  double fault_reset = 0;
  double fault_truncate = 0;
  double fault_malformed = 0;
  double fault_stall = 0;
  double fault_slow_headers = 0;
  int64_t stall_ns = 0;                    ///< 0: a stalled request is never answered
  int64_t slow_headers_ns = 1'000'000'000;
  // Power model (see above).
  int accelerators = 1;      ///< simulated accelerators per replica (>= 1); the replica's power is split evenly
  double idle_w = 150.0;     ///< per accelerator, idle
  double dynamic_w = 550.0;  ///< per accelerator, added while the replica is busy
  /// Requests whose stamps each worker keeps (SimServer::stamps()); the oldest are dropped first.
  size_t stamp_log_capacity = 65536;
};

/// The server's own stamps of one generation request that carried an X-Request-Id header (16 hex
/// digits, as the engine sends). Same clock as the client: CLOCK_MONOTONIC ns (agentperf::now_ns),
/// so a test can compare them with the client's records without trusting either side's CPU.
struct SimRequestStamps {
  uint64_t request_id = 0;
  int64_t received_ns = 0;     ///< the request was read whole
  /// The first / last token event was handed to the transport: stamped just before the write call
  /// (HTTP/1.1: the send() of those bytes; HTTP/2: the frame, sent at once or at the end of the
  /// current batch of model events), so the client's read of it can only come later. 0: no token
  /// event was written.
  int64_t first_token_ns = 0;
  int64_t last_token_ns = 0;
  int32_t output_events = 0;   ///< token events written (a non-streaming body counts as one)
  int32_t output_tokens = 0;   ///< tokens in them
  int32_t status = 0;          ///< HTTP status sent (0: none, e.g. a reset fault or a client that left)
  bool complete = false;       ///< the response was ended normally
};

/// Counters since start() and gauges now, summed over workers; read with relaxed atomics, so a
/// snapshot may be a few events stale.
struct SimServerMetrics {
  uint64_t connections_accepted = 0;
  uint64_t requests_total = 0;       ///< generation requests received (valid or not)
  uint64_t requests_rejected = 0;    ///< answered 400
  uint64_t requests_running = 0;     ///< gauge: in the model's running set
  uint64_t requests_waiting = 0;     ///< gauge: in the model's wait queue (and stalled requests)
  uint64_t tokens_generated = 0;     ///< output tokens sent
  uint64_t prompt_tokens = 0;        ///< prompt tokens of admitted requests
  uint64_t cache_query_tokens = 0;   ///< prompt tokens looked up in the prefix cache
  uint64_t cache_hit_tokens = 0;     ///< of which hits
  uint64_t cache_blocks = 0;         ///< gauge: blocks in the prefix caches
  uint64_t kv_used_tokens = 0;       ///< gauge
  uint64_t kv_capacity_tokens = 0;   ///< 0: unlimited
  uint64_t steps = 0;                ///< batching steps run
  uint64_t faults_http_500 = 0, faults_http_429 = 0, faults_http_503 = 0, faults_reset = 0,
           faults_truncate = 0, faults_malformed = 0, faults_stall = 0, faults_slow_headers = 0;
  // Power model: per accelerator (index r * accelerators + a), exact at the time of the call.
  std::vector<double> power_w;      ///< mean power over the last second, W
  std::vector<double> energy_mj;    ///< energy since start, mJ
  std::vector<double> utilisation;  ///< per replica: busy time / time since start
};

class SimWorker;

class SimServer {
 public:
  /// Throws std::invalid_argument for a bad config (the message names the field).
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
  /// The /metrics page (Prometheus text format).
  std::string metrics_text() const;
  /// The stamps of the requests finished so far (up to stamp_log_capacity per worker), ordered by
  /// received_ns. Any thread; locks each worker's log briefly. Kept after stop().
  std::vector<SimRequestStamps> stamps() const;

 private:
  SimServerConfig config_;
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<SimWorker>> workers_;
  SimServerMetrics final_metrics_;  ///< metrics() after stop()
  std::string hostname_;            ///< the Hostname label of the power series
  std::vector<SimRequestStamps> final_stamps_;  ///< stamps() after stop()
  bool running_ = false;
};

}  // namespace agentperf
