// Log-linear histograms: the bucket layout, the single-writer live histogram and its snapshots.
//
// Layout, with S = sub_bucket_bits and H = 2^(S-1):
//   - values v < 2^S have a bucket each: index v;
//   - for v >= 2^S, let k = floor(log2 v) and m = k - (S-1) >= 1 (the bucket's width is 2^m); the
//     top S bits of v, v >> m, lie in [H, 2H), and the index is m*H + (v >> m).
// Both cases are the one formula index = m*H + (v >> m) with m = floor(log2(v | H)) - (S-1), which
// is 0 below 2^S; floor(log2 x) comes from a count-leading-zeros instruction (x != 0 as H >= 1).
// Index i >= 2H maps back to m = i/H - 1, lower = (H + i%H) << m, upper = lower + 2^m - 1.
// The last bucket is the one holding kMaxValue = 2^62, so there are (64-S)*H + 1 buckets; it is
// reported as [2^62, 2^62] as nothing larger is ever stored in it.
#include "agentperf/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

// ThreadSanitizer cannot model atomic_thread_fence and GCC warns about it. Here every location the
// fences order is itself atomic, so TSan has nothing to miss; the fence pairing is argued below.
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wtsan"
#endif

namespace agentperf {

namespace {

constexpr uint64_t kMaxValue = uint64_t{1} << 62;
constexpr int kMinBits = 1;
constexpr int kMaxBits = 20;
constexpr auto kRelaxed = std::memory_order_relaxed;

__extension__ typedef unsigned __int128 u128;

int checked_bits(int bits) {
  if (bits < kMinBits || bits > kMaxBits) {
    throw std::invalid_argument("histogram sub_bucket_bits must be in [1, 20], got " +
                                std::to_string(bits));
  }
  return bits;
}

// Bucket index of v <= kMaxValue. Branch-free: one OR, one LZCNT/BSR, shifts and an add.
inline size_t index_of(uint64_t v, int bits) noexcept {
  const uint64_t half = uint64_t{1} << (bits - 1);
  const int m = (63 - std::countl_zero(v | half)) - (bits - 1);
  return (static_cast<size_t>(m) << (bits - 1)) + static_cast<size_t>(v >> m);
}

inline size_t bucket_count(int bits) { return index_of(kMaxValue, bits) + 1; }

inline uint64_t lower_of(size_t i, int bits) noexcept {
  const uint64_t half = uint64_t{1} << (bits - 1);
  if (i < 2 * half) return i;
  const int m = static_cast<int>(i >> (bits - 1)) - 1;
  return (half + (i & (half - 1))) << m;
}

inline uint64_t upper_of(size_t i, int bits) noexcept {
  const uint64_t half = uint64_t{1} << (bits - 1);
  if (i < 2 * half) return i;
  const int m = static_cast<int>(i >> (bits - 1)) - 1;
  const uint64_t lower = (half + (i & (half - 1))) << m;
  return std::min(lower + ((uint64_t{1} << m) - 1), kMaxValue);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// HistogramSnapshot

HistogramSnapshot::HistogramSnapshot(int sub_bucket_bits)
    : sub_bucket_bits_(checked_bits(sub_bucket_bits)), counts_(bucket_count(sub_bucket_bits), 0) {}

void HistogramSnapshot::merge(const HistogramSnapshot& other) {
  if (other.sub_bucket_bits_ != sub_bucket_bits_) {
    throw std::invalid_argument("cannot merge histograms with different sub_bucket_bits (" +
                                std::to_string(sub_bucket_bits_) + " and " +
                                std::to_string(other.sub_bucket_bits_) + ")");
  }
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
  clamped_ += other.clamped_;
}

void HistogramSnapshot::record(uint64_t value, uint64_t count) {
  if (count == 0) return;
  if (value > kMaxValue) {
    value = kMaxValue;
    clamped_ += count;
  }
  counts_[index_of(value, sub_bucket_bits_)] += count;
  count_ += count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<u128>(value) * count;
}

uint64_t HistogramSnapshot::min() const { return count_ == 0 ? 0 : min_; }
uint64_t HistogramSnapshot::max() const { return count_ == 0 ? 0 : max_; }

double HistogramSnapshot::mean() const {
  if (count_ == 0) return 0.0;
  // Split the 128-bit sum so that the division keeps (long) double precision.
  const long double hi = static_cast<long double>(static_cast<uint64_t>(sum_ >> 64));
  const long double lo = static_cast<long double>(static_cast<uint64_t>(sum_));
  return static_cast<double>((hi * 18446744073709551616.0L + lo) / static_cast<long double>(count_));
}

double HistogramSnapshot::relative_error() const { return std::ldexp(1.0, -(sub_bucket_bits_ - 1)); }

uint64_t HistogramSnapshot::percentile(double p) const {
  if (!(p >= 0.0 && p <= 100.0)) {
    throw std::invalid_argument("percentile must be in [0, 100], got " + std::to_string(p));
  }
  if (count_ == 0) return 0;
  // The same arithmetic as numpy's inverted_cdf: rank = ceil(n * (p / 100)), at least 1.
  const double target = std::ceil(static_cast<double>(count_) * (p / 100.0));
  uint64_t rank = target < 1.0 ? 1 : static_cast<uint64_t>(target);
  if (rank > count_) rank = count_;
  uint64_t seen = 0;
  size_t i = 0;
  for (; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) break;
  }
  if (i == counts_.size()) return max_;  // unreachable while count_ is the sum of the buckets
  const uint64_t lo = lower_of(i, sub_bucket_bits_);
  const uint64_t hi = upper_of(i, sub_bucket_bits_);
  return std::clamp(lo + (hi - lo) / 2, min_, max_);
}

uint64_t HistogramSnapshot::bucket_lower(size_t index) const {
  if (index >= counts_.size()) throw std::out_of_range("histogram bucket index out of range");
  return lower_of(index, sub_bucket_bits_);
}

uint64_t HistogramSnapshot::bucket_upper(size_t index) const {
  if (index >= counts_.size()) throw std::out_of_range("histogram bucket index out of range");
  return upper_of(index, sub_bucket_bits_);
}

size_t HistogramSnapshot::bucket_index(uint64_t value) const {
  return index_of(std::min(value, kMaxValue), sub_bucket_bits_);
}

bool HistogramSnapshot::operator==(const HistogramSnapshot& o) const {
  return sub_bucket_bits_ == o.sub_bucket_bits_ && count_ == o.count_ && min() == o.min() &&
         max() == o.max() && sum_ == o.sum_ && clamped_ == o.clamped_ && counts_ == o.counts_;
}

// ---------------------------------------------------------------------------------------------
// Histogram

Histogram::Histogram(int sub_bucket_bits)
    : sub_bucket_bits_(checked_bits(sub_bucket_bits)),
      n_buckets_(bucket_count(sub_bucket_bits)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(n_buckets_)) {}

void Histogram::record(uint64_t value) noexcept {
  if (value > kMaxValue) [[unlikely]] {
    value = kMaxValue;
    clamped_.store(clamped_.load(kRelaxed) + 1, kRelaxed);
  }
  std::atomic<uint64_t>& bucket = counts_[index_of(value, sub_bucket_bits_)];
  bucket.store(bucket.load(kRelaxed) + 1, kRelaxed);

  const uint64_t lo = sum_lo_.load(kRelaxed);
  const uint64_t new_lo = lo + value;
  if (new_lo < lo) [[unlikely]] {
    add_carry(new_lo);
  } else {
    sum_lo_.store(new_lo, kRelaxed);
  }

  if (value < min_.load(kRelaxed)) min_.store(value, kRelaxed);
  if (value > max_.load(kRelaxed)) max_.store(value, kRelaxed);
}

// The low word wrapped: bump the high word. Readers must never pair a wrapped low word with the old
// high word or the reverse, so this (once per 2^64 of summed values) is a seqlock write section.
// Why a reader that passes its check (seq1 even, seq1 == seq2) gets a matching pair:
//  - if it read a sum_lo_ or sum_hi_ value stored after this release fence (the ones below, or the
//    ordinary path's later relaxed sum_lo_ stores, which follow in program order), that fence
//    synchronizes with the reader's acquire fence, so seq2 >= seq + 1, hence seq1 = seq2 >= seq + 2;
//  - seq1 >= seq + 2 was read by an acquire load from a release store made after both stores below,
//    so the reader's hi and lo loads see this carry's values or later ones.
// So either both words predate this carry or both include it.
void Histogram::add_carry(uint64_t new_lo) noexcept {
  const uint64_t seq = sum_seq_.load(kRelaxed);
  sum_seq_.store(seq + 1, kRelaxed);
  std::atomic_thread_fence(std::memory_order_release);
  sum_hi_.store(sum_hi_.load(kRelaxed) + 1, kRelaxed);
  sum_lo_.store(new_lo, kRelaxed);
  sum_seq_.store(seq + 2, std::memory_order_release);
}

HistogramSnapshot Histogram::snapshot() const {
  HistogramSnapshot s(sub_bucket_bits_);

  // The sum, from a seqlock read (it only ever retries while the writer is inside add_carry).
  u128 sum = 0;
  for (;;) {
    const uint64_t seq1 = sum_seq_.load(std::memory_order_acquire);
    const uint64_t hi = sum_hi_.load(kRelaxed);
    const uint64_t lo = sum_lo_.load(kRelaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    const uint64_t seq2 = sum_seq_.load(kRelaxed);
    if ((seq1 & 1) == 0 && seq1 == seq2) {
      sum = (static_cast<u128>(hi) << 64) | lo;
      break;
    }
  }
  const uint64_t min_seen = min_.load(kRelaxed);
  const uint64_t max_seen = max_.load(kRelaxed);
  s.clamped_ = clamped_.load(kRelaxed);

  // The buckets, and from them the count and the range the sum of exactly these values lies in.
  uint64_t count = 0;
  u128 sum_low = 0, sum_high = 0;
  size_t first = n_buckets_, last = 0;
  for (size_t i = 0; i < n_buckets_; ++i) {
    const uint64_t c = counts_[i].load(kRelaxed);
    s.counts_[i] = c;
    if (c == 0) continue;
    count += c;
    if (first == n_buckets_) first = i;
    last = i;
    sum_low += static_cast<u128>(lower_of(i, sub_bucket_bits_)) * c;
    sum_high += static_cast<u128>(upper_of(i, sub_bucket_bits_)) * c;
  }
  s.count_ = count;
  if (count == 0) return s;  // min/max/sum stay at their empty values

  // While the writer runs, the scalar fields may be a few records ahead of or behind the buckets;
  // pull them into what the buckets allow. When the writer is idle they are exact and unchanged.
  s.min_ = std::clamp(min_seen, lower_of(first, sub_bucket_bits_), upper_of(first, sub_bucket_bits_));
  s.max_ = std::clamp(max_seen, lower_of(last, sub_bucket_bits_), upper_of(last, sub_bucket_bits_));
  s.sum_ = std::clamp(sum, sum_low, sum_high);
  s.clamped_ = std::min<uint64_t>(s.clamped_, s.counts_[n_buckets_ - 1]);
  return s;
}

void Histogram::reset() noexcept {
  for (size_t i = 0; i < n_buckets_; ++i) counts_[i].store(0, kRelaxed);
  const uint64_t seq = sum_seq_.load(kRelaxed);
  sum_seq_.store(seq + 1, kRelaxed);
  std::atomic_thread_fence(std::memory_order_release);
  sum_hi_.store(0, kRelaxed);
  sum_lo_.store(0, kRelaxed);
  sum_seq_.store(seq + 2, std::memory_order_release);
  min_.store(UINT64_MAX, kRelaxed);
  max_.store(0, kRelaxed);
  clamped_.store(0, kRelaxed);
}

}  // namespace agentperf
