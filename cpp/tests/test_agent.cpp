// The agent state machine against an in-memory host and connection: the test plays the server (it
// reads the exact bytes the session wrote and answers with bytes) and the clock of timers (it fires
// them by hand). No sockets, no sleeps.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agentperf/clock.h"
#include "agentperf/engine.h"
#include "agentperf/workload.h"
#include "client/agent.h"
#include "client/connection.h"
#include "client/request_builder.h"
#include "memory_transport.h"
#include "testing.h"

using namespace agentperf;
using namespace agentperf_testing;

namespace {

struct Timer {
  int64_t at_ns;
  TimerTarget* target;
  uint64_t token;
};

// The worker's side, in memory: hand-fired timers, a connection per request the test controls.
class TestHost final : public AgentHost {
 public:
  TestHost(EngineConfig c, Workload w) : cfg(std::move(c)), wl(std::move(w)) {
    wl.finalize();
    builder = std::make_unique<RequestBuilder>(wl, cfg);
  }
  const EngineConfig& config() const override { return cfg; }
  const Workload& workload() const override { return wl; }
  const RequestBuilder& request_builder() const override { return *builder; }
  int index() const override { return 3; }
  uint64_t isolation_epoch() const override { return epoch; }
  void schedule(int64_t at, TimerTarget* t, uint64_t token) override { timers.push_back({at, t, token}); }
  Connection* connection_for_new_stream() override {
    if (refuse_connections) return nullptr;
    conns.push_back(std::make_unique<MemoryConnection>());
    if (connect_at_once) conns.back()->up();
    return conns.back().get();
  }
  void close_later(Connection* c) override { to_close.push_back(c); }
  void count_started() override { ++started; }
  uint64_t next_request_id() override { return ++request_seq; }
  void count_engaged(int64_t d) override { engaged += d; }
  void record_gap(int64_t) override { ++gaps; }
  void commit(const RequestRecord& r) override { records.push_back(r); }
  void remove_agent(Agent*) override { ++removed; }
  void keep_failure(const RequestRecord& r, std::string_view body) override {
    kept.push_back({static_cast<ErrorKind>(r.error_kind), std::string(body)});
  }

  /// Fires the earliest timer; false when none is queued.
  bool fire_next(int64_t* at = nullptr) {
    if (timers.empty()) return false;
    auto it = std::min_element(timers.begin(), timers.end(),
                               [](const Timer& a, const Timer& b) { return a.at_ns < b.at_ns; });
    Timer t = *it;
    timers.erase(it);
    if (at) *at = t.at_ns;
    t.target->on_timer(t.token);
    return true;
  }
  /// Fires timers until one makes the agent send (a request appears on the last connection).
  MemoryConnection* fire_until_sent() {
    size_t before = conns.size();
    std::string last = before ? conns.back()->sent : "";
    while (fire_next()) {
      if (conns.size() != before || (!conns.empty() && conns.back()->sent != last)) return conns.back().get();
      for (auto& c : conns)
        if (!c->sent.empty()) return c.get();
    }
    return nullptr;
  }

  EngineConfig cfg;
  Workload wl;
  std::unique_ptr<RequestBuilder> builder;
  uint64_t epoch = 0;
  bool refuse_connections = false;
  bool connect_at_once = true;
  std::vector<std::unique_ptr<MemoryConnection>> conns;
  std::vector<Connection*> to_close;
  std::vector<Timer> timers;
  std::vector<RequestRecord> records;
  struct Kept {
    ErrorKind kind;
    std::string body;
  };
  std::vector<Kept> kept;  // keep_failure(): every failure with what the server sent
  int started = 0, removed = 0, gaps = 0;
  int64_t engaged = 0;
  uint64_t request_seq = 0;
};

std::string sse_response(const std::string& content, int completion_tokens, int status = 200) {
  std::string body = "data: {\"choices\":[{\"delta\":{\"content\":\"" + content + "\"}}]}\n\n" +
                     "data: {\"choices\":[{\"delta\":{\"content\":\"!\"}}]}\n\n" +
                     "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":" +
                     std::to_string(completion_tokens) + "}}\n\n" + "data: [DONE]\n\n";
  return "HTTP/1.1 " + std::to_string(status) + " OK\r\nContent-Type: text/event-stream\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string body_of(const std::string& request) { return request.substr(request.find("\r\n\r\n") + 4); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Agent state machine

TEST(agent_turn_then_tool_delay_then_next_turn) {
  EngineConfig cfg = plain_config();
  Workload wl = chat_workload(1, 3, /*tool_delay_ns=*/1234);
  wl.tool_delay = {ToolDelayKind::kFixed, 250'000'000, 0, 0.0, -1};  // the policy wins over the recorded 1234
  TestHost h(cfg, wl);
  Agent a(h);
  a.assign(4);
  a.begin();
  CHECK_EQ(h.conns.size(), size_t{1});
  MemoryConnection* c = h.fire_until_sent();
  CHECK(c != nullptr);
  CHECK(a.in_flight());
  std::string req = c->take_sent();
  CHECK(req.find("X-Request-Id: 0000000000000001\r\n") != std::string::npos);
  CHECK(body_of(req).find("\"content\":\"q0\"}]}") != std::string::npos);
  CHECK_EQ(h.engaged, int64_t{1});
  c->deliver(sse_response("hi", 2), 1000);
  CHECK(!a.in_flight());
  CHECK_EQ(h.records.size(), size_t{1});
  const RequestRecord& r0 = h.records[0];
  CHECK_EQ(static_cast<int>(r0.error_kind), 0);
  CHECK_EQ(r0.turn, 0);
  CHECK_EQ(r0.agent_id, int64_t{4});
  CHECK_EQ(r0.worker, 3);
  CHECK_EQ(r0.request_id, uint64_t{1});
  CHECK_EQ(r0.output_tokens, int64_t{2});
  CHECK_EQ(r0.output_events, 2);
  CHECK_EQ(r0.prompt_tokens, int64_t{5});
  CHECK_EQ(r0.done_ns, int64_t{1000});
  // Exactly one live send timer: at done + the drawn tool delay.
  int64_t at = 0;
  CHECK(h.fire_next(&at));
  CHECK_EQ(at, int64_t{1000} + 250'000'000);
  CHECK_EQ(a.scheduled_ns(), at);
  std::string req1 = c->take_sent();  // same keep-alive connection
  CHECK(body_of(req1).find("\"content\":\"q1\"}]}") != std::string::npos);
  CHECK(req1.find("X-Request-Id: 0000000000000002\r\n") != std::string::npos);
  CHECK_EQ(h.conns.size(), size_t{1});
  c->deliver(sse_response("x", 1), 2000);
  CHECK_EQ(h.records.size(), size_t{2});
  CHECK_EQ(h.records[1].scheduled_ns, int64_t{1000} + 250'000'000);
  CHECK_EQ(h.records[1].turn, 1);
}

TEST(agent_changes_conversation_after_the_last_turn_and_forgets_generated_history) {
  EngineConfig cfg = plain_config();
  cfg.history_generated = true;
  Workload wl = chat_workload(5, 2);
  TestHost h(cfg, wl);
  Agent a(h);
  a.assign(11);
  int32_t first = a.conversation();
  a.begin();
  MemoryConnection* c = h.fire_until_sent();
  c->take_sent();
  c->deliver(sse_response("LIVE", 2), 10);
  h.fire_next();
  std::string turn1 = body_of(c->take_sent());
  CHECK(turn1.find("\"content\":\"LIVE!\"}") != std::string::npos);  // history=generated
  c->deliver(sse_response("y", 2), 20);
  CHECK_EQ(a.turn(), 0);  // a new conversation starts at turn 0
  h.fire_next();
  std::string next = body_of(c->take_sent());
  CHECK(next.find("LIVE") == std::string::npos);
  CHECK_EQ(h.records.size(), size_t{2});
  CHECK_EQ(h.records[0].conversation, first);
  // Reproducible: the same (seed, agent id) makes the same choices, another id others.
  std::vector<int32_t> picks_a, picks_b, picks_c;
  for (auto* picks : {&picks_a, &picks_b}) {
    TestHost h2(cfg, wl);
    Agent b(h2);
    b.assign(11);
    picks->push_back(b.conversation());
  }
  CHECK(picks_a == picks_b);
  CHECK_EQ(picks_a[0], first);
  bool differs = false;
  for (int64_t id = 0; id < 20; ++id) {
    TestHost h3(cfg, wl);
    Agent d(h3);
    d.assign(id);
    differs |= d.conversation() != first;
  }
  CHECK(differs);
}

TEST(agent_random_start_turn_is_per_agent_and_reproducible) {
  EngineConfig cfg = plain_config();
  cfg.random_start_turn = true;
  Workload wl = chat_workload(3, 50);
  TestHost h(cfg, wl);
  std::vector<int32_t> turns;
  for (int64_t id = 0; id < 20; ++id) {
    Agent a(h);
    a.assign(id);
    Agent again(h);
    again.assign(id);
    CHECK_EQ(a.turn(), again.turn());
    CHECK_EQ(a.conversation(), again.conversation());
    turns.push_back(a.turn());
  }
  std::sort(turns.begin(), turns.end());
  CHECK(std::unique(turns.begin(), turns.end()) - turns.begin() > 5);
}

TEST(agent_leaving_while_in_flight_finishes_its_request_first) {
  TestHost h(plain_config(), chat_workload(1, 3));
  Agent a(h);
  a.assign(1);
  a.begin();
  MemoryConnection* c = h.fire_until_sent();
  a.leave();
  CHECK_EQ(h.removed, 0);  // still in flight
  c->deliver(sse_response("z", 1), 50);
  CHECK_EQ(h.records.size(), size_t{1});
  CHECK_EQ(static_cast<int>(h.records[0].error_kind), 0);
  CHECK_EQ(h.removed, 1);
  // No next turn is sent: any timer left is stale.
  while (h.fire_next()) {
  }
  CHECK(c->take_sent().find("POST") == 0);  // only the first request
  CHECK_EQ(h.records.size(), size_t{1});

  // Leaving while idle (waiting for the tool delay): removed at once.
  TestHost h2(plain_config(), chat_workload(1, 3, 1'000'000));
  Agent b(h2);
  b.assign(2);
  b.begin();
  MemoryConnection* c2 = h2.fire_until_sent();
  c2->deliver(sse_response("z", 1), 50);
  b.leave();
  CHECK_EQ(h2.removed, 1);
}

TEST(agent_connect_failure_retries_the_same_turn_after_a_pause) {
  EngineConfig cfg = plain_config();
  cfg.connect_retry_ns = 7'000'000;
  TestHost h(cfg, chat_workload(1, 3));
  h.refuse_connections = true;
  Agent a(h);
  a.assign(1);
  a.begin();
  CHECK_EQ(h.records.size(), size_t{1});
  CHECK_EQ(static_cast<int>(h.records[0].error_kind), static_cast<int>(ErrorKind::kConnect));
  CHECK_EQ(h.records[0].turn, 0);
  int64_t at = 0;
  h.refuse_connections = false;
  CHECK(h.fire_next(&at));
  // The first backoff step: uniform in [retry/2, retry].
  CHECK(at >= h.records[0].done_ns + 3'500'000 && at <= h.records[0].done_ns + 7'000'000);
  CHECK(a.in_flight());
  CHECK_EQ(a.turn(), 0);  // the same turn again
  // A connection that fails while the agent waits for it: a kConnect record.
  h.connect_at_once = false;
  TestHost h2(cfg, chat_workload(1, 3));
  h2.connect_at_once = false;
  Agent b(h2);
  b.assign(2);
  b.begin();
  h2.conns[0]->close(ErrorKind::kConnect, 99);
  CHECK_EQ(h2.records.size(), size_t{1});
  CHECK_EQ(static_cast<int>(h2.records[0].error_kind), static_cast<int>(ErrorKind::kConnect));
}

TEST(agent_reconnects_when_the_server_closed_its_idle_keep_alive_connection) {
  // llama.cpp closes after every streamed response while announcing keep-alive. Seen before the
  // write: the next turn goes on a new connection, flagged new_connection, and nothing fails.
  TestHost h(plain_config(), chat_workload(1, 3));
  Agent a(h);
  a.assign(1);
  a.begin();
  MemoryConnection* c = h.fire_until_sent();
  c->deliver(sse_response("hi", 2), 10);
  c->take_sent();
  c->closed_by_peer = true;
  h.fire_next();
  CHECK_EQ(h.conns.size(), size_t{2});
  CHECK(!c->is_open() && c->sent.empty());  // nothing written to the dead socket
  h.conns[1]->deliver(sse_response("x", 1), 20);
  CHECK_EQ(h.records.size(), size_t{2});
  CHECK_EQ(static_cast<int>(h.records[1].error_kind), 0);
  CHECK(h.records[1].flags & kFlagNewConnection);
  CHECK(!(h.records[0].flags & kFlagNewConnection));
}

TEST(agent_retries_once_when_a_reused_connection_dies_before_any_response_byte) {
  TestHost h(plain_config(), chat_workload(1, 4));
  Agent a(h);
  a.assign(1);
  a.begin();
  MemoryConnection* c = h.fire_until_sent();
  c->deliver(sse_response("hi", 2), 10);
  h.fire_next();  // turn 1 goes on the same keep-alive connection...
  CHECK_EQ(h.conns.size(), size_t{1});
  c->close(ErrorKind::kTruncated, 11);  // ...which the server closes as the request arrives
  CHECK_EQ(h.records.size(), size_t{1});  // not a failure
  h.fire_next();  // the retry, on a fresh connection
  CHECK_EQ(h.conns.size(), size_t{2});
  CHECK(h.conns[1]->sent.find("POST") == 0);
  CHECK(body_of(h.conns[1]->sent).find("\"content\":\"q1\"}]}") != std::string::npos);
  h.conns[1]->deliver(sse_response("x", 1), 30);
  CHECK_EQ(h.records.size(), size_t{2});
  CHECK_EQ(static_cast<int>(h.records[1].error_kind), 0);
  CHECK(h.records[1].flags & kFlagNewConnection);
  CHECK_EQ(h.records[1].turn, 1);
  CHECK_EQ(h.started, 2);  // one request, not two
  // Once only: the fresh connection dying too is the server's failure.
  h.fire_next();  // turn 2 on conns[1] (reused)
  h.conns[1]->close(ErrorKind::kReset, 40);
  h.fire_next();  // retried on conns[2]
  CHECK_EQ(h.conns.size(), size_t{3});
  h.conns[2]->close(ErrorKind::kReset, 41);
  CHECK_EQ(h.records.size(), size_t{3});
  CHECK_EQ(static_cast<int>(h.records[2].error_kind), static_cast<int>(ErrorKind::kReset));
  // A response byte already seen: a cut stream is a failure, never retried.
  h.fire_next();
  MemoryConnection* d = h.conns.back().get();
  std::string full = sse_response("hi", 2);
  d->deliver(full.substr(0, 20), 50);
  d->close(ErrorKind::kTruncated, 51);
  CHECK_EQ(h.records.size(), size_t{4});
  CHECK_EQ(static_cast<int>(h.records[3].error_kind), static_cast<int>(ErrorKind::kTruncated));
}

TEST(agent_failure_paths_each_make_one_record) {
  // Non-2xx status: kHttpStatus, and the agent moves on to the next turn.
  {
    TestHost h(plain_config(), chat_workload(1, 3));
    Agent a(h);
    a.assign(1);
    a.begin();
    MemoryConnection* c = h.fire_until_sent();
    c->deliver("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nno", 10);
    CHECK_EQ(h.records.size(), size_t{1});
    CHECK_EQ(static_cast<int>(h.records[0].error_kind), static_cast<int>(ErrorKind::kHttpStatus));
    CHECK_EQ(h.records[0].http_status, 500);
    CHECK_EQ(a.turn(), 1);
  }
  // The connection closes mid-response: kTruncated; the next turn opens a new connection.
  {
    TestHost h(plain_config(), chat_workload(1, 3));
    Agent a(h);
    a.assign(1);
    a.begin();
    MemoryConnection* c = h.fire_until_sent();
    std::string full = sse_response("hi", 2);
    c->deliver(full.substr(0, full.find("data: {\"choices\":[{\"delta\":{\"content\":\"!")), 10);
    c->close(ErrorKind::kTruncated, 11);
    CHECK_EQ(h.records.size(), size_t{1});
    CHECK_EQ(static_cast<int>(h.records[0].error_kind), static_cast<int>(ErrorKind::kTruncated));
    CHECK_EQ(h.records[0].output_events, 1);
    h.fire_next();
    CHECK_EQ(h.conns.size(), size_t{2});
    CHECK(h.conns[1]->sent.find("POST") == 0);
  }
  // No answer before the request timeout: kTimeout, the stream is abandoned.
  {
    EngineConfig cfg = plain_config();
    cfg.request_timeout_ns = 5'000;
    TestHost h(cfg, chat_workload(1, 3));
    Agent a(h);
    a.assign(1);
    a.begin();
    MemoryConnection* c = h.fire_until_sent();
    int64_t at = 0;
    CHECK(h.fire_next(&at));  // the timeout timer
    CHECK_EQ(h.records.size(), size_t{1});
    CHECK_EQ(at, h.records[0].scheduled_ns + 5'000);
    CHECK_EQ(static_cast<int>(h.records[0].error_kind), static_cast<int>(ErrorKind::kTimeout));
    CHECK(!c->is_open());  // HTTP/1.1: an abandoned stream leaves the connection unusable
  }
  // A complete 2xx stream without output: kNoOutput; an error event: kStreamError.
  {
    TestHost h(plain_config(), chat_workload(1, 3));
    Agent a(h);
    a.assign(1);
    a.begin();
    MemoryConnection* c = h.fire_until_sent();
    std::string body = "data: [DONE]\n\n";
    c->deliver("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body, 10);
    CHECK_EQ(static_cast<int>(h.records.back().error_kind), static_cast<int>(ErrorKind::kNoOutput));
    h.fire_next();
    body = "data: {\"error\":{\"message\":\"overloaded\"}}\n\n";
    c->deliver("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body, 20);
    CHECK_EQ(h.records.size(), size_t{2});
    CHECK_EQ(static_cast<int>(h.records.back().error_kind), static_cast<int>(ErrorKind::kStreamError));
  }
  // Engine stop while in flight: kCancelled, and nothing is scheduled after it.
  {
    TestHost h(plain_config(), chat_workload(1, 3));
    Agent a(h);
    a.assign(1);
    a.begin();
    h.fire_until_sent();
    a.cancel();
    CHECK_EQ(h.records.size(), size_t{1});
    CHECK_EQ(static_cast<int>(h.records[0].error_kind), static_cast<int>(ErrorKind::kCancelled));
    while (h.fire_next()) {
    }
    CHECK_EQ(h.records.size(), size_t{1});
  }
}

// ---------------------------------------------------------------------------------------------
// Faults: connect backoff, idle streams, oversized responses, what a failure keeps

TEST(agent_connect_backoff_grows_is_capped_and_resets_once_connected) {
  EngineConfig cfg = plain_config();
  cfg.connect_retry_ns = 10'000'000;
  cfg.connect_retry_max_ns = 80'000'000;
  TestHost h(cfg, chat_workload(1, 3));
  h.refuse_connections = true;
  Agent a(h);
  a.assign(1);
  a.begin();
  // Every refused attempt is a record; the wait before the next one doubles up to the cap.
  const int64_t ceilings[] = {10'000'000, 20'000'000, 40'000'000, 80'000'000, 80'000'000, 80'000'000};
  for (int64_t b : ceilings) {
    int64_t at = 0;
    const RequestRecord last = h.records.back();
    CHECK(h.fire_next(&at));
    const int64_t wait = at - last.done_ns;
    CHECK_MSG(wait >= b / 2 && wait <= b, "wait " << wait << " for a ceiling of " << b);
    CHECK_EQ(static_cast<int>(h.records.back().error_kind), static_cast<int>(ErrorKind::kConnect));
    CHECK_EQ(h.records.back().turn, 0);  // the same turn, never skipped
  }
  CHECK_EQ(h.records.size(), size_t{7});
  CHECK_EQ(h.started, 7);
  // The server is back: the request goes out and completes; the next refusal starts from the base.
  h.refuse_connections = false;
  MemoryConnection* c = h.fire_until_sent();
  CHECK(c != nullptr);
  c->deliver(sse_response("hi", 2), now_ns());
  CHECK_EQ(static_cast<int>(h.records.back().error_kind), 0);
  c->closed_by_peer = true;
  h.refuse_connections = true;
  h.fire_next();  // turn 1: the server closed the idle connection and refuses a new one
  CHECK_EQ(static_cast<int>(h.records.back().error_kind), static_cast<int>(ErrorKind::kConnect));
  int64_t at = 0;
  const int64_t done = h.records.back().done_ns;
  CHECK(h.fire_next(&at));
  CHECK(at - done >= 5'000'000 && at - done <= 10'000'000);
}

TEST(agent_idle_stream_times_out_after_its_headers_only) {
  EngineConfig cfg = plain_config();
  cfg.stream_idle_timeout_ns = 50'000'000;
  cfg.request_timeout_ns = 600'000'000'000;
  TestHost h(cfg, chat_workload(1, 3));
  Agent a(h);
  a.assign(1);
  a.begin();
  MemoryConnection* c = h.fire_until_sent();
  // Before the headers only the request timeout is armed (a queued request may wait long).
  CHECK_EQ(h.timers.size(), size_t{1});
  const int64_t t0 = now_ns();
  c->deliver("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", t0);
  CHECK_EQ(h.timers.size(), size_t{2});
  // Bytes keep coming: when the idle timer fires it re-arms from the last byte, no record.
  const int64_t t1 = t0 + 30'000'000;
  c->deliver("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", t1);
  int64_t at = 0;
  CHECK(h.fire_next(&at));
  CHECK_EQ(at, t0 + 50'000'000);
  CHECK(h.records.empty());
  CHECK(h.fire_next(&at));
  CHECK_EQ(at, t1 + 50'000'000);
  // The clock has not reached t1 + 50 ms yet (t1 lies in the future): re-armed once more.
  CHECK(h.records.empty());
  // Silence since long ago: the stream is given up as idle_timeout, the connection closed.
  c->deliver("data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n", now_ns() - 60'000'000);
  while (h.records.empty() && h.fire_next()) {
  }
  CHECK_EQ(h.records.size(), size_t{1});
  CHECK_EQ(static_cast<int>(h.records[0].error_kind), static_cast<int>(ErrorKind::kIdleTimeout));
  CHECK_EQ(h.records[0].output_events, 2);
  CHECK(!c->is_open());
  CHECK(a.turn() == 1);  // the agent goes on with its next turn
  // 0 turns it off: only the request timeout remains.
  cfg.stream_idle_timeout_ns = 0;
  TestHost h2(cfg, chat_workload(1, 3));
  Agent b(h2);
  b.assign(1);
  b.begin();
  MemoryConnection* c2 = h2.fire_until_sent();
  c2->deliver("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", now_ns() - 1'000'000'000);
  CHECK_EQ(h2.timers.size(), size_t{1});
}

TEST(agent_keeps_one_timeout_and_one_idle_timer_queued_whatever_the_number_of_requests) {
  EngineConfig cfg = plain_config();
  cfg.stream_idle_timeout_ns = 60'000'000'000;
  cfg.request_timeout_ns = 600'000'000'000;
  TestHost h(cfg, chat_workload(1, 3));
  Agent a(h);
  a.assign(1);
  a.begin();
  MemoryConnection* c = h.fire_until_sent();
  for (int i = 0; i < 300; ++i) {
    c->take_sent();
    c->deliver(sse_response("hi", 2), now_ns());
    CHECK(h.fire_next());  // the next turn's send timer: the earliest
    CHECK(a.in_flight());
  }
  CHECK_EQ(h.records.size(), size_t{300});
  // The request in flight's timeout, one idle timer (armed by the first headers), nothing else.
  CHECK_EQ(h.timers.size(), size_t{2});
  // That timeout timer was queued for the first request; the one in flight still times out at
  // its own deadline: the early timer finds a later deadline and queues itself again for it.
  int64_t at = 0;
  CHECK(h.fire_next(&at));  // the idle timer (60 s after the first headers): no headers yet, dropped
  CHECK(h.records.size() == 300 && a.in_flight());
  CHECK(h.fire_next(&at));  // the first request's deadline
  CHECK(h.records.size() == 300 && a.in_flight());
  CHECK_EQ(h.timers.size(), size_t{1});
  CHECK(h.fire_next(&at));
  CHECK_EQ(h.records.size(), size_t{301});
  CHECK_EQ(at, h.records.back().scheduled_ns + cfg.request_timeout_ns);
  CHECK_EQ(static_cast<int>(h.records.back().error_kind), static_cast<int>(ErrorKind::kTimeout));
}

TEST(agent_oversized_event_or_headers_end_the_request_as_oversized) {
  // An SSE line that never ends: dropped once past max_event_bytes, from a timer (never inside
  // the connection's callback), with the time it was seen.
  {
    EngineConfig cfg = plain_config();
    cfg.max_event_bytes = 4096;
    TestHost h(cfg, chat_workload(1, 3));
    Agent a(h);
    a.assign(1);
    a.begin();
    MemoryConnection* c = h.fire_until_sent();
    c->deliver("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"", 5);
    c->deliver(std::string(3000, 'x'), 6);
    CHECK(h.records.empty());
    c->deliver(std::string(3000, 'x'), 7);  // past 4 KiB
    CHECK(h.records.empty());
    c->deliver(std::string(100000, 'x'), 8);  // more of it in the same loop iteration: ignored
    h.fire_next();
    CHECK_EQ(h.records.size(), size_t{1});
    CHECK_EQ(static_cast<int>(h.records[0].error_kind), static_cast<int>(ErrorKind::kOversized));
    CHECK_EQ(h.records[0].done_ns, int64_t{7});
    CHECK(!c->is_open());
    CHECK_EQ(h.kept.size(), size_t{1});
    CHECK_EQ(h.kept[0].body.size(), kStreamStartBytes);  // the start of the stream, bounded
    CHECK(h.kept[0].body.rfind("data: {", 0) == 0);
    // The next turn goes on a new connection and succeeds.
    MemoryConnection* d = h.fire_until_sent();
    CHECK(d != c);
    d->deliver(sse_response("ok", 2), 20);
    CHECK_EQ(static_cast<int>(h.records.back().error_kind), 0);
  }
  // Response headers past 64 KiB (HTTP/1.1): the same kind, at once.
  {
    TestHost h(plain_config(), chat_workload(1, 3));
    Agent a(h);
    a.assign(1);
    a.begin();
    MemoryConnection* c = h.fire_until_sent();
    c->deliver("HTTP/1.1 200 OK\r\nX-Big: " + std::string(70 * 1024, 'h') + "\r\n\r\n", 5);
    CHECK_EQ(h.records.size(), size_t{1});
    CHECK_EQ(static_cast<int>(h.records[0].error_kind), static_cast<int>(ErrorKind::kOversized));
    CHECK(!c->is_open());
  }
}

TEST(agent_failures_keep_what_the_server_sent) {
  TestHost h(plain_config(), chat_workload(1, 4));
  Agent a(h);
  a.assign(1);
  a.begin();
  MemoryConnection* c = h.fire_until_sent();
  // An HTTP status failure: its body (the server's error).
  const std::string err = "{\"error\":{\"message\":\"maximum context length is 8 tokens\"}}";
  c->deliver("HTTP/1.1 400 Bad Request\r\nContent-Length: " + std::to_string(err.size()) + "\r\n\r\n" + err, 10);
  // A malformed event after a good one: that event's data.
  h.fire_next();
  std::string body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: <html>oops</html>\n\n";
  c->deliver("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body, 20);
  // A success keeps nothing.
  h.fire_next();
  c->deliver(sse_response("ok", 2), 30);
  // An error body larger than 4 KiB: its first 4 KiB.
  h.fire_next();
  const std::string big(10000, 'e');
  c->deliver("HTTP/1.1 503 Busy\r\nContent-Length: " + std::to_string(big.size()) + "\r\n\r\n" + big, 40);
  CHECK_EQ(h.records.size(), size_t{4});
  CHECK_EQ(h.kept.size(), size_t{3});
  if (h.kept.size() == 3) {
    CHECK_EQ(static_cast<int>(h.kept[0].kind), static_cast<int>(ErrorKind::kHttpStatus));
    CHECK(h.kept[0].body == err);
    CHECK_EQ(static_cast<int>(h.kept[1].kind), static_cast<int>(ErrorKind::kSseMalformed));
    CHECK(h.kept[1].body == "<html>oops</html>");
    CHECK_EQ(h.kept[2].body.size(), kFailureBodyBytes);
  }
}
