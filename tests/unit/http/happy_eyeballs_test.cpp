// Happy Eyeballs: the address order and the attempt schedule on a ManualClock
// (exact times), then RacingClient on a real loop with scripted per-address
// clients (who wins, where requests go, what the losers get, the error when
// every address fails, and that the loop closes with no live handle).
#include "transport/http/happy_eyeballs.hpp"

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "transport/core/clock.hpp"
#include "transport/core/uv.hpp"

using namespace quiclab;
using http::AttemptSchedule;

namespace {

SocketAddress ip(const char* text, std::uint16_t port = 443) { return *SocketAddress::from_ip(text, port); }

constexpr Timestamp ms(std::uint64_t n) { return n * kNanosPerMilli; }

}  // namespace

TEST_CASE("happy eyeballs: IPv6 first, families interleaved, duplicates dropped", "[http][happy_eyeballs]") {
  auto order = http::order_for_racing(
      {ip("127.0.0.1"), ip("192.0.2.1"), ip("::1"), ip("2001:db8::1"), ip("2001:db8::2"), ip("::1")});
  std::vector<std::string> got;
  for (const auto& a : order) got.push_back(a.ip());
  CHECK(got == std::vector<std::string>{"::1", "127.0.0.1", "2001:db8::1", "192.0.2.1", "2001:db8::2"});
  CHECK(http::order_for_racing({ip("127.0.0.1")}).size() == 1);
  CHECK(http::order_for_racing({}).empty());
}

TEST_CASE("happy eyeballs: the next attempt starts after the delay", "[http][happy_eyeballs]") {
  ManualClock clock(ms(1000));
  AttemptSchedule s(3, ms(250));
  CHECK_FALSE(s.expiry());
  CHECK(s.start(clock.now()) == std::vector<std::size_t>{0});
  CHECK(s.start(clock.now()).empty());  // once only
  REQUIRE(s.expiry() == ms(1250));
  clock.advance(ms(249));
  CHECK(s.due(clock.now()).empty());
  clock.advance(ms(1));
  CHECK(s.due(clock.now()) == std::vector<std::size_t>{1});
  REQUIRE(s.expiry() == ms(1500));
  CHECK(s.in_progress() == std::vector<std::size_t>{0, 1});
  // The second attempt wins: the schedule ends; the first must be closed.
  clock.advance(ms(10));
  CHECK(s.succeeded(1));
  CHECK(s.winner() == std::size_t{1});
  CHECK_FALSE(s.expiry());
  CHECK(s.in_progress() == std::vector<std::size_t>{0});
  CHECK(s.due(clock.now() + ms(1000)).empty());
  // A late success is not a second winner.
  CHECK_FALSE(s.succeeded(0));
  CHECK_FALSE(s.exhausted());
}

TEST_CASE("happy eyeballs: a failure starts the next attempt at once", "[http][happy_eyeballs]") {
  ManualClock clock;
  AttemptSchedule s(3, ms(250));
  s.start(clock.now());
  clock.advance(ms(3));
  // Refused after 3 ms: nothing else is trying, so the next starts now.
  CHECK(s.failed(0, clock.now()) == std::vector<std::size_t>{1});
  REQUIRE(s.expiry() == ms(253));
  clock.advance(ms(250));
  CHECK(s.due(clock.now()) == std::vector<std::size_t>{2});
  // One of two running attempts fails: the other keeps its chance, nothing starts.
  CHECK(s.failed(1, clock.now()).empty());
  CHECK_FALSE(s.exhausted());
  CHECK(s.failed(2, clock.now()).empty());
  CHECK(s.exhausted());
  CHECK_FALSE(s.winner());
  // Reports about attempts that are not running are ignored.
  CHECK(s.failed(2, clock.now()).empty());
  CHECK_FALSE(s.succeeded(7));
}

namespace {

// A scripted per-address client: answers connect() after `after_ms` with
// success or the given error (never, when after_ms is empty), and completes
// each request with 200 once ready.
struct Script {
  std::optional<std::uint64_t> after_ms;
  std::optional<Error> error;
};

struct Record {
  std::vector<std::string> started;                    // addresses, in the order attempts began
  std::vector<std::string> served;                     // address that served each request
  std::vector<std::string> closed;                     // addresses whose client was closed
  std::vector<std::optional<Timestamp>> clock_starts;  // each attempt's ClientOptions::clock_start
  int destroyed = 0;
};

class ScriptedClient final : public http::Client {
 public:
  // clock_start as http::ClientOptions::clock_start: the connection's clock
  // starts there (RacingClient gives the race's start), or at connect().
  ScriptedClient(uv::Loop& loop, SocketAddress remote, Script script, Record& rec,
                 std::optional<Timestamp> clock_start = std::nullopt)
      : remote_(std::move(remote)),
        script_(std::move(script)),
        rec_(rec),
        clock_start_(clock_start),
        timer_(loop),
        done_timer_(loop) {}
  ~ScriptedClient() override { ++rec_.destroyed; }

  void connect(std::function<void(Status)> on_ready) override {
    rec_.started.push_back(remote_.to_string());
    rec_.clock_starts.push_back(clock_start_);
    start_ = clock_start_ ? *clock_start_ : uv::Loop::hrtime();
    on_ready_ = std::move(on_ready);
    if (!script_.after_ms) return;
    timer_.start(*script_.after_ms, 0, [this] {
      ready_ = !script_.error;
      auto cb = std::move(on_ready_);
      on_ready_ = nullptr;
      if (cb) cb(script_.error ? Status(*script_.error) : Status{});
      drain();
    });
  }
  void submit(http::ClientRequest request, http::BodyCallback, http::CompleteCallback done) override {
    queue_.emplace_back(std::move(request), std::move(done));
    drain();
  }
  void close(std::function<void()> on_closed, bool) override {
    rec_.closed.push_back(remote_.to_string());
    timer_.stop();
    auto ready = std::move(on_ready_);
    on_ready_ = nullptr;
    done_timer_.start(0, 0, [this, ready, on_closed] {
      if (ready) ready(Status(make_error(ErrorDomain::generic, ECANCELED, "connection closed by the client")));
      if (on_closed) on_closed();
    });
  }
  http::ConnectionInfo info() const override {
    http::ConnectionInfo i;
    i.peer_address = remote_.to_string();
    return i;
  }

 private:
  void drain() {
    if (!ready_) return;
    for (auto& [rq, done] : queue_) {
      rec_.served.push_back(remote_.to_string());
      http::ClientResponse r;
      r.url = rq.url.to_string();
      r.status = 200;
      r.timing.start = start_;
      done(std::move(r));
    }
    queue_.clear();
  }

  SocketAddress remote_;
  Script script_;
  Record& rec_;
  std::optional<Timestamp> clock_start_;
  Timestamp start_ = 0;
  uv::Timer timer_, done_timer_;
  std::function<void(Status)> on_ready_;
  bool ready_ = false;
  std::vector<std::pair<http::ClientRequest, http::CompleteCallback>> queue_;
};

struct Race {
  uv::Loop loop;
  Record rec;
  std::unique_ptr<http::RacingClient> client;
  std::optional<Status> ready;
  std::vector<http::ClientResponse> responses;
  bool closed = false;

  Race(std::vector<std::pair<std::string, Script>> scripts, std::uint64_t delay_ms = 100) {
    auto url = *http::Url::parse("https://example.test:443/x");
    auto table = std::make_shared<std::vector<std::pair<std::string, Script>>>(std::move(scripts));
    client = std::make_unique<http::RacingClient>(
        loop, url, SOCK_STREAM, delay_ms, [this, table](const SocketAddress& remote, std::optional<Timestamp> start) {
          for (auto& [addr, script] : *table) {
            if (addr == remote.ip()) return std::make_unique<ScriptedClient>(loop, remote, script, rec, start);
          }
          FAIL("no script for " << remote.ip());
          return std::unique_ptr<ScriptedClient>();
        });
  }

  void run(std::vector<SocketAddress> candidates, int requests) {
    client->connect(std::move(candidates), [this](Status st) { ready = st; });
    for (int i = 0; i < requests; ++i) {
      http::ClientRequest rq;
      rq.url = *http::Url::parse("https://example.test/r" + std::to_string(i));
      client->submit(std::move(rq), nullptr, [this](http::ClientResponse&& r) { responses.push_back(std::move(r)); });
    }
    // Close once everything is answered; the loop then runs dry.
    uv::Timer poll(loop);
    poll.start(1, 1, [&, requests] {
      if (ready && static_cast<int>(responses.size()) == requests && !closed) {
        poll.stop();
        client->close([this] { closed = true; });
      }
    });
    loop.run();
    poll.close();
    CHECK(closed);
    client.reset();
    CHECK(loop.close().empty());
  }
};

}  // namespace

TEST_CASE("happy eyeballs: refused IPv6, IPv4 at once, requests go to the winner", "[http][happy_eyeballs]") {
  Race race({{"::1", {1, make_error(ErrorDomain::os, ECONNREFUSED, "refused")}}, {"127.0.0.1", {5, std::nullopt}}},
            10'000);
  auto t0 = uv::Loop::hrtime();
  race.run({ip("127.0.0.1"), ip("::1")}, 3);
  REQUIRE(race.ready);
  CHECK(race.ready->ok());
  // The delay is ten seconds: IPv4 started because IPv6 failed, not on the timer.
  CHECK(uv::Loop::hrtime() - t0 < 10 * kNanosPerSecond);
  CHECK(race.rec.started == std::vector<std::string>{"[::1]:443", "127.0.0.1:443"});
  CHECK(race.rec.served == std::vector<std::string>(3, "127.0.0.1:443"));
  REQUIRE(race.responses.size() == 3);
  for (const auto& r : race.responses) {
    CHECK(r.status == 200);
    // The connection's clock starts with the first attempt, not the winner's.
    CHECK(r.timing.start <= t0 + 50 * kNanosPerMilli);
  }
  // Both attempts were given the same clock start, the race's.
  REQUIRE(race.rec.clock_starts.size() == 2);
  REQUIRE(race.rec.clock_starts[0]);
  CHECK(race.rec.clock_starts[1] == race.rec.clock_starts[0]);
  CHECK(race.responses[0].timing.start == *race.rec.clock_starts[0]);
  CHECK(race.rec.destroyed == 2);
}

TEST_CASE("happy eyeballs: a silent IPv6 loses to IPv4 after the delay and is closed", "[http][happy_eyeballs]") {
  Race race({{"::1", {std::nullopt, std::nullopt}}, {"127.0.0.1", {1, std::nullopt}}}, 30);
  auto t0 = uv::Loop::hrtime();
  race.run({ip("::1"), ip("127.0.0.1")}, 2);
  REQUIRE(race.ready);
  CHECK(race.ready->ok());
  CHECK(race.rec.started == std::vector<std::string>{"[::1]:443", "127.0.0.1:443"});
  CHECK(race.rec.served == std::vector<std::string>(2, "127.0.0.1:443"));
  // The silent attempt was closed when IPv4 won; the winner when we closed.
  CHECK(race.rec.closed == std::vector<std::string>{"[::1]:443", "127.0.0.1:443"});
  CHECK(race.client == nullptr);
  CHECK(race.responses.at(0).timing.start <= t0 + 30 * kNanosPerMilli);
}

TEST_CASE("happy eyeballs: every address fails: one error naming each", "[http][happy_eyeballs]") {
  Race race(
      {{"::1", {1, make_error(ErrorDomain::os, ECONNREFUSED, "cannot connect to [::1]:443: refused")}},
       {"127.0.0.1", {2, make_error(ErrorDomain::os, ECONNREFUSED, "cannot connect to 127.0.0.1:443: refused")}}});
  race.run({ip("::1"), ip("127.0.0.1")}, 1);
  REQUIRE(race.ready);
  REQUIRE_FALSE(race.ready->ok());
  const auto& msg = race.ready->error().message;
  CHECK(msg.find("cannot reach example.test at any of its 2 addresses") != std::string::npos);
  CHECK(msg.find("[::1]:443") != std::string::npos);
  CHECK(msg.find("127.0.0.1:443") != std::string::npos);
  REQUIRE(race.responses.size() == 1);
  REQUIRE(race.responses[0].error);
  CHECK(race.responses[0].error->message == msg);
  CHECK(race.rec.served.empty());
}

TEST_CASE("happy eyeballs: one address is no race: requests reach it before its handshake", "[http][happy_eyeballs]") {
  // The scripted client serves only once ready, so this checks the hand-over
  // order: with one candidate the requests are submitted to it at once (0-RTT
  // needs that), and the timing is left as the client measured it.
  Race race({{"127.0.0.1", {5, std::nullopt}}});
  race.run({ip("127.0.0.1")}, 2);
  REQUIRE(race.ready);
  CHECK(race.ready->ok());
  CHECK(race.rec.started == std::vector<std::string>{"127.0.0.1:443"});
  CHECK(race.rec.served.size() == 2);
  // No race, no clock start handed down: the client starts its own.
  CHECK(race.rec.clock_starts == std::vector<std::optional<Timestamp>>{std::nullopt});
  CHECK(race.client == nullptr);
}

TEST_CASE("happy eyeballs: closing before any address answered fails what waits", "[http][happy_eyeballs]") {
  uv::Loop loop;
  Record rec;
  auto url = *http::Url::parse("https://example.test:443/x");
  auto client = std::make_unique<http::RacingClient>(
      loop, url, SOCK_STREAM, 50, [&](const SocketAddress& remote, std::optional<Timestamp> start) {
        return std::make_unique<ScriptedClient>(loop, remote, Script{}, rec, start);
      });
  std::optional<Status> ready;
  std::optional<http::ClientResponse> response;
  bool closed = false;
  client->connect({ip("::1"), ip("127.0.0.1")}, [&](Status st) { ready = st; });
  http::ClientRequest rq;
  rq.url = url;
  client->submit(std::move(rq), nullptr, [&](http::ClientResponse&& r) { response = std::move(r); });
  client->close([&] { closed = true; });
  loop.run();
  CHECK(closed);
  REQUIRE(ready);
  CHECK_FALSE(ready->ok());
  REQUIRE(response);
  CHECK(response->error);
  CHECK(rec.closed == std::vector<std::string>{"[::1]:443"});
  client.reset();
  CHECK(rec.destroyed == 1);
  CHECK(loop.close().empty());
}
