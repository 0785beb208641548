#pragma once
#include <chrono>
#include <cstdint>

namespace converge {

// Wall-clock milliseconds since the Unix epoch: message timestamps and token expiry.
// Tests that need time to move inject their own value instead of sleeping.
inline int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Wall-clock nanoseconds (CLOCK_REALTIME): the clock of the kernel's socket receive timestamps
// (SO_TIMESTAMPNS), which orders what arrives on different connections.
inline int64_t wall_ns() {
  using namespace std::chrono;
  return duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
}

// Monotonic microseconds, for latency measurements only.
inline int64_t mono_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace converge
