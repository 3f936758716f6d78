// Tests of the log-linear histogram: bucket layout, percentile accuracy against exact order
// statistics, merging, clamping, and the single-writer / concurrent-reader contract.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "agentperf/histogram.h"
#include "testing.h"

using agentperf::Histogram;
using agentperf::HistogramSnapshot;

namespace {

constexpr uint64_t kMax = uint64_t{1} << 62;

const double kPercentiles[] = {0,  0.1, 1,  5,  10, 25,   33.3, 50,    66.7,
                               75, 90,  95, 99, 99.9, 99.99, 99.999, 100};

// The exact "lower" order statistic with the rank rule the header documents.
uint64_t exact_percentile(const std::vector<uint64_t>& sorted, double p) {
  const uint64_t n = sorted.size();
  const double target = std::ceil(static_cast<double>(n) * (p / 100.0));
  uint64_t rank = target < 1.0 ? 1 : static_cast<uint64_t>(target);
  rank = std::min(rank, n);
  return sorted[rank - 1];
}

long double exact_mean(const std::vector<uint64_t>& v) {
  long double s = 0;
  for (uint64_t x : v) s += static_cast<long double>(std::min(x, kMax));
  return s / static_cast<long double>(v.size());
}

// Records `values` serially and checks every percentile, min, max, count and mean.
void check_distribution(const char* name, std::vector<uint64_t> values, int bits, bool exact) {
  HistogramSnapshot h(bits);
  for (uint64_t v : values) h.record(v);
  std::sort(values.begin(), values.end());
  CHECK_EQ(h.count(), values.size());
  CHECK_EQ(h.min(), values.front());
  CHECK_EQ(h.max(), values.back());
  CHECK_EQ(h.clamped(), 0u);
  const long double mean = exact_mean(values);
  CHECK_MSG(std::fabs(static_cast<long double>(h.mean()) - mean) <= 1e-12L * std::max(1.0L, mean),
            name << " mean " << h.mean() << " vs " << static_cast<double>(mean));
  for (double p : kPercentiles) {
    const uint64_t want = exact_percentile(values, p);
    const uint64_t got = h.percentile(p);
    if (exact) {
      CHECK_MSG(got == want, name << " bits=" << bits << " p" << p << ": " << got << " vs " << want);
    } else {
      const double err = std::fabs(static_cast<double>(got) - static_cast<double>(want));
      // Half a bucket is the true bound; relative_error() is the documented one.
      CHECK_MSG(err <= h.relative_error() / 2 * static_cast<double>(want),
                name << " bits=" << bits << " p" << p << ": " << got << " vs " << want
                     << " (err " << err / static_cast<double>(want) << ")");
    }
  }
}

}  // namespace

TEST(histogram_percentiles_uniform) {
  std::mt19937_64 rng(1);
  for (int bits : {4, 8, 12}) {
    std::uniform_int_distribution<uint64_t> d(1, 1'000'000'000);
    std::vector<uint64_t> v(100'000);
    for (auto& x : v) x = d(rng);
    check_distribution("uniform", v, bits, false);
  }
}

TEST(histogram_percentiles_lognormal) {
  std::mt19937_64 rng(2);
  for (int bits : {2, 6, 8, 14}) {
    for (double sigma : {0.1, 1.0, 3.0}) {
      std::lognormal_distribution<double> d(std::log(2e7), sigma);  // ns around 20 ms
      std::vector<uint64_t> v(50'000);
      for (auto& x : v) x = static_cast<uint64_t>(d(rng)) + 1;
      check_distribution("lognormal", v, bits, false);
    }
  }
}

TEST(histogram_percentiles_speeds_and_huge_values) {
  std::mt19937_64 rng(3);
  // Output speeds in milli-tokens per second: a bimodal mix.
  std::normal_distribution<double> slow(15'000, 3'000), fast(120'000, 20'000);
  std::vector<uint64_t> v;
  for (int i = 0; i < 40'000; ++i) {
    const double x = (i % 3 == 0) ? slow(rng) : fast(rng);
    v.push_back(static_cast<uint64_t>(std::max(1.0, x)));
  }
  check_distribution("speeds", v, 8, false);
  // Values spread over the whole range up to 2^62.
  std::uniform_int_distribution<int> e(0, 62);
  std::vector<uint64_t> w;
  for (int i = 0; i < 40'000; ++i) {
    const uint64_t top = uint64_t{1} << e(rng);
    w.push_back(std::min(kMax, top + (rng() & (top - 1))));
  }
  w.push_back(kMax);
  check_distribution("full-range", w, 8, false);
}

TEST(histogram_percentiles_constant) {
  for (int bits : {1, 3, 8}) {
    for (uint64_t c : {uint64_t{0}, uint64_t{1}, uint64_t{200}, uint64_t{123'456'789}, kMax}) {
      // A constant is always reported exactly: the midpoint is clamped to [min, max].
      check_distribution("constant", std::vector<uint64_t>(1000, c), bits, true);
    }
  }
}

TEST(histogram_small_integers_are_exact) {
  std::mt19937_64 rng(4);
  for (int bits : {1, 2, 5, 8, 10}) {
    std::uniform_int_distribution<uint64_t> d(0, (uint64_t{1} << bits) - 1);
    for (size_t n : {size_t{1}, size_t{2}, size_t{7}, size_t{1000}, size_t{12345}}) {
      std::vector<uint64_t> v(n);
      for (auto& x : v) x = d(rng);
      check_distribution("small-int", v, bits, true);
    }
  }
}

TEST(histogram_empty_and_invalid_arguments) {
  HistogramSnapshot h;
  CHECK_EQ(h.count(), 0u);
  CHECK_EQ(h.min(), 0u);
  CHECK_EQ(h.max(), 0u);
  CHECK_EQ(h.mean(), 0.0);
  CHECK_EQ(h.percentile(50), 0u);
  CHECK_EQ(h.sub_bucket_bits(), 8);
  CHECK_EQ(h.relative_error(), 1.0 / 128);
  h.record(5, 0);  // a zero count changes nothing
  CHECK(h == HistogramSnapshot());
  bool threw = false;
  try {
    (void)h.percentile(100.5);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  threw = false;
  try {
    (void)h.percentile(std::nan(""));
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  for (int bad : {0, -1, 21, 64}) {
    threw = false;
    try {
      HistogramSnapshot s(bad);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK_MSG(threw, "bits " << bad);
    threw = false;
    try {
      Histogram s(bad);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK_MSG(threw, "bits " << bad);
  }
}

TEST(histogram_clamps_large_values) {
  HistogramSnapshot s;
  Histogram live;
  for (uint64_t v : {kMax - 1, kMax, kMax + 1, UINT64_MAX, uint64_t{7}}) {
    s.record(v);
    live.record(v);
  }
  s.record(UINT64_MAX, 3);
  for (int i = 0; i < 3; ++i) live.record(UINT64_MAX);
  CHECK_EQ(s.count(), 8u);
  CHECK_EQ(s.clamped(), 5u);
  CHECK_EQ(s.max(), kMax);
  CHECK_EQ(s.min(), 7u);
  CHECK_EQ(s.counts().back(), 6u);  // kMax itself and the five clamped values
  CHECK_EQ(s.bucket_index(kMax - 1), s.counts().size() - 2);
  CHECK_EQ(s.percentile(100), kMax);
  CHECK_EQ(s.percentile(50), kMax);
  const long double mean = ((kMax - 1) + 7.0L + 6.0L * kMax) / 8.0L;
  CHECK_MSG(std::fabs(s.mean() - static_cast<double>(mean)) <= 1e-15 * static_cast<double>(mean),
            s.mean() << " vs " << static_cast<double>(mean));
  CHECK(live.snapshot() == s);
}

TEST(histogram_merge_mismatched_bits_throws) {
  HistogramSnapshot a(8), b(7);
  a.record(1);
  b.record(1);
  bool threw = false;
  try {
    a.merge(b);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  CHECK_EQ(a.count(), 1u);  // unchanged
  HistogramSnapshot c(8);
  c.record(3);
  a.merge(c);
  CHECK_EQ(a.count(), 2u);
  CHECK_EQ(a.max(), 3u);
  HistogramSnapshot empty(8);
  a.merge(empty);
  CHECK_EQ(a.min(), 1u);
  CHECK_EQ(a.max(), 3u);
}

TEST(histogram_bucket_layout_consistency) {
  std::mt19937_64 rng(5);
  for (int bits = 1; bits <= 20; bits += (bits < 12 ? 1 : 4)) {
    HistogramSnapshot h(bits);
    const size_t n = h.counts().size();
    const uint64_t half = uint64_t{1} << (bits - 1);
    CHECK_EQ(n, static_cast<size_t>((64 - bits) * half + 1));
    CHECK_EQ(h.bucket_lower(0), 0u);
    CHECK_EQ(h.bucket_upper(n - 1), kMax);
    CHECK_EQ(h.bucket_lower(n - 1), kMax);
    CHECK_EQ(h.bucket_index(kMax), n - 1);
    CHECK_EQ(h.bucket_index(kMax + 1), n - 1);
    CHECK_EQ(h.bucket_index(UINT64_MAX), n - 1);
    CHECK_EQ(h.bucket_index(kMax - 1), n - 2);
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; ++i) {
      const uint64_t lo = h.bucket_lower(i), hi = h.bucket_upper(i);
      bool ok = lo <= hi && h.bucket_index(lo) == i && h.bucket_index(hi) == i;
      if (i + 1 < n) ok = ok && h.bucket_lower(i + 1) == hi + 1;  // contiguous, no gaps
      if (i < 2 * half) ok = ok && lo == i && hi == i;           // exact below 2^bits
      // Width bound: at most value / 2^(bits-1), i.e. relative_error() of the lower bound.
      ok = ok && static_cast<double>(hi - lo + 1) <=
                     std::max(1.0, static_cast<double>(lo) * h.relative_error());
      if (!ok) {
        ++bad;
        CHECK_MSG(false, "bits=" << bits << " bucket " << i << " [" << lo << ", " << hi << "]");
      }
    }
    for (int k = 0; k < 20000 && bad < 5; ++k) {
      const uint64_t v = rng() >> (rng() % 64);
      const size_t i = h.bucket_index(v);
      const uint64_t c = std::min(v, kMax);
      if (!(i < n && h.bucket_lower(i) <= c && c <= h.bucket_upper(i))) {
        ++bad;
        CHECK_MSG(false, "bits=" << bits << " value " << v << " -> bucket " << i);
      }
    }
    bool threw = false;
    try {
      (void)h.bucket_lower(n);
    } catch (const std::out_of_range&) {
      threw = true;
    }
    CHECK(threw);
    threw = false;
    try {
      (void)h.bucket_upper(n);
    } catch (const std::out_of_range&) {
      threw = true;
    }
    CHECK(threw);
  }
}

TEST(histogram_two_thread_fill_equals_serial_fill) {
  std::mt19937_64 rng(6);
  std::lognormal_distribution<double> d(std::log(1e6), 2.0);
  std::vector<uint64_t> values(400'000);
  for (auto& x : values) x = static_cast<uint64_t>(d(rng));
  // Huge values (the sum's low word wraps many times) and clamped ones.
  for (int i = 0; i < 1000; ++i) values[static_cast<size_t>(i) * 397] = kMax - static_cast<uint64_t>(i);
  for (int i = 0; i < 10; ++i) values[static_cast<size_t>(i) * 39'989 + 1] = UINT64_MAX - static_cast<uint64_t>(i);

  Histogram a, b;
  std::thread ta([&] {
    for (size_t i = 0; i < values.size(); i += 2) a.record(values[i]);
  });
  std::thread tb([&] {
    for (size_t i = 1; i < values.size(); i += 2) b.record(values[i]);
  });
  ta.join();
  tb.join();
  HistogramSnapshot merged = a.snapshot();
  merged.merge(b.snapshot());

  HistogramSnapshot serial;
  for (uint64_t v : values) serial.record(v);

  CHECK(merged == serial);
  CHECK_EQ(merged.count(), serial.count());
  CHECK_EQ(merged.count(), values.size());
  CHECK_EQ(merged.min(), serial.min());
  CHECK_EQ(merged.max(), serial.max());
  CHECK_EQ(merged.max(), kMax);
  CHECK_EQ(merged.clamped(), 10u);
  CHECK_EQ(merged.mean(), serial.mean());
  CHECK(merged.counts() == serial.counts());
  const long double mean = exact_mean(values);
  CHECK_MSG(std::fabs(merged.mean() - static_cast<double>(mean)) <= 1e-12 * static_cast<double>(mean),
            merged.mean() << " vs " << static_cast<double>(mean));
  for (double p : kPercentiles) CHECK_EQ(merged.percentile(p), serial.percentile(p));
}

TEST(histogram_concurrent_reader_sees_monotonic_counts) {
  constexpr uint64_t kN = 300'000;
  Histogram h;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    std::mt19937_64 rng(7);
    for (uint64_t i = 0; i < kN; ++i) {
      // Mostly latencies, with every 16th value huge so that the sum's carry path runs often.
      const uint64_t v = (i % 16 == 0) ? (kMax >> (rng() % 3)) : (rng() % 50'000'000);
      h.record(v);
    }
    done.store(true, std::memory_order_release);
  });

  uint64_t last_count = 0;
  std::vector<uint64_t> last_counts(HistogramSnapshot().counts().size(), 0);
  int snapshots = 0, bad = 0;
  bool finished = false;
  while (!finished) {
    finished = done.load(std::memory_order_acquire);  // one more snapshot after the writer ends
    const HistogramSnapshot s = h.snapshot();
    ++snapshots;
    if (s.count() < last_count && bad++ < 5) {
      CHECK_MSG(false, "count went from " << last_count << " to " << s.count());
    }
    last_count = s.count();
    uint64_t total = 0;
    for (size_t i = 0; i < last_counts.size(); ++i) {
      total += s.counts()[i];
      if (s.counts()[i] < last_counts[i] && bad++ < 5) {
        CHECK_MSG(false, "bucket " << i << " went from " << last_counts[i] << " to " << s.counts()[i]);
      }
      last_counts[i] = s.counts()[i];
    }
    if (total != s.count() && bad++ < 5) CHECK_MSG(false, total << " vs " << s.count());
    if (s.count() > 0) {
      // Self-consistent while the writer runs: min, max, percentiles, mean in range.
      const bool ok = s.min() <= s.percentile(50) && s.percentile(50) <= s.max() &&
                      s.min() <= s.max() && s.mean() >= 0.99 * static_cast<double>(s.min()) &&
                      s.mean() <= 1.01 * static_cast<double>(s.max()) && s.max() <= kMax;
      if (!ok && bad++ < 5) {
        CHECK_MSG(false, "inconsistent snapshot: min " << s.min() << " max " << s.max() << " mean "
                                                      << s.mean());
      }
    }
  }
  writer.join();
  CHECK_EQ(last_count, kN);
  const HistogramSnapshot final_snapshot = h.snapshot();
  CHECK_EQ(final_snapshot.count(), kN);
  CHECK_MSG(snapshots > 1, snapshots);

  // The same values recorded serially give the same snapshot, sum (so mean) included.
  HistogramSnapshot serial;
  std::mt19937_64 rng(7);
  for (uint64_t i = 0; i < kN; ++i) {
    serial.record((i % 16 == 0) ? (kMax >> (rng() % 3)) : (rng() % 50'000'000));
  }
  CHECK(final_snapshot == serial);
  CHECK_EQ(final_snapshot.mean(), serial.mean());

  h.reset();
  const HistogramSnapshot empty = h.snapshot();
  CHECK(empty == HistogramSnapshot());
  CHECK_EQ(empty.count(), 0u);
  h.record(42);
  CHECK_EQ(h.snapshot().count(), 1u);
  CHECK_EQ(h.snapshot().min(), 42u);
  CHECK_EQ(h.snapshot().mean(), 42.0);
}
