// The floor of client overhead on this machine: a minimal HTTP/1.1 reader of paced SSE streams.
//
// `agentperf-native microbench --baseline` reads the same streams as the engine with this reader, so
// that a user sees how close the engine comes to what one epoll loop costs on their own machine.
// One thread ("apn-baseline-0"), N non-blocking keep-alive connections on one level-triggered epoll
// set, one read() per readiness. Each read is scanned (memchr / memmem; the last bytes of the
// previous read are carried so that a pattern split across two reads is still found) for just
// enough to count:
//   * SSE events: a blank line ("\n\n") ends an event (chunk framing is "\r\n", never "\n\n");
//   * output events: events holding `"content":"` followed by a non-empty string;
//   * the end of the response: the last-chunk marker "\r\n0\r\n\r\n".
// At the end of a response the same request goes out again on the same connection, with a new
// X-Request-Id. No de-chunking, no JSON, no histograms: a lower bound, not a usable client. Per
// request it keeps the read times of the first and the last output event, so that its delay can be
// set against the server's own stamps as the engine's is.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/single_writer_counter.h"

namespace agentperf {

struct BaselineConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string path = "/v1/chat/completions";
  std::string body;                ///< the JSON request body (a streaming chat completion)
  int streams = 1;                 ///< connections, one stream each
  int64_t spawn_interval_ns = 0;   ///< stream i sends its first request at start + i * this
};

/// Totals since start (the reader thread writes, any thread reads).
struct BaselineCounters {
  uint64_t events = 0;         ///< SSE events
  uint64_t output_events = 0;  ///< events with non-empty content
  uint64_t responses = 0;      ///< complete responses
  uint64_t errors = 0;         ///< non-200 status, bytes after a response's end, EOF / reset
  uint64_t reconnects = 0;
  uint64_t reads = 0;          ///< read() calls that returned data
  uint64_t bytes = 0;
  uint64_t epoll_waits = 0;
  uint64_t requests_started = 0;
};

/// One finished request: its X-Request-Id and the read times of its first / last output event.
struct BaselineStamp {
  uint64_t request_id = 0;
  int64_t first_token_ns = 0;  ///< 0: no output event
  int64_t last_token_ns = 0;
  int32_t output_events = 0;
};

class BaselineReader {
 public:
  explicit BaselineReader(BaselineConfig config);  ///< resolves the host; throws std::invalid_argument
  ~BaselineReader();
  BaselineReader(const BaselineReader&) = delete;
  BaselineReader& operator=(const BaselineReader&) = delete;

  /// Opens the connections and starts the reader thread; throws std::runtime_error when a socket
  /// cannot be opened.
  void start();
  /// Stops and joins the reader thread, closes the connections. Idempotent.
  void stop();
  bool running() const { return thread_.joinable(); }
  BaselineCounters counters() const;
  /// Requests finished since the last call.
  std::vector<BaselineStamp> drain_stamps();
  /// Why the reader thread stopped on its own ("" while fine).
  std::string error() const;

 private:
  struct Conn;
  struct Loop;
  void run();

  BaselineConfig config_;
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;

  SingleWriterCounter events_, output_events_, responses_, errors_, reconnects_, reads_, bytes_, waits_, started_;
  mutable std::mutex mu_;  // guards stamps_ and error_
  std::vector<BaselineStamp> stamps_;
  std::string error_;
};

}  // namespace agentperf
