#include "base/rate_limit.hpp"

#include <gtest/gtest.h>

namespace converge {
namespace {

TEST(RateLimit, ParsesAndPrints) {
  auto r = parse_rate("10/300");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->burst, 10);
  EXPECT_DOUBLE_EQ(r->per_second, 10.0 / 300);
  EXPECT_EQ(rate_text(r.value()), "10/300");
  EXPECT_TRUE(parse_rate("0")->unlimited());
  EXPECT_TRUE(parse_rate("5/60s"));
  for (const char* bad : {"", "10", "10/", "/5", "-1/5", "5/0", "a/b", "5/5/5"})
    EXPECT_FALSE(parse_rate(bad)) << bad;
}

TEST(RateLimit, BurstThenRefill) {
  RateLimiter l(parse_rate("3/60").value());  // one token every 20 s
  int64_t t = 1000000;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(l.take("a", t), 0);
  int64_t w = l.take("a", t);
  EXPECT_GT(w, 19000);
  EXPECT_LE(w, 20000);
  EXPECT_EQ(l.take("b", t), 0) << "keys are independent";
  EXPECT_GT(l.take("a", t + 10000), 0);
  EXPECT_EQ(l.take("a", t + 20000), 0);
  EXPECT_GT(l.take("a", t + 20000), 0);
}

TEST(RateLimit, CostOverBurstIsRefusedAndChargeClampsAtZero) {
  RateLimiter l(parse_rate("5/10").value());
  EXPECT_GT(l.take("a", 0, 6), 0);
  EXPECT_EQ(l.take("a", 0, 5), 0);
  l.charge("a", 0);
  l.charge("a", 0);
  EXPECT_EQ(l.wait_ms("a", 2000), 0) << "one token back after 2 s, not owed for the charges";
}

TEST(RateLimit, UnlimitedTakesNothing) {
  RateLimiter l(RateSpec{});
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(l.take("a", 0), 0);
  EXPECT_EQ(l.keys(), 0u);
}

TEST(RateLimit, MemoryIsBounded) {
  RateLimiter l(parse_rate("2/3600").value(), 1024);
  for (int i = 0; i < 100000; ++i) l.take("k" + std::to_string(i), i);
  EXPECT_LE(l.keys(), 1024u + 16);
}

TEST(RateLimit, ErrorCarriesRetryAfter) {
  auto e = rate_limited_error(1500, "slow down");
  EXPECT_EQ(e.code, Errc::rate_limited);
  EXPECT_EQ(e.retry_after_s, 2);
  EXPECT_EQ(rate_limited_error(1, "x").retry_after_s, 1);
}

}  // namespace
}  // namespace converge
