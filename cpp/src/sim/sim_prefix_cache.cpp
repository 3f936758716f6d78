#include "sim/sim_prefix_cache.h"

#include <algorithm>

namespace agentperf {

int64_t SimPrefixCache::lookup(const std::vector<uint64_t>& hashes, int64_t max_blocks) {
  int64_t n = std::min<int64_t>(max_blocks, static_cast<int64_t>(hashes.size()));
  int64_t hits = 0;
  while (hits < n && index_.count(hashes[static_cast<size_t>(hits)])) ++hits;
  for (int64_t i = hits - 1; i >= 0; --i) touch(hashes[static_cast<size_t>(i)]);
  return hits;
}

void SimPrefixCache::insert(const std::vector<uint64_t>& hashes) {
  if (capacity_blocks_ <= 0) return;
  // Last to first: the head of the prompt ends up most recently used.
  for (size_t i = hashes.size(); i-- > 0;) {
    uint64_t h = hashes[i];
    auto it = index_.find(h);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      continue;
    }
    if (static_cast<int64_t>(index_.size()) >= capacity_blocks_) {
      index_.erase(lru_.back());
      lru_.pop_back();
      ++evictions_;
    }
    lru_.push_front(h);
    index_.emplace(h, lru_.begin());
  }
}

void SimPrefixCache::touch(uint64_t hash) {
  auto it = index_.find(hash);
  if (it != index_.end()) lru_.splice(lru_.begin(), lru_, it->second);
}

}  // namespace agentperf
