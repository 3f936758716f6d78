// The replay engine: closed-loop agents replaying conversations against an OpenAI-compatible
// streaming endpoint, spread over worker threads that share nothing on the hot path.
//
// Each worker thread owns an EventLoop, its agents and its connections. HTTP/1.1: one keep-alive
// connection per agent, reused across turns. HTTP/2: agents' streams multiplexed over few
// connections (streams_per_connection each). An agent replays its
// conversation turn by turn: turn k+1 is scheduled when turn k completes plus its tool delay (a
// timer, not a thread; the delay is drawn by the agent at that moment, per Workload::tool_delay).
// When an agent finishes a conversation it starts another (chosen at random). Every agent draws
// from its own random stream, seeded from (seed, global agent id): reproducible from the seed
// whatever the number of workers. Every request carries "X-Request-Id: <16 hex digits>", unique
// within the run, also written into its record.
// The number of live agents can be raised or lowered at any time (set_concurrency); an agent that is
// removed finishes its in-flight request first (its record is kept), or leaves at once when idle.
//
// Measurement: each worker records into its own histograms (TTFT, inter-event gap, end-to-end,
// output speed) and its own record buffer; readers merge snapshots without stopping the writers.
// Every request becomes exactly one RequestRecord, failed ones included (ErrorKind says why).
//
// Thread safety: every public method may be called from any thread (they are typically called from
// Python with the GIL released). start() and stop() must not race each other.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agentperf/histogram.h"
#include "agentperf/protocol.h"
#include "agentperf/record.h"
#include "agentperf/workload.h"

namespace agentperf {

struct EngineConfig {
  std::string host = "127.0.0.1";      ///< server address (name or IP literal), resolved once at start()
  uint16_t port = 8000;
  std::string host_header;              ///< Host header value; empty: "host:port"
  std::string authorization;            ///< Authorization header value (e.g. "Bearer sk-.."); empty: none
  /// Which protocol to speak: kHttp1, kHttp2 (h2c with prior knowledge, or h2 over TLS), or kAuto
  /// (over TLS: what ALPN selects, h2 preferred; without TLS: HTTP/1.1).
  ProtocolChoice protocol = ProtocolChoice::kHttp1;
  bool tls = false;                     ///< connect with TLS (https)
  bool tls_verify = true;               ///< verify the server certificate and name
  std::string ca_file;                  ///< trusted CAs (PEM); empty: the system store
  std::string tls_server_name;          ///< SNI / name to verify; empty: `host`
  /// HTTP/2: agents' streams per connection (also bounded by the server's
  /// SETTINGS_MAX_CONCURRENT_STREAMS); a new connection opens when all are full.
  uint32_t streams_per_connection = 100;
  int workers = 1;                      ///< worker threads (each with its own event loop)
  int64_t request_timeout_ns = 600LL * 1'000'000'000;  ///< scheduled → complete, else kTimeout
  /// Once a response has begun (its headers arrived), the longest silence on its stream before it
  /// is given up as kIdleTimeout; 0: never. Before the headers only the request timeout applies (a
  /// request queued by a busy server may legitimately wait long for its first byte).
  int64_t stream_idle_timeout_ns = 60LL * 1'000'000'000;
  /// Stamp response bytes with the kernel's receive time (SO_TIMESTAMPNS; client/read_stamp.h);
  /// false: user-space stamps only (every record flagged kFlagUserStamps).
  bool kernel_stamps = true;
  /// OR'd into every request id (X-Request-Id, records): the engine's own ids are worker << 40 |
  /// a per-worker sequence, so engines that share a server (shards) set distinct high bits here.
  uint64_t request_id_base = 0;
  /// Connect retries back off per agent: after n consecutive connect failures the agent waits
  /// uniformly in [b/2, b], b = min(connect_retry_max_ns, connect_retry_ns · 2^(n-1)), drawn from its
  /// own random stream; a connection that comes up resets n. Every failed attempt is a kConnect record.
  int64_t connect_retry_ns = 100'000'000;
  int64_t connect_retry_max_ns = 5'000'000'000;
  /// One SSE event (an unterminated line, or an event's joined data) larger than this ends the
  /// request as kOversized (the parser stops buffering).
  size_t max_event_bytes = size_t{1} << 20;
  /// Seeds every agent's random stream (conversation choice, start turn, tool delays), a function of
  /// (seed, global agent id), and the cache-isolation prefixes.
  uint64_t seed = 1;
  /// Mixed into the cache-isolation prefixes only: a second run with the same seed and another
  /// nonce replays the same agents but never meets its own prefixes in the server's cache.
  uint64_t run_nonce = 0;
  bool random_start_turn = true;        ///< an agent's first conversation starts at a random turn
  bool cache_isolation = true;          ///< insert a per-agent prefix (see Workload, set_isolation_epoch)
  /// history=generated: feed back the reply text each agent received (Conversation::reply_of)
  /// instead of the recorded one. Only text content is captured; tool calls stay as recorded.
  bool history_generated = false;
  /// Minimum gap between two agent arrivals, engine-wide, when concurrency rises (a ramp: 0 adds
  /// them all at once). Spreads connection setup and keeps agents out of lock-step.
  int64_t spawn_interval_ns = 0;
  /// Records kept per worker before the oldest undrained ones are dropped (counted in
  /// EngineSnapshot::records_dropped). Drain more often than this fills.
  size_t record_buffer_limit = 1 << 22;
};

/// A merged, point-in-time view of all workers. Counters are totals since start().
struct EngineSnapshot {
  int64_t taken_ns = 0;
  int64_t agents_target = 0;      ///< concurrency asked for
  int64_t agents_live = 0;        ///< agents that exist (including ones finishing before leaving)
  int64_t agents_active = 0;      ///< agents that exist and are not leaving
  int64_t agents_engaged = 0;     ///< live agents that have sent at least one request (a phase is
                                  ///< steady only once all its agents are engaged)
  int64_t requests_in_flight = 0;
  uint64_t requests_started = 0;
  uint64_t requests_ok = 0;
  uint64_t requests_failed = 0;
  std::array<uint64_t, kErrorKindCount> failures_by_kind{};
  uint64_t output_events = 0;
  uint64_t output_tokens = 0;
  uint64_t records_dropped = 0;
  HistogramSnapshot ttft_ns;
  HistogramSnapshot itl_ns;             ///< gaps between consecutive output events of one request
  /// Per output event with a kernel receive stamp: how long its bytes waited for the client.
  HistogramSnapshot client_delay_ns;
  HistogramSnapshot e2e_ns;
  HistogramSnapshot output_speed_mtps;  ///< per-request output speed, milli-tokens per second
  int64_t connections_open = 0;         ///< transport connections currently open (all workers)
  uint64_t connections_opened = 0;      ///< connections opened since start()
  std::string last_connection_error;    ///< the most recent connect / TLS failure, in words
};

/// The first failed request of one (error kind, HTTP status), kept by the engine with what the
/// server sent: for an HTTP status failure the start of its body (the server's error), for a
/// malformed or error SSE event that event's data, else the start of the response body (may be
/// empty). At most kFailureBodyBytes of it.
struct FailureSample {
  RequestRecord record;
  std::string body;
};
constexpr size_t kFailureBodyBytes = 4096;
/// Of a 2xx (streamed) response that failed, only its start is kept: it fails by breaking off, and
/// an offending event is kept on its own (up to kFailureBodyBytes).
constexpr size_t kStreamStartBytes = 512;
/// Distinct (kind, status) pairs kept; later ones are only counted.
constexpr size_t kMaxFailureSamples = 64;

class Worker;
class TlsContext;

class Engine {
 public:
  /// Throws std::invalid_argument for an invalid config or workload.
  Engine(EngineConfig config, std::shared_ptr<const Workload> workload);
  ~Engine();  ///< stops (as stop()) if running
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Resolves the host and starts the worker threads (with zero agents unless set_concurrency()
  /// was called before). Throws std::runtime_error when the host cannot be resolved.
  void start();
  /// Sets the number of live agents; never blocks. Agents are spread evenly over workers.
  void set_concurrency(int64_t agents);
  int64_t concurrency() const { return target_.load(std::memory_order_relaxed); }
  /// Stops every worker and joins them. In-flight requests become kCancelled records. Blocks until
  /// the threads have exited (they exit within one event-loop iteration).
  void stop();
  bool running() const { return running_.load(); }

  EngineSnapshot snapshot() const;
  /// Moves out every record finished since the last drain (all workers, unordered across workers).
  std::vector<RequestRecord> drain_records();
  /// The first failure of each (kind, status) since the engine was made (cancelled requests are
  /// not failures), earliest first. Survives stop() and later start()s.
  std::vector<FailureSample> first_failures() const;

  /// Isolation prefixes are a function of (seed, run_nonce, agent id, epoch); a new epoch gives every agent a
  /// fresh prefix from its next request on (one epoch per phase: no cache reuse across phases).
  void set_isolation_epoch(uint64_t epoch) { isolation_epoch_.store(epoch); }
  uint64_t isolation_epoch() const { return isolation_epoch_.load(); }

  const EngineConfig& config() const { return config_; }

 private:
  EngineConfig config_;
  std::shared_ptr<const Workload> workload_;
  std::unique_ptr<TlsContext> tls_;  // shared by the workers; built at start()
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<FailureSample> earlier_failures_;  // from the workers of earlier start()s
  std::atomic<int64_t> target_{0};
  std::atomic<bool> running_{false};
  std::atomic<uint64_t> isolation_epoch_{0};
};

}  // namespace agentperf
