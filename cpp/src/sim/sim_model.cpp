#include "agentperf/sim_model.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <queue>
#include <stdexcept>

#include "sim/sim_prefix_cache.h"

namespace agentperf {

std::string validate_sim_model_params(const SimModelParams& p) {
  if (p.tokens_per_chunk < 1) return "tokens_per_chunk must be >= 1";
  if (p.kind == SimModelKind::kNull) {
    if (p.ttft_ns < 0 || p.itl_ns < 0) return "ttft and itl must be >= 0";
    if (p.lockstep && p.itl_ns <= 0) return "lockstep needs itl > 0 (its grid)";
    return "";
  }
  if (p.lockstep) return "lockstep applies to the null model (a batching model's steps are in lock-step already)";
  if (p.max_batch < 1) return "max_batch must be >= 1";
  if (p.max_batched_tokens < 0) return "max_batched_tokens must be >= 0 (0: unlimited)";
  if (!(p.prefill_tokens_per_s > 0) || !std::isfinite(p.prefill_tokens_per_s))
    return "prefill_tokens_per_s must be > 0";
  if (p.step_base_ns < 0 || p.step_per_seq_ns < 0 || !(p.step_per_context_token_ns >= 0))
    return "step times must be >= 0";
  if (p.step_base_ns == 0 && p.step_per_seq_ns == 0 && p.step_per_context_token_ns == 0)
    return "a decode step must take time: set step_base_ns, step_per_seq_ns or step_per_context_token_ns";
  if (p.kv_capacity_tokens < 0) return "kv_capacity_tokens must be >= 0 (0: unlimited)";
  if (p.block_tokens < 1) return "block_tokens must be >= 1";
  if (p.prefix_cache_tokens < 0) return "prefix_cache_tokens must be >= 0";
  return "";
}

namespace {

// Handles: (generation << 32) | slot, so a stale handle never matches a reused slot.
inline uint64_t make_handle(uint32_t slot, uint32_t gen) { return (uint64_t{gen} << 32) | slot; }
inline uint32_t handle_slot(uint64_t h) { return static_cast<uint32_t>(h); }
inline uint32_t handle_gen(uint64_t h) { return static_cast<uint32_t>(h >> 32); }

// ---------------------------------------------------------------------------------------------

class NullModel final : public SimModel {
 public:
  explicit NullModel(const SimModelParams& p) : p_(p) {}

  uint64_t submit(SimSequenceSpec spec, int64_t arrival_ns) override {
    uint32_t slot;
    if (free_.empty()) {
      slot = static_cast<uint32_t>(seqs_.size());
      seqs_.emplace_back();
    } else {
      slot = free_.back();
      free_.pop_back();
    }
    Seq& s = seqs_[slot];
    s.active = true;
    s.cookie = spec.cookie;
    s.arrival_ns = arrival_ns;
    s.target = spec.output_tokens;
    s.generated = 0;
    s.next_event = 0;
    s.first_ns = arrival_ns + p_.ttft_ns;
    if (p_.lockstep) s.first_ns += (p_.itl_ns - s.first_ns % p_.itl_ns) % p_.itl_ns;  // up to the grid
    clock_ns_ = std::max(clock_ns_, arrival_ns);
    if (running_++ == 0) busy_since_ns_ = std::max(arrival_ns, busy_end_ns_);
    uint64_t h = make_handle(slot, ++s.gen);
    heap_.push({s.first_ns, h});
    return h;
  }

  void cancel(uint64_t handle) override {
    Seq* s = find(handle);
    if (!s) return;
    s->active = false;  // its heap entry is skipped when it comes up
    if (--running_ == 0) close_busy(clock_ns_);
  }

  int64_t next_deadline_ns() const override { return heap_.empty() ? -1 : heap_.top().at_ns; }

  void advance(int64_t now_ns, SimModelSink& sink) override {
    clock_ns_ = std::max(clock_ns_, now_ns);
    while (!heap_.empty() && heap_.top().at_ns <= now_ns) {
      Due d = heap_.top();
      heap_.pop();
      Seq* s = find(d.handle);
      if (!s) continue;
      SimEmission e;
      e.cookie = s->cookie;
      e.tokens = std::min(p_.tokens_per_chunk, s->target - s->generated);
      s->generated += e.tokens;
      e.generated = s->generated;
      e.at_ns = d.at_ns;
      e.first = s->next_event == 0;
      e.last = s->generated >= s->target;
      ++s->next_event;
      if (e.last) {
        release(d.handle, d.at_ns);
      } else {
        heap_.push({s->first_ns + s->next_event * p_.itl_ns, d.handle});
      }
      sink.on_emit(e);  // may submit (seqs_ may grow: s is not used after this)
    }
  }

  bool fits(int64_t, int32_t) const override { return true; }

  SimModelStats stats() const override {
    SimModelStats st;
    st.running = running_;
    st.busy_ns = busy_ns_;
    st.busy_since_ns = running_ > 0 ? busy_since_ns_ : -1;
    return st;
  }

 private:
  struct Seq {
    uint32_t gen = 0;
    bool active = false;
    uint64_t cookie = 0;
    int64_t arrival_ns = 0;
    int64_t first_ns = 0;  ///< when its first event is due; event k at first_ns + k * itl
    int32_t target = 0, generated = 0;
    int64_t next_event = 0;
  };
  struct Due {
    int64_t at_ns;
    uint64_t handle;
    bool operator>(const Due& o) const { return at_ns > o.at_ns; }
  };

  Seq* find(uint64_t h) {
    uint32_t slot = handle_slot(h);
    if (slot >= seqs_.size()) return nullptr;
    Seq& s = seqs_[slot];
    return s.active && s.gen == handle_gen(h) ? &s : nullptr;
  }
  void release(uint64_t h, int64_t at_ns) {
    seqs_[handle_slot(h)].active = false;
    free_.push_back(handle_slot(h));
    if (--running_ == 0) close_busy(at_ns);
  }
  // The last request in flight left at `end_ns`: the busy interval closes.
  void close_busy(int64_t end_ns) {
    end_ns = std::max(end_ns, busy_since_ns_);
    busy_ns_ += end_ns - busy_since_ns_;
    busy_end_ns_ = end_ns;
  }

  SimModelParams p_;
  std::deque<Seq> seqs_;
  std::vector<uint32_t> free_;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> heap_;
  int64_t running_ = 0;
  int64_t clock_ns_ = INT64_MIN;      ///< the latest time the model was told of
  int64_t busy_ns_ = 0;               ///< closed busy intervals
  int64_t busy_since_ns_ = 0;         ///< start of the open one (when running_ > 0)
  int64_t busy_end_ns_ = INT64_MIN;   ///< end of the last closed one (intervals never overlap)
};

// ---------------------------------------------------------------------------------------------

class BatchingModel final : public SimModel {
 public:
  explicit BatchingModel(const SimModelParams& p)
      : p_(p), cache_(p.prefix_cache_tokens / p.block_tokens) {}

  uint64_t submit(SimSequenceSpec spec, int64_t arrival_ns) override {
    uint32_t slot;
    if (free_.empty()) {
      slot = static_cast<uint32_t>(seqs_.size());
      seqs_.emplace_back();
    } else {
      slot = free_.back();
      free_.pop_back();
    }
    Seq& s = seqs_[slot];
    s.state = State::kWaiting;
    s.cookie = spec.cookie;
    s.arrival_ns = arrival_ns;
    s.prompt = std::max<int64_t>(1, spec.prompt_tokens);
    s.target = std::max(1, spec.output_tokens);
    s.generated = 0;
    s.cached = 0;
    s.prefill_left = s.prompt;
    s.blocks = std::move(spec.block_hashes);
    uint64_t h = make_handle(slot, ++s.gen);
    waiting_.push_back(h);
    ++n_waiting_;
    return h;
  }

  void cancel(uint64_t handle) override {
    Seq* s = find(handle);
    if (!s) return;
    if (s->state == State::kWaiting) {
      --n_waiting_;  // its queue entry is dropped when it reaches the head
    } else if (s->state == State::kRunning) {
      unreserve(*s);  // its step entry and running_ entry are dropped at the step's end
    } else {
      return;
    }
    s->state = State::kCancelled;
  }

  int64_t next_deadline_ns() const override {
    if (stepping_) return step_end_ns_;
    for (uint64_t h : waiting_) {
      const Seq& s = seqs_[handle_slot(h)];
      if (s.gen == handle_gen(h) && s.state == State::kWaiting) return std::max(s.arrival_ns, last_end_ns_);
    }
    return -1;
  }

  void advance(int64_t now_ns, SimModelSink& sink) override {
    for (;;) {
      if (stepping_) {
        if (step_end_ns_ > now_ns) return;
        int64_t end = step_end_ns_;
        finish_step(sink);
        stepping_ = false;
        busy_ns_ += end - step_start_ns_;
        last_end_ns_ = end;
        start_step(end);
        continue;
      }
      drop_cancelled_head();
      if (waiting_.empty()) return;
      int64_t t0 = std::max(seqs_[handle_slot(waiting_.front())].arrival_ns, last_end_ns_);
      if (t0 > now_ns) return;
      start_step(t0);
      if (!stepping_) return;
    }
  }

  bool fits(int64_t prompt_tokens, int32_t output_tokens) const override {
    return p_.kv_capacity_tokens <= 0 || prompt_tokens + output_tokens <= p_.kv_capacity_tokens;
  }

  SimModelStats stats() const override {
    SimModelStats st;
    st.running = n_running_;
    st.waiting = n_waiting_;
    st.kv_used_tokens = kv_used_;
    st.kv_capacity_tokens = p_.kv_capacity_tokens;
    st.prompt_tokens = prompt_tokens_;
    st.cache_query_tokens = cache_query_tokens_;
    st.cache_hit_tokens = cache_hit_tokens_;
    st.cache_blocks = cache_.size_blocks();
    st.steps = steps_;
    st.busy_ns = busy_ns_;
    if (stepping_) {
      st.busy_since_ns = step_start_ns_;
      st.busy_until_ns = step_end_ns_;
    }
    return st;
  }

 private:
  enum class State : uint8_t { kFree, kWaiting, kRunning, kDone, kCancelled };
  struct Seq {
    uint32_t gen = 0;
    State state = State::kFree;
    uint64_t cookie = 0;
    int64_t arrival_ns = 0;
    int64_t prompt = 0;
    int32_t target = 0, generated = 0;
    int64_t cached = 0;
    int64_t prefill_left = 0;
    std::vector<uint64_t> blocks;
  };
  struct Work {
    uint64_t handle;
    int64_t prefill_tokens;  ///< > 0: a prefill chunk
    int32_t decode_tokens;   ///< > 0: a decode step
  };

  Seq* find(uint64_t h) {
    uint32_t slot = handle_slot(h);
    if (slot >= seqs_.size()) return nullptr;
    Seq& s = seqs_[slot];
    return s.gen == handle_gen(h) && s.state != State::kFree ? &s : nullptr;
  }

  void free_slot(uint64_t h) {
    Seq& s = seqs_[handle_slot(h)];
    s.state = State::kFree;
    std::vector<uint64_t>().swap(s.blocks);
    free_.push_back(handle_slot(h));
  }

  // A running sequence leaves: its KV reservation and usage go.
  void unreserve(Seq& s) {
    kv_reserved_ -= s.prompt + s.target;
    kv_used_ -= s.prompt - s.prefill_left + s.generated;
    --n_running_;
  }

  void drop_cancelled_head() {
    while (!waiting_.empty()) {
      uint64_t h = waiting_.front();
      if (seqs_[handle_slot(h)].state != State::kCancelled) return;
      waiting_.pop_front();
      free_slot(h);
    }
  }

  void start_step(int64_t t) {
    // Forget sequences that finished or were cancelled.
    size_t keep = 0;
    for (uint64_t h : running_) {
      State st = seqs_[handle_slot(h)].state;
      if (st == State::kRunning) {
        running_[keep++] = h;
      } else {
        free_slot(h);
      }
    }
    running_.resize(keep);
    // Admit (strict FIFO).
    for (;;) {
      drop_cancelled_head();
      if (waiting_.empty() || static_cast<int32_t>(running_.size()) >= p_.max_batch) break;
      uint64_t h = waiting_.front();
      Seq& s = seqs_[handle_slot(h)];
      if (s.arrival_ns > t) break;
      if (p_.kv_capacity_tokens > 0 && kv_reserved_ + s.prompt + s.target > p_.kv_capacity_tokens) break;
      waiting_.pop_front();
      --n_waiting_;
      ++n_running_;
      s.state = State::kRunning;
      int64_t hits = cache_.lookup(s.blocks, (s.prompt - 1) / p_.block_tokens);
      s.cached = hits * p_.block_tokens;
      s.prefill_left = s.prompt - s.cached;
      kv_reserved_ += s.prompt + s.target;
      kv_used_ += s.cached;
      prompt_tokens_ += static_cast<uint64_t>(s.prompt);
      cache_query_tokens_ += static_cast<uint64_t>(s.prompt);
      cache_hit_tokens_ += static_cast<uint64_t>(s.cached);
      running_.push_back(h);
    }
    // Form the step: decode first, then prefill chunks in admission order.
    step_.clear();
    int64_t decoding = 0, decode_tokens = 0;
    double context_tokens = 0;
    for (uint64_t h : running_) {
      const Seq& s = seqs_[handle_slot(h)];
      if (s.prefill_left > 0) continue;
      int32_t n = std::min(p_.tokens_per_chunk, s.target - s.generated);
      step_.push_back({h, 0, n});
      ++decoding;
      decode_tokens += n;
      context_tokens += static_cast<double>(s.prompt + s.generated);
    }
    int64_t budget = p_.max_batched_tokens > 0 ? p_.max_batched_tokens - decode_tokens : INT64_MAX;
    int64_t prefill_tokens = 0;
    for (uint64_t h : running_) {
      if (budget <= 0) break;
      const Seq& s = seqs_[handle_slot(h)];
      if (s.prefill_left <= 0) continue;
      int64_t chunk = std::min(s.prefill_left, budget);
      step_.push_back({h, chunk, 0});
      budget -= chunk;
      prefill_tokens += chunk;
    }
    if (step_.empty()) return;  // idle
    double ns = static_cast<double>(p_.step_base_ns) + static_cast<double>(p_.step_per_seq_ns) * decoding +
                p_.step_per_context_token_ns * context_tokens +
                1e9 * static_cast<double>(prefill_tokens) / p_.prefill_tokens_per_s;
    stepping_ = true;
    step_start_ns_ = t;
    step_end_ns_ = t + std::max<int64_t>(1, std::llround(ns));
    ++steps_;
  }

  void finish_step(SimModelSink& sink) {
    for (const Work& w : step_) {
      Seq& s = seqs_[handle_slot(w.handle)];
      if (s.gen != handle_gen(w.handle) || s.state != State::kRunning) continue;  // cancelled
      SimEmission e;
      if (w.prefill_tokens > 0) {
        s.prefill_left -= w.prefill_tokens;
        kv_used_ += w.prefill_tokens;
        if (s.prefill_left > 0) continue;
        cache_.insert(s.blocks);
        std::vector<uint64_t>().swap(s.blocks);
        e.tokens = 1;
        e.first = true;
      } else {
        e.tokens = w.decode_tokens;
      }
      s.generated += e.tokens;
      kv_used_ += e.tokens;
      e.cookie = s.cookie;
      e.generated = s.generated;
      e.cached_tokens = s.cached;
      e.at_ns = step_end_ns_;
      e.last = s.generated >= s.target;
      if (e.last) {
        unreserve(s);
        s.state = State::kDone;  // its slot is freed when the next step starts
      }
      sink.on_emit(e);  // may submit or cancel (seqs_ is a deque: references stay valid)
    }
  }

  SimModelParams p_;
  SimPrefixCache cache_;
  std::deque<Seq> seqs_;
  std::vector<uint32_t> free_;
  std::deque<uint64_t> waiting_;
  std::vector<uint64_t> running_;  ///< admission order
  std::vector<Work> step_;
  bool stepping_ = false;
  int64_t step_start_ns_ = 0;
  int64_t step_end_ns_ = 0;
  int64_t busy_ns_ = 0;  ///< total duration of the finished steps
  int64_t last_end_ns_ = INT64_MIN;
  int64_t n_running_ = 0, n_waiting_ = 0;
  int64_t kv_reserved_ = 0, kv_used_ = 0;
  uint64_t prompt_tokens_ = 0, cache_query_tokens_ = 0, cache_hit_tokens_ = 0, steps_ = 0;
};

}  // namespace

std::unique_ptr<SimModel> make_sim_model(const SimModelParams& params) {
  std::string err = validate_sim_model_params(params);
  if (!err.empty()) throw std::invalid_argument(err);
  if (params.kind == SimModelKind::kNull) return std::make_unique<NullModel>(params);
  return std::make_unique<BatchingModel>(params);
}

}  // namespace agentperf
