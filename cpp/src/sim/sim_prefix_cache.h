// The simulator's prefix cache: a bounded LRU set of prompt-block hashes.
//
// A prompt is cut into fixed-size blocks (SimModelParams::block_tokens tokens each; see
// sim_request.h for how text becomes tokens) and each *full* block gets a chained hash: the hash of
// block i covers block i's content and the hash of block i-1, so a block hash names the whole
// prefix up to and including that block (as vLLM's automatic prefix caching does). Two prompts
// share cached blocks exactly as far as their prefixes agree block by block; the per-agent
// isolation prefix `[rid:<16 hex>] ` in the first message therefore stops reuse across agents while
// an agent's growing context hits the cache across its turns.
//
// Capacity is in blocks. A lookup walks the blocks from the start and stops at the first miss; the
// hits are refreshed. Insertion refreshes present blocks and adds missing ones, evicting the least
// recently used block when full. Blocks of one prompt are refreshed from last to first, so that
// when the cache evicts, a prompt's tail goes before its head (the head is what other prompts can
// share; a chain broken at its head is worthless).
//
// Thread safety: none (one per simulator worker; used on that worker's thread only). Never blocks.
// Memory: about 48 bytes per cached block, allocated as blocks are inserted.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace agentperf {

class SimPrefixCache {
 public:
  /// `capacity_blocks` = 0: a cache that holds nothing (every lookup misses).
  explicit SimPrefixCache(int64_t capacity_blocks) : capacity_blocks_(capacity_blocks) {}

  /// The number of leading blocks of `hashes` (at most `max_blocks`) present in the cache; those
  /// blocks are refreshed (most recently used).
  int64_t lookup(const std::vector<uint64_t>& hashes, int64_t max_blocks);

  /// Adds every hash of `hashes` (refreshing those present), evicting least recently used blocks
  /// when the cache is full.
  void insert(const std::vector<uint64_t>& hashes);

  int64_t size_blocks() const { return static_cast<int64_t>(index_.size()); }
  int64_t capacity_blocks() const { return capacity_blocks_; }
  uint64_t evictions() const { return evictions_; }

 private:
  void touch(uint64_t hash);

  int64_t capacity_blocks_;
  std::list<uint64_t> lru_;  ///< front: most recently used
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> index_;
  uint64_t evictions_ = 0;
};

}  // namespace agentperf
