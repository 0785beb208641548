#include "base/rate_limit.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <vector>

namespace converge {

namespace {
constexpr std::size_t kShards = 16;

struct Bucket {
  double tokens = 0;
  int64_t at_ms = 0;  // when `tokens` was computed
};
}  // namespace

struct RateLimiter::Shard {
  std::mutex mu;
  std::unordered_map<std::string, Bucket> buckets;
};

Result<RateSpec> parse_rate(std::string_view text) {
  if (text == "0" || text == "off") return RateSpec{};
  auto slash = text.find('/');
  auto bad = [&] {
    return make_error(
        Errc::bad_request,
        "a rate is N/S (N per S seconds, both positive integers) or 0, got " + std::string(text));
  };
  if (slash == std::string_view::npos) return bad();
  int64_t n = 0, s = 0;
  auto a = text.substr(0, slash), b = text.substr(slash + 1);
  if (!b.empty() && b.back() == 's') b.remove_suffix(1);
  auto r1 = std::from_chars(a.data(), a.data() + a.size(), n);
  auto r2 = std::from_chars(b.data(), b.data() + b.size(), s);
  if (r1.ec != std::errc{} || r1.ptr != a.data() + a.size() || r2.ec != std::errc{} ||
      r2.ptr != b.data() + b.size() || n <= 0 || s <= 0)
    return bad();
  return RateSpec{static_cast<double>(n), static_cast<double>(n) / static_cast<double>(s)};
}

std::string rate_text(const RateSpec& r) {
  if (r.unlimited()) return "0";
  auto n = static_cast<int64_t>(r.burst);
  auto s = static_cast<int64_t>(std::llround(r.burst / r.per_second));
  return std::to_string(n) + "/" + std::to_string(s);
}

RateLimiter::RateLimiter(RateSpec spec, std::size_t max_keys)
    : spec_(spec),
      max_keys_per_shard_(std::max<std::size_t>(16, max_keys / kShards)),
      shards_(std::make_unique<Shard[]>(kShards)) {}

RateLimiter::~RateLimiter() = default;

RateLimiter::Shard& RateLimiter::shard_for(std::string_view key) {
  return shards_[std::hash<std::string_view>{}(key) % kShards];
}

namespace {

// Refills `b` up to now; a bucket seen for the first time is full.
void refill(Bucket& b, bool fresh, const RateSpec& spec, int64_t now_ms) {
  if (fresh) {
    b.tokens = spec.burst;
  } else if (now_ms > b.at_ms) {
    b.tokens = std::min(
        spec.burst, b.tokens + static_cast<double>(now_ms - b.at_ms) / 1000.0 * spec.per_second);
  }
  b.at_ms = std::max(b.at_ms, now_ms);
}

int64_t ms_until(const Bucket& b, const RateSpec& spec, double cost) {
  double missing = cost - b.tokens;
  if (missing <= 0) return 0;
  return static_cast<int64_t>(std::ceil(missing / spec.per_second * 1000.0));
}

// Keeps the shard under its bound: full buckets carry no state and go first; if an attacker
// holds that many distinct keys half-empty, the oldest half goes (the limit fails open for
// those keys rather than memory growing without bound).
void sweep(std::unordered_map<std::string, Bucket>& m, std::size_t max, const RateSpec& spec,
           int64_t now_ms) {
  if (m.size() < max) return;
  for (auto it = m.begin(); it != m.end();) {
    Bucket b = it->second;
    refill(b, false, spec, now_ms);
    it = b.tokens >= spec.burst ? m.erase(it) : std::next(it);
  }
  if (m.size() < max) return;
  std::vector<int64_t> ages;
  ages.reserve(m.size());
  for (auto& [_, b] : m) ages.push_back(b.at_ms);
  std::nth_element(ages.begin(), ages.begin() + static_cast<std::ptrdiff_t>(ages.size() / 2),
                   ages.end());
  int64_t cut = ages[ages.size() / 2];
  for (auto it = m.begin(); it != m.end();)
    it = it->second.at_ms <= cut ? m.erase(it) : std::next(it);
}

}  // namespace

// The key's bucket, refilled to now; a new one (full) is made, after a sweep, if it has none.
// The shard's mutex is held.
static Bucket& bucket_locked(std::unordered_map<std::string, Bucket>& m, std::string_view key,
                             std::size_t max, const RateSpec& spec, int64_t now_ms) {
  auto it = m.find(std::string(key));
  bool fresh = it == m.end();
  if (fresh) {
    sweep(m, max, spec, now_ms);
    it = m.emplace(std::string(key), Bucket{}).first;
  }
  refill(it->second, fresh, spec, now_ms);
  return it->second;
}

int64_t RateLimiter::take(std::string_view key, int64_t now_ms, double cost) {
  if (spec_.unlimited()) return 0;
  if (cost > spec_.burst)
    return static_cast<int64_t>(std::ceil(spec_.burst / spec_.per_second * 1000.0));
  auto& sh = shard_for(key);
  std::lock_guard lk(sh.mu);
  auto& b = bucket_locked(sh.buckets, key, max_keys_per_shard_, spec_, now_ms);
  if (int64_t w = ms_until(b, spec_, cost); w > 0) return w;
  b.tokens -= cost;
  return 0;
}

int64_t RateLimiter::wait_ms(std::string_view key, int64_t now_ms) {
  if (spec_.unlimited()) return 0;
  auto& sh = shard_for(key);
  std::lock_guard lk(sh.mu);
  auto it = sh.buckets.find(std::string(key));
  if (it == sh.buckets.end()) return 0;
  refill(it->second, false, spec_, now_ms);
  return ms_until(it->second, spec_, 1);
}

void RateLimiter::charge(std::string_view key, int64_t now_ms) {
  if (spec_.unlimited()) return;
  auto& sh = shard_for(key);
  std::lock_guard lk(sh.mu);
  auto& b = bucket_locked(sh.buckets, key, max_keys_per_shard_, spec_, now_ms);
  b.tokens = std::max(0.0, b.tokens - 1);
}

std::size_t RateLimiter::keys() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < kShards; ++i) {
    std::lock_guard lk(shards_[i].mu);
    n += shards_[i].buckets.size();
  }
  return n;
}

Error rate_limited_error(int64_t wait_ms, std::string what) {
  Error e = make_error(Errc::rate_limited, std::move(what));
  e.retry_after_s = std::max<int64_t>(1, (wait_ms + 999) / 1000);
  return e;
}

}  // namespace converge
