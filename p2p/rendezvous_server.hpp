// The rendezvous server core, sans-IO: STUN Binding for anyone (with RFC 5780
// behaviour discovery when an alternate address is configured), plus quiclab's
// rendezvous methods (Register, Refresh, Lookup, Introduce; see
// docs/rendezvous-protocol.md). Datagrams and time go in; datagrams come out,
// each tagged with the local socket it must leave from.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "p2p/introduction.hpp"
#include "p2p/stun.hpp"
#include "transport/core/clock.hpp"

namespace quiclab::rendezvous {

/// The server's four UDP sockets for RFC 5780. Index bit 1 = alternate IP,
/// bit 0 = alternate port: (A,P), (A,P'), (A2,P), (A2,P'). Without an alternate
/// address only kPrimary exists.
enum SocketIndex : int { kPrimary = 0, kAltPort = 1, kAltIp = 2, kAltBoth = 3 };

struct ServerConfig {
  /// Bound addresses by SocketIndex; entries 1..3 empty when there is no alternate address.
  std::array<SocketAddress, 4> local;
  std::size_t max_registrations = 200000;
  std::size_t max_registrations_per_source = 16;  ///< per source IP
  double requests_per_second_per_source = 50;     ///< token refill rate per source IP
  double request_burst_per_source = 100;          ///< bucket size
  std::size_t max_tracked_sources = 65536;        ///< bound on the per-source table
  std::uint32_t default_lifetime_s = 300;
  std::uint32_t max_lifetime_s = 3600;
  std::size_t max_host_candidates = 8;
  double introductions_per_second = 2;  ///< per registration
  double introduction_burst = 5;
  /// RFC 5780 PADDING: a padded Binding request gets a response padded to
  /// this interface MTU (never above the request's size).
  std::size_t padding_mtu = 1500;
  /// Introductions are requests to the target (PeerIntroduction) and then to
  /// the asker (IntroductionResult), retransmitted from this RTO, doubling,
  /// at most this many times and for at most this long (RFC 8489 timers, bounded).
  Timestamp introduction_rto = 500 * kNanosPerMilli;
  unsigned introduction_transmissions = 5;
  Timestamp introduction_timeout = 8 * kNanosPerSecond;
  /// Waiting introductions (Introduce with WAIT for a peer not registered yet).
  std::uint32_t max_wait_s = 300;
  std::size_t max_waiting_per_asker = 4;
  std::size_t max_introductions = 4096;  ///< in flight or waiting, in total
};

/// One datagram for the adapter to send.
struct OutgoingDatagram {
  int socket = kPrimary;  ///< SocketIndex to send from
  SocketAddress to;
  Bytes data;
};

/// Event counters; also printed as Prometheus text by metrics_text().
struct Counters {
  std::uint64_t datagrams_received = 0;
  std::uint64_t datagrams_sent = 0;
  std::uint64_t malformed = 0;           ///< decode failed: dropped
  std::uint64_t not_a_request = 0;       ///< responses/indications/unknown legacy: dropped
  std::uint64_t rate_limited = 0;        ///< over the per-source budget: dropped
  std::uint64_t sources_table_full = 0;  ///< new source while the table was full: dropped
  std::uint64_t binding_requests = 0;
  std::uint64_t legacy_binding_requests = 0;  ///< RFC 3489 (no magic cookie)
  std::uint64_t change_requests = 0;
  std::uint64_t padded_responses = 0;
  std::uint64_t binding_indications = 0;  ///< keepalives: counted, never answered
  std::uint64_t error_responses = 0;
  std::uint64_t unknown_attribute_errors = 0;
  std::uint64_t auth_failures = 0;
  std::uint64_t registrations_created = 0;
  std::uint64_t registrations_refreshed = 0;
  std::uint64_t registrations_expired = 0;
  std::uint64_t registrations_removed = 0;
  std::uint64_t name_conflicts = 0;
  std::uint64_t quota_rejections = 0;
  std::uint64_t lookups = 0;
  std::uint64_t introductions = 0;              ///< deliveries started (PeerIntroduction sent)
  std::uint64_t introductions_delivered = 0;    ///< the target acknowledged
  std::uint64_t introductions_failed = 0;       ///< not delivered (no answer, peer gone, wait expired)
  std::uint64_t introductions_waiting = 0;      ///< held for a peer not registered yet
  std::uint64_t introduction_reports_lost = 0;  ///< the asker never acknowledged the result
  std::uint64_t introduction_limit = 0;         ///< refused: too many waiting or in flight
  std::uint64_t log_lines_suppressed = 0;
};

class Server {
 public:
  explicit Server(ServerConfig config);

  /// Handles one datagram that arrived on `socket` from `from` at `now`, appending
  /// any datagrams to send to `out`. Never throws on bad input: malformed or
  /// unwanted datagrams are counted, logged (rate-limited) and dropped, or answered
  /// with the error response RFC 8489 asks for.
  void handle_datagram(int socket, const SocketAddress& from, ByteView data, Timestamp now,
                       std::vector<OutgoingDatagram>& out);

  /// Housekeeping (expiring registrations, forgetting idle sources) runs
  /// about once a second while anything is tracked: expiry() is nullopt on an
  /// idle server and kHousekeepingInterval after the last sweep (or the first
  /// datagram) otherwise. The TimedCore convention (transport/core/clock.hpp).
  /// Introductions in flight add their retransmission and wait deadlines.
  std::optional<Timestamp> expiry() const;
  /// Sweeps when the housekeeping deadline has come; retransmits and expires
  /// introductions. What it sends goes to take_datagrams().
  void handle_expiry(Timestamp now);
  /// Datagrams produced by handle_expiry() (retransmissions, reports).
  std::vector<OutgoingDatagram> take_datagrams() { return std::exchange(timer_out_, {}); }
  std::size_t introductions_in_flight() const { return introductions_.size(); }
  static constexpr Timestamp kHousekeepingInterval = kNanosPerSecond;

  const Counters& counters() const { return counters_; }
  std::size_t registrations() const { return registrations_.size(); }
  std::size_t tracked_sources() const { return sources_.size(); }
  /// Counters and gauges in Prometheus text exposition format.
  std::string metrics_text() const;
  const ServerConfig& config() const { return config_; }

 private:
  struct TokenBucket {
    double tokens = 0;
    Timestamp last = 0;
    bool take(double rate, double burst, Timestamp now);
  };
  struct Source {
    TokenBucket requests;
    std::size_t registrations = 0;
    Timestamp last_seen = 0;
  };
  struct Registration {
    Bytes key;
    SocketAddress reflexive;  ///< where the server last saw authenticated traffic from
    int socket = kPrimary;    ///< the local socket that traffic arrived on
    std::vector<SocketAddress> hosts;
    Timestamp expires = 0;
    TokenBucket introductions;
  };

  struct Introduction {
    enum class Phase { waiting, delivering, reporting };
    std::uint64_t id = 0;
    std::string asker, target;
    IntroductionOffer asker_offer;
    Phase phase = Phase::waiting;
    Timestamp wait_until = 0;
    std::uint32_t wait_s = 0;
    // The request in flight (to the target, then to the asker).
    stun::TransactionId tx{};
    Bytes request;
    Timestamp next_at = 0, give_up_at = 0, rto = 0;
    unsigned sent = 0;
  };
  bool has_alternate() const { return !config_.local[kAltBoth].empty(); }
  void handle_introduce(int socket, const SocketAddress& from, const stun::Message& req, const std::string& name,
                        const Bytes& key, Timestamp now, std::vector<OutgoingDatagram>& out);
  void handle_peer_answer(const SocketAddress& from, const stun::Message& m, Timestamp now,
                          std::vector<OutgoingDatagram>& out);
  void start_delivery(Introduction& in, Timestamp now, std::vector<OutgoingDatagram>& out);
  void start_report(Introduction& in, Timestamp now, std::optional<std::string> failure,
                    std::vector<OutgoingDatagram>& out);
  bool send_request(Introduction& in, const std::string& to_name, stun::Message m, Timestamp now,
                    std::vector<OutgoingDatagram>& out);
  void release_waiting(const std::string& target, Timestamp now, std::vector<OutgoingDatagram>& out);
  void finish(std::uint64_t id);
  void handle_binding(int socket, const SocketAddress& from, const stun::Message& req,
                      std::vector<OutgoingDatagram>& out);
  void handle_rendezvous(int socket, const SocketAddress& from, const stun::Message& req, Timestamp now,
                         std::vector<OutgoingDatagram>& out);
  void send_error(int socket, const SocketAddress& to, const stun::Message& req, int code, std::string_view reason,
                  const Bytes* key, std::vector<OutgoingDatagram>& out);
  void send(int socket, const SocketAddress& to, const stun::Message& m, const stun::EncodeOptions& opts,
            std::vector<OutgoingDatagram>& out);
  Source* source_for(const SocketAddress& from, Timestamp now);
  void release_source_registration(const SocketAddress& address);
  bool log_allowed(Timestamp now);

  ServerConfig config_;
  Counters counters_;
  std::unordered_map<std::string, Registration> registrations_;
  std::unordered_map<SocketAddress, Source> sources_;  // keyed by IP with port 0
  Timestamp log_window_ = 0;
  unsigned log_lines_in_window_ = 0;
  std::optional<Timestamp> housekeeping_due_;
  std::map<std::uint64_t, Introduction> introductions_;
  std::map<stun::TransactionId, std::uint64_t> introduction_by_tx_;
  std::uint64_t next_introduction_id_ = 0;
  std::vector<OutgoingDatagram> timer_out_;
};

/// True when `name` is acceptable as a rendezvous name: 1..64 bytes of
/// [A-Za-z0-9._@-].
bool valid_peer_name(std::string_view name);

}  // namespace quiclab::rendezvous
