// The simulator's HTTP/2 server session against the engine's client session, in memory.
#include <string>
#include <vector>

#include "agentperf/h2_server_session.h"
#include "agentperf/session.h"
#include "testing.h"

using namespace agentperf;

namespace {

struct Server : H2ServerSession::Handler {
  std::vector<std::tuple<int32_t, std::string, std::string, std::string>> requests;
  std::vector<int32_t> closed;
  void on_h2_request(int32_t id, std::string_view method, std::string_view path, const std::string& body) override {
    requests.emplace_back(id, std::string(method), std::string(path), body);
  }
  void on_h2_stream_closed(int32_t id) override { closed.push_back(id); }
};

struct Client : StreamHandler {
  int status = 0;
  std::string body;
  int completes = 0;
  ErrorKind failed = ErrorKind::kNone;
  void on_response_headers(int s, int64_t) override { status = s; }
  void on_response_data(const char* d, size_t n, int64_t) override { body.append(d, n); }
  void on_response_complete(int64_t) override { ++completes; }
  void on_stream_failed(ErrorKind k, int64_t) override { failed = k; }
};

// Moves bytes both ways until neither side has anything to say.
void pump(Session& client, H2ServerSession& server) {
  for (int round = 0; round < 1000; ++round) {
    bool moved = false;
    iovec iov[64];
    size_t n;
    while ((n = client.pending_output(iov, 64)) > 0) {
      size_t total = 0;
      for (size_t i = 0; i < n; ++i) {
        CHECK(server.on_read(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len));
        total += iov[i].iov_len;
      }
      client.consumed_output(total);
      moved = true;
    }
    const char* data;
    size_t len = server.pending_output(&data);
    if (len) {
      std::string copy(data, len);
      server.consumed(len);
      CHECK(client.on_read(copy.data(), copy.size(), 0));
      moved = true;
    }
    if (!moved) return;
  }
}

}  // namespace

TEST(h2_server_round_trip) {
  Server server_handler;
  H2ServerSession server(server_handler, 100);
  auto client = make_session(Protocol::kHttp2, SessionOptions{}, false);
  client->on_connected();
  std::string big(200 * 1024, 'x');
  iovec body[] = {{big.data(), big.size()}};
  Client c[5];
  for (auto& ch : c) {
    RequestHead head{"/v1/chat/completions", "127.0.0.1:1", "", big.size()};
    CHECK(client->submit(head, body, 1, &ch) > 0);
  }
  pump(*client, server);
  CHECK_EQ(server_handler.requests.size(), size_t{5});
  for (auto& [id, method, path, req_body] : server_handler.requests) {
    CHECK_EQ(method, std::string("POST"));
    CHECK_EQ(path, std::string("/v1/chat/completions"));
    CHECK_EQ(req_body.size(), big.size());
    server.respond(id, 200, "text/event-stream");
    server.send(id, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", false);
  }
  pump(*client, server);
  for (auto& ch : c) {
    CHECK_EQ(ch.status, 200);
    CHECK_EQ(ch.completes, 0);
  }
  // The rest later (paced), the last stream reset instead.
  for (size_t i = 0; i < server_handler.requests.size(); ++i) {
    int32_t id = std::get<0>(server_handler.requests[i]);
    if (i == 4) server.reset(id);
    else server.send(id, "data: [DONE]\n\n", true);
  }
  pump(*client, server);
  for (int i = 0; i < 4; ++i) {
    CHECK_EQ(c[i].completes, 1);
    CHECK_EQ(c[i].body, std::string("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n"));
  }
  CHECK_EQ(c[4].completes, 0);
  CHECK(c[4].failed == ErrorKind::kReset);
  CHECK_EQ(server_handler.closed.size(), size_t{5});
  CHECK_EQ(client->active_streams(), size_t{0});
}
