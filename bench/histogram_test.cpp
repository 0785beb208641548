#include "histogram.hpp"

#include <gtest/gtest.h>

using converge::bench::Histogram;

TEST(BenchHistogram, QuantilesWithinTheBucketError) {
  Histogram h;
  for (uint64_t v = 1; v <= 100000; ++v) h.record(v);
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.max(), 100000u);
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    double want = q * 100000;
    double got = static_cast<double>(h.quantile(q));
    EXPECT_NEAR(got, want, want * 0.02) << q;
  }
}

TEST(BenchHistogram, MergesAndKeepsSmallValuesExact) {
  Histogram a, b;
  a.record(3);
  b.record(7);
  b.record(1u << 30);
  a.merge(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.quantile(0.0), 3u);
  EXPECT_EQ(a.quantile(0.5), 7u);
  EXPECT_EQ(a.max(), 1u << 30);
}
