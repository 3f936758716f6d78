// The simulator's performance models: when each output token of each request is produced.
//
// A model is sans-IO and clock-free: requests come in with their arrival time, the caller asks for
// the next deadline, and advance(now_ns) emits every output event whose model time is <= now_ns,
// in time order, each stamped with its model time. The server (sim_server.cpp) drives one model per
// worker thread from that thread's event loop; tests drive it in virtual time. Model time never
// drifts with the caller's lateness: a step that ends at t is followed by a step that starts at t,
// even when advance() runs later than t (the events are then delivered late, not re-timed).
//
// Two kinds:
//
// NULL ("null"): every request is independent. Its events are at
//     arrival + ttft_ns + i * itl_ns,   i = 0 .. ceil(output_tokens / tokens_per_chunk) - 1,
// each carrying tokens_per_chunk tokens (the last one the remainder). No batch, no queue, no cache.
//
// BATCHING ("batching"): one inference engine with continuous batching, modelled step by step.
//   State: a FIFO wait queue and a running set of at most max_batch sequences.
//   Admission, at each step boundary t (and at a request's arrival when the engine is idle): the
//     oldest waiting requests that arrived at or before t are admitted while the running set has
//     fewer than max_batch sequences and, when kv_capacity_tokens > 0, while the KV tokens
//     reserved by running sequences (prompt_tokens + output_tokens each, reserved whole at
//     admission, so there is never preemption) leave room. Strict FIFO: the head blocks the queue.
//   Prefix cache, at admission: the request's leading full prompt blocks found in the cache are
//     cached; cached_tokens = hits * block_tokens, where hits <= floor((prompt_tokens - 1) /
//     block_tokens) (at least one prompt token is always computed). uncached = prompt - cached.
//     A request's full blocks enter the cache when its prefill completes (see sim_prefix_cache.h).
//   A step (vLLM-style chunked prefill: prefill and decode share every step):
//     decode part:  every running sequence past its prefill generates
//                   min(tokens_per_chunk, remaining) tokens (tokens_per_chunk > 1 imitates
//                   speculative decoding: several accepted tokens per step);
//     prefill part: the token budget left, max_batched_tokens - decode tokens of the step
//                   (unlimited when max_batched_tokens = 0), goes to the prefilling sequences in
//                   admission order, a chunk each, until it runs out;
//     duration:     step_ns = step_base_ns
//                           + step_per_seq_ns * D
//                           + step_per_context_token_ns * (sum over the D decoding sequences of
//                                                          prompt_tokens + generated tokens)
//                           + 1e9 * prefill_tokens_in_step / prefill_tokens_per_s
//                   where D = the number of decoding sequences in the step; rounded to whole ns.
//     At the step's end: a sequence whose prefill completed emits its first token (1 token; the
//     prefill pass produces it); each decoding sequence emits its tokens as one event; a sequence
//     with all its output_tokens done finishes and frees its slot, and the next step starts at
//     once, admitting from the queue.
//   So a request's TTFT = queueing for a slot + waiting for the step in progress to end + its
//   prefill step(s); its output speed = tokens_per_chunk / (the mean duration of its decode steps).
//   See python/agentperf_native/SIMULATOR.md for the closed form that follows from these rules.
//
// Busy time (SimModelStats::busy_*): the batching model is busy while a step is in progress, from
// the step's start to its end in model time (back-to-back steps: busy without a gap); the null
// model while at least one request is in flight, from its arrival to its last event (a cancelled
// request ends at the latest time the model was told of: an arrival or an advance()).
//
// Thread safety: none; one model per thread. Allocation: per request (its state and block hashes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace agentperf {

enum class SimModelKind : uint8_t { kNull = 0, kBatching = 1 };

/// Every parameter of both models. Units are in the names; defaults are the "null" server's.
struct SimModelParams {
  SimModelKind kind = SimModelKind::kNull;
  /// Tokens per output event (null) / per sequence per decode step (batching). >= 1.
  int32_t tokens_per_chunk = 1;

  // --- null ---
  int64_t ttft_ns = 200'000'000;  ///< arrival -> first event
  int64_t itl_ns = 10'000'000;    ///< gap between events
  /// Events on a shared grid: a request's first event falls at the first multiple of itl_ns (on
  /// the monotonic clock) at or after arrival + ttft_ns, so every stream's events fall at the same
  /// instants, as a continuous-batching server's decode steps give every sequence a token at once.
  bool lockstep = false;

  // --- batching ---
  int32_t max_batch = 256;                  ///< max running sequences (>= 1)
  int64_t max_batched_tokens = 8192;        ///< tokens per step, decode + prefill (0: unlimited)
  double prefill_tokens_per_s = 20'000;     ///< rate at which uncached prompt tokens are computed (> 0)
  int64_t step_base_ns = 10'000'000;        ///< fixed cost of one step
  int64_t step_per_seq_ns = 50'000;         ///< added per decoding sequence in the step
  double step_per_context_token_ns = 0.0;   ///< added per context token of the decoding sequences
  int64_t kv_capacity_tokens = 0;           ///< KV tokens for running sequences (0: unlimited)
  int32_t block_tokens = 16;                ///< prefix-cache block size (>= 1)
  int64_t prefix_cache_tokens = 0;          ///< prefix-cache capacity, floor'd to blocks (0: no cache)
};

/// Empty when `p` is valid, else what is wrong (for std::invalid_argument).
std::string validate_sim_model_params(const SimModelParams& p);

/// One request handed to a model.
struct SimSequenceSpec {
  int64_t prompt_tokens = 1;           ///< >= 1
  int32_t output_tokens = 1;           ///< exact number of tokens to generate (>= 1)
  std::vector<uint64_t> block_hashes;  ///< chained hashes of the prompt's full blocks (moved in)
  uint64_t cookie = 0;                 ///< opaque; returned with every emission of this request
};

/// One output event of one request.
struct SimEmission {
  uint64_t cookie = 0;
  int32_t tokens = 0;          ///< tokens carried by this event (>= 1)
  int32_t generated = 0;       ///< tokens generated so far, this event included
  int64_t cached_tokens = 0;   ///< prompt tokens served from the prefix cache
  int64_t at_ns = 0;           ///< model time of the event (monotonic ns)
  bool first = false;
  bool last = false;           ///< the request is complete; its handle is no longer valid
};

class SimModelSink {
 public:
  virtual ~SimModelSink() = default;
  /// Called from advance(). May call submit() and cancel() on the same model.
  virtual void on_emit(const SimEmission& e) = 0;
};

/// Gauges and counters of a model (its worker thread reads them; copy out for other threads).
struct SimModelStats {
  int64_t running = 0;              ///< admitted, not finished (null: streams in progress)
  int64_t waiting = 0;              ///< in the FIFO queue
  int64_t kv_used_tokens = 0;       ///< KV held by running sequences: computed prompt + generated
  int64_t kv_capacity_tokens = 0;   ///< 0: unlimited
  uint64_t prompt_tokens = 0;       ///< prompt tokens of admitted requests
  uint64_t cache_query_tokens = 0;  ///< prompt tokens looked up in the prefix cache
  uint64_t cache_hit_tokens = 0;    ///< of which served from the cache
  int64_t cache_blocks = 0;         ///< blocks now in the prefix cache
  uint64_t steps = 0;               ///< steps run (batching)
  // Busy time, in model time, for the power model (sim_power.h). Busy = a step in progress
  // (batching) or at least one request in flight (null). busy(t) = busy_ns + the part of the open
  // interval [busy_since_ns, busy_until_ns) before t.
  int64_t busy_ns = 0;                ///< total length of the busy intervals already closed
  int64_t busy_since_ns = -1;         ///< start of the busy interval in progress; -1: idle
  int64_t busy_until_ns = INT64_MAX;  ///< its end when known (batching: the step's end)
};

class SimModel {
 public:
  virtual ~SimModel() = default;
  /// Queues a request that arrived at `arrival_ns` (not before any earlier submit's arrival).
  /// Returns its handle (never 0). The caller checks fits() first.
  virtual uint64_t submit(SimSequenceSpec spec, int64_t arrival_ns) = 0;
  /// Drops a request (the client went away): no more emissions; frees its slot and KV. A handle
  /// that is finished or unknown is ignored.
  virtual void cancel(uint64_t handle) = 0;
  /// The model time of the next thing to happen, or -1 when nothing is pending.
  virtual int64_t next_deadline_ns() const = 0;
  /// Runs the model up to `now_ns`, emitting every event due, in time order.
  virtual void advance(int64_t now_ns, SimModelSink& sink) = 0;
  /// Whether a request of this size can ever run (batching: prompt + output <= kv_capacity_tokens).
  virtual bool fits(int64_t prompt_tokens, int32_t output_tokens) const = 0;
  virtual SimModelStats stats() const = 0;
};

/// Throws std::invalid_argument when the params are invalid.
std::unique_ptr<SimModel> make_sim_model(const SimModelParams& params);

}  // namespace agentperf
