// Injectable monotonic time. Protocol cores take a Clock& (or plain timestamps)
// instead of reading the OS clock, so tests can run them on simulated time.
#pragma once

#include <chrono>
#include <cstdint>

namespace quiclab {

/// Nanoseconds on a monotonic clock with an arbitrary epoch.
using Timestamp = std::uint64_t;

inline constexpr Timestamp kNanosPerMilli = 1'000'000;
inline constexpr Timestamp kNanosPerSecond = 1'000'000'000;

/// Converts a nanosecond duration to fractional milliseconds (for reports).
inline double to_ms(Timestamp ns) { return static_cast<double>(ns) / 1e6; }

class Clock {
 public:
  virtual ~Clock() = default;
  /// Current time; never goes backwards.
  virtual Timestamp now() const = 0;
};

/// CLOCK_MONOTONIC through std::chrono::steady_clock.
class SteadyClock final : public Clock {
 public:
  Timestamp now() const override {
    return static_cast<Timestamp>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::steady_clock::now().time_since_epoch())
                                      .count());
  }
  /// A process-wide instance for code that has no clock injected.
  static const SteadyClock& instance() {
    static const SteadyClock clock;
    return clock;
  }
};

/// A clock that only moves when told to; for unit tests of sans-IO cores.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Timestamp start = 0) : now_(start) {}
  Timestamp now() const override { return now_; }
  void advance(Timestamp delta) { now_ += delta; }
  void set(Timestamp t) { now_ = t; }

 private:
  Timestamp now_;
};

}  // namespace quiclab
