// The request builder (exact bytes, on the wire too), isolation prefixes and tool delay policies.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "client/request_builder.h"
#include "client/tool_delay.h"
#include "memory_transport.h"
#include "testing.h"

using namespace agentperf;
using namespace agentperf_testing;

// ---------------------------------------------------------------------------------------------
// Request builder

TEST(request_builder_writes_exact_bytes_with_an_isolation_prefix) {
  EngineConfig cfg = plain_config();
  cfg.authorization = "Bearer k";
  Workload wl = chat_workload(1, 2);
  wl.request.path = "/v1/chat/completions";
  wl.request.extra_body = ",\"temperature\":0";
  wl.conversations[0].members = ",\"tools\":[]";
  wl.conversations[0].turns[1].min_tokens = 8;
  wl.finalize();
  RequestBuilder b(wl, cfg);
  RequestSlices s;
  std::string prefix = "[rid:00000000000000aa] ";
  b.build(0, 1, &prefix, nullptr, 0x2a, s);
  std::string expect =
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"temperature\":0,"
      "\"max_tokens\":8,\"min_tokens\":8,\"tools\":[],\"messages\":["
      "{\"role\":\"system\",\"content\":\"[rid:00000000000000aa] Be brief.\"}"
      ",{\"role\":\"user\",\"content\":\"q0\"},{\"role\":\"assistant\",\"content\":\"a0\"}"
      ",{\"role\":\"user\",\"content\":\"q1\"}]}";
  CHECK_EQ(joined(s.body), expect);
  CHECK_EQ(s.body_bytes, expect.size());
  CHECK_EQ(std::string(s.head.request_id), std::string("000000000000002a"));
  CHECK_EQ(std::string(s.head.authority), std::string("127.0.0.1:8000"));

  // Through the HTTP/1.1 session: the exact request on the wire.
  MemoryConnection c;
  c.up();
  struct Sink : StreamHandler {
    void on_response_headers(int, int64_t) override {}
    void on_response_data(const char*, size_t, int64_t) override {}
    void on_response_complete(int64_t) override {}
    void on_stream_failed(ErrorKind, int64_t) override {}
  } sink;
  CHECK(c.submit(s.head, s.body.data(), s.body.size(), &sink) > 0);
  CHECK_EQ(c.sent, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
                   "Content-Type: application/json\r\nAccept: text/event-stream\r\nAuthorization: Bearer k\r\n"
                   "X-Request-Id: 000000000000002a\r\nContent-Length: " +
                       std::to_string(expect.size()) + "\r\n\r\n" + expect);
}

TEST(request_builder_replaces_recorded_replies_with_generated_ones) {
  EngineConfig cfg = plain_config();
  Workload wl = chat_workload(1, 3);
  wl.finalize();
  RequestBuilder b(wl, cfg);
  GeneratedHistory g;
  std::string reply0 = "live reply \\\"0\\\"";
  g.keep(0, 3, reply0);
  RequestSlices s;
  b.build(0, 2, nullptr, &g, 0, s);
  std::string body = joined(s.body);
  CHECK(body.find("\"content\":\"live reply \\\"0\\\"\"}") != std::string::npos);
  CHECK(body.find("\"content\":\"a0\"") == std::string::npos);
  CHECK(body.find("\"content\":\"a1\"") != std::string::npos);  // turn 1: none received, recorded
  CHECK(s.head.request_id.empty());                               // id 0: no header
  g.clear();
  b.build(0, 2, nullptr, &g, 0, s);
  CHECK(joined(s.body).find("\"content\":\"a0\"") != std::string::npos);
}

TEST(request_builder_token_id_prompts) {
  EngineConfig cfg = plain_config();
  Workload wl;
  wl.request.path = "/v1/completions";
  wl.request.model = "m";
  wl.request.open = "\"prompt\":[";
  wl.request.close = "]";
  wl.request.isolation_style = IsolationStyle::kTokenIds;
  wl.request.isolation_tokens = 3;
  wl.request.isolation_token_lo = 100;
  wl.request.isolation_token_hi = 200;
  Conversation c;
  c.fragments = {"11,12,13,", "14,15,", "16"};
  c.pieces = {0, 1, 2, 1, 2};
  c.turns.push_back(TurnSpec{0, 3, 0, 4, -1, 0});
  c.turns.push_back(TurnSpec{0, 5, 0, 4, -1, 0});
  wl.conversations.push_back(c);
  wl.finalize();
  RequestBuilder b(wl, cfg);
  std::string prefix = isolation_prefix(wl.request, 1, 0, 9, 0);
  int ids = 0;
  for (size_t i = 0; i < prefix.size(); ++i) ids += prefix[i] == ',';
  CHECK_EQ(ids, 3);
  for (size_t at = 0, next; at < prefix.size(); at = next + 1) {
    next = prefix.find(',', at);
    int v = std::stoi(prefix.substr(at, next - at));
    CHECK(v >= 100 && v < 200);
  }
  RequestSlices s;
  b.build(0, 1, &prefix, nullptr, 1, s);
  CHECK_EQ(joined(s.body), "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                           "\"max_tokens\":4,\"prompt\":[" + prefix + "11,12,13,14,15,1614,15,16]}");
  CHECK_EQ(std::string(s.head.path), std::string("/v1/completions"));
}

TEST(isolation_prefix_depends_on_seed_nonce_agent_and_epoch) {
  RequestOptions ro;
  const std::string base = isolation_prefix(ro, 1, 0, 5, 0);
  CHECK_EQ(base.size(), std::string("[rid:0123456789abcdef] ").size());
  CHECK(base.rfind("[rid:", 0) == 0);
  CHECK_EQ(isolation_prefix(ro, 1, 0, 5, 0), base);  // equal inputs: equal prefixes
  CHECK_EQ(isolation_prefix(ro, 1, 77, 5, 3), isolation_prefix(ro, 1, 77, 5, 3));
  CHECK(isolation_prefix(ro, 1, 1, 5, 0) != base);  // another run nonce
  CHECK(isolation_prefix(ro, 2, 0, 5, 0) != base);  // another seed
  CHECK(isolation_prefix(ro, 1, 0, 6, 0) != base);  // another agent
  CHECK(isolation_prefix(ro, 1, 0, 5, 1) != base);  // another epoch
  // Many nonces for the same (seed, agent, epoch): all different.
  std::vector<std::string> seen;
  for (uint64_t nonce = 0; nonce < 200; ++nonce) seen.push_back(isolation_prefix(ro, 1, nonce, 5, 0));
  std::sort(seen.begin(), seen.end());
  CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
}

// ---------------------------------------------------------------------------------------------
// Tool delay policy

TEST(tool_delay_policies) {
  Rng rng(3);
  ToolDelayPolicy p;
  CHECK_EQ(draw_tool_delay_ns(p, 12345, rng), int64_t{12345});
  p.kind = ToolDelayKind::kNone;
  CHECK_EQ(draw_tool_delay_ns(p, 12345, rng), int64_t{0});
  p.kind = ToolDelayKind::kFixed;
  p.a_ns = 500;
  CHECK_EQ(draw_tool_delay_ns(p, 12345, rng), int64_t{500});
  p.kind = ToolDelayKind::kUniform;
  p.a_ns = 1000;
  p.b_ns = 2000;
  int64_t lo = INT64_MAX, hi = 0;
  for (int i = 0; i < 5000; ++i) {
    int64_t d = draw_tool_delay_ns(p, 0, rng);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  CHECK(lo >= 1000 && lo < 1010);
  CHECK(hi <= 2000 && hi > 1990);
  p.kind = ToolDelayKind::kLognormal;
  p.a_ns = 1'000'000'000;
  p.sigma = 0.8;
  std::vector<int64_t> v;
  for (int i = 0; i < 20001; ++i) v.push_back(draw_tool_delay_ns(p, 0, rng));
  std::nth_element(v.begin(), v.begin() + 10000, v.end());
  CHECK_MSG(std::abs(static_cast<double>(v[10000]) / 1e9 - 1.0) < 0.05, v[10000]);  // the median
  p.cap_ns = 1'500'000'000;
  for (int i = 0; i < 2000; ++i) CHECK(draw_tool_delay_ns(p, 0, rng) <= p.cap_ns);
  p.kind = ToolDelayKind::kRecorded;
  CHECK_EQ(draw_tool_delay_ns(p, 2'000'000'000, rng), p.cap_ns);  // the cap applies to recorded ones too
  Rng a(9), b(9);
  ToolDelayPolicy u{ToolDelayKind::kUniform, 0, 1'000'000, 0.0, -1};
  CHECK_EQ(draw_tool_delay_ns(u, 0, a), draw_tool_delay_ns(u, 0, b));  // reproducible per stream
}

TEST(workload_rejects_bad_tool_delay_parameters) {
  auto rejects = [](ToolDelayPolicy p) {
    Workload w = chat_workload(1, 1);
    w.tool_delay = p;
    try {
      w.finalize();
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  CHECK(rejects({ToolDelayKind::kFixed, -1, 0, 0.0, -1}));
  CHECK(rejects({ToolDelayKind::kUniform, 10, 5, 0.0, -1}));
  CHECK(rejects({ToolDelayKind::kLognormal, 0, 0, 1.0, -1}));
  CHECK(!rejects({ToolDelayKind::kUniform, 5, 10, 0.0, 100}));
}

