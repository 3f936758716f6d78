// Log-linear histograms of non-negative integers (nanoseconds, milli-tokens per second, ...).
//
// Bucketing (the same as HdrHistogram's): values below 2^sub_bucket_bits are exact; above that,
// every power-of-two range [2^k, 2^(k+1)) is split into 2^(sub_bucket_bits-1) equal buckets, so a
// bucket's width is at most value / 2^(sub_bucket_bits-1). With the default 8 bits, the relative
// error of any reported percentile is at most 1/128 (0.78 %; the bucket midpoint it reports is in
// fact within half of that). Values up to 2^62 are recorded; larger ones are recorded as 2^62 (the
// last bucket holds only that value; min, max and mean see 2^62) and counted in `clamped`.
// sub_bucket_bits must be in [1, 20] (std::invalid_argument otherwise).
//
// Thread safety: one writer per Histogram (the worker thread that owns it), any number of readers.
// record() is wait-free: relaxed atomic loads and stores, no read-modify-write, no allocation, no
// syscall. snapshot() may run on any thread while the writer goes on; it returns a consistent-enough
// copy (each bucket is read atomically; a value recorded during the snapshot may or may not be in it).
// A snapshot is always self-consistent: its count is the sum of its buckets, its min and max lie in
// its first and last non-empty buckets, and its sum within what its buckets allow. Successive
// snapshots taken by one thread never see a bucket's count (nor the total) decrease, except across
// reset().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace agentperf {

/// A plain (non-atomic) copy of a histogram's counts: mergeable and queryable. Not thread-safe;
/// owned by whoever holds it.
class HistogramSnapshot {
 public:
  explicit HistogramSnapshot(int sub_bucket_bits = 8);

  /// Adds `other`'s counts into this one. Both must have the same sub_bucket_bits
  /// (throws std::invalid_argument otherwise).
  void merge(const HistogramSnapshot& other);
  /// Adds one value `count` times (used by tests and by serial fills).
  void record(uint64_t value, uint64_t count = 1);

  uint64_t count() const { return count_; }
  uint64_t min() const;  ///< 0 when empty; the exact smallest recorded value otherwise.
  uint64_t max() const;  ///< 0 when empty; the exact largest recorded value otherwise.
  double mean() const;   ///< exact mean of recorded values (sum / count); 0 when empty.
  uint64_t clamped() const { return clamped_; }

  /// The value at percentile `p` in [0, 100], using the "lower" rule: the smallest recorded value v
  /// such that at least p % of values are <= v, reported as the midpoint of v's bucket (clamped to
  /// [min, max]). Returns 0 when empty. The error against the exact order statistic is at most
  /// relative_error() of the value. The rank is ceil(p / 100 * count) (at least 1), computed in
  /// double exactly as numpy's percentile(..., method="inverted_cdf") does. Throws
  /// std::invalid_argument when p is NaN or outside [0, 100].
  uint64_t percentile(double p) const;
  /// Largest relative bucket width: 2^-(sub_bucket_bits-1) (an upper bound on percentile()'s
  /// relative error; the midpoint is within half a bucket, so the true bound is half of this).
  double relative_error() const;

  int sub_bucket_bits() const { return sub_bucket_bits_; }
  /// Bucket layout, for exporting: counts()[i] counts values in [bucket_lower(i), bucket_upper(i)].
  const std::vector<uint64_t>& counts() const { return counts_; }
  /// bucket_lower/bucket_upper throw std::out_of_range for index >= counts().size().
  uint64_t bucket_lower(size_t index) const;
  uint64_t bucket_upper(size_t index) const;  ///< inclusive
  /// Index of the bucket that holds `value` (clamped to the last bucket).
  size_t bucket_index(uint64_t value) const;

  bool operator==(const HistogramSnapshot& o) const;

 private:
  friend class Histogram;
  int sub_bucket_bits_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  __extension__ unsigned __int128 sum_ = 0;  ///< exact: values <= 2^62, so no overflow in practice
  uint64_t clamped_ = 0;
};

/// The live, single-writer histogram a worker records into.
class Histogram {
 public:
  explicit Histogram(int sub_bucket_bits = 8);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  /// Records one value. Only the owning thread may call this. Wait-free, no allocation.
  void record(uint64_t value) noexcept;
  /// A copy of the counts so far; any thread, does not stop the writer.
  HistogramSnapshot snapshot() const;
  /// Clears all counts. Only the owning thread may call this (or any thread while no writer runs).
  void reset() noexcept;

  int sub_bucket_bits() const { return sub_bucket_bits_; }

 private:
  // Every field is written only by the owning thread, with a relaxed load and a relaxed store (no
  // read-modify-write). The total count is not stored: snapshot() sums the buckets, which keeps it
  // consistent with them. alignas keeps two workers' histograms off each other's cache lines.
  void add_carry(uint64_t new_lo) noexcept;

  int sub_bucket_bits_;
  size_t n_buckets_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  alignas(64) std::atomic<uint64_t> sum_lo_{0};  ///< sum of values modulo 2^64 ...
  std::atomic<uint64_t> sum_hi_{0};              ///< ... and the carries out of it
  std::atomic<uint64_t> sum_seq_{0};  ///< odd while a carry is being written (a seqlock for readers)
  std::atomic<uint64_t> min_{UINT64_MAX};
  std::atomic<uint64_t> max_{0};
  std::atomic<uint64_t> clamped_{0};
};

}  // namespace agentperf
