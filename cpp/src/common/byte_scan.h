// Word-at-a-time byte searches for short spans (JSON keys, one SSE event), where calling memchr
// costs more than the scan itself. Eight bytes are tested at once with the classic bit trick:
// (w - 0x01..01 * b) & ~w & 0x80..80 is non-zero exactly when some byte of w is below b (b <= 128);
// a borrow can only flag bytes above a true hit, so the lowest flagged byte is always a true one.
#pragma once

#include <cstdint>
#include <cstring>

namespace agentperf {

namespace byte_scan_detail {
constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighs = 0x8080808080808080ull;
inline uint64_t load_word(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}
inline uint64_t bytes_below(uint64_t w, uint8_t b) { return (w - kOnes * b) & ~w & kHighs; }
}  // namespace byte_scan_detail

/// True when some byte of [p, e) is below b (b <= 128).
inline bool any_byte_below(const char* p, const char* e, uint8_t b) {
  using namespace byte_scan_detail;
  for (; e - p >= 32; p += 32) {  // four words per test: fewer branches
    if ((bytes_below(load_word(p), b) | bytes_below(load_word(p + 8), b) | bytes_below(load_word(p + 16), b) |
         bytes_below(load_word(p + 24), b)) != 0)
      return true;
  }
  for (; e - p >= 8; p += 8)
    if (bytes_below(load_word(p), b) != 0) return true;
  for (; p < e; ++p)
    if (static_cast<uint8_t>(*p) < b) return true;
  return false;
}

/// The first byte equal to c in [p, e), or e. Words at a time for the first 64 bytes, then memchr
/// (faster on long spans).
inline const char* find_byte(const char* p, const char* e, char c) {
  using namespace byte_scan_detail;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint64_t pattern = kOnes * static_cast<uint8_t>(c);
  for (int i = 0; i < 8 && e - p >= 8; ++i, p += 8) {
    const uint64_t hit = bytes_below(load_word(p) ^ pattern, 1);
    if (hit != 0) return p + (__builtin_ctzll(hit) >> 3);
  }
#endif
  const void* q = std::memchr(p, c, static_cast<size_t>(e - p));
  return q ? static_cast<const char*>(q) : e;
}

}  // namespace agentperf
