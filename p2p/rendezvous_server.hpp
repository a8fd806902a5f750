// The rendezvous server core, sans-IO: STUN Binding for anyone (with RFC 5780
// behaviour discovery when an alternate address is configured), plus quiclab's
// rendezvous methods (Register, Refresh, Lookup, Introduce; see
// docs/rendezvous-protocol.md). Datagrams and time go in; datagrams come out,
// each tagged with the local socket it must leave from.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

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
  std::uint64_t introductions = 0;
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
  std::optional<Timestamp> expiry() const { return housekeeping_due_; }
  /// Sweeps when the housekeeping deadline has come; earlier calls do nothing.
  void handle_expiry(Timestamp now);
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

  bool has_alternate() const { return !config_.local[kAltBoth].empty(); }
  void handle_binding(int socket, const SocketAddress& from, const stun::Message& req, std::vector<OutgoingDatagram>& out);
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
};

/// True when `name` is acceptable as a rendezvous name: 1..64 bytes of
/// [A-Za-z0-9._@-].
bool valid_peer_name(std::string_view name);

}  // namespace quiclab::rendezvous
