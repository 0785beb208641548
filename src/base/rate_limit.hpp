#pragma once
// Token buckets per key (a user id, a source address): the node's abuse limits. A limit is
// written "N/S": a bucket of N tokens that refills at N per S seconds, so a burst of N is allowed
// and then one every S/N seconds; "0" turns it off. Thread-safe; memory is bounded by sweeping
// buckets that have refilled (a full bucket is the same as none).
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/error.hpp"

namespace converge {

struct RateSpec {
  double burst = 0;       // tokens when full; 0 = unlimited
  double per_second = 0;  // refill rate
  bool unlimited() const { return burst <= 0; }
};

Result<RateSpec> parse_rate(std::string_view text);  // "N/S" or "0"
std::string rate_text(const RateSpec& r);

class RateLimiter {
 public:
  explicit RateLimiter(RateSpec spec, std::size_t max_keys = 1 << 16);
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes `cost` tokens from `key`'s bucket. Returns 0 when they were taken, else the
  // milliseconds until they could be (nothing is taken then; over the burst: a whole window).
  int64_t take(std::string_view key, int64_t now_ms, double cost = 1);
  // Milliseconds until one token is there (0: now), taking nothing.
  int64_t wait_ms(std::string_view key, int64_t now_ms);
  // Takes one token even from an empty bucket (down to zero, never below): counts a failure
  // that already happened.
  void charge(std::string_view key, int64_t now_ms);

  const RateSpec& spec() const { return spec_; }
  std::size_t keys() const;  // buckets held, for tests

 private:
  struct Shard;
  Shard& shard_for(std::string_view key);
  RateSpec spec_;
  std::size_t max_keys_per_shard_;
  std::unique_ptr<Shard[]> shards_;
};

// The error a limited call answers: 429 rate_limited, Retry-After in whole seconds (>= 1).
Error rate_limited_error(int64_t wait_ms, std::string what);

}  // namespace converge
