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
  AP_FIELD(client_delay_us, "<u4");
  AP_FIELD(request_id, "<u8");
#undef AP_FIELD
  return out;
}

py::dict snapshot_dict(const EngineSnapshot& s) {
  py::dict d;
  d["taken_ns"] = s.taken_ns;
  d["agents_target"] = s.agents_target;
  d["agents_live"] = s.agents_live;
  d["agents_active"] = s.agents_active;
  d["agents_engaged"] = s.agents_engaged;
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
  d["connections_open"] = s.connections_open;
  d["connections_opened"] = s.connections_opened;
  d["last_connection_error"] = s.last_connection_error;
  d["ttft_ns"] = s.ttft_ns;
  d["itl_ns"] = s.itl_ns;
  d["client_delay_ns"] = s.client_delay_ns;
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
  m.attr("FLAG_USER_STAMPS") = static_cast<int>(kFlagUserStamps);
  m.attr("RECORD_ITEMSIZE") = sizeof(RequestRecord);
  m.def("record_fields", &record_fields, "(name, numpy format, byte offset) of every RequestRecord field");
  m.def("now_ns", &now_ns, "The monotonic clock every record uses (CLOCK_MONOTONIC, ns).");

  py::class_<PyWorkload>(m, "Workload")
      .def(py::init<>())
      .def(
          "set_request",
          [](PyWorkload& self, std::string path, std::string model, bool include_usage, bool ignore_eos,
             std::string extra_body, std::string open, std::string close, std::string isolation_style,
             int32_t isolation_tokens, int32_t isolation_token_lo, int32_t isolation_token_hi) {
            self.check_open();
            RequestOptions r;
            r.path = std::move(path);
            r.model = std::move(model);
            r.include_usage = include_usage;
            r.ignore_eos = ignore_eos;
            r.extra_body = std::move(extra_body);
            r.open = std::move(open);
            r.close = std::move(close);
            if (isolation_style == "text") r.isolation_style = IsolationStyle::kText;
            else if (isolation_style == "token_ids") r.isolation_style = IsolationStyle::kTokenIds;
            else throw py::value_error("isolation_style must be 'text' or 'token_ids'");
            r.isolation_tokens = isolation_tokens;
            r.isolation_token_lo = isolation_token_lo;
            r.isolation_token_hi = isolation_token_hi;
            self.w->request = std::move(r);
          },
          py::arg("path"), py::arg("model"), py::arg("include_usage") = true, py::arg("ignore_eos") = false,
          py::arg("extra_body") = "", py::arg("open") = "\"messages\":[", py::arg("close") = "]",
          py::arg("isolation_style") = "text", py::arg("isolation_tokens") = 4, py::arg("isolation_token_lo") = 1000,
          py::arg("isolation_token_hi") = 30000)
      .def(
          "add_conversation",
          [](PyWorkload& self, std::vector<std::string> fragments, std::vector<uint32_t> pieces,
             const std::vector<std::tuple<uint32_t, uint32_t, int32_t, int32_t, int32_t, int64_t>>& turns,
             std::vector<int32_t> reply_of, std::string members) {
            self.check_open();
            Conversation c;
            c.fragments = std::move(fragments);
            c.pieces = std::move(pieces);
            c.reply_of = std::move(reply_of);
            c.members = std::move(members);
            for (const auto& [begin, end, insert_at, max_tokens, min_tokens, delay] : turns)
              c.turns.push_back(TurnSpec{begin, end, insert_at, max_tokens, min_tokens, delay});
            self.w->conversations.push_back(std::move(c));
            return self.w->conversations.size() - 1;
          },
          py::arg("fragments"), py::arg("pieces"), py::arg("turns"), py::arg("reply_of") = std::vector<int32_t>{},
          py::arg("members") = "",
          "Adds a conversation: JSON fragments, the piece list (fragment indices), per turn "
          "(piece_begin, piece_end, insert_at, max_tokens, min_tokens, tool_delay_ns), the turn whose reply "
          "each fragment records (-1: none), and extra JSON members for its requests.")
      .def(
          "set_tool_delay",
          [](PyWorkload& self, const std::string& kind, double a_s, double b_s, double cap_s) {
            self.check_open();
            ToolDelayPolicy p;
            if (kind == "recorded") p.kind = ToolDelayKind::kRecorded;
            else if (kind == "none") p.kind = ToolDelayKind::kNone;
            else if (kind == "fixed") p.kind = ToolDelayKind::kFixed;
            else if (kind == "uniform") p.kind = ToolDelayKind::kUniform;
            else if (kind == "lognormal") p.kind = ToolDelayKind::kLognormal;
            else throw py::value_error("tool delay kind must be 'recorded', 'none', 'fixed', 'uniform' or 'lognormal'");
            auto ns = [](double s) { return static_cast<int64_t>(s * 1e9 + (s >= 0 ? 0.5 : -0.5)); };
            p.a_ns = ns(a_s);
            if (p.kind == ToolDelayKind::kLognormal) p.sigma = b_s;
            else p.b_ns = ns(b_s);
            p.cap_ns = cap_s >= 0 ? ns(cap_s) : -1;
            self.w->tool_delay = p;
          },
          py::arg("kind") = "recorded", py::arg("a_s") = 0.0, py::arg("b_s") = 0.0, py::arg("cap_s") = -1.0,
          "How agents choose the delay after each turn, drawn from their own random stream when the turn "
          "completes: 'recorded' (the turn's tool_delay_ns), 'none', 'fixed' (a_s), 'uniform' (in [a_s, b_s]) "
          "or 'lognormal' (median a_s, sigma b_s). cap_s >= 0 caps every delay. Checked at finalize().")
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
      })
      .def("turn_body", [](const PyWorkload& self, size_t conversation, size_t turn) {
        // The messages/prompt part of a request as the engine writes it, without an isolation
        // prefix (for tests and inspection).
        if (!self.frozen) throw std::logic_error("finalize() first");
        const Conversation& c = self.w->conversations.at(conversation);
        const TurnSpec& t = c.turns.at(turn);
        std::string out = self.w->request.open;
        for (uint32_t i = t.piece_begin; i < t.piece_end; ++i) out += c.fragments[c.pieces[i]];
        out += self.w->request.close;
        return py::bytes(out);
      }, py::arg("conversation"), py::arg("turn"));

  py::class_<Engine>(m, "Engine")
      .def(py::init([](PyWorkload& wl, std::string host, uint16_t port, std::string host_header, std::string authorization,
                       int workers, int64_t request_timeout_ns, int64_t stream_idle_timeout_ns,
                       int64_t connect_retry_ns, int64_t connect_retry_max_ns, size_t max_event_bytes, uint64_t seed,
                       bool random_start_turn, bool cache_isolation, size_t record_buffer_limit,
                       int64_t spawn_interval_ns, bool history_generated, std::string protocol, bool tls,
                       bool tls_verify, std::string ca_file, std::string tls_server_name,
                       uint32_t streams_per_connection, uint64_t run_nonce, bool kernel_stamps,
                       uint64_t request_id_base) {
             if (!wl.frozen) throw std::logic_error("finalize() the workload before creating an engine");
             EngineConfig c;
             c.host = std::move(host);
             c.port = port;
             c.host_header = std::move(host_header);
             c.authorization = std::move(authorization);
             c.workers = workers;
             c.request_timeout_ns = request_timeout_ns;
             c.stream_idle_timeout_ns = stream_idle_timeout_ns;
             c.connect_retry_ns = connect_retry_ns;
             c.connect_retry_max_ns = connect_retry_max_ns;
             c.max_event_bytes = max_event_bytes;
             c.seed = seed;
             c.run_nonce = run_nonce;
             c.random_start_turn = random_start_turn;
             c.cache_isolation = cache_isolation;
             c.record_buffer_limit = record_buffer_limit;
             c.spawn_interval_ns = spawn_interval_ns;
             c.history_generated = history_generated;
             if (protocol == "h1") c.protocol = ProtocolChoice::kHttp1;
             else if (protocol == "h2") c.protocol = ProtocolChoice::kHttp2;
             else if (protocol == "auto") c.protocol = ProtocolChoice::kAuto;
             else throw py::value_error("protocol must be 'h1', 'h2' or 'auto'");
             c.tls = tls;
             c.tls_verify = tls_verify;
             c.ca_file = std::move(ca_file);
             c.tls_server_name = std::move(tls_server_name);
             if (streams_per_connection < 1) throw py::value_error("streams_per_connection must be >= 1");
             c.streams_per_connection = streams_per_connection;
             c.kernel_stamps = kernel_stamps;
             c.request_id_base = request_id_base;
             return std::make_unique<Engine>(std::move(c), wl.w);
           }),
           py::arg("workload"), py::arg("host"), py::arg("port"), py::arg("host_header") = "",
           py::arg("authorization") = "", py::arg("workers") = 1,
           py::arg("request_timeout_ns") = 600LL * 1'000'000'000,
           py::arg("stream_idle_timeout_ns") = EngineConfig{}.stream_idle_timeout_ns,
           py::arg("connect_retry_ns") = EngineConfig{}.connect_retry_ns,
           py::arg("connect_retry_max_ns") = EngineConfig{}.connect_retry_max_ns,
           py::arg("max_event_bytes") = EngineConfig{}.max_event_bytes,
           py::arg("seed") = 1, py::arg("random_start_turn") = true, py::arg("cache_isolation") = true,
           py::arg("record_buffer_limit") = size_t{1} << 22, py::arg("spawn_interval_ns") = 0,
           py::arg("history_generated") = false, py::arg("protocol") = "h1", py::arg("tls") = false,
           py::arg("tls_verify") = true, py::arg("ca_file") = "", py::arg("tls_server_name") = "",
           py::arg("streams_per_connection") = 100, py::arg("run_nonce") = 0, py::arg("kernel_stamps") = true,
           py::arg("request_id_base") = 0)
      .def("start", &Engine::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &Engine::stop, py::call_guard<py::gil_scoped_release>())
      .def("set_concurrency", &Engine::set_concurrency, py::arg("agents"))
      .def_property_readonly("concurrency", &Engine::concurrency)
      .def_property("isolation_epoch", &Engine::isolation_epoch, &Engine::set_isolation_epoch)
      .def_property_readonly("running", &Engine::running)
      .def_property_readonly("run_nonce", [](const Engine& e) { return e.config().run_nonce; })
      .def_property_readonly("seed", [](const Engine& e) { return e.config().seed; })
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
      }, "Records finished since the last call, as raw bytes (n, RECORD_ITEMSIZE); view with the record dtype.")
      .def("first_failures", [](const Engine& e) {
        std::vector<FailureSample> fs;
        {
          py::gil_scoped_release release;
          fs = e.first_failures();
        }
        py::list out;
        for (const FailureSample& f : fs) {
          const RequestRecord& r = f.record;
          py::dict d;
          d["kind"] = to_string(static_cast<ErrorKind>(r.error_kind));
          d["http_status"] = r.http_status;
          d["conversation"] = r.conversation;
          d["turn"] = r.turn;
          d["max_tokens"] = r.max_tokens;
          d["agent_id"] = r.agent_id;
          d["request_id"] = r.request_id;
          d["scheduled_ns"] = r.scheduled_ns;
          d["done_ns"] = r.done_ns;
          d["output_events"] = r.output_events;
          d["body"] = py::bytes(f.body);
          out.append(d);
        }
        return out;
      }, "The first failed request of each (kind, http_status), earliest first: its record's fields and "
         "body, the first bytes (at most 4 KiB) of what the server sent (the error of an HTTP status "
         "failure, the offending event of a malformed or error stream).");
}
