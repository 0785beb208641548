#pragma once
// A log-linear latency histogram in the spirit of HdrHistogram: each power of two is split into
// 64 linear sub-buckets, so any recorded value is reported within 1.6 %. Fixed memory, O(1)
// record, mergeable across threads.
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

namespace converge::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 6;  // 64 sub-buckets per power of two
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;

  void record(uint64_t v) {
    ++counts_[index(v)];
    ++total_;
    max_ = std::max(max_, v);
    min_ = std::min(min_, v);
  }
  void merge(const Histogram& o) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
  }
  uint64_t count() const { return total_; }
  uint64_t max() const { return total_ ? max_ : 0; }
  // The value at quantile q (0..1): the upper edge of the bucket holding it.
  uint64_t quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total_ - 1)) + 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(upper(i), max_);
    }
    return max_;
  }

 private:
  static int index(uint64_t v) {
    if (v < kSub) return static_cast<int>(v);
    int e = 63 - std::countl_zero(v);  // v in [2^e, 2^(e+1))
    int shift = e - kSubBits;
    return (shift + 1) * kSub + static_cast<int>((v >> shift) - kSub);
  }
  static uint64_t upper(int i) {
    if (i < kSub) return static_cast<uint64_t>(i);
    int shift = i / kSub - 1;
    uint64_t sub = static_cast<uint64_t>(i % kSub) + kSub;
    return ((sub + 1) << shift) - 1;
  }
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

}  // namespace converge::bench
