// The private _core extension: this file only calls one register_* function per area.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_histogram(py::module_& m);
void register_sse(py::module_& m);
void register_engine(py::module_& m);
void register_server(py::module_& m);
void register_http(py::module_& m);
void register_bench(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "agentperf-native native core (private; use the agentperf_native package)";
  register_histogram(m);
  register_sse(m);
  register_engine(m);
  register_server(m);
  register_http(m);
  register_bench(m);
}
