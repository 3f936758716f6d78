// Prefetching a span of memory: a hint that its cache lines are about to be read, issued early so
// that their misses overlap other work (a system call, the frames before) instead of stalling the
// code that then reads them one pointer at a time. Never faults, whatever the address.
#pragma once

#include <cstddef>
#include <cstdint>

namespace agentperf {

inline constexpr size_t kCacheLineBytes = 64;

/// Prefetches every cache line of [p, p + n) (none when p is null).
inline void prefetch_span(const void* p, size_t n) {
  if (p == nullptr) return;
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + n;
  for (uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{kCacheLineBytes - 1}; a < end; a += kCacheLineBytes)
    __builtin_prefetch(reinterpret_cast<const void*>(a));
}

}  // namespace agentperf
