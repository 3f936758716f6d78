// One blocking HTTP request through the engine's own client: the same connection, session (HTTP/1.1
// or HTTP/2), TLS and protocol choice as the load, for pre-flight checks and model listing.
//
// Thread safety: any thread; each call has its own event loop and connection (nothing is shared).
// Blocks until the response is complete, the request fails, or timeout_ns passes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "agentperf/protocol.h"
#include "agentperf/record.h"

namespace agentperf {

struct HttpRequestOptions {
  std::string host = "127.0.0.1";  ///< name or IP literal
  uint16_t port = 80;
  std::string method = "GET";
  std::string path = "/";
  /// Extra headers (Host, Content-Length and, over HTTP/2, the pseudo-headers are written by the
  /// client). Names are sent in lower case.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                ///< sent as is, with Content-Length (none for an empty GET/HEAD)
  ProtocolChoice protocol = ProtocolChoice::kHttp1;  ///< kHttp2 on plain TCP: h2c, prior knowledge
  bool tls = false;
  bool tls_verify = true;
  std::string ca_file;             ///< trusted CAs (PEM); empty: the system store
  std::string server_name;         ///< SNI / name to verify; empty: `host`
  std::string host_header;         ///< Host / :authority; empty: "host:port"
  int64_t timeout_ns = 30'000'000'000;  ///< from the call to the end of the response
};

struct HttpResponse {
  int status = 0;  ///< 0 when no response head arrived
  std::vector<std::pair<std::string, std::string>> headers;  ///< as received (HTTP/2: lower case)
  std::string body;       ///< the whole body (an SSE stream collected to its end)
  Protocol protocol{};    ///< what was spoken; 0 when no session was set up
  /// kNone when a complete response arrived (whatever its status). Otherwise why not: kConnect
  /// (resolve / connect failed), kTimeout, kProtocol, kTruncated, kReset, kWrite, kOversized
  /// (headers past 64 KiB, or a body past kMaxResponseBodyBytes); a TLS failure is kConnect with
  /// tls_failure set.
  ErrorKind error_kind = ErrorKind::kNone;
  bool tls_failure = false;
  std::string error;      ///< a sentence saying what went wrong; empty on success
};

/// Sends one request and waits for the whole response. Never throws for network failures (they
/// are in the response); throws std::invalid_argument for an invalid method or path.
HttpResponse http_request(const HttpRequestOptions& options);

/// The most body http_request() keeps: a larger response fails as kOversized.
constexpr size_t kMaxResponseBodyBytes = size_t{64} << 20;

}  // namespace agentperf
