// Python bindings of the log-linear histograms: HistogramSnapshot (plain, mergeable, queryable) and
// Histogram (the live single-writer histogram; used from Python mainly by tests).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "agentperf/histogram.h"

namespace py = pybind11;
using agentperf::Histogram;
using agentperf::HistogramSnapshot;

namespace {

using U64Array = py::array_t<uint64_t, py::array::c_style>;
using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// A contiguous uint64 view of `values`: uint64 arrays as they are, other integer arrays (and lists)
// through int64, refusing negative values. Floats and other dtypes are refused.
U64Array as_u64_values(const py::handle& values) {
  py::array arr = py::array::ensure(values);
  if (!arr) throw py::type_error("record_array expects an integer array");
  const py::dtype dt = arr.dtype();
  const char kind = dt.kind();
  if (kind == 'u' && dt.itemsize() == 8) return U64Array::ensure(arr);
  if (kind != 'i' && kind != 'u') {
    throw py::type_error("record_array expects an integer array (uint64 or int64), got dtype " +
                         std::string(py::str(dt)));
  }
  I64Array signed_values = I64Array::ensure(arr);
  if (!signed_values) throw py::type_error("record_array: cannot convert to int64");
  const int64_t* p = signed_values.data();
  const py::ssize_t n = signed_values.size();
  for (py::ssize_t i = 0; i < n; ++i) {
    if (p[i] < 0) throw py::value_error("record_array: negative value " + std::to_string(p[i]));
  }
  // Same bits, reinterpreted: a non-negative int64 is the same uint64.
  return U64Array::ensure(signed_values.attr("view")(py::dtype::of<uint64_t>()));
}

// A Python integer (or anything with __index__, such as numpy integers) as a histogram value.
// Negative values are refused; values beyond 64 bits are clamped like every value above 2^62.
uint64_t as_value(const py::handle& v) {
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long s = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (s == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow < 0 || (overflow == 0 && s < 0)) {
    throw py::value_error("histogram values must be non-negative");
  }
  if (overflow == 0) return static_cast<uint64_t>(s);
  const unsigned long long u = PyLong_AsUnsignedLongLong(index.ptr());
  if (u == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();  // more than 64 bits
    return UINT64_MAX;
  }
  return static_cast<uint64_t>(u);
}

void check_index(const HistogramSnapshot& h, py::ssize_t i) {
  if (i < 0 || static_cast<size_t>(i) >= h.counts().size()) {
    throw py::index_error("histogram bucket index out of range");
  }
}

}  // namespace

void register_histogram(py::module_& m) {
  py::class_<HistogramSnapshot>(m, "HistogramSnapshot",
                                "A plain log-linear histogram of non-negative integers: mergeable and "
                                "queryable. Values below 2**sub_bucket_bits are exact; above, each "
                                "bucket is at most value / 2**(sub_bucket_bits-1) wide. Not "
                                "thread-safe.")
      .def(py::init<int>(), py::arg("sub_bucket_bits") = 8)
      .def(
          "record",
          [](HistogramSnapshot& h, const py::handle& value, uint64_t count) { h.record(as_value(value), count); },
          py::arg("value"), py::arg("count") = 1, "Adds `value` `count` times.")
      .def(
          "record_array",
          [](HistogramSnapshot& h, const py::handle& values) {
            const U64Array a = as_u64_values(values);
            const uint64_t* p = a.data();
            const py::ssize_t n = a.size();
            for (py::ssize_t i = 0; i < n; ++i) h.record(p[i]);
          },
          py::arg("values"), "Adds every value of an integer array (uint64 or non-negative int64).")
      .def("merge", &HistogramSnapshot::merge, py::arg("other"),
           "Adds `other`'s counts into this one (same sub_bucket_bits, else ValueError).")
      .def_property_readonly("count", &HistogramSnapshot::count)
      .def_property_readonly("min", &HistogramSnapshot::min, "Exact smallest value; 0 when empty.")
      .def_property_readonly("max", &HistogramSnapshot::max, "Exact largest value; 0 when empty.")
      .def_property_readonly("mean", &HistogramSnapshot::mean, "Exact mean; 0.0 when empty.")
      .def_property_readonly("clamped", &HistogramSnapshot::clamped,
                             "How many values above 2**62 were recorded as 2**62.")
      .def_property_readonly("sub_bucket_bits", &HistogramSnapshot::sub_bucket_bits)
      .def("percentile", &HistogramSnapshot::percentile, py::arg("p"),
           "The value at percentile p in [0, 100] (the order statistic of numpy's "
           "method='inverted_cdf'), as its bucket's midpoint clamped to [min, max]; 0 when empty.")
      .def(
          "percentiles",
          [](const HistogramSnapshot& h, const py::array_t<double, py::array::c_style | py::array::forcecast>& ps) {
            py::array_t<double> out(std::vector<py::ssize_t>(ps.shape(), ps.shape() + ps.ndim()));
            const double* in = ps.data();
            double* o = out.mutable_data();
            for (py::ssize_t i = 0; i < ps.size(); ++i) o[i] = static_cast<double>(h.percentile(in[i]));
            return out;
          },
          py::arg("ps"), "percentile() of each p, as a float64 array.")
      .def("relative_error", &HistogramSnapshot::relative_error,
           "Bound on a percentile's relative error: 2**-(sub_bucket_bits-1).")
      .def(
          "counts",
          [](const HistogramSnapshot& h) {
            const auto& c = h.counts();
            return py::array_t<uint64_t>(static_cast<py::ssize_t>(c.size()), c.data());
          },
          "A copy of the bucket counts, as a uint64 array.")
      .def(
          "bucket_lower",
          [](const HistogramSnapshot& h, py::ssize_t i) {
            check_index(h, i);
            return h.bucket_lower(static_cast<size_t>(i));
          },
          py::arg("index"))
      .def(
          "bucket_upper",
          [](const HistogramSnapshot& h, py::ssize_t i) {
            check_index(h, i);
            return h.bucket_upper(static_cast<size_t>(i));
          },
          py::arg("index"), "Inclusive upper bound of bucket `index`.")
      .def(
          "bucket_index", [](const HistogramSnapshot& h, const py::handle& v) { return h.bucket_index(as_value(v)); },
          py::arg("value"))
      .def("__eq__", [](const HistogramSnapshot& a, const HistogramSnapshot& b) { return a == b; },
           py::is_operator())
      .def("__len__", [](const HistogramSnapshot& h) { return h.counts().size(); })
      .def("__repr__", [](const HistogramSnapshot& h) {
        return "HistogramSnapshot(sub_bucket_bits=" + std::to_string(h.sub_bucket_bits()) +
               ", count=" + std::to_string(h.count()) + ", min=" + std::to_string(h.min()) +
               ", max=" + std::to_string(h.max()) + ")";
      });

  py::class_<Histogram>(m, "Histogram",
                        "The live single-writer histogram: one thread records, any thread may "
                        "snapshot(). Two threads must not record into the same Histogram.")
      .def(py::init<int>(), py::arg("sub_bucket_bits") = 8)
      .def("record", [](Histogram& h, const py::handle& value) { h.record(as_value(value)); }, py::arg("value"))
      .def(
          "record_array",
          [](Histogram& h, const py::handle& values) {
            const U64Array a = as_u64_values(values);
            const uint64_t* p = a.data();
            const py::ssize_t n = a.size();
            py::gil_scoped_release release;  // `a` keeps the buffer alive meanwhile
            for (py::ssize_t i = 0; i < n; ++i) h.record(p[i]);
          },
          py::arg("values"),
          "Records every value of an integer array, without the GIL (only the owning thread may "
          "call this).")
      .def("snapshot", &Histogram::snapshot, py::call_guard<py::gil_scoped_release>(),
           "A HistogramSnapshot of the counts so far; safe while another thread records.")
      .def("reset", &Histogram::reset, "Clears all counts (owning thread only).")
      .def_property_readonly("sub_bucket_bits", &Histogram::sub_bucket_bits);
}
