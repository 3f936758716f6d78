// Bindings for the microbenchmark's baseline reader (cpp/src/bench): the floor of client overhead.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bench/baseline_reader.h"

namespace py = pybind11;
using namespace agentperf;

void register_bench(py::module_& m) {
  py::class_<BaselineReader>(m, "BaselineReader")
      .def(py::init([](std::string host, uint16_t port, std::string path, py::bytes body, int streams,
                       int64_t spawn_interval_ns) {
             BaselineConfig c;
             c.host = std::move(host);
             c.port = port;
             c.path = std::move(path);
             c.body = body;
             c.streams = streams;
             c.spawn_interval_ns = spawn_interval_ns;
             try {
               return std::make_unique<BaselineReader>(std::move(c));
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("host"), py::arg("port"), py::arg("path") = "/v1/chat/completions", py::arg("body"),
           py::arg("streams"), py::arg("spawn_interval_ns") = 0)
      .def("start", &BaselineReader::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &BaselineReader::stop, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("running", &BaselineReader::running)
      .def("error", &BaselineReader::error)
      .def("counters",
           [](const BaselineReader& r) {
             BaselineCounters c = r.counters();
             py::dict d;
             d["events"] = c.events;
             d["output_events"] = c.output_events;
             d["responses"] = c.responses;
             d["errors"] = c.errors;
             d["reconnects"] = c.reconnects;
             d["reads"] = c.reads;
             d["bytes"] = c.bytes;
             d["epoll_waits"] = c.epoll_waits;
             d["requests_started"] = c.requests_started;
             return d;
           })
      .def("drain_stamps", [](BaselineReader& r) {
        std::vector<BaselineStamp> v;
        {
          py::gil_scoped_release release;
          v = r.drain_stamps();
        }
        py::list out;
        for (const BaselineStamp& s : v)
          out.append(py::make_tuple(s.request_id, s.first_token_ns, s.last_token_ns, s.output_events));
        return out;
      });
}
