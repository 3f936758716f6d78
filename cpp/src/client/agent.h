// An agent: replays conversations turn by turn; each request is one stream on a connection.
//
// State machine (one request at a time):
//   assigned --begin()--> connecting (preconnect) --ready--> scheduled --timer--> in flight
//   in flight --complete / fail--> one record; then scheduled (next turn after its tool delay), or
//   removed when leaving. A connect failure retries the same turn after a backoff that grows with
//   the agent's consecutive connect failures (connect_backoff.h) and resets once a request goes out.
//   A request timeout (scheduled + request_timeout_ns) abandons the stream: a kTimeout record.
//   Once the response headers are in, a silence longer than stream_idle_timeout_ns abandons it too
//   (kIdleTimeout), and so does an SSE event past max_event_bytes (kOversized).
// Failed requests hand the host what the server sent (the start of the body, or the offending
// event) with their record: the host keeps the first of each kind (Engine::first_failures).
// Agents are pooled by their host and reused (assign()); timers still queued for an earlier use
// carry an old generation and are ignored.
//
// Thread safety: none; an agent lives on its host's thread (a worker).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "agentperf/engine.h"
#include "agentperf/record.h"
#include "agentperf/sse_parser.h"
#include "agentperf/workload.h"
#include "client/connection.h"
#include "client/request_builder.h"
#include "client/session.h"
#include "common/event_loop.h"
#include "common/rng.h"

namespace agentperf {

class Agent;

/// What an agent needs from the thread that runs it: a Worker, or an in-memory host in the tests.
class AgentHost {
 public:
  virtual ~AgentHost() = default;
  virtual const EngineConfig& config() const = 0;
  virtual const Workload& workload() const = 0;
  virtual const RequestBuilder& request_builder() const = 0;
  virtual int index() const = 0;  ///< the worker index written into records
  virtual uint64_t isolation_epoch() const = 0;
  virtual void schedule(int64_t deadline_ns, TimerTarget* target, uint64_t token) = 0;
  /// A connection with room for one more stream (HTTP/2: shared; HTTP/1.1: a new one), opening one
  /// when needed. nullptr when a socket cannot even be created.
  virtual Connection* connection_for_new_stream() = 0;
  /// Closes `c` after the current loop iteration, unless someone took it meanwhile (safe from
  /// inside its callbacks).
  virtual void close_later(Connection* c) = 0;
  virtual void count_started() = 0;
  /// A request id unique within the run (never 0).
  virtual uint64_t next_request_id() = 0;
  virtual void count_engaged(int64_t delta) = 0;
  /// A gap between two output events of one request (the ITL histogram).
  virtual void record_gap(int64_t gap_ns) = 0;
  /// The stamps of the read being delivered (ConnectionHost::set_read_stamp); by default none.
  virtual const ReadStamp& read_stamp() const {
    static const ReadStamp none;
    return none;
  }
  /// The client-added delay of one output event (the live histogram).
  virtual void record_client_delay(int64_t delay_ns) {}
  /// A finished request: counters, histograms, the record buffer.
  virtual void commit(const RequestRecord& rec) = 0;
  /// The agent has left: back to the pool (called from inside the agent; it must not touch itself
  /// afterwards except to return).
  virtual void remove_agent(Agent* agent) = 0;
  /// A failed request (not cancelled), before commit(): `body` is what the server sent (at most
  /// kFailureBodyBytes; valid only during the call).
  virtual void keep_failure(const RequestRecord& rec, std::string_view body) {}
};

class Agent final : public TimerTarget, public StreamHandler, public ConnectionWaiter {
 public:
  explicit Agent(AgentHost& host) : w_(host) {}

  /// (Re)starts this object as agent `id`: its random stream is reseeded from (seed, id), then a
  /// random conversation and (optionally) a random start turn.
  void assign(int64_t id);
  /// Spawn: get a ready connection first, so that the first request's TTFT holds no connect time;
  /// the first turn is scheduled when the connection is ready.
  void begin();
  /// Leave now if idle, else after the in-flight request.
  void leave();
  /// Back to the pool: no connection wait, no live timer. The connection (if any) stays with the
  /// host for other agents (HTTP/2) or is closed (HTTP/1.1: it was this agent's own).
  void release();
  /// Engine stop: the in-flight request becomes a cancelled record.
  void cancel();

  size_t slot = 0;  ///< index in the host's list of live agents
  bool leaving = false;
  int64_t id() const { return id_; }
  int32_t conversation() const { return conv_; }
  int32_t turn() const { return turn_; }
  /// When the next request is (or the current one was) due.
  int64_t scheduled_ns() const { return scheduled_ns_; }
  bool in_flight() const { return in_flight_; }

  /// Timer kinds, the low two bits of a timer token. The rest is the generation for the send and
  /// oversized timers, and the timer's own deadline for the timeout and idle timers (see arm()).
  enum TimerKind : uint64_t { kSendTimer = 0, kTimeoutTimer = 1, kIdleTimer = 2, kOversizedTimer = 3 };
  // TimerTarget.
  void on_timer(uint64_t token) override;
  // ConnectionWaiter.
  void on_connection_ready(Connection* c) override;
  void on_connection_failed(Connection* c, int64_t now_ns) override;
  // StreamHandler (called from inside the session's on_read on this thread).
  void on_request_sent(int64_t now_ns) override {
    if (in_flight_) rec_.sent_ns = now_ns;  // HTTP/2: when the HEADERS went out, not when submitted
  }
  void on_response_headers(int status, int64_t now_ns) override;
  void on_response_data(const char* data, size_t n, int64_t now_ns) override;
  void on_response_complete(int64_t now_ns) override;
  void on_stream_failed(ErrorKind kind, int64_t now_ns) override;
  /// From the agent's start to the end of rec_: the members an event touches (see w_ below).
  Bytes hot_bytes() const override {
    const char* start = reinterpret_cast<const char*>(this);
    return {start, static_cast<size_t>(reinterpret_cast<const char*>(&rec_ + 1) - start)};
  }

 private:
  uint64_t token(TimerKind kind) const { return gen_ << 2 | kind; }
  /// The timeout and idle timers: at most one of each is queued per agent, whatever the number of
  /// requests. A request's deadline only moves later than the queued timer's, so a timer is
  /// queued only when none is (or the new deadline is earlier); when it fires it is checked
  /// against the current request and queued again for that request's deadline when later. Without
  /// this every request left a 600 s timeout timer behind: the loop's heap held rate x 600 s of
  /// them.
  void arm(TimerKind kind, int64_t deadline_ns);
  void check_timeout(int64_t fired_ns);
  /// Gives up the stream in flight (from a timer, never from inside the connection's callbacks).
  void abandon_stream();
  void check_idle();
  void keep_body(const char* data, size_t n);
  void fail_connect(int64_t now_ns, int64_t scheduled_ns);
  void start_record();
  const std::string& isolation_prefix();
  void send_request();
  void submit_on(Connection* c);
  void resend();
  void wait_for(Connection* c);
  bool owns(Connection* c) const { return c && c->owner == this; }
  void stop_waiting();
  void finish(ErrorKind kind, int64_t now_ns);
  /// The read being delivered: its client-added delay, or -1 (and the record's flag) when it had
  /// no kernel stamp.
  int64_t note_read();
  void advance_turn();
  void pick_conversation();

  AgentHost& w_;
  // What every response event touches (on_response_data) comes first, next to the vtable pointers,
  // so that an event reads few cache lines of an agent among thousands; Http2Session prefetches
  // them (hot_bytes()) before nghttp2 hands it the frames.
  bool capturing_ = false;
  bool keeping_body_ = false;   // body_ still takes the response's bytes (see keep_body)
  bool stream_error_ = false;
  bool malformed_ = false;
  bool oversized_ = false;      // an SSE event passed max_event_bytes; abandoned at oversized_ns_
  bool event_kept_ = false;     // body_ holds the first malformed / error event, not the body's start
  int64_t last_rx_ns_ = 0;      // the last byte of the response in flight (idle timeout)
  int64_t client_delay_ns_ = 0;  // the largest client-added delay of the response's reads
  SseParser sse_;
  RequestRecord rec_{};
  Rng rng_;  // this agent's stream: conversations, start turns, tool delays
  int64_t id_ = -1;
  int32_t conv_ = 0;
  int32_t turn_ = 0;
  std::string prefix_;
  uint64_t prefix_epoch_ = UINT64_MAX;
  std::string capture_;        // raw (escaped) reply text of the request in flight
  GeneratedHistory generated_;  // history=generated: the replies received in this conversation
  Connection* conn_ = nullptr;        // the connection of the current / last request
  Connection* waiting_on_ = nullptr;  // a connection this agent waits for (connecting)
  bool preconnect_ = false;
  bool engaged_ = false;  // has sent a request since it was assigned (counts as active)
  bool in_flight_ = false;
  bool reused_ = false;        // the request in flight went on a connection that carried an earlier one
  bool retried_ = false;       // ... and was already retried once on a fresh connection
  bool retry_pending_ = false;  // a retry is scheduled (the timer fires at the end of the iteration)
  int connect_failures_ = 0;    // consecutive failed connect attempts (the backoff's exponent)
  int64_t oversized_ns_ = 0;
  std::string body_;            // the start of the response body (kept for a failure)
  int64_t usage_completion_ = -1;
  int64_t spawn_ns_ = 0;
  int64_t scheduled_ns_ = 0;
  uint64_t gen_ = 0;
  int64_t deadline_ns_ = 0;       ///< the request in flight times out then (scheduled + request timeout)
  int64_t timeout_timer_ns_ = 0;  ///< the queued timeout timer's deadline; 0: none queued
  int64_t idle_timer_ns_ = 0;     ///< the queued idle timer's deadline; 0: none queued
  int32_t stream_id_ = 0;
  RequestSlices req_;
};

}  // namespace agentperf
