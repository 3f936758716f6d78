// A counter with one writer thread and any number of readers: the writer stores, readers load
// (relaxed; a reader may be a few increments stale). No read-modify-write on the hot path.
#pragma once

#include <atomic>
#include <cstdint>

namespace agentperf {

struct SingleWriterCounter {
  std::atomic<uint64_t> v{0};
  /// Writer thread only.
  void add(uint64_t n = 1) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  /// Any thread.
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

}  // namespace agentperf
