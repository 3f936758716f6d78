#include "common/keyed_hash.h"

#include <chrono>
#include <random>

namespace agentperf::keyed_hash_detail {

uint64_t seed() {
  uint64_t s = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  try {
    std::random_device rd;
    s ^= (static_cast<uint64_t>(rd()) << 32) ^ rd();
  } catch (...) {  // no entropy source: the clock alone still varies per process
  }
  return s | 1;
}

}  // namespace agentperf::keyed_hash_detail
