// The one place a protocol is chosen, and the one place a session is made for it.
#include <stdexcept>
#include <string>

#include "client/session.h"

namespace agentperf {

std::unique_ptr<Session> make_http1_session();
std::unique_ptr<Session> make_http2_session(const SessionOptions& options, bool tls);

bool choose_protocol(ProtocolChoice want, bool tls, std::string_view alpn, Protocol* out, std::string* error) {
  switch (want) {
    case ProtocolChoice::kHttp1:
      *out = Protocol::kHttp1;
      return true;
    case ProtocolChoice::kHttp2:
      *out = Protocol::kHttp2;
      if (!tls || alpn == "h2") return true;
      if (error)
        *error = "the server did not agree to HTTP/2 over TLS (ALPN: '" + std::string(alpn) +
                 "'); use --protocol h1 or auto";
      return false;
    case ProtocolChoice::kAuto:
      *out = tls && alpn == "h2" ? Protocol::kHttp2 : Protocol::kHttp1;
      return true;
  }
  if (error) *error = "unknown protocol choice";
  return false;
}

std::vector<std::string> alpn_offer(ProtocolChoice want) {
  switch (want) {
    case ProtocolChoice::kHttp1:
      return {"http/1.1"};
    case ProtocolChoice::kHttp2:
      return {"h2"};
    case ProtocolChoice::kAuto:
      break;
  }
  return {"h2", "http/1.1"};
}

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
