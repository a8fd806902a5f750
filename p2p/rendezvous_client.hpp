// The client side of the rendezvous protocol (docs/rendezvous-protocol.md), sans-IO.
//
// A Client registers one name with the server, keeps it refreshed, looks other
// names up and asks to be introduced. It produces datagrams for the server and
// consumes the server's datagrams; time is injected. It does not own a socket:
// the hole-punching peer shares one UDP socket between STUN, probes and QUIC and
// hands the client only the datagrams that look like STUN (stun::looks_like_stun).
//
// Usage: call register_name(now); then after every input (handle_datagram,
// handle_expiry, a new request) drain take_datagrams() to the server and
// take_events() to the application, and arm a timer for expiry().
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "p2p/stun.hpp"
#include "p2p/stun_transaction.hpp"
#include "transport/core/clock.hpp"

namespace quiclab::rendezvous {

/// Another peer's addresses as the server hands them out in an introduction.
struct PeerCandidates {
  std::string name;
  SocketAddress reflexive;             ///< the address the server sees the peer's traffic from
  std::vector<SocketAddress> hosts;    ///< the addresses the peer reported for itself
};

struct Event {
  enum class Kind {
    Registered,            ///< Register/Refresh succeeded: `mapped`, `lifetime_s`
    LookupResult,          ///< `peer`, `found`, `lifetime_s`
    Introduced,            ///< our Introduce succeeded: `candidates` of the peer
    IntroductionReceived,  ///< another peer asked for us: `candidates` of that peer
    RequestFailed,         ///< error response: `method`, `error_code`, `reason`, `peer`
    RequestTimedOut,       ///< no answer after all retransmissions: `method`, `peer`
  };
  Kind kind = Kind::Registered;
  std::uint16_t method = 0;
  std::string peer;
  bool found = false;
  std::uint32_t lifetime_s = 0;
  SocketAddress mapped;
  PeerCandidates candidates;
  int error_code = 0;
  std::string reason;
};

struct ClientConfig {
  std::string name;
  /// The secret that proves ownership of `name` (16..64 bytes; 32 random bytes is right).
  Bytes key;
  std::vector<SocketAddress> host_candidates;
  std::uint32_t lifetime_s = 300;
  /// Refresh when this fraction of the granted lifetime has passed.
  double refresh_at = 0.5;
  stun::TransactionConfig transaction;
};

class Client {
 public:
  explicit Client(ClientConfig config);

  /// Starts a Register transaction (also re-registers after expiry).
  void register_name(Timestamp now);
  /// Starts a Refresh; lifetime_s 0 removes the registration.
  void refresh(Timestamp now, std::optional<std::uint32_t> lifetime_s = {});
  void lookup(const std::string& peer, Timestamp now);
  void introduce(const std::string& peer, Timestamp now);

  /// Feeds a datagram that came from the server. Returns false when it is not a
  /// message for this client (unknown transaction, bad integrity, not STUN);
  /// such datagrams change nothing.
  bool handle_datagram(ByteView data, Timestamp now);
  /// Next time handle_expiry() must run (retransmission, timeout or refresh).
  std::optional<Timestamp> expiry() const;
  void handle_expiry(Timestamp now);

  /// Datagrams to send to the server, in order; the queue is emptied.
  std::vector<Bytes> take_datagrams();
  std::vector<Event> take_events();

  bool registered() const { return registered_; }
  const ClientConfig& config() const { return config_; }

 private:
  struct Pending {
    stun::ClientTransaction tx;
    std::uint16_t method;
    std::string peer;
  };
  void start(stun::Message m, std::string peer, Timestamp now);
  void pump(Timestamp now);

  ClientConfig config_;
  std::map<stun::TransactionId, Pending> pending_;
  std::vector<Bytes> outgoing_;
  std::vector<Event> events_;
  bool registered_ = false;
  std::optional<Timestamp> refresh_due_;
};

}  // namespace quiclab::rendezvous
