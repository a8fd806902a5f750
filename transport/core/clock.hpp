// Injectable monotonic time. Protocol cores take a Clock& (or plain timestamps)
// instead of reading the OS clock, so tests can run them on simulated time.
//
// The deadline convention of every timed sans-IO core (QUIC server core,
// HTTP/3 client connection, STUN transaction, NAT behaviour discovery,
// rendezvous client and server):
//
//   std::optional<Timestamp> expiry() const;  // next deadline; nullopt: nothing scheduled
//   void handle_expiry(Timestamp now);        // run what is due at `now`
//
// Call expiry() again after every call into the core (input, output or
// handle_expiry): any of them may move the deadline. Calling handle_expiry()
// early is harmless (nothing is due yet). The TimedCore concept below states
// it; uv::DeadlineTimer (transport/core/deadline_timer.hpp) arms one libuv
// timer for the earliest deadline of several such cores. Schedulers whose
// "run what is due" step returns its result keep their own name for it and
// only share expiry() (http::AttemptSchedule::due, linkem's take_due).
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>

namespace quiclab {

/// Nanoseconds on a monotonic clock with an arbitrary epoch.
using Timestamp = std::uint64_t;

inline constexpr Timestamp kNanosPerMilli = 1'000'000;
inline constexpr Timestamp kNanosPerSecond = 1'000'000'000;

/// A sans-IO core with the deadline convention above.
template <typename T>
concept TimedCore = requires(T& core, const T& ccore, Timestamp now) {
  { ccore.expiry() } -> std::same_as<std::optional<Timestamp>>;
  { core.handle_expiry(now) } -> std::same_as<void>;
};

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
    return static_cast<Timestamp>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
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
