// In-memory transport and workloads for the client tests: a Connection whose "socket" is a
// string (the test reads the exact bytes the session wrote and answers with bytes), and small chat
// workloads. No sockets, no sleeps.
#pragma once

#include <string>
#include <vector>

#include "agentperf/engine.h"
#include "agentperf/workload.h"
#include "client/connection.h"

namespace agentperf_testing {

using namespace agentperf;


inline std::string joined(const std::vector<iovec>& iov) {
  std::string s;
  for (const iovec& v : iov) s.append(static_cast<const char*>(v.iov_base), v.iov_len);
  return s;
}

// A connection whose transport is a string: flush() moves what the session writes into `sent`.
class MemoryConnection final : public Connection {
 public:
  explicit MemoryConnection(uint32_t streams = 1) : Connection(streams) {}
  bool is_open() const override { return open_; }
  /// The server closed this connection while it was idle (seen before the next write).
  bool closed_by_peer = false;
  bool peer_closed() override { return closed_by_peer; }
  void close(ErrorKind kind, int64_t now) override {
    if (!open_) return;
    open_ = false;
    ++closes;
    end(kind, now);
  }
  void flush() override {
    if (!session_) return;
    iovec iov[64];
    size_t n;
    while ((n = session_->pending_output(iov, 64)) > 0) {
      size_t total = 0;
      for (size_t i = 0; i < n; ++i) {
        sent.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
        total += iov[i].iov_len;
      }
      session_->consumed_output(total);
    }
  }
  /// The transport is up.
  void up(Protocol p = Protocol::kHttp1) { become_ready(p, false); }
  /// Bytes from the server.
  void deliver(const std::string& bytes, int64_t now = 1) {
    if (!session_->on_read(bytes.data(), bytes.size(), now)) close(ErrorKind::kProtocol, now);
    else close_if_done();
  }
  std::string take_sent() {
    std::string s;
    s.swap(sent);
    return s;
  }
  std::string sent;
  int closes = 0;

 private:
  bool open_ = true;
};

// A chat conversation of `turns` turns: turn k sends the system message, then k (user, assistant)
// pairs, then user k. The isolation prefix goes inside the system message's content.
inline Conversation chat(int turns, int64_t tool_delay_ns = 0, int32_t max_tokens = 8) {
  Conversation c;
  c.fragments.push_back("{\"role\":\"system\",\"content\":\"");  // 0
  c.fragments.push_back("Be brief.\"}");                         // 1
  for (int k = 0; k < turns; ++k) {
    c.fragments.push_back(",{\"role\":\"user\",\"content\":\"q" + std::to_string(k) + "\"}");
    c.fragments.push_back(",{\"role\":\"assistant\",\"content\":\"");
    c.fragments.push_back("a" + std::to_string(k));  // the recorded reply of turn k
    c.fragments.push_back("\"}");
  }
  c.reply_of.assign(c.fragments.size(), -1);
  for (int k = 0; k < turns; ++k) c.reply_of[2 + 4 * k + 2] = k;
  for (uint32_t i = 0; i < c.fragments.size(); ++i) c.pieces.push_back(i);
  for (int k = 0; k < turns; ++k) {
    TurnSpec t;
    t.piece_begin = 0;
    t.piece_end = static_cast<uint32_t>(2 + 4 * k + 1);  // ... up to user k
    t.insert_at = 1;
    t.max_tokens = max_tokens;
    t.tool_delay_ns = tool_delay_ns;
    c.turns.push_back(t);
  }
  return c;
}

inline Workload chat_workload(int conversations, int turns, int64_t tool_delay_ns = 0) {
  Workload w;
  w.request.model = "m";
  for (int i = 0; i < conversations; ++i) w.conversations.push_back(chat(turns, tool_delay_ns));
  return w;
}

inline EngineConfig plain_config() {
  EngineConfig c;
  c.host = "127.0.0.1";
  c.port = 8000;
  c.seed = 7;
  c.random_start_turn = false;
  c.cache_isolation = false;
  return c;
}

}  // namespace agentperf_testing
