// Python view of the SSE parser, for tests and harnesses (the engine uses the C++ parser directly).
//
//   p = _core.SseParser()
//   events = p.feed(b"data: ...\n\n")   # list of dicts, one per completed event
//   p.reset(); p.has_partial()
//   _core.inspect_sse_data('{"choices":...}')  # str or bytes -> dict
//
// Each dict: output, done, usage, error, malformed (bool); prompt_tokens, completion_tokens,
// cached_tokens (int, -1 when absent).
#include <pybind11/pybind11.h>

#include <string_view>

#include "agentperf/sse_parser.h"

namespace py = pybind11;

namespace {

py::dict event_to_dict(const agentperf::SseEvent& e) {
  py::dict d;
  d["output"] = e.has_output;
  d["done"] = e.done;
  d["usage"] = e.has_usage;
  d["error"] = e.error;
  d["malformed"] = e.malformed;
  d["prompt_tokens"] = e.usage.prompt_tokens;
  d["completion_tokens"] = e.usage.completion_tokens;
  d["cached_tokens"] = e.usage.cached_tokens;
  d["text"] = py::bytes(e.text.data(), e.text.size());
  return d;
}

// Bytes-like objects (bytes, bytearray, memoryview of bytes) as a view.
std::string_view bytes_view(const py::buffer_info& info) {
  if (info.ndim > 1 || (info.ndim == 1 && info.itemsize != 1)) {
    throw py::type_error("expected a bytes-like object of single bytes");
  }
  return std::string_view(static_cast<const char*>(info.ptr),
                          static_cast<size_t>(info.size * info.itemsize));
}

}  // namespace

void register_sse(py::module_& m) {
  py::class_<agentperf::SseParser>(m, "SseParser",
                                   "Incremental Server-Sent Events parser for one response stream.")
      .def(py::init<>())
      .def(
          "feed",
          [](agentperf::SseParser& self, const py::buffer& data) {
            py::buffer_info info = data.request();
            std::string_view bytes = bytes_view(info);
            py::list events;
            self.feed(bytes.data(), bytes.size(),
                      [&](const agentperf::SseEvent& e) { events.append(event_to_dict(e)); });
            return events;
          },
          py::arg("data"),
          "Feeds body bytes; returns a list of dicts, one per event they complete.")
      .def("reset", &agentperf::SseParser::reset, "Forgets any partial event.")
      .def("has_partial", &agentperf::SseParser::has_partial,
           "True when an unfinished line or event is buffered.");

  m.def(
      "inspect_sse_data",
      [](const py::object& data) {
        if (py::isinstance<py::str>(data)) {
          std::string s = data.cast<std::string>();  // UTF-8
          return event_to_dict(agentperf::inspect_sse_data(s));
        }
        if (!PyObject_CheckBuffer(data.ptr())) throw py::type_error("expected str or bytes");
        py::buffer_info info = py::reinterpret_borrow<py::buffer>(data).request();
        return event_to_dict(agentperf::inspect_sse_data(bytes_view(info)));
      },
      py::arg("data"), "Inspects one event's data (str or bytes); returns the event as a dict.");
}
