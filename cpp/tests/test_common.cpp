// The shared helpers: JSON escaping and the random streams.
#include <set>
#include <string>

#include "common/json_escape.h"
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
