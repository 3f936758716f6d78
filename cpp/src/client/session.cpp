// The one place a protocol is chosen.
#include <stdexcept>

#include "client/session.h"

namespace agentperf {

std::unique_ptr<Session> make_http1_session();
std::unique_ptr<Session> make_http2_session(const SessionOptions& options, bool tls);

std::unique_ptr<Session> make_session(Protocol protocol, const SessionOptions& options, bool tls) {
  switch (protocol) {
    case Protocol::kHttp1:
      return make_http1_session();
    case Protocol::kHttp2:
      return make_http2_session(options, tls);
  }
  throw std::runtime_error("unknown protocol");
}

}  // namespace agentperf
