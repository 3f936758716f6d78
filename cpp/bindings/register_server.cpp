// Bindings for the built-in simulated server.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "agentperf/sim_server.h"

namespace py = pybind11;
using namespace agentperf;

void register_server(py::module_& m) {
  py::class_<SimServer>(m, "SimServer")
      .def(py::init([](std::string host, uint16_t port, int workers, int64_t ttft_ns, int64_t itl_ns,
                       int32_t output_tokens, int32_t tokens_per_chunk, std::string model, uint64_t seed,
                       const py::dict& faults, int64_t stall_ns, int64_t slow_headers_ns) {
             SimServerConfig c;
             c.host = std::move(host);
             c.port = port;
             c.workers = workers;
             c.ttft_ns = ttft_ns;
             c.itl_ns = itl_ns;
             c.output_tokens = output_tokens;
             c.tokens_per_chunk = tokens_per_chunk;
             c.model = std::move(model);
             c.seed = seed;
             c.stall_ns = stall_ns;
             c.slow_headers_ns = slow_headers_ns;
             for (auto [key, value] : faults) {
               std::string k = py::cast<std::string>(key);
               double p = py::cast<double>(value);
               if (p < 0 || p > 1) throw py::value_error("fault probability for '" + k + "' must be in [0, 1]");
               if (k == "http_500") c.fault_http_500 = p;
               else if (k == "http_429") c.fault_http_429 = p;
               else if (k == "http_503") c.fault_http_503 = p;
               else if (k == "reset") c.fault_reset = p;
               else if (k == "truncate") c.fault_truncate = p;
               else if (k == "malformed") c.fault_malformed = p;
               else if (k == "stall") c.fault_stall = p;
               else if (k == "slow_headers") c.fault_slow_headers = p;
               else
                 throw py::value_error("unknown fault '" + k +
                                       "' (known: http_500, http_429, http_503, reset, truncate, malformed, stall, "
                                       "slow_headers)");
             }
             return std::make_unique<SimServer>(std::move(c));
           }),
           py::arg("host") = "127.0.0.1", py::arg("port") = 0, py::arg("workers") = 1,
           py::arg("ttft_ns") = 200'000'000, py::arg("itl_ns") = 10'000'000, py::arg("output_tokens") = 100,
           py::arg("tokens_per_chunk") = 1, py::arg("model") = "agentperf-sim", py::arg("seed") = 1,
           py::arg("faults") = py::dict(), py::arg("stall_ns") = 0, py::arg("slow_headers_ns") = 1'000'000'000)
      .def("start", &SimServer::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &SimServer::stop, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("port", &SimServer::port)
      .def("metrics", [](const SimServer& s) {
        SimServerMetrics m = s.metrics();
        py::dict d;
        d["connections_accepted"] = m.connections_accepted;
        d["requests_total"] = m.requests_total;
        d["requests_running"] = m.requests_running;
        d["tokens_generated"] = m.tokens_generated;
        py::dict f;
        f["http_500"] = m.faults_http_500;
        f["http_429"] = m.faults_http_429;
        f["http_503"] = m.faults_http_503;
        f["reset"] = m.faults_reset;
        f["truncate"] = m.faults_truncate;
        f["malformed"] = m.faults_malformed;
        f["stall"] = m.faults_stall;
        f["slow_headers"] = m.faults_slow_headers;
        d["faults"] = f;
        return d;
      });
}
