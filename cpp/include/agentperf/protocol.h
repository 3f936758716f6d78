// Which HTTP version the client speaks: what a user asks for (ProtocolChoice; the engine and the
// one-shot request share it) and what a connection speaks (Protocol). The decision itself is made in one function, choose_protocol()
// (cpp/src/client/session.h).
#pragma once

#include <cstdint>

namespace agentperf {

enum class ProtocolChoice : uint8_t {
  kHttp1 = 1,  ///< HTTP/1.1 (over TLS: ALPN offers only http/1.1)
  kHttp2 = 2,  ///< HTTP/2: h2c with prior knowledge on plain TCP, h2 over TLS (ALPN must select h2)
  kAuto = 3,   ///< over TLS: what ALPN selects, h2 preferred; without TLS: HTTP/1.1
};

/// What a connection speaks once it is up.
enum class Protocol : uint8_t {
  kHttp1 = 1,  ///< HTTP/1.1, one request at a time per connection
  kHttp2 = 2,  ///< HTTP/2 (h2c with prior knowledge, or h2 over TLS), many streams per connection
};

}  // namespace agentperf
