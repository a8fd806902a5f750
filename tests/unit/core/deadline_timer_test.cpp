// uv::DeadlineTimer on a real loop: one uv timer for several cores, due cores
// called in registration order, removal and destruction from inside a
// handler. Orderings are fixed by construction (a deadline that is already
// due, or one set only by an earlier handler), never by racing durations.
#include "transport/core/deadline_timer.hpp"

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "p2p/nat_behavior.hpp"
#include "p2p/rendezvous_client.hpp"
#include "p2p/rendezvous_server.hpp"
#include "p2p/stun_transaction.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/uv.hpp"
#include "transport/h3/client.hpp"
#include "transport/quic/server_core.hpp"

using namespace quiclab;

// Every timed sans-IO core follows the one convention (transport/core/clock.hpp).
static_assert(TimedCore<quic::ServerCore>);
static_assert(TimedCore<h3::ClientConnection>);
static_assert(TimedCore<stun::ClientTransaction>);
static_assert(TimedCore<stun::NatBehaviorDiscovery>);
static_assert(TimedCore<rendezvous::Client>);
static_assert(TimedCore<rendezvous::Server>);

namespace {

struct FakeCore {
  std::string name;
  std::vector<std::string>* log;
  std::optional<Timestamp> due;
  Timestamp called_at = 0;
  std::optional<Timestamp> expiry() const { return due; }
  void handle_expiry(Timestamp now) {
    log->push_back(name);
    called_at = now;
    due.reset();
  }
};
static_assert(TimedCore<FakeCore>);

// Timers the loop holds, and how many of them are armed.
struct TimerCount {
  int total = 0;
  int active = 0;
};
TimerCount count_timers(uv::Loop& loop) {
  TimerCount c;
  uv_walk(
      loop.get(),
      [](uv_handle_t* h, void* arg) {
        if (h->type != UV_TIMER || uv_is_closing(h)) return;
        auto* count = static_cast<TimerCount*>(arg);
        count->total++;
        if (uv_is_active(h)) count->active++;
      },
      &c);
  return c;
}

}  // namespace

TEST_CASE("deadline timer: one uv timer for several cores, due ones run in registration order",
          "[core][uv][deadline]") {
  uv::Loop loop;
  std::vector<std::string> log;
  const Timestamp now = uv::Loop::hrtime();
  FakeCore a{"a", &log, now}, b{"b", &log, std::nullopt}, c{"c", &log, now};
  {
    uv::DeadlineTimer timer(loop);
    timer.add(a);
    timer.add(b);
    timer.add(c);
    CHECK(timer.size() == 3);
    CHECK(count_timers(loop).total == 1);
    CHECK(count_timers(loop).active == 0);  // nothing armed before rearm()
    timer.rearm();
    CHECK(count_timers(loop).total == 1);
    CHECK(count_timers(loop).active == 1);
    CHECK(timer.armed_for() == now);
    loop.run();
    CHECK(log == std::vector<std::string>{"a", "c"});  // b has no deadline
    CHECK_FALSE(timer.active());
    CHECK_FALSE(timer.armed_for().has_value());
  }
  CHECK(loop.close().empty());
}

TEST_CASE("deadline timer: re-arms after a firing, never calls a core before its deadline", "[core][uv][deadline]") {
  uv::Loop loop;
  std::vector<std::string> log;
  FakeCore first{"first", &log, std::nullopt};
  const Timestamp second_due = uv::Loop::hrtime() + 2 * kNanosPerMilli;
  FakeCore second{"second", &log, second_due};
  uv::DeadlineTimer timer(loop);
  TimerCount during{};
  Timestamp first_due = 0;
  timer.add(first);
  // second's handler gives first a deadline 1.5 ms on: a sub-millisecond
  // remainder must not make the timer fire early.
  timer.add(second, [&] {
    first_due = uv::Loop::hrtime() + 1500 * 1000;
    first.due = first_due;
    timer.rearm();
    during = count_timers(loop);
  });
  timer.rearm();
  loop.run();
  CHECK(log == std::vector<std::string>{"second", "first"});
  CHECK(during.total == 1);
  CHECK(during.active == 1);
  CHECK(first.called_at >= first_due);
  CHECK(second.called_at >= second_due);
  timer.remove(0);  // unknown ids are ignored
  CHECK(timer.size() == 2);
  CHECK_FALSE(timer.active());
  loop.run();  // nothing armed: returns at once
  CHECK(log.size() == 2);
}

TEST_CASE("deadline timer: a core removed by an earlier handler is not called", "[core][uv][deadline]") {
  uv::Loop loop;
  std::vector<std::string> log;
  const Timestamp now = uv::Loop::hrtime();
  FakeCore a{"a", &log, now}, b{"b", &log, now}, c{"c", &log, now};
  uv::DeadlineTimer timer(loop);
  uv::DeadlineTimer::Id id_b = 0;
  uv::DeadlineTimer::Id id_a = timer.add(a, [&] {
    timer.remove(id_b);
    timer.remove(id_a);  // itself, while running
  });
  id_b = timer.add(b);
  timer.add(c);
  timer.rearm();
  loop.run();
  CHECK(log == std::vector<std::string>{"a", "c"});
  CHECK(timer.size() == 1);
}

TEST_CASE("deadline timer: destroying it from inside a handler is safe", "[core][uv][deadline]") {
  uv::Loop loop;
  std::vector<std::string> log;
  const Timestamp now = uv::Loop::hrtime();
  FakeCore a{"a", &log, now}, b{"b", &log, now};
  auto timer = std::make_unique<uv::DeadlineTimer>(loop);
  timer->add(a, [&] { timer.reset(); });
  timer->add(b);
  timer->rearm();
  loop.run();
  CHECK(log == std::vector<std::string>{"a"});
  CHECK(timer == nullptr);
  CHECK(loop.close().empty());
}

TEST_CASE("deadline timer: run_due calls only what is due at the given time", "[core][uv][deadline]") {
  uv::Loop loop;
  std::vector<std::string> log;
  FakeCore late{"late", &log, 30 * kNanosPerMilli}, early{"early", &log, 10 * kNanosPerMilli};
  ManualClock clock(0);
  uv::DeadlineTimer timer(loop, [&clock] { return clock.now(); });
  timer.add(late);
  timer.add(early);
  timer.add([] { return std::optional<Timestamp>{}; }, [&](Timestamp) { log.push_back("never"); });
  timer.run_due(20 * kNanosPerMilli);
  CHECK(log == std::vector<std::string>{"early"});
  CHECK(early.called_at == 20 * kNanosPerMilli);
  CHECK(timer.armed_for() == 30 * kNanosPerMilli);  // re-armed for what is left
  timer.run_due(30 * kNanosPerMilli);
  CHECK(log == std::vector<std::string>{"early", "late"});
  CHECK_FALSE(timer.active());
}

TEST_CASE("deadline timer: milliseconds rounded up, sub-millisecond waits on the next turn", "[core][deadline]") {
  const Timestamp t = 5 * kNanosPerSecond;
  CHECK(uv::timer_delay_ms(t, t) == 0);
  CHECK(uv::timer_delay_ms(t - 1, t) == 0);  // already late
  CHECK(uv::timer_delay_ms(t + 999'999, t) == 0);
  CHECK(uv::timer_delay_ms(t + kNanosPerMilli, t) == 1);
  CHECK(uv::timer_delay_ms(t + kNanosPerMilli + 1, t) == 2);
  CHECK(uv::timer_delay_ms(t + 2'500'000, t) == 3);
}
