// The engine against the simulator in one process, for the sanitizer builds (scripts/sanitize.sh):
// both sides' threads, sockets, parsers and fault paths run for a few seconds while this thread
// changes the concurrency, takes snapshots and drains records, as the Python layer does.
//
//   engine_sim_run [SECONDS_PER_SCENARIO]     (default 1.5)
//
// Scenarios: HTTP/1.1 and HTTP/2, against the null and the batching model, each with every fault
// of the simulator turned on (http_500, http_429, http_503, reset, truncate, malformed, stall with
// no answer, slow headers). Checks that records came back and add up: one record per request
// started, unique request ids, some successes, several failure kinds, and a simulator left with
// no request in its model once the engine has gone. Exits 1 when a check fails; a sanitizer
// report aborts it before that.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agentperf/clock.h"
#include "agentperf/engine.h"
#include "agentperf/sim_server.h"
#include "memory_transport.h"

namespace {

using namespace agentperf;

int g_failures = 0;

void check(bool ok, const std::string& scenario, const std::string& what) {
  if (ok) return;
  ++g_failures;
  std::fprintf(stderr, "engine_sim_run: %s: FAILED: %s\n", scenario.c_str(), what.c_str());
}

struct Scenario {
  const char* name;
  ProtocolChoice protocol;
  SimModelKind model;
};

SimServerConfig sim_config(SimModelKind model) {
  SimServerConfig c;
  c.workers = 2;
  c.seed = 5;
  c.model_params.kind = model;
  c.model_params.ttft_ns = 2'000'000;
  c.model_params.itl_ns = 1'000'000;
  c.model_params.max_batch = 8;
  c.model_params.prefill_tokens_per_s = 1e6;
  c.model_params.step_base_ns = 1'000'000;
  c.model_params.step_per_seq_ns = 50'000;
  c.model_params.prefix_cache_tokens = 4096;
  c.model_params.kv_capacity_tokens = 1 << 16;
  c.fault_http_500 = 0.03;
  c.fault_http_429 = 0.02;
  c.fault_http_503 = 0.02;
  c.fault_reset = 0.04;
  c.fault_truncate = 0.02;
  c.fault_malformed = 0.04;
  c.fault_stall = 0.02;  // stall_ns = 0: never answered, the engine times it out
  c.fault_slow_headers = 0.03;
  c.slow_headers_ns = 20'000'000;
  return c;
}

void run_scenario(const Scenario& sc, double seconds) {
  const std::string name = sc.name;
  SimServer server(sim_config(sc.model));
  server.start();

  auto workload = std::make_shared<Workload>(agentperf_testing::chat_workload(6, 4));
  workload->request.model = "agentperf-sim";
  workload->finalize();
  EngineConfig ec;
  ec.host = "127.0.0.1";
  ec.port = server.port();
  ec.protocol = sc.protocol;
  ec.workers = 2;
  ec.seed = 3;
  ec.streams_per_connection = 4;  // HTTP/2: several shared connections per worker
  ec.request_timeout_ns = 300'000'000;
  ec.spawn_interval_ns = 1'000'000;
  ec.cache_isolation = true;

  std::vector<RequestRecord> records;
  uint64_t started = 0;
  {
    Engine engine(ec, workload);
    engine.set_concurrency(12);
    engine.start();
    const int64_t end = now_ns() + static_cast<int64_t>(seconds * 1e9);
    // Vary the load while the workers run: agents leave mid-request and new ones arrive.
    const int64_t levels[] = {12, 20, 6, 16, 3, 12};
    for (int step = 0; now_ns() < end; ++step) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (step % 4 == 0) engine.set_concurrency(levels[(step / 4) % 6]);
      if (step % 10 == 0) engine.set_isolation_epoch(static_cast<uint64_t>(step));
      EngineSnapshot s = engine.snapshot();
      check(s.requests_ok + s.requests_failed <= s.requests_started, name, "finished <= started");
      std::vector<RequestRecord> got = engine.drain_records();
      records.insert(records.end(), got.begin(), got.end());
    }
    engine.stop();
    std::vector<RequestRecord> got = engine.drain_records();
    records.insert(records.end(), got.begin(), got.end());
    EngineSnapshot s = engine.snapshot();
    started = s.requests_started;
    check(s.requests_ok + s.requests_failed == started, name, "after stop every request has ended");
    check(s.records_dropped == 0, name, "no record dropped");
  }

  // The engine has gone (its connections closed): the simulator must let go of every request.
  const int64_t deadline = now_ns() + 5'000'000'000;
  SimServerMetrics m = server.metrics();
  while ((m.requests_running != 0 || m.requests_waiting != 0) && now_ns() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    m = server.metrics();
  }
  check(m.requests_running == 0 && m.requests_waiting == 0, name,
        "the simulator still holds requests: running " + std::to_string(m.requests_running) + ", waiting " +
            std::to_string(m.requests_waiting));
  server.stop();

  std::vector<uint64_t> counts(kErrorKindCount, 0);
  std::set<uint64_t> ids;
  bool ordered = true;
  for (const RequestRecord& r : records) {
    if (r.error_kind < kErrorKindCount) ++counts[r.error_kind];
    ids.insert(r.request_id);
    if (r.error_kind == 0)
      ordered = ordered && r.scheduled_ns <= r.sent_ns && r.sent_ns <= r.first_byte_ns &&
                r.first_byte_ns <= r.first_token_ns && r.first_token_ns <= r.last_token_ns &&
                r.last_token_ns <= r.done_ns && r.http_status == 200 && r.output_tokens > 0;
  }
  const uint64_t faults = m.faults_http_500 + m.faults_http_429 + m.faults_http_503 + m.faults_reset +
                          m.faults_truncate + m.faults_malformed + m.faults_stall + m.faults_slow_headers;
  int failure_kinds = 0;
  for (ErrorKind k : {ErrorKind::kHttpStatus, ErrorKind::kReset, ErrorKind::kTruncated, ErrorKind::kSseMalformed,
                      ErrorKind::kTimeout})
    failure_kinds += counts[static_cast<int>(k)] > 0;

  std::printf("engine_sim_run: %-16s %6zu records (%llu ok), faults injected %llu, failure kinds seen %d:",
              sc.name, records.size(), static_cast<unsigned long long>(counts[0]),
              static_cast<unsigned long long>(faults), failure_kinds);
  for (int k = 1; k < kErrorKindCount; ++k)
    if (counts[k]) std::printf(" %s=%llu", to_string(static_cast<ErrorKind>(k)), static_cast<unsigned long long>(counts[k]));
  std::printf("\n");

  check(records.size() == started, name,
        "one record per request started: " + std::to_string(records.size()) + " vs " + std::to_string(started));
  check(ids.size() == records.size(), name, "request ids are unique");
  check(counts[0] >= 20, name, "at least 20 requests succeeded: " + std::to_string(counts[0]));
  check(ordered, name, "every successful record's stamps are in order, with status 200 and tokens");
  check(faults >= 3, name, "the simulator injected faults: " + std::to_string(faults));
  check(failure_kinds >= 2, name, "at least two kinds of failure came back: " + std::to_string(failure_kinds));
  check(counts[static_cast<int>(ErrorKind::kConnect)] == 0, name, "no connect failure");
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 1.5;
  if (!(seconds > 0)) {
    std::fprintf(stderr, "usage: engine_sim_run [SECONDS_PER_SCENARIO > 0]\n");
    return 2;
  }
  const Scenario scenarios[] = {
      {"http1/null", ProtocolChoice::kHttp1, SimModelKind::kNull},
      {"http1/batching", ProtocolChoice::kHttp1, SimModelKind::kBatching},
      {"http2/null", ProtocolChoice::kHttp2, SimModelKind::kNull},
      {"http2/batching", ProtocolChoice::kHttp2, SimModelKind::kBatching},
  };
  for (const Scenario& sc : scenarios) run_scenario(sc, seconds);
  std::printf("engine_sim_run: %s\n", g_failures ? "FAILED" : "ok");
  return g_failures ? 1 : 0;
}
