// Bindings for the built-in simulated server and its performance model (virtual time).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "agentperf/sim_model.h"
#include "agentperf/sim_server.h"

namespace py = pybind11;
using namespace agentperf;

namespace {

// Fills the batching parameters from a dict whose keys are SimModelParams field names.
SimModelParams model_params(const std::string& kind, int32_t tokens_per_chunk, int64_t ttft_ns, int64_t itl_ns,
                            const py::dict& params, bool lockstep = false) {
  SimModelParams p;
  if (kind == "null") {
    p.kind = SimModelKind::kNull;
  } else if (kind == "batching") {
    p.kind = SimModelKind::kBatching;
  } else {
    throw py::value_error("unknown model kind '" + kind + "' (known: null, batching)");
  }
  p.tokens_per_chunk = tokens_per_chunk;
  p.ttft_ns = ttft_ns;
  p.itl_ns = itl_ns;
  p.lockstep = lockstep;
  for (auto [key, value] : params) {
    std::string k = py::cast<std::string>(key);
    if (k == "max_batch") p.max_batch = py::cast<int32_t>(value);
    else if (k == "max_batched_tokens") p.max_batched_tokens = py::cast<int64_t>(value);
    else if (k == "prefill_tokens_per_s") p.prefill_tokens_per_s = py::cast<double>(value);
    else if (k == "step_base_ns") p.step_base_ns = py::cast<int64_t>(value);
    else if (k == "step_per_seq_ns") p.step_per_seq_ns = py::cast<int64_t>(value);
    else if (k == "step_per_context_token_ns") p.step_per_context_token_ns = py::cast<double>(value);
    else if (k == "kv_capacity_tokens") p.kv_capacity_tokens = py::cast<int64_t>(value);
    else if (k == "block_tokens") p.block_tokens = py::cast<int32_t>(value);
    else if (k == "prefix_cache_tokens") p.prefix_cache_tokens = py::cast<int64_t>(value);
    else
      throw py::value_error("unknown model parameter '" + k +
                            "' (known: max_batch, max_batched_tokens, prefill_tokens_per_s, step_base_ns, "
                            "step_per_seq_ns, step_per_context_token_ns, kv_capacity_tokens, block_tokens, "
                            "prefix_cache_tokens)");
  }
  std::string err = validate_sim_model_params(p);
  if (!err.empty()) throw py::value_error(err);
  return p;
}

// Collects a model's emissions as Python tuples.
struct ListSink final : SimModelSink {
  py::list out;
  void on_emit(const SimEmission& e) override {
    out.append(py::make_tuple(e.cookie, e.tokens, e.generated, e.cached_tokens, e.at_ns, e.first, e.last));
  }
};

py::dict stats_dict(const SimModelStats& s) {
  py::dict d;
  d["running"] = s.running;
  d["waiting"] = s.waiting;
  d["kv_used_tokens"] = s.kv_used_tokens;
  d["kv_capacity_tokens"] = s.kv_capacity_tokens;
  d["prompt_tokens"] = s.prompt_tokens;
  d["cache_query_tokens"] = s.cache_query_tokens;
  d["cache_hit_tokens"] = s.cache_hit_tokens;
  d["cache_blocks"] = s.cache_blocks;
  d["steps"] = s.steps;
  d["busy_ns"] = s.busy_ns;
  d["busy_since_ns"] = s.busy_since_ns;
  d["busy_until_ns"] = s.busy_until_ns;
  return d;
}

}  // namespace

void register_server(py::module_& m) {
  py::class_<SimServer>(m, "SimServer")
      .def(py::init([](std::string host, uint16_t port, int workers, std::string model_kind, int64_t ttft_ns,
                       int64_t itl_ns, int32_t output_tokens, int32_t tokens_per_chunk, const py::dict& params,
                       double early_stop_probability, std::string model, std::string preset, uint64_t seed,
                       const py::dict& faults, int64_t stall_ns, int64_t slow_headers_ns, int accelerators,
                       double idle_w, double dynamic_w, bool lockstep, bool reuse_port) {
             SimServerConfig c;
             c.reuse_port = reuse_port;
             c.host = std::move(host);
             c.port = port;
             c.workers = workers;
             c.model_params = model_params(model_kind, tokens_per_chunk, ttft_ns, itl_ns, params, lockstep);
             c.output_tokens = output_tokens;
             c.early_stop_probability = early_stop_probability;
             c.model = std::move(model);
             c.preset = std::move(preset);
             c.seed = seed;
             c.stall_ns = stall_ns;
             c.slow_headers_ns = slow_headers_ns;
             c.accelerators = accelerators;
             c.idle_w = idle_w;
             c.dynamic_w = dynamic_w;
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
             try {
               return std::make_unique<SimServer>(std::move(c));
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("host") = "127.0.0.1", py::arg("port") = 0, py::arg("workers") = 1,
           py::arg("model_kind") = "null", py::arg("ttft_ns") = 200'000'000, py::arg("itl_ns") = 10'000'000,
           py::arg("output_tokens") = 100, py::arg("tokens_per_chunk") = 1, py::arg("params") = py::dict(),
           py::arg("early_stop_probability") = 0.0, py::arg("model") = "agentperf-sim", py::arg("preset") = "",
           py::arg("seed") = 1, py::arg("faults") = py::dict(), py::arg("stall_ns") = 0,
           py::arg("slow_headers_ns") = 1'000'000'000, py::arg("accelerators") = 1, py::arg("idle_w") = 150.0,
           py::arg("dynamic_w") = 550.0, py::arg("lockstep") = false, py::arg("reuse_port") = false)
      .def("start", &SimServer::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &SimServer::stop, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("port", &SimServer::port)
      .def("metrics_text", &SimServer::metrics_text)
      .def(
          "stamps",
          [](const SimServer& s) {
            std::vector<SimRequestStamps> v;
            {
              py::gil_scoped_release release;
              v = s.stamps();
            }
            py::list out;
            for (const SimRequestStamps& x : v) {
              py::dict d;
              d["request_id"] = x.request_id;
              d["received_ns"] = x.received_ns;
              d["first_token_ns"] = x.first_token_ns;
              d["last_token_ns"] = x.last_token_ns;
              d["output_events"] = x.output_events;
              d["output_tokens"] = x.output_tokens;
              d["status"] = x.status;
              d["complete"] = x.complete;
              out.append(std::move(d));
            }
            return out;
          },
          "The server's own stamps of each finished request that carried an X-Request-Id, ordered by "
          "received_ns (CLOCK_MONOTONIC ns, the client's clock): request_id, received_ns, first_token_ns, "
          "last_token_ns (token events handed to the kernel; 0: none), output_events, output_tokens, status, "
          "complete. Bounded per worker (oldest dropped).")
      .def("metrics", [](const SimServer& s) {
        SimServerMetrics m = s.metrics();
        py::dict d;
        d["connections_accepted"] = m.connections_accepted;
        d["requests_total"] = m.requests_total;
        d["requests_rejected"] = m.requests_rejected;
        d["requests_running"] = m.requests_running;
        d["requests_waiting"] = m.requests_waiting;
        d["tokens_generated"] = m.tokens_generated;
        d["prompt_tokens"] = m.prompt_tokens;
        d["cache_query_tokens"] = m.cache_query_tokens;
        d["cache_hit_tokens"] = m.cache_hit_tokens;
        d["cache_blocks"] = m.cache_blocks;
        d["kv_used_tokens"] = m.kv_used_tokens;
        d["kv_capacity_tokens"] = m.kv_capacity_tokens;
        d["steps"] = m.steps;
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
        d["power_w"] = m.power_w;          // per accelerator, W (mean over the last second)
        d["energy_mj"] = m.energy_mj;      // per accelerator, mJ since start
        d["utilisation"] = m.utilisation;  // per replica, busy time / time since start
        return d;
      });

  // The performance model alone, driven in virtual time (tests, the closed-form check).
  py::class_<SimModel>(m, "SimModel")
      .def(py::init([](std::string model_kind, int32_t tokens_per_chunk, int64_t ttft_ns, int64_t itl_ns,
                       const py::dict& params, bool lockstep) {
             return make_sim_model(model_params(model_kind, tokens_per_chunk, ttft_ns, itl_ns, params, lockstep));
           }),
           py::arg("model_kind") = "batching", py::arg("tokens_per_chunk") = 1, py::arg("ttft_ns") = 200'000'000,
           py::arg("itl_ns") = 10'000'000, py::arg("params") = py::dict(), py::arg("lockstep") = false)
      .def(
          "submit",
          [](SimModel& s, int64_t prompt_tokens, int32_t output_tokens, int64_t arrival_ns,
             std::vector<uint64_t> block_hashes, uint64_t cookie) {
            if (prompt_tokens < 1 || output_tokens < 1)
              throw py::value_error("prompt_tokens and output_tokens must be >= 1");
            if (!s.fits(prompt_tokens, output_tokens)) throw py::value_error("the request does not fit the KV capacity");
            SimSequenceSpec spec;
            spec.prompt_tokens = prompt_tokens;
            spec.output_tokens = output_tokens;
            spec.block_hashes = std::move(block_hashes);
            spec.cookie = cookie;
            return s.submit(std::move(spec), arrival_ns);
          },
          py::arg("prompt_tokens"), py::arg("output_tokens"), py::arg("arrival_ns"),
          py::arg("block_hashes") = std::vector<uint64_t>{}, py::arg("cookie") = 0)
      .def("cancel", &SimModel::cancel, py::arg("handle"))
      .def_property_readonly("next_deadline_ns", &SimModel::next_deadline_ns)
      .def(
          "advance",
          [](SimModel& s, int64_t now_ns) {
            ListSink sink;
            s.advance(now_ns, sink);
            return sink.out;
          },
          py::arg("now_ns"),
          "Runs the model to now_ns; returns its emissions as (cookie, tokens, generated, cached_tokens, at_ns, "
          "first, last) tuples in time order.")
      .def("stats", [](const SimModel& s) { return stats_dict(s.stats()); });
}
