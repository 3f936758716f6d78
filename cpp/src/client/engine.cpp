// The engine facade: resolves the server, owns the TLS context and the workers, merges their
// snapshots and records.
#include "agentperf/engine.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "agentperf/clock.h"
#include "client/read_stamp.h"
#include "client/resolve.h"
#include "client/session.h"
#include "client/worker.h"
#include "common/tls.h"

namespace agentperf {

namespace {
constexpr int64_t kStampWaitNs = 200 * kNsPerMs;  // the kernel's deferred switch-on: microseconds, unless starved
}  // namespace

Engine::Engine(EngineConfig config, std::shared_ptr<const Workload> workload)
    : config_(std::move(config)), workload_(std::move(workload)) {
  if (!workload_ || workload_->conversations.empty()) throw std::invalid_argument("the workload is empty");
  for (const Conversation& c : workload_->conversations)
    if (c.turn_bytes.size() != c.turns.size())
      throw std::invalid_argument("the workload was not finalized (call Workload::finalize())");
  if (config_.workers < 1) throw std::invalid_argument("workers must be >= 1");
  if (config_.request_timeout_ns <= 0) throw std::invalid_argument("request_timeout_ns must be > 0");
  if (config_.stream_idle_timeout_ns < 0) throw std::invalid_argument("stream_idle_timeout_ns must be >= 0");
  if (config_.connect_retry_ns <= 0 || config_.connect_retry_max_ns < config_.connect_retry_ns)
    throw std::invalid_argument("connect_retry_ns must be > 0 and connect_retry_max_ns >= connect_retry_ns");
  if (config_.max_event_bytes < 1024) throw std::invalid_argument("max_event_bytes must be >= 1024");
}

Engine::~Engine() { stop(); }

void Engine::start() {
  if (running_.load()) return;
  // Reads that come back unstamped anyway fall back to user-space stamps and are flagged.
  if (config_.kernel_stamps) keep_receive_stamps_on(kStampWaitNs);
  ResolvedAddress resolved;
  if (std::string why = resolve_address(config_.host, config_.port, resolved); !why.empty())
    throw std::runtime_error(why);
  const sockaddr_storage& addr = resolved.addr;
  socklen_t len = resolved.len;

  earlier_failures_ = first_failures();  // the previous start()'s workers go
  workers_.clear();
  if (config_.tls && !tls_) {
    TlsOptions o;
    o.verify = config_.tls_verify;
    o.ca_file = config_.ca_file;
    o.server_name = config_.tls_server_name.empty() ? config_.host : config_.tls_server_name;
    o.alpn = alpn_offer(config_.protocol);
    tls_ = std::make_unique<TlsContext>(o);
  }
  for (int i = 0; i < config_.workers; ++i)
    workers_.push_back(std::make_unique<Worker>(i, config_, workload_, addr, len, isolation_epoch_, tls_.get()));
  running_.store(true);
  set_concurrency(target_.load());
  for (auto& w : workers_) w->start();
}

void Engine::set_concurrency(int64_t agents) {
  if (agents < 0) agents = 0;
  target_.store(agents);
  if (!running_.load()) return;
  int64_t n = static_cast<int64_t>(workers_.size());
  for (int64_t i = 0; i < n; ++i) workers_[i]->set_target(agents / n + (i < agents % n ? 1 : 0));
}

void Engine::stop() {
  if (!running_.exchange(false)) return;
  for (auto& w : workers_) w->request_stop();
  for (auto& w : workers_) w->join();
  // Keep the workers (and their final records and counters) readable until the next start().
}

EngineSnapshot Engine::snapshot() const {
  EngineSnapshot s;
  s.taken_ns = now_ns();
  s.agents_target = target_.load();
  for (const auto& w : workers_) w->add_to(s);
  return s;
}

std::vector<RequestRecord> Engine::drain_records() {
  std::vector<RequestRecord> out;
  for (auto& w : workers_) w->drain_into(out);
  return out;
}

std::vector<FailureSample> Engine::first_failures() const {
  std::vector<FailureSample> all = earlier_failures_;
  for (const auto& w : workers_) w->failures_into(all);
  // Earliest first; then one per (kind, status) across workers and starts.
  std::stable_sort(all.begin(), all.end(),
                   [](const FailureSample& a, const FailureSample& b) { return a.record.done_ns < b.record.done_ns; });
  std::vector<FailureSample> out;
  for (FailureSample& f : all) {
    bool seen = false;
    for (const FailureSample& o : out)
      seen |= o.record.error_kind == f.record.error_kind && o.record.http_status == f.record.http_status;
    if (!seen) out.push_back(std::move(f));
  }
  return out;
}

}  // namespace agentperf
