// The connect backoff schedule: doubling from the base, capped, jittered within [b/2, b].
#include <cstdint>

#include "client/connect_backoff.h"
#include "common/rng.h"
#include "testing.h"

using namespace agentperf;

TEST(connect_backoff_doubles_up_to_the_cap) {
  const int64_t base = 100'000'000, cap = 5'000'000'000;
  CHECK_EQ(connect_backoff_ceiling_ns(1, base, cap), base);
  CHECK_EQ(connect_backoff_ceiling_ns(2, base, cap), 2 * base);
  CHECK_EQ(connect_backoff_ceiling_ns(3, base, cap), 4 * base);
  CHECK_EQ(connect_backoff_ceiling_ns(6, base, cap), 32 * base);
  CHECK_EQ(connect_backoff_ceiling_ns(7, base, cap), cap);  // 6.4 s capped at 5 s
  CHECK_EQ(connect_backoff_ceiling_ns(1000000, base, cap), cap);  // no overflow however long it fails
  // A cap below the base: the base.
  CHECK_EQ(connect_backoff_ceiling_ns(5, base, base / 2), base);
  // Huge values do not overflow either.
  CHECK_EQ(connect_backoff_ceiling_ns(200, INT64_MAX / 3, INT64_MAX), INT64_MAX);
}

TEST(connect_backoff_jitter_stays_in_the_upper_half) {
  const int64_t base = 100'000'000, cap = 5'000'000'000;
  CHECK_EQ(connect_backoff_ns(1, base, cap, 0.0), base / 2);
  CHECK(connect_backoff_ns(1, base, cap, 0.999999) <= base);
  CHECK(connect_backoff_ns(1, base, cap, 0.999999) > base - 1000);
  Rng rng(42);
  for (int n = 1; n <= 12; ++n) {
    const int64_t b = connect_backoff_ceiling_ns(n, base, cap);
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 2000; ++i) {
      int64_t w = connect_backoff_ns(n, base, cap, rng.uniform01());
      lo = std::min(lo, w);
      hi = std::max(hi, w);
    }
    CHECK(lo >= b / 2 && hi <= b);
    CHECK(hi - lo > b / 3);  // spread over the range: agents that failed together do not retry together
  }
}
