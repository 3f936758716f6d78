// A fast 64-bit hash of a byte span, keyed with a random per-process seed, for remembering that
// bytes seen before were already checked (see SseParser's event shape). Four lanes of eight bytes,
// each word folded in with a 64x64->128-bit multiply whose halves are xor-ed (the wyhash "mum"
// step), which mixes every input bit into the lane's state; the lanes are mixed the same way. Not a cryptographic hash: two different spans collide
// with probability about 2^-64, and the seed keeps a peer from choosing spans that collide here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace agentperf {

namespace keyed_hash_detail {
inline uint64_t mum(uint64_t a, uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
/// The process's seed: random, drawn once.
uint64_t seed();
}  // namespace keyed_hash_detail

inline uint64_t keyed_hash(const char* p, size_t n) {
  using namespace keyed_hash_detail;
  constexpr uint64_t kMul = 0xa0761d6478bd642full;
  constexpr uint64_t kMix[4] = {0xe7037ed1a0b428dbull, 0x8ebc6af09c88c6e3ull, 0x589965cc75374cc3ull,
                                0x1d8e4e27c47d124full};
  static const uint64_t key = seed();
  // Four independent lanes over 32-byte blocks, so that the multiplies overlap.
  uint64_t h[4] = {key ^ (n * kMul), key ^ kMix[0], key ^ kMix[1], key ^ kMix[2]};
  for (; n >= 32; p += 32, n -= 32) {
    uint64_t w[4];
    std::memcpy(w, p, 32);
    for (int i = 0; i < 4; ++i) h[i] = mum(h[i] ^ w[i], kMix[i]);
  }
  uint64_t w[4] = {0, 0, 0, 0};
  std::memcpy(w, p, n);  // the last 0-31 bytes; n is part of the key above
  for (int i = 0; i < 4; ++i) h[i] = mum(h[i] ^ w[i], kMix[i]);
  return mum(h[0] ^ h[2] ^ kMul, h[1] ^ h[3] ^ key);
}

}  // namespace agentperf
