#include "client/agent.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "agentperf/clock.h"
#include "client/connect_backoff.h"
#include "client/tool_delay.h"

namespace agentperf {

namespace {
bool is_2xx(int status) { return status >= 200 && status < 300; }
}  // namespace

void Agent::assign(int64_t id) {
  id_ = id;
  rng_.reseed(seed_of(w_.config().seed, static_cast<uint64_t>(id)));
  leaving = false;
  connect_failures_ = 0;
  ++gen_;
  prefix_epoch_ = UINT64_MAX;  // the prefix is derived from (seed, id, epoch) when first needed
  pick_conversation();
  if (w_.config().random_start_turn) {
    size_t turns = w_.workload().conversations[conv_].turns.size();
    turn_ = static_cast<int32_t>(rng_.below(turns));
  }
}

void Agent::pick_conversation() {
  const Workload& wl = w_.workload();
  conv_ = static_cast<int32_t>(rng_.below(wl.conversations.size()));
  turn_ = 0;
  generated_.clear();
  capture_.clear();
}

void Agent::begin() {
  spawn_ns_ = now_ns();
  Connection* c = w_.connection_for_new_stream();
  if (!c) return fail_connect(now_ns(), spawn_ns_);
  if (c->ready()) {
    conn_ = c;
    if (!c->owner && !c->shareable()) c->owner = this;
    scheduled_ns_ = spawn_ns_;
    w_.schedule(scheduled_ns_, this, token(kSendTimer));
    return;
  }
  preconnect_ = true;
  wait_for(c);
}

void Agent::leave() {
  leaving = true;
  if (!in_flight_) w_.remove_agent(this);
}

void Agent::release() {
  if (engaged_) w_.count_engaged(-1);
  engaged_ = false;
  stop_waiting();
  // This may run inside the connection's own read callbacks (the agent leaves when its last
  // response completes), so the connection is closed after the loop iteration, not here.
  if (owns(conn_)) {
    conn_->owner = nullptr;
    w_.close_later(conn_);
  }
  conn_ = nullptr;
  in_flight_ = false;
  preconnect_ = false;
  ++gen_;
}

void Agent::cancel() {
  if (in_flight_) {
    abandon_stream();
    finish(ErrorKind::kCancelled, now_ns());
  }
  stop_waiting();
}

void Agent::abandon_stream() {
  stop_waiting();
  if (stream_id_ > 0 && conn_) conn_->abandon(stream_id_);
}

void Agent::arm(TimerKind kind, int64_t deadline_ns) {
  int64_t& queued = kind == kTimeoutTimer ? timeout_timer_ns_ : idle_timer_ns_;
  if (deadline_ns <= 0) deadline_ns = 1;
  if (queued != 0 && queued <= deadline_ns) return;  // that one fires first and looks again
  queued = deadline_ns;
  w_.schedule(deadline_ns, this, static_cast<uint64_t>(deadline_ns) << 2 | kind);
}

void Agent::on_timer(uint64_t t) {
  const auto kind = static_cast<TimerKind>(t & 3);
  if (kind == kTimeoutTimer || kind == kIdleTimer) {
    int64_t& queued = kind == kTimeoutTimer ? timeout_timer_ns_ : idle_timer_ns_;
    const auto fired = static_cast<int64_t>(t >> 2);
    if (fired != queued) return;  // superseded by an earlier one
    queued = 0;
    return kind == kTimeoutTimer ? check_timeout(fired) : check_idle();
  }
  if ((t >> 2) != gen_) return;  // stale
  switch (kind) {
    case kTimeoutTimer:
    case kIdleTimer:
      return;
    case kOversizedTimer:
      if (in_flight_ && oversized_) {
        abandon_stream();
        finish(ErrorKind::kOversized, oversized_ns_);
      }
      return;
    case kSendTimer:
      break;
  }
  if (in_flight_ && retry_pending_) {
    retry_pending_ = false;
    resend();
  } else if (!in_flight_ && !leaving) {
    send_request();
  }
}

// The timeout timer fired at `fired_ns`: the request in flight times out when that was its deadline;
// a later request's deadline is waited for.
void Agent::check_timeout(int64_t fired_ns) {
  if (!in_flight_) return;  // the next request queues its own
  if (fired_ns < deadline_ns_) return arm(kTimeoutTimer, deadline_ns_);
  abandon_stream();
  finish(ErrorKind::kTimeout, now_ns());
}

// The idle timer: armed when the response headers arrive, re-armed from the last byte received
// (one timer per idle period, not one per read). A timer left from an earlier request finds no
// headers yet (they arm it again) or re-arms from this stream's last byte.
void Agent::check_idle() {
  if (!in_flight_ || rec_.first_byte_ns == 0) return;
  const int64_t idle = w_.config().stream_idle_timeout_ns;
  if (idle <= 0) return;
  const int64_t now = now_ns();
  if (now - last_rx_ns_ < idle) return arm(kIdleTimer, last_rx_ns_ + idle);
  abandon_stream();
  finish(ErrorKind::kIdleTimeout, now);
}

void Agent::on_connection_ready(Connection* c) {
  waiting_on_ = nullptr;
  if (preconnect_) {
    preconnect_ = false;
    if (leaving) return w_.remove_agent(this);
    conn_ = c;
    scheduled_ns_ = now_ns();
    w_.schedule(scheduled_ns_, this, token(kSendTimer));
    return;
  }
  if (in_flight_) submit_on(c);
}

void Agent::on_connection_failed(Connection*, int64_t now) {
  waiting_on_ = nullptr;
  if (preconnect_) {
    preconnect_ = false;
    if (leaving) return w_.remove_agent(this);
    return fail_connect(now, spawn_ns_);
  }
  if (in_flight_) finish(ErrorKind::kConnect, now);
}

int64_t Agent::note_read() {
  const ReadStamp& r = w_.read_stamp();
  if (!r.kernel) {
    rec_.flags |= kFlagUserStamps;
    return -1;
  }
  const int64_t d = r.delay_ns();
  if (d > client_delay_ns_) client_delay_ns_ = d;
  return d;
}

void Agent::on_response_headers(int status, int64_t now) {
  note_read();
  rec_.http_status = status;
  rec_.first_byte_ns = now;
  last_rx_ns_ = now;
  const int64_t idle = w_.config().stream_idle_timeout_ns;
  if (idle > 0) arm(kIdleTimer, now + idle);
}

// What a failure shows: an error status's body (up to kFailureBodyBytes); of a 2xx stream only its
// start (kStreamStartBytes: a streamed response fails by breaking off, and its offending event is
// kept on its own), so a healthy stream stops copying after its first events.
void Agent::keep_body(const char* data, size_t n) {
  if (!keeping_body_) return;  // body_ is full, or holds the offending event: not touched again
  const size_t limit = is_2xx(rec_.http_status) ? kStreamStartBytes : kFailureBodyBytes;
  if (body_.size() < limit) body_.append(data, std::min(n, limit - body_.size()));
  keeping_body_ = body_.size() < limit;  // (keeping an offending event clears it too)
}

void Agent::on_response_data(const char* data, size_t n, int64_t now) {
  const int64_t delay = note_read();
  last_rx_ns_ = now;
  keep_body(data, n);
  if (!is_2xx(rec_.http_status) || oversized_) return;
  sse_.feed(data, n, [&](const SseEvent& ev) {
    if (capturing_ && !ev.text.empty()) capture_.append(ev.text);
    if (ev.has_output) {
      if (rec_.first_token_ns == 0) {
        rec_.first_token_ns = now;
      } else {
        w_.record_gap(now - rec_.last_token_ns);
      }
      rec_.last_token_ns = now;
      ++rec_.output_events;
      if (delay >= 0) w_.record_client_delay(delay);
    }
    if (ev.has_usage) {
      if (ev.usage.completion_tokens >= 0) usage_completion_ = ev.usage.completion_tokens;
      if (ev.usage.prompt_tokens >= 0) rec_.prompt_tokens = ev.usage.prompt_tokens;
      if (ev.usage.cached_tokens >= 0) rec_.cached_tokens = ev.usage.cached_tokens;
    }
    if ((ev.error || ev.malformed) && !event_kept_) {  // what to show for this failure
      std::string_view d = sse_.event_data();
      body_.assign(d.data(), std::min(d.size(), kFailureBodyBytes));
      event_kept_ = true;
      keeping_body_ = false;
    }
    stream_error_ |= ev.error;
    malformed_ |= ev.malformed;
  });
  if (sse_.overflowed()) {
    // Inside the connection's callback: the stream is given up from a timer at the end of this
    // loop iteration; nothing more is parsed or buffered meanwhile.
    oversized_ = true;
    oversized_ns_ = now;
    w_.schedule(now, this, token(kOversizedTimer));
  }
}

void Agent::on_response_complete(int64_t now) {
  ErrorKind kind = ErrorKind::kNone;
  if (oversized_) return finish(ErrorKind::kOversized, oversized_ns_);
  if (!is_2xx(rec_.http_status)) kind = ErrorKind::kHttpStatus;
  else if (malformed_) kind = ErrorKind::kSseMalformed;
  else if (stream_error_) kind = ErrorKind::kStreamError;
  else if (rec_.output_events == 0) kind = ErrorKind::kNoOutput;
  finish(kind, now);
}

void Agent::on_stream_failed(ErrorKind kind, int64_t now) {
  if (oversized_) return finish(ErrorKind::kOversized, oversized_ns_);
  // A reused keep-alive connection that died before any response byte: the server closed it
  // (idle timeout, or it closes after every response) as the request went out. Not a server
  // failure: the request is sent once more on a fresh connection, inside the same TTFT.
  if (reused_ && !retried_ && rec_.first_byte_ns == 0 && !leaving &&
      (kind == ErrorKind::kTruncated || kind == ErrorKind::kReset || kind == ErrorKind::kWrite)) {
    retried_ = true;
    retry_pending_ = true;
    rec_.flags |= kFlagNewConnection;
    stream_id_ = 0;
    conn_ = nullptr;
    w_.schedule(now, this, token(kSendTimer));  // never send from inside the connection's own callback
    return;
  }
  finish(kind, now);
}

void Agent::resend() {
  rec_.sent_ns = 0;
  sse_.reset();
  body_.clear();
  event_kept_ = false;
  keeping_body_ = true;
  reused_ = false;
  Connection* c = w_.connection_for_new_stream();
  if (!c) return finish(ErrorKind::kConnect, now_ns());
  if (c->ready()) return submit_on(c);
  wait_for(c);
}

// A connect at spawn failed: one kConnect record for the first turn, retried after a pause.
void Agent::fail_connect(int64_t now, int64_t scheduled) {
  scheduled_ns_ = scheduled;
  start_record();
  w_.count_started();
  in_flight_ = true;
  finish(ErrorKind::kConnect, now);
}

void Agent::start_record() {
  std::memset(&rec_, 0, sizeof rec_);
  rec_.scheduled_ns = scheduled_ns_;
  rec_.prompt_tokens = -1;
  rec_.cached_tokens = -1;
  rec_.agent_id = id_;
  rec_.conversation = conv_;
  rec_.turn = turn_;
  rec_.worker = w_.index();
  rec_.request_id = w_.next_request_id();
  const TurnSpec& turn = w_.workload().conversations[conv_].turns[turn_];
  rec_.max_tokens = turn.max_tokens;
  usage_completion_ = -1;
  stream_error_ = false;
  malformed_ = false;
  oversized_ = false;
  event_kept_ = false;
  last_rx_ns_ = 0;
  client_delay_ns_ = 0;
  body_.clear();
  keeping_body_ = true;
  sse_.reset();
  sse_.set_max_event_bytes(w_.config().max_event_bytes);
  capturing_ = w_.config().history_generated && !w_.workload().conversations[conv_].reply_of.empty();
  capture_.clear();
}

// The isolation prefix for the engine's current epoch, rebuilt only when the epoch changes.
const std::string& Agent::isolation_prefix() {
  uint64_t epoch = w_.isolation_epoch();
  if (epoch == prefix_epoch_) return prefix_;
  prefix_epoch_ = epoch;
  const EngineConfig& cfg = w_.config();
  prefix_ = agentperf::isolation_prefix(w_.workload().request, cfg.seed, cfg.run_nonce, id_, epoch);
  return prefix_;
}

void Agent::send_request() {
  start_record();
  const EngineConfig& cfg = w_.config();
  w_.request_builder().build(conv_, turn_, cfg.cache_isolation ? &isolation_prefix() : nullptr,
                             cfg.history_generated ? &generated_ : nullptr, rec_.request_id, req_);
  rec_.request_bytes = static_cast<int64_t>(req_.body_bytes);
  w_.count_started();
  in_flight_ = true;
  stream_id_ = 0;
  reused_ = retried_ = retry_pending_ = false;
  ++gen_;
  deadline_ns_ = scheduled_ns_ + cfg.request_timeout_ns;
  arm(kTimeoutTimer, deadline_ns_);
  // HTTP/1.1: this agent's own keep-alive connection when it is still good; HTTP/2: the one it
  // used last if it has room. Otherwise one from the host (a new one if none has room).
  Connection* c = conn_ && conn_->ready() && conn_->has_room() && (owns(conn_) || conn_->shareable()) ? conn_ : nullptr;
  // HTTP/1.1: a connection the server closed while this agent was idle is not written to; the
  // request goes on a new one (flagged new_connection below).
  if (c && owns(c) && c->peer_closed()) {
    if (c->is_open()) c->close(ErrorKind::kTruncated, now_ns());  // nothing in flight on it
    c = nullptr;
    rec_.flags |= kFlagNewConnection;
  }
  if (c) reused_ = !c->shareable();
  if (!c) {
    if (owns(conn_)) conn_->close(ErrorKind::kCancelled, now_ns());
    c = w_.connection_for_new_stream();
  }
  if (!c) return finish(ErrorKind::kConnect, now_ns());
  if (c->ready()) return submit_on(c);
  rec_.flags |= kFlagNewConnection;  // the connect happens inside this request's TTFT
  wait_for(c);
}

void Agent::submit_on(Connection* c) {
  conn_ = c;
  if (!c->owner && !c->shareable()) c->owner = this;
  if (!c->has_room()) {  // filled up (HTTP/2 peer limit) while we waited: look again
    Connection* other = w_.connection_for_new_stream();
    if (!other) return finish(ErrorKind::kConnect, now_ns());
    if (!other->ready()) {
      rec_.flags |= kFlagNewConnection;
      return wait_for(other);
    }
    conn_ = c = other;
  }
  rec_.sent_ns = now_ns();
  stream_id_ = c->submit(req_.head, req_.body.data(), req_.body.size(), this);
  if (stream_id_ > 0) connect_failures_ = 0;  // a connection carried the request: the backoff starts over
  if (stream_id_ > 0 && !engaged_) {
    engaged_ = true;
    w_.count_engaged(1);
  }
  if (stream_id_ <= 0 && in_flight_) finish(ErrorKind::kWrite, now_ns());
}

void Agent::wait_for(Connection* c) {
  waiting_on_ = c;
  if (!c->owner && !c->shareable()) c->owner = this;
  c->add_waiter(this);
}

void Agent::stop_waiting() {
  if (waiting_on_) waiting_on_->remove_waiter(this);
  waiting_on_ = nullptr;
}

// Ends the current request: one record, then the next turn (or leaving).
void Agent::finish(ErrorKind kind, int64_t now) {
  if (!in_flight_) return;
  in_flight_ = false;
  retry_pending_ = false;
  ++gen_;
  rec_.done_ns = now;
  rec_.error_kind = static_cast<uint8_t>(kind);
  rec_.client_delay_us = static_cast<uint32_t>(std::min<int64_t>(client_delay_ns_ / 1000, UINT32_MAX));
  if (usage_completion_ >= 0) {
    rec_.output_tokens = usage_completion_;
  } else {
    rec_.output_tokens = rec_.output_events;
    rec_.flags |= kFlagTokensEstimated;
  }
  const Workload& wl = w_.workload();
  const TurnSpec& turn = wl.conversations[conv_].turns[turn_];
  stream_id_ = 0;
  if (kind == ErrorKind::kNone && turn.max_tokens > 0 && (turn.min_tokens > 0 || wl.request.ignore_eos) &&
      rec_.output_tokens < turn.max_tokens)
    rec_.flags |= kFlagUnderGenerated;
  if (capturing_ && kind == ErrorKind::kNone) generated_.keep(turn_, wl.conversations[conv_].turns.size(), capture_);
  if (kind != ErrorKind::kNone && kind != ErrorKind::kCancelled) w_.keep_failure(rec_, body_);
  w_.commit(rec_);

  if (kind == ErrorKind::kCancelled) return;
  if (leaving) {
    w_.remove_agent(this);
    return;
  }
  int64_t delay;
  if (kind == ErrorKind::kConnect) {
    // The request never reached the server: the same turn again, after a backoff that grows with
    // every consecutive failure (a stopped server is not hammered; each attempt is a record).
    const EngineConfig& cfg = w_.config();
    delay = connect_backoff_ns(++connect_failures_, cfg.connect_retry_ns, cfg.connect_retry_max_ns, rng_.uniform01());
  } else {
    delay = draw_tool_delay_ns(wl.tool_delay, turn.tool_delay_ns, rng_);
    advance_turn();
  }
  scheduled_ns_ = now + delay;
  // Never send from inside a callback: a timer at (or before) now fires at the end of this
  // loop iteration.
  w_.schedule(scheduled_ns_, this, token(kSendTimer));
}

void Agent::advance_turn() {
  if (static_cast<size_t>(turn_ + 1) < w_.workload().conversations[conv_].turns.size()) {
    ++turn_;
    return;
  }
  pick_conversation();
}

}  // namespace agentperf
