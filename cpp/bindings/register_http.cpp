// Binding for the one-shot request: the engine's own HTTP client, blocking, without the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "agentperf/http_request.h"

namespace py = pybind11;
using namespace agentperf;

void register_http(py::module_& m) {
  m.def(
      "http_request",
      [](std::string host, uint16_t port, std::string method, std::string path,
         std::vector<std::pair<std::string, std::string>> headers, py::bytes body, const std::string& protocol,
         bool tls, bool tls_verify, std::string ca_file, std::string server_name, std::string host_header,
         double timeout_s) {
        HttpRequestOptions o;
        o.host = std::move(host);
        o.port = port;
        o.method = std::move(method);
        o.path = std::move(path);
        o.headers = std::move(headers);
        o.body = std::string(body);
        if (protocol == "h1") o.protocol = ProtocolChoice::kHttp1;
        else if (protocol == "h2") o.protocol = ProtocolChoice::kHttp2;
        else if (protocol == "auto") o.protocol = ProtocolChoice::kAuto;
        else throw py::value_error("protocol must be 'h1', 'h2' or 'auto'");
        o.tls = tls;
        o.tls_verify = tls_verify;
        o.ca_file = std::move(ca_file);
        o.server_name = std::move(server_name);
        o.host_header = std::move(host_header);
        if (!(timeout_s > 0) || !std::isfinite(timeout_s)) throw py::value_error("timeout_s must be > 0");
        o.timeout_ns = static_cast<int64_t>(timeout_s * 1e9);
        HttpResponse r;
        {
          py::gil_scoped_release release;
          r = http_request(o);
        }
        py::dict d;
        d["status"] = r.status;
        py::list hs;
        for (auto& [k, v] : r.headers) hs.append(py::make_tuple(k, v));
        d["headers"] = hs;
        d["body"] = py::bytes(r.body);
        d["protocol"] = r.protocol == Protocol::kHttp2 ? "h2" : "h1";
        std::string kind;
        if (r.error_kind != ErrorKind::kNone) kind = r.tls_failure ? "tls" : to_string(r.error_kind);
        d["error_kind"] = kind;
        d["error"] = r.error;
        return d;
      },
      py::arg("host"), py::arg("port"), py::arg("method"), py::arg("path"), py::kw_only(),
      py::arg("headers") = std::vector<std::pair<std::string, std::string>>{}, py::arg("body") = py::bytes(""),
      py::arg("protocol") = "h1", py::arg("tls") = false, py::arg("tls_verify") = true, py::arg("ca_file") = "",
      py::arg("server_name") = "", py::arg("host_header") = "", py::arg("timeout_s") = 30.0,
      "One blocking request through the engine's own client (same connection, HTTP/1.1 / HTTP/2 "
      "sessions, TLS and protocol choice as the load). Returns {status (0 if none), headers, body, "
      "protocol ('h1' or 'h2'), error_kind ('' on a complete response of any status, else 'connect', "
      "'tls', 'timeout', 'protocol', 'truncated', 'reset', 'write'), error (a sentence)}. Releases the GIL.");
}
