// The shared helpers: JSON escaping and the random streams.
#include <random>
#include <set>
#include <string>

#include "common/byte_scan.h"
#include "common/json_escape.h"
#include "common/keyed_hash.h"
#include "common/rng.h"
#include "testing.h"

using namespace agentperf;

TEST(json_escape_specials_and_controls) {
  CHECK_EQ(json_escape("plain"), std::string("plain"));
  CHECK_EQ(json_escape("a\"b\\c"), std::string("a\\\"b\\\\c"));
  CHECK_EQ(json_escape("l1\nl2\r\t"), std::string("l1\\nl2\\r\\t"));
  CHECK_EQ(json_escape(std::string("\x01\x1f", 2)), std::string("\\u0001\\u001f"));
  CHECK_EQ(json_escape("caf\xc3\xa9"), std::string("caf\xc3\xa9"));  // UTF-8 passes through
  CHECK_EQ(json_quote("x\"y"), std::string("\"x\\\"y\""));
}

TEST(splitmix64_matches_the_reference_stream) {
  // SplitMix64 from state 0: the reference implementation's first outputs.
  uint64_t state = 0;
  CHECK_EQ(splitmix64_next(state), 0xE220A8397B1DCDAFULL);
  CHECK_EQ(splitmix64_next(state), 0x6E789E6AA1B965F4ULL);
  CHECK_EQ(splitmix64_hash(0), 0xE220A8397B1DCDAFULL);
}

TEST(rng_is_reproducible_and_in_range) {
  Rng a(42), b(42), c(43);
  CHECK_EQ(a.next(), b.next());
  CHECK(a.next() != c.next());
  Rng r(7);
  std::set<uint64_t> seen;
  for (int i = 0; i < 10000; ++i) {
    uint64_t v = r.below(10);
    CHECK(v < 10);
    seen.insert(v);
    double u = r.uniform01();
    CHECK(u >= 0.0 && u < 1.0);
  }
  CHECK_EQ(seen.size(), size_t{10});
  double sum = 0, sum2 = 0;
  for (int i = 0; i < 20000; ++i) {
    double z = r.normal();
    sum += z;
    sum2 += z * z;
  }
  CHECK(std::abs(sum / 20000) < 0.05);
  CHECK(std::abs(sum2 / 20000 - 1.0) < 0.05);
  CHECK(seed_of(1, 2) != seed_of(2, 1));
  CHECK_EQ(seed_of(1, 2, 3), seed_of(1, 2, 3));
}

TEST(byte_scan_matches_a_plain_loop) {
  // Random spans of every length up to 100 at every alignment, drawn from bytes chosen to trip the
  // word trick: the targets, their neighbours, 0x00/0x01 (borrows), 0x80/0xff (high bits).
  static const unsigned char kBytes[] = {'"', '\\', '\n', '\r', '\t', 0x0e, 0x0c, 0x00, 0x01, 0x21, 0x23, 0x80, 0xff, 'a'};
  std::mt19937_64 rng(99);
  char buf[128];
  for (int iter = 0; iter < 20000; ++iter) {
    const size_t off = rng() % 8, len = rng() % 101;
    const int density = 1 + static_cast<int>(rng() % 40);  // about one special byte in `density`
    for (size_t i = 0; i < off + len; ++i)
      buf[i] = static_cast<char>(rng() % density == 0 ? kBytes[rng() % std::size(kBytes)] : 'a' + rng() % 26);
    const char* p = buf + off;
    const char* e = p + len;
    for (char c : {'"', '\n', '\x01'}) {
      const char* want = p;
      while (want < e && *want != c) ++want;
      CHECK_MSG(find_byte(p, e, c) == want, "find_byte " << int(c) << " len " << len);
    }
    for (uint8_t below : {uint8_t{1}, uint8_t{'\r' + 1}, uint8_t{0x22}, uint8_t{128}}) {
      bool want = false;
      for (const char* q = p; q < e; ++q) want |= static_cast<uint8_t>(*q) < below;
      CHECK_MSG(any_byte_below(p, e, below) == want, "any_byte_below " << int(below) << " len " << len);
    }
  }
}

TEST(keyed_hash_sees_every_byte_and_the_length) {
  // Every single-bit flip of every byte, and every extension by a zero byte, changes the hash, for
  // spans of every length up to 100 (the lanes, the block loop and the tail all take part).
  std::mt19937_64 rng(3);
  for (size_t len = 0; len <= 100; ++len) {
    std::string s(len, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    const uint64_t h = keyed_hash(s.data(), s.size());
    CHECK_EQ(keyed_hash(s.data(), s.size()), h);
    for (size_t i = 0; i < len; ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string t = s;
        t[i] = static_cast<char>(t[i] ^ (1 << bit));
        if (keyed_hash(t.data(), t.size()) == h) CHECK_MSG(false, "flip of byte " << i << " bit " << bit << " of " << len);
      }
    }
    const std::string longer = s + '\0';
    CHECK_MSG(keyed_hash(longer.data(), longer.size()) != h, "a zero byte appended to " << len);
  }
}
