// Happy Eyeballs (RFC 8305) for both clients: a host name that resolves to
// several addresses (on a stock Debian 12, "localhost" is ::1 and 127.0.0.1)
// is reached at whichever address answers first, IPv6 first, IPv4 after a
// short delay. The same race serves TCP connects (HTTP/2) and QUIC handshakes
// (HTTP/3): an attempt is one whole per-address client, and it has won when
// its handshake completed.
//
// Two layers, as everywhere in quiclab: `AttemptSchedule` is the sans-IO
// schedule (which attempt starts when, who won), tested on a ManualClock;
// `RacingClient` is the libuv adapter that resolves the name on the loop
// (uv_getaddrinfo), runs the schedule with one timer and hands the winner
// every request.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "transport/core/address.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/result.hpp"
#include "transport/core/uv.hpp"
#include "transport/http/client.hpp"

namespace quiclab::http {

/// RFC 8305 section 4: the resolver's order (glibc sorts by RFC 6724) with
/// the families interleaved, IPv6 first: v6, v4, v6, v4, ... Duplicates go.
std::vector<SocketAddress> order_for_racing(const std::vector<SocketAddress>& resolved);

/// RFC 8305 section 5 as a pure schedule over `candidates` attempts. Attempt
/// 0 starts at start(); each next one starts `attempt_delay` after the
/// previous one started, or at once when every started attempt has failed.
/// The first success wins and ends the schedule.
class AttemptSchedule {
 public:
  AttemptSchedule(std::size_t candidates, Timestamp attempt_delay);

  /// Begins the race at `now`; returns the attempts to start (attempt 0).
  std::vector<std::size_t> start(Timestamp now);
  /// The attempts due at `now` (call at expiry()). This is the schedule's
  /// handle_expiry (transport/core/clock.hpp) under another name: what is due
  /// is its result (attempts for the adapter to start), not an internal step.
  std::vector<std::size_t> due(Timestamp now);
  /// Attempt `i` failed at `now`: returns the attempts to start now (the next
  /// one, if nothing else is still trying and one is left).
  std::vector<std::size_t> failed(std::size_t i, Timestamp now);
  /// Attempt `i` completed its handshake. Returns false when the race was
  /// already decided (a late success that must be closed).
  bool succeeded(std::size_t i);

  /// When the next attempt is due; nullopt once decided, exhausted or all started.
  std::optional<Timestamp> expiry() const;
  std::optional<std::size_t> winner() const { return winner_; }
  /// Every attempt started and failed: the race is lost.
  bool exhausted() const;
  /// Attempts started and neither failed nor won yet.
  std::vector<std::size_t> in_progress() const;
  std::size_t started() const { return next_; }

 private:
  std::vector<std::size_t> launch(Timestamp now);

  enum class State : std::uint8_t { waiting, trying, failed, won };
  std::vector<State> state_;
  Timestamp delay_;
  std::size_t next_ = 0;  // the next attempt to start
  Timestamp last_start_ = 0;
  bool begun_ = false;
  std::optional<std::size_t> winner_;
};

/// http::Client that races per-address clients. `make_attempt` builds one
/// client for one address (the URL's host still gives SNI and :authority).
///
/// A numeric host, or a name with one address, is no race: its client gets
/// every request at once, so 0-RTT and request pipelining before the
/// handshake work as on a bare client. With several addresses, requests wait
/// until an attempt has won (early data is given up for that connection).
/// Milestones: in a race, every attempt is made with `clock_start`, the start
/// of the first attempt (for its ClientOptions::clock_start), so time lost on
/// addresses that failed shows in "connect"; a lone attempt gets nullopt and
/// starts its own clock.
class RacingClient final : public Client {
 public:
  using AttemptFactory =
      std::function<std::unique_ptr<Client>(const SocketAddress& remote, std::optional<Timestamp> clock_start)>;

  /// `socktype`: SOCK_STREAM (HTTP/2) or SOCK_DGRAM (HTTP/3), for the resolver.
  RacingClient(uv::Loop& loop, Url origin, int socktype, std::uint64_t attempt_delay_ms, AttemptFactory make_attempt);
  ~RacingClient() override;

  /// Resolves the URL's host on the loop, then races its addresses.
  void connect(std::function<void(Status)> on_ready) override;
  /// Races these addresses (already resolved, e.g. from a --resolve option or
  /// a test) in Happy Eyeballs order, without asking the resolver.
  void connect(std::vector<SocketAddress> candidates, std::function<void(Status)> on_ready);
  void submit(ClientRequest request, BodyCallback on_body, CompleteCallback on_complete) override;
  void close(std::function<void()> on_closed, bool abort = false) override;
  ConnectionInfo info() const override;

 private:
  struct Attempt {
    SocketAddress remote;
    std::unique_ptr<Client> client;
    std::optional<Error> error;
    bool closed = false;
  };
  void on_resolved(Result<std::vector<SocketAddress>> addrs);
  void begin(std::vector<SocketAddress> addrs);
  void launch(const std::vector<std::size_t>& which);
  void on_attempt_ready(std::size_t i, Status st);
  void arm();
  void settle_lost();
  void fail_everything(const Error& e);
  void forward(ClientRequest request, BodyCallback on_body, CompleteCallback on_complete);
  /// Closes attempt i (abort: without a graceful goodbye); it is freed from the loop.
  void close_attempt(std::size_t i, bool abort);
  void maybe_closed();
  void later(std::function<void()> fn);
  Client* winner() const;

  Url origin_;
  int socktype_;
  Timestamp delay_;
  AttemptFactory make_attempt_;
  uv::Resolver resolver_;
  uv::Timer timer_;
  uv::Timer soon_;
  std::vector<std::function<void()>> soon_fns_;
  std::optional<AttemptSchedule> schedule_;
  std::vector<Attempt> attempts_;  // one per address, in the order they are tried
  std::deque<std::tuple<ClientRequest, BodyCallback, CompleteCallback>> waiting_;
  std::function<void(Status)> on_ready_;
  std::function<void()> on_closed_;
  std::optional<Error> failure_;
  Timestamp race_start_ = 0;
  bool direct_ = false;  // one candidate: requests go straight to it
  bool closing_ = false;
  bool closed_reported_ = false;
  std::size_t open_attempts_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace quiclab::http
