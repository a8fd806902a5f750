// One libuv timer for the earliest deadline of several sans-IO cores.
//
// Every timed core follows the convention in transport/core/clock.hpp
// (expiry() / handle_expiry(now)). An adapter that drives several of them on
// one loop (the peer: rendezvous client, STUN, QUIC) registers each here and
// calls rearm() after every call into any of them. DeadlineTimer keeps ONE
// uv_timer_t armed for the minimum of their deadlines; when it fires it calls
// handle_expiry on every core whose deadline has come, in registration order,
// then re-arms.
//
// Rounding: libuv timers count whole milliseconds, so a deadline 1 ms or more
// away is rounded up (the timer never fires before it); one less than 1 ms
// away (ngtcp2's pacing) runs on the next loop turn instead of oversleeping
// by most of a millisecond. A core is only called once its deadline is due on
// the injected clock; an early wake-up just re-arms.
//
// Re-entrancy: a handler may call rearm(), add() or remove() (itself or
// another core), or destroy the DeadlineTimer; a core removed during a firing
// is not called afterwards, one added during it waits for the next.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "transport/core/clock.hpp"
#include "transport/core/uv.hpp"

namespace quiclab::uv {

class DeadlineTimer {
 public:
  using ExpiryFn = std::function<std::optional<Timestamp>()>;
  using HandleFn = std::function<void(Timestamp now)>;
  using NowFn = std::function<Timestamp()>;
  using Id = std::uint64_t;

  /// now: the clock the cores' deadlines use (uv_hrtime by default).
  explicit DeadlineTimer(Loop& loop, NowFn now = &Loop::hrtime);
  ~DeadlineTimer();
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  /// Registers a core by its two functions; handle is called with the time of
  /// the firing. Does not arm: call rearm().
  Id add(ExpiryFn expiry, HandleFn handle);
  /// Registers a TimedCore, which must outlive its registration. `after`, when
  /// given, runs after each handle_expiry of this core (to flush its output).
  template <TimedCore Core>
  Id add(Core& core, std::function<void()> after = {}) {
    return add([&core] { return core.expiry(); },
               [&core, after = std::move(after)](Timestamp now) {
                 core.handle_expiry(now);
                 if (after) after();
               });
  }
  /// Unregisters; unknown ids are ignored. Safe from inside any handler.
  void remove(Id id);

  /// Arms the one timer for the earliest deadline, or stops it when no core
  /// has one. Call after every call into a registered core.
  void rearm();
  /// Calls the handler of every core due at `now` (registration order), then
  /// rearm(). The timer's callback does this with now().
  void run_due(Timestamp now);

  /// Deadline the timer is armed for (nullopt: stopped).
  std::optional<Timestamp> armed_for() const { return armed_for_; }
  bool active() const { return timer_.active(); }
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Id id = 0;
    ExpiryFn expiry;
    HandleFn handle;
    bool removed = false;
  };
  void fire();

  Timer timer_;
  NowFn now_;
  std::vector<std::shared_ptr<Entry>> entries_;  // registration order
  Id next_id_ = 1;
  std::optional<Timestamp> armed_for_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

/// Milliseconds to hand uv_timer_start for `deadline` seen at `now` (rounding
/// as described above).
std::uint64_t timer_delay_ms(Timestamp deadline, Timestamp now);

}  // namespace quiclab::uv
