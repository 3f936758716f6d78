// SocketConnection over a real loopback socket, for what the in-memory transport cannot show: how
// the socket calls behave when the peer goes away.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "agentperf/clock.h"
#include "client/connection.h"
#include "testing.h"

namespace {

using namespace agentperf;

// The host of one connection: the event loop and buffers a worker would lend it.
class LoopbackHost final : public ConnectionHost, public ConnectionWaiter {
 public:
  explicit LoopbackHost(uint16_t port) : read_(new char[kReadBufferBytes]) {
    addr_.sin_family = AF_INET;
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr_.sin_port = htons(port);
  }
  EventLoop& loop() override { return loop_; }
  const sockaddr* addr() const override { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t addr_len() const override { return sizeof addr_; }
  const TlsContext* tls() const override { return nullptr; }
  ProtocolChoice protocol_choice() const override { return ProtocolChoice::kHttp1; }
  char* read_buffer() override { return read_.get(); }
  char* plain_buffer() override { return nullptr; }
  Protocol negotiated() const override { return Protocol::kHttp1; }
  void set_negotiated(Protocol) override {}
  void connection_opened() override {}
  void connection_closed(Connection*) override {}
  void connection_error(const std::string& what) override { error = what; }
  void on_connection_ready(Connection*) override { ready = true; }
  void on_connection_failed(Connection*, int64_t) override { failed = true; }

  bool ready = false;
  bool failed = false;
  std::string error;

 private:
  EventLoop loop_;
  sockaddr_in addr_{};
  std::unique_ptr<char[]> read_;
};

class FailureCatcher final : public StreamHandler {
 public:
  void on_response_headers(int, int64_t) override {}
  void on_response_data(const char*, size_t, int64_t) override {}
  void on_response_complete(int64_t) override { completed = true; }
  void on_stream_failed(ErrorKind k, int64_t) override { kind = k; }
  ErrorKind kind = ErrorKind::kNone;
  bool completed = false;
};

volatile sig_atomic_t g_sigpipes = 0;
void count_sigpipe(int) { g_sigpipes = g_sigpipes + 1; }

int loopback_listener(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4) != 0) return -1;
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

}  // namespace

// Regression (found by the engine-against-simulator run, scripts/sanitize.sh): a request written on
// a connection the server had closed (FIN, then RST) raised SIGPIPE, which kills any process that
// does not ignore it; the write must fail the stream as a reset instead.
TEST(socket_connection_write_to_a_closed_peer_fails_the_stream_without_sigpipe) {
  struct sigaction catcher {}, before {};
  catcher.sa_handler = count_sigpipe;
  sigemptyset(&catcher.sa_mask);
  sigaction(SIGPIPE, &catcher, &before);
  g_sigpipes = 0;

  uint16_t port = 0;
  int listener = loopback_listener(&port);
  CHECK(listener >= 0);
  LoopbackHost host(port);
  SocketConnection conn(host, 1);
  CHECK(conn.open());
  conn.add_waiter(&host);
  const int64_t deadline = now_ns() + 5'000'000'000;
  while (!host.ready && !host.failed && now_ns() < deadline) host.loop().run_once(100'000'000);
  CHECK(host.ready && conn.ready());

  // The server closes: FIN first, then a reset (linger 0), before the client writes anything.
  int server = accept(listener, nullptr, nullptr);
  CHECK(server >= 0);
  shutdown(server, SHUT_WR);
  linger hard{1, 0};
  setsockopt(server, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  close(server);
  close(listener);

  RequestHead head;
  head.path = "/v1/chat/completions";
  head.authority = "127.0.0.1";
  const std::string body = "{}";
  iovec iov{const_cast<char*>(body.data()), body.size()};
  head.content_length = body.size();
  FailureCatcher stream;
  conn.submit(head, &iov, 1, &stream);
  // The write (or, had the reset not arrived yet, the read that follows) ends the stream.
  while (conn.is_open() && now_ns() < deadline) host.loop().run_once(100'000'000);

  CHECK_EQ(static_cast<int>(g_sigpipes), 0);
  CHECK(!conn.is_open());
  CHECK(!stream.completed);
  CHECK_MSG(stream.kind == ErrorKind::kReset || stream.kind == ErrorKind::kTruncated,
            "failed as " << to_string(stream.kind));
  sigaction(SIGPIPE, &before, nullptr);
}
