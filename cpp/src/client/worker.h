// One worker thread of the engine: its event loop, its agents and connections, its histograms,
// counters and records. Shares nothing with other workers on the hot path; readers (any thread)
// see its counters through single-writer atomics and its histograms through snapshots.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agentperf/engine.h"
#include "agentperf/histogram.h"
#include "agentperf/record.h"
#include "client/agent.h"
#include "client/connection.h"
#include "client/record_buffer.h"
#include "client/request_builder.h"
#include "common/event_loop.h"
#include "common/single_writer_counter.h"

namespace agentperf {

class Worker final : public TimerTarget, public AgentHost, public ConnectionHost {
 public:
  /// `config`, `isolation_epoch` and `tls` belong to the engine and outlive the worker.
  Worker(int index, const EngineConfig& config, std::shared_ptr<const Workload> workload,
         const sockaddr_storage& addr, socklen_t addr_len, const std::atomic<uint64_t>& isolation_epoch,
         const TlsContext* tls);
  ~Worker() override;

  // Control (any thread).
  /// The thread is named (apn-worker-<index>) before this returns, so that it can be found at once.
  void start();
  void request_stop() {
    stop_.store(true);
    loop_.wake();
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  void set_target(int64_t agents) {
    target_.store(agents, std::memory_order_relaxed);
    loop_.wake();
  }

  // Read side (any thread).
  void add_to(EngineSnapshot& s) const;
  void drain_into(std::vector<RequestRecord>& out) { records_.drain_into(out); }
  /// Appends this worker's first failure of each (kind, status).
  void failures_into(std::vector<FailureSample>& out) const;

  // AgentHost (worker thread only).
  const EngineConfig& config() const override { return config_; }
  const Workload& workload() const override { return *workload_; }
  const RequestBuilder& request_builder() const override { return builder_; }
  int index() const override { return index_; }
  uint64_t isolation_epoch() const override { return isolation_epoch_.load(std::memory_order_relaxed); }
  void schedule(int64_t deadline_ns, TimerTarget* target, uint64_t token) override {
    loop_.schedule(deadline_ns, target, token);
  }
  Connection* connection_for_new_stream() override;
  void close_later(Connection* c) override { to_close_.push_back(c); }
  uint64_t next_request_id() override {
    return config_.request_id_base | (static_cast<uint64_t>(index_) << 40) | ++request_seq_;
  }
  void count_started() override {
    started_.add();
    in_flight_.store(in_flight_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void count_engaged(int64_t d) override {
    engaged_.store(engaged_.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  }
  void record_gap(int64_t gap_ns) override { itl_.record(static_cast<uint64_t>(gap_ns)); }
  const ReadStamp& read_stamp() const override { return read_stamp_; }
  bool defer_flush(Connection* c) override {
    if (!c->flush_deferred) {
      c->flush_deferred = true;
      to_flush_.push_back(c);
    }
    return true;
  }
  void record_client_delay(int64_t delay_ns) override { client_delay_.record(static_cast<uint64_t>(delay_ns)); }
  void set_read_stamp(const ReadStamp& stamp) override { read_stamp_ = stamp; }
  bool kernel_stamps() const override { return config_.kernel_stamps; }
  void commit(const RequestRecord& rec) override;
  void remove_agent(Agent* agent) override;
  void keep_failure(const RequestRecord& rec, std::string_view body) override;

  // ConnectionHost (worker thread only).
  EventLoop& loop() override { return loop_; }
  const sockaddr* addr() const override { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t addr_len() const override { return addr_len_; }
  const TlsContext* tls() const override { return tls_; }
  ProtocolChoice protocol_choice() const override { return config_.protocol; }
  char* read_buffer() override { return read_buffer_.get(); }
  char* plain_buffer() override { return plain_buffer_.get(); }
  Protocol negotiated() const override { return negotiated_; }
  void set_negotiated(Protocol p) override { negotiated_ = p; }
  void connection_opened() override {
    opened_.add();
    open_.store(open_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void connection_closed(Connection* c) override;
  void connection_error(const std::string& what) override {
    std::lock_guard<std::mutex> lock(error_mu_);
    last_error_ = what;
  }

 private:
  void run();
  void on_timer(uint64_t token) override {  // wake-up handler (0) and ramp ticks (1)
    if (token == 1) spawn_tick_pending_ = false;
    adjust_agents();
  }
  void adjust_agents();
  /// End of a loop iteration: publishes the records committed in it, then their counters.
  void publish();

  int index_;
  const EngineConfig& config_;
  std::shared_ptr<const Workload> workload_;
  RequestBuilder builder_;
  sockaddr_storage addr_;
  socklen_t addr_len_;
  const TlsContext* tls_;
  EventLoop loop_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> target_{0};
  std::unique_ptr<char[]> read_buffer_;
  std::unique_ptr<char[]> plain_buffer_;
  const std::atomic<uint64_t>& isolation_epoch_;  // the engine's; read per request
  int64_t next_agent_seq_ = 0;
  uint64_t request_seq_ = 0;  // the low 40 bits of this worker's request ids
  int64_t next_spawn_ns_ = 0;  // ramp: earliest time of the next agent arrival
  bool spawn_tick_pending_ = false;
  Protocol negotiated_ = static_cast<Protocol>(0);

  // Worker thread only. Agents and connections are pooled: the pools own every object ever made,
  // which is never freed while the worker runs (timers and epoll events may still point to it).
  std::vector<std::unique_ptr<Agent>> pool_;
  std::vector<Agent*> agents_;
  std::vector<Agent*> free_;
  std::vector<std::unique_ptr<SocketConnection>> conn_pool_;
  std::vector<SocketConnection*> shared_conns_;  // HTTP/2 (or not yet known) connections open for sharing
  std::vector<SocketConnection*> closed_conns_;  // closed in this loop iteration: reusable after it
  std::vector<SocketConnection*> free_conns_;
  std::vector<Connection*> to_close_;            // close_later(): closed after the loop iteration
  std::vector<Connection*> to_flush_;            // defer_flush(): flushed after the loop iteration
  std::vector<Connection*> flushing_;            // to_flush_ being flushed

  // Written by the worker thread, read by any thread.
  std::atomic<int64_t> live_{0};
  std::atomic<int64_t> active_{0};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> open_{0};
  std::atomic<int64_t> engaged_{0};
  Histogram ttft_, itl_, e2e_, speed_;
  Histogram client_delay_;  // per output event: kernel receive stamp -> the client saw it
  ReadStamp read_stamp_;
  SingleWriterCounter started_, ok_, failed_, events_, tokens_, opened_;
  std::array<SingleWriterCounter, kErrorKindCount> by_kind_;
  // Worker thread only: what the records committed since the last publish() add to the counters.
  struct Tally {
    int64_t finished = 0;
    uint64_t events = 0;
    uint64_t tokens = 0;
    std::array<uint64_t, kErrorKindCount> by_kind{};
  };
  Tally tally_;
  RecordBuffer records_;  // added to by the worker (no lock), published once per loop iteration
  mutable std::mutex error_mu_;  // guards last_error_ (rare: connection failures)
  std::string last_error_;
  std::vector<uint32_t> failure_keys_;  // worker thread only: (kind, status) pairs already kept
  mutable std::mutex failures_mu_;      // guards failures_ (written once per new pair)
  std::vector<FailureSample> failures_;
};

}  // namespace agentperf
