// Resolves a host name (or IP literal) and port to one socket address, once per engine or one-shot
// request (blocking: getaddrinfo). The engine and http_request() share it.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace agentperf {

struct ResolvedAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

/// Fills `out` with the first address of `host:port`. Returns "" on success, else a sentence saying
/// what failed ("cannot resolve host 'x': Name or service not known").
inline std::string resolve_address(const std::string& host, uint16_t port, ResolvedAddress& out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0 || !res) return "cannot resolve host '" + host + "': " + gai_strerror(rc);
  std::memcpy(&out.addr, res->ai_addr, res->ai_addrlen);
  out.len = res->ai_addrlen;
  freeaddrinfo(res);
  return "";
}

}  // namespace agentperf
