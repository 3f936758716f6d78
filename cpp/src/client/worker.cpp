#include "client/worker.h"

#include "agentperf/clock.h"
#include "common/thread_name.h"

namespace agentperf {

Worker::Worker(int index, const EngineConfig& config, std::shared_ptr<const Workload> workload,
               const sockaddr_storage& addr, socklen_t addr_len, const std::atomic<uint64_t>& isolation_epoch,
               const TlsContext* tls)
    : index_(index),
      config_(config),
      workload_(std::move(workload)),
      builder_(*workload_, config),
      addr_(addr),
      addr_len_(addr_len),
      tls_(tls),
      read_buffer_(new char[kReadBufferBytes]),
      plain_buffer_(tls ? new char[kReadBufferBytes] : nullptr),
      isolation_epoch_(isolation_epoch),
      records_(config.record_buffer_limit) {
  loop_.set_wake_handler(this);
}

Worker::~Worker() {
  request_stop();
  join();
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
  name_thread(thread_.native_handle(), "apn-worker", index_);
}

void Worker::run() {
  adjust_agents();
  while (!stop_.load(std::memory_order_relaxed)) {
    loop_.run_once(-1);
    while (!to_flush_.empty()) {  // a flush's failure callbacks may defer more
      flushing_.swap(to_flush_);
      for (Connection* c : flushing_) {
        c->flush_deferred = false;
        if (c->is_open()) c->flush();
      }
      flushing_.clear();
    }
    for (Connection* c : to_close_)
      if (!c->owner) c->close(ErrorKind::kCancelled, now_ns());  // still nobody's: close it
    to_close_.clear();
    // Connections closed in this iteration may still have events queued in it: reuse them only now.
    free_conns_.insert(free_conns_.end(), closed_conns_.begin(), closed_conns_.end());
    closed_conns_.clear();
    publish();
  }
  for (Agent* a : agents_) a->cancel();
  publish();
  for (auto& c : conn_pool_) c->close(ErrorKind::kCancelled, now_ns());
  in_flight_.store(0);
  agents_.clear();
  free_.clear();
  pool_.clear();
  shared_conns_.clear();
  closed_conns_.clear();
  free_conns_.clear();
  to_flush_.clear();
  conn_pool_.clear();
  live_.store(0);
  active_.store(0);
  engaged_.store(0);
}

Connection* Worker::connection_for_new_stream() {
  // HTTP/2 (or a TLS connection expected to become HTTP/2 once ALPN decides): share a connection.
  for (SocketConnection* c : shared_conns_)
    if (c->has_room() && c->shareable()) return c;
  SocketConnection* c;
  if (free_conns_.empty()) {
    conn_pool_.push_back(std::make_unique<SocketConnection>(*this, config_.streams_per_connection));
    c = conn_pool_.back().get();
  } else {
    c = free_conns_.back();
    free_conns_.pop_back();
  }
  if (!c->open()) {
    free_conns_.push_back(c);
    return nullptr;
  }
  // Expected to be HTTP/2 (choose_protocol()'s prediction, made in open()): others may share it.
  if (c->shareable()) shared_conns_.push_back(c);
  return c;
}

void Worker::connection_closed(Connection* c) {
  open_.store(open_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  for (size_t i = 0; i < shared_conns_.size(); ++i)
    if (shared_conns_[i] == c) {
      shared_conns_[i] = shared_conns_.back();
      shared_conns_.pop_back();
      break;
    }
  // Every connection of this worker is one of its SocketConnections (connection_for_new_stream).
  if (!stop_.load(std::memory_order_relaxed)) closed_conns_.push_back(static_cast<SocketConnection*>(c));
}

void Worker::adjust_agents() {
  if (stop_.load(std::memory_order_relaxed)) return;
  int64_t target = target_.load(std::memory_order_relaxed);
  int64_t active = active_.load(std::memory_order_relaxed);
  const int64_t interval = config_.spawn_interval_ns * config_.workers;  // this worker's share of the ramp
  while (active < target) {
    if (interval > 0) {
      int64_t now = now_ns();
      // Workers interleave their arrivals: worker i starts i gaps after worker 0.
      if (next_spawn_ns_ == 0) next_spawn_ns_ = now + index_ * config_.spawn_interval_ns;
      if (now < next_spawn_ns_) {
        if (!spawn_tick_pending_) {
          spawn_tick_pending_ = true;
          loop_.schedule(next_spawn_ns_, this, 1);
        }
        break;
      }
      next_spawn_ns_ = now + interval;
    }
    int64_t id = next_agent_seq_++ * config_.workers + index_;
    Agent* a;
    if (free_.empty()) {
      pool_.push_back(std::make_unique<Agent>(*this));
      a = pool_.back().get();
    } else {
      a = free_.back();
      free_.pop_back();
    }
    a->assign(id);
    a->slot = agents_.size();
    agents_.push_back(a);
    ++active;
    live_.store(static_cast<int64_t>(agents_.size()), std::memory_order_relaxed);
    active_.store(active, std::memory_order_relaxed);
    a->begin();
  }
  for (size_t i = agents_.size(); i > 0 && active > target; --i) {
    Agent* a = agents_[i - 1];
    if (a->leaving) continue;
    --active;
    active_.store(active, std::memory_order_relaxed);
    a->leave();  // may remove the agent (swap with the last), which is at or after i-1
  }
}

void Worker::remove_agent(Agent* agent) {
  size_t slot = agent->slot;
  if (slot >= agents_.size() || agents_[slot] != agent) return;
  if (!agent->leaving) active_.store(active_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  agent->leaving = true;
  agent->release();
  free_.push_back(agent);
  if (slot + 1 != agents_.size()) {
    agents_[slot] = agents_.back();
    agents_[slot]->slot = slot;
  }
  agents_.pop_back();
  live_.store(static_cast<int64_t>(agents_.size()), std::memory_order_relaxed);
}

void Worker::commit(const RequestRecord& rec) {
  ++tally_.finished;
  tally_.events += static_cast<uint64_t>(rec.output_events);
  ++tally_.by_kind[rec.error_kind];
  auto kind = static_cast<ErrorKind>(rec.error_kind);
  if (kind == ErrorKind::kNone) {
    tally_.tokens += static_cast<uint64_t>(rec.output_tokens);
    ttft_.record(static_cast<uint64_t>(rec.first_token_ns - rec.scheduled_ns));
    e2e_.record(static_cast<uint64_t>(rec.done_ns - rec.scheduled_ns));
    int64_t span = rec.last_token_ns - rec.first_token_ns;
    if (rec.output_tokens > 1 && span > 0)
      speed_.record(static_cast<uint64_t>(static_cast<double>(rec.output_tokens - 1) * 1e12 / static_cast<double>(span)));
  }
  records_.add(rec);
}

void Worker::keep_failure(const RequestRecord& rec, std::string_view body) {
  const uint32_t key = static_cast<uint32_t>(rec.error_kind) << 16 | static_cast<uint16_t>(rec.http_status);
  for (uint32_t k : failure_keys_)
    if (k == key) return;  // the hot path of a failure storm: one short scan, no lock
  if (failure_keys_.size() >= kMaxFailureSamples) return;
  failure_keys_.push_back(key);
  FailureSample f{rec, std::string(body.substr(0, kFailureBodyBytes))};
  std::lock_guard<std::mutex> lock(failures_mu_);
  failures_.push_back(std::move(f));
}

void Worker::failures_into(std::vector<FailureSample>& out) const {
  std::lock_guard<std::mutex> lock(failures_mu_);
  out.insert(out.end(), failures_.begin(), failures_.end());
}

void Worker::publish() {
  if (tally_.finished == 0) return;
  records_.publish();
  // Then the counters that describe those records: a reader that sees a request finished (in the
  // in-flight count, or ok / failed) can already drain its record.
  uint64_t ok = tally_.by_kind[0];
  ok_.add(ok);
  failed_.add(static_cast<uint64_t>(tally_.finished) - ok);
  for (int k = 0; k < kErrorKindCount; ++k)
    if (tally_.by_kind[k]) by_kind_[k].add(tally_.by_kind[k]);
  events_.add(tally_.events);
  tokens_.add(tally_.tokens);
  in_flight_.store(in_flight_.load(std::memory_order_relaxed) - tally_.finished, std::memory_order_release);
  tally_ = Tally{};
}

void Worker::add_to(EngineSnapshot& s) const {
  s.agents_live += live_.load(std::memory_order_relaxed);
  s.agents_active += active_.load(std::memory_order_relaxed);
  s.agents_engaged += engaged_.load(std::memory_order_relaxed);
  s.requests_in_flight += in_flight_.load(std::memory_order_acquire);  // before the counters (publish())
  s.requests_started += started_.get();
  s.requests_ok += ok_.get();
  s.requests_failed += failed_.get();
  for (int k = 0; k < kErrorKindCount; ++k) s.failures_by_kind[k] += by_kind_[k].get();
  s.output_events += events_.get();
  s.output_tokens += tokens_.get();
  s.records_dropped += records_.dropped();
  s.connections_open += open_.load(std::memory_order_relaxed);
  s.connections_opened += opened_.get();
  {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (!last_error_.empty()) s.last_connection_error = last_error_;
  }
  s.ttft_ns.merge(ttft_.snapshot());
  s.itl_ns.merge(itl_.snapshot());
  s.client_delay_ns.merge(client_delay_.snapshot());
  s.e2e_ns.merge(e2e_.snapshot());
  s.output_speed_mtps.merge(speed_.snapshot());
}

}  // namespace agentperf
