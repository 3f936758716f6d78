// Bindings for the workload, the engine and its records. Thin: type conversion and GIL release.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>

#include "agentperf/clock.h"
#include "agentperf/engine.h"
#include "agentperf/workload.h"

namespace py = pybind11;
using namespace agentperf;

namespace {

// A Workload being built from Python; frozen once finalized (an Engine holds it from then on).
struct PyWorkload {
  std::shared_ptr<Workload> w = std::make_shared<Workload>();
  bool frozen = false;
  void check_open() const {
    if (frozen) throw std::logic_error("the workload is finalized and can no longer change");
  }
};

py::list record_fields() {
  py::list out;
  auto add = [&](const char* name, const char* fmt, size_t offset) { out.append(py::make_tuple(name, fmt, offset)); };
#define AP_FIELD(name, fmt) add(#name, fmt, offsetof(RequestRecord, name))
  AP_FIELD(scheduled_ns, "<i8");
  AP_FIELD(sent_ns, "<i8");
  AP_FIELD(first_byte_ns, "<i8");
  AP_FIELD(first_token_ns, "<i8");
  AP_FIELD(last_token_ns, "<i8");
  AP_FIELD(done_ns, "<i8");
  AP_FIELD(output_tokens, "<i8");
  AP_FIELD(prompt_tokens, "<i8");
  AP_FIELD(cached_tokens, "<i8");
  AP_FIELD(request_bytes, "<i8");
  AP_FIELD(agent_id, "<i8");
  AP_FIELD(conversation, "<i4");
  AP_FIELD(turn, "<i4");
  AP_FIELD(max_tokens, "<i4");
  AP_FIELD(output_events, "<i4");
  AP_FIELD(http_status, "<i4");
  AP_FIELD(worker, "<i4");
  AP_FIELD(error_kind, "u1");
  AP_FIELD(flags, "u1");
#undef AP_FIELD
  return out;
}

py::dict snapshot_dict(const EngineSnapshot& s) {
  py::dict d;
  d["taken_ns"] = s.taken_ns;
  d["agents_target"] = s.agents_target;
  d["agents_live"] = s.agents_live;
  d["agents_active"] = s.agents_active;
  d["requests_in_flight"] = s.requests_in_flight;
  d["requests_started"] = s.requests_started;
  d["requests_ok"] = s.requests_ok;
  d["requests_failed"] = s.requests_failed;
  py::dict kinds;
  for (int k = 0; k < kErrorKindCount; ++k)
    if (s.failures_by_kind[k]) kinds[to_string(static_cast<ErrorKind>(k))] = s.failures_by_kind[k];
  d["requests_by_kind"] = kinds;
  d["output_events"] = s.output_events;
  d["output_tokens"] = s.output_tokens;
  d["records_dropped"] = s.records_dropped;
  d["ttft_ns"] = s.ttft_ns;
  d["itl_ns"] = s.itl_ns;
  d["e2e_ns"] = s.e2e_ns;
  d["output_speed_mtps"] = s.output_speed_mtps;
  return d;
}

}  // namespace

void register_engine(py::module_& m) {
  py::list kinds;
  for (int k = 0; k < kErrorKindCount; ++k) kinds.append(to_string(static_cast<ErrorKind>(k)));
  m.attr("ERROR_KINDS") = kinds;
  m.attr("FLAG_TOKENS_ESTIMATED") = static_cast<int>(kFlagTokensEstimated);
  m.attr("FLAG_NEW_CONNECTION") = static_cast<int>(kFlagNewConnection);
  m.attr("FLAG_UNDER_GENERATED") = static_cast<int>(kFlagUnderGenerated);
  m.attr("RECORD_ITEMSIZE") = sizeof(RequestRecord);
  m.def("record_fields", &record_fields, "(name, numpy format, byte offset) of every RequestRecord field");
  m.def("now_ns", &now_ns, "The monotonic clock every record uses (CLOCK_MONOTONIC, ns).");

  py::class_<PyWorkload>(m, "Workload")
      .def(py::init<>())
      .def(
          "set_request",
          [](PyWorkload& self, std::string path, std::string model, bool include_usage, bool ignore_eos,
             std::string extra_body) {
            self.check_open();
            self.w->request = RequestOptions{std::move(path), std::move(model), include_usage, ignore_eos,
                                             std::move(extra_body)};
          },
          py::arg("path"), py::arg("model"), py::arg("include_usage") = true, py::arg("ignore_eos") = false,
          py::arg("extra_body") = "")
      .def(
          "add_conversation",
          [](PyWorkload& self, std::vector<std::string> fragments, int32_t insert_at,
             const std::vector<std::tuple<uint32_t, int32_t, int32_t, int64_t>>& turns) {
            self.check_open();
            Conversation c;
            c.fragments = std::move(fragments);
            c.insert_at = insert_at;
            for (const auto& [end, max_tokens, min_tokens, delay] : turns)
              c.turns.push_back(TurnSpec{end, max_tokens, min_tokens, delay});
            self.w->conversations.push_back(std::move(c));
            return self.w->conversations.size() - 1;
          },
          py::arg("fragments"), py::arg("insert_at"), py::arg("turns"),
          "Adds a conversation: JSON fragments, the isolation insert point, and per turn "
          "(fragment_end, max_tokens, min_tokens, tool_delay_ns).")
      .def("finalize",
           [](PyWorkload& self) {
             if (self.frozen) return;
             self.w->finalize();
             self.frozen = true;
           })
      .def_property_readonly("conversations", [](const PyWorkload& self) { return self.w->conversations.size(); })
      .def_property_readonly("fragment_bytes", [](const PyWorkload& self) {
        uint64_t n = 0;
        for (const auto& c : self.w->conversations)
          for (const auto& f : c.fragments) n += f.size();
        return n;
      });

  py::class_<Engine>(m, "Engine")
      .def(py::init([](PyWorkload& wl, std::string host, uint16_t port, std::string host_header, std::string authorization,
                       int workers, int64_t request_timeout_ns, int64_t connect_retry_ns, uint64_t seed,
                       bool random_start_turn, bool cache_isolation, size_t record_buffer_limit,
                       int64_t spawn_interval_ns) {
             if (!wl.frozen) throw std::logic_error("finalize() the workload before creating an engine");
             EngineConfig c;
             c.host = std::move(host);
             c.port = port;
             c.host_header = std::move(host_header);
             c.authorization = std::move(authorization);
             c.workers = workers;
             c.request_timeout_ns = request_timeout_ns;
             c.connect_retry_ns = connect_retry_ns;
             c.seed = seed;
             c.random_start_turn = random_start_turn;
             c.cache_isolation = cache_isolation;
             c.record_buffer_limit = record_buffer_limit;
             c.spawn_interval_ns = spawn_interval_ns;
             return std::make_unique<Engine>(std::move(c), wl.w);
           }),
           py::arg("workload"), py::arg("host"), py::arg("port"), py::arg("host_header") = "",
           py::arg("authorization") = "", py::arg("workers") = 1,
           py::arg("request_timeout_ns") = 600LL * 1'000'000'000, py::arg("connect_retry_ns") = 100'000'000,
           py::arg("seed") = 1, py::arg("random_start_turn") = true, py::arg("cache_isolation") = true,
           py::arg("record_buffer_limit") = size_t{1} << 22, py::arg("spawn_interval_ns") = 0)
      .def("start", &Engine::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &Engine::stop, py::call_guard<py::gil_scoped_release>())
      .def("set_concurrency", &Engine::set_concurrency, py::arg("agents"))
      .def_property_readonly("concurrency", &Engine::concurrency)
      .def_property_readonly("running", &Engine::running)
      .def("snapshot",
           [](const Engine& e) {
             EngineSnapshot s;
             {
               py::gil_scoped_release release;
               s = e.snapshot();
             }
             return snapshot_dict(s);
           })
      .def("drain_records", [](Engine& e) {
        std::vector<RequestRecord> recs;
        {
          py::gil_scoped_release release;
          recs = e.drain_records();
        }
        py::array_t<uint8_t> out({static_cast<py::ssize_t>(recs.size()), static_cast<py::ssize_t>(sizeof(RequestRecord))});
        if (!recs.empty()) std::memcpy(out.mutable_data(), recs.data(), recs.size() * sizeof(RequestRecord));
        return out;
      }, "Records finished since the last call, as raw bytes (n, RECORD_ITEMSIZE); view with the record dtype.");
}
