// Deterministic randomness, written once: the SplitMix64 mixer, and the small per-stream generator
// each agent (and anything else that needs its own reproducible stream) owns.
//
// Not for cryptography. Thread safety: none; a stream belongs to one thread.
#pragma once

#include <cmath>
#include <cstdint>

namespace agentperf {

/// A stateless, well-mixed hash of one 64-bit value: SplitMix64's output for state `x`
/// (x + golden gamma, then the finaliser). Equal inputs give equal outputs, on every platform.
constexpr uint64_t splitmix64_hash(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/// The next value of the SplitMix64 stream whose state is `state` (advances it).
inline uint64_t splitmix64_next(uint64_t& state) {
  uint64_t out = splitmix64_hash(state);
  state += 0x9E3779B97F4A7C15ULL;
  return out;
}

/// Combines values into one seed, order-sensitive: seed_of(a, b) != seed_of(b, a) in general.
constexpr uint64_t seed_of(uint64_t a, uint64_t b) { return splitmix64_hash(splitmix64_hash(a) ^ b); }
constexpr uint64_t seed_of(uint64_t a, uint64_t b, uint64_t c) { return seed_of(seed_of(a, b), c); }
constexpr uint64_t seed_of(uint64_t a, uint64_t b, uint64_t c, uint64_t d) { return seed_of(seed_of(a, b, c), d); }

/// One reproducible random stream (SplitMix64). Cheap to copy and to reseed.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}
  void reseed(uint64_t seed) { state_ = seed; }

  uint64_t next() { return splitmix64_next(state_); }
  /// Uniform in [0, n); n > 0. Multiply-shift (bias below 2^-64 * n: negligible for our n).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Standard normal (Box-Muller; one draw per call, the second value is not kept).
  double normal() {
    double u1 = 1.0 - uniform01();  // (0, 1]
    double u2 = uniform01();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

}  // namespace agentperf
