// Shared by the fuzz targets: how one input is cut into the pieces a parser is fed, so that every
// target checks the same property: a parser fed the bytes whole and fed them cut anywhere says the
// same thing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace agentperf_fuzz {

/// Cut points for `n` payload bytes, drawn from `seed` (the input's first byte): pieces of
/// 1 .. 2^(seed % 8) bytes, the sizes cycling through a small sequence so that both single bytes
/// and runs are exercised.
inline std::vector<size_t> piece_sizes(size_t n, uint8_t seed) {
  std::vector<size_t> sizes;
  size_t max = size_t{1} << (seed % 8);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t done = 0; done < n;) {
    x = x * 1664525u + 1013904223u;
    size_t s = 1 + (x >> 16) % max;
    if (s > n - done) s = n - done;
    sizes.push_back(s);
    done += s;
  }
  return sizes;
}

}  // namespace agentperf_fuzz
