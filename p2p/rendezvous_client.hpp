// The client side of the rendezvous protocol (docs/rendezvous-protocol.md), sans-IO.
//
// A Client registers one name with the server, keeps it refreshed, looks other
// names up and asks to be introduced. It produces datagrams for the server and
// consumes the server's datagrams; time is injected. It does not own a socket:
// the hole-punching peer shares one UDP socket between STUN, probes and QUIC and
// hands the client the STUN datagrams from the server (p2p::Demultiplexer).
//
// Usage: call register_name(now); then after every input (handle_datagram,
// handle_expiry, a new request) drain take_datagrams() to the server and
// take_events() to the application, and arm a timer for expiry().
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "p2p/introduction.hpp"
#include "p2p/stun.hpp"
#include "p2p/stun_transaction.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/random.hpp"

namespace quiclab::rendezvous {

/// Another peer's addresses as the server hands them out in an introduction.
struct PeerCandidates {
  std::string name;
  SocketAddress reflexive;           ///< the address the server sees the peer's traffic from
  std::vector<SocketAddress> hosts;  ///< the addresses the peer reported for itself
};

// Events, one type each (std::visit or std::get_if on Event).
struct Registered {  ///< Register/Refresh succeeded (lifetime 0: removed)
  SocketAddress mapped;
  std::uint32_t lifetime_s = 0;
};
struct LookupResult {
  std::string peer;
  bool found = false;
  std::uint32_t lifetime_s = 0;
};
/// The server took our Introduce: it is delivering it (wait_s 0) or holding
/// it until the peer registers (at most wait_s seconds).
struct IntroductionPending {
  std::string peer;
  std::uint64_t id = 0;
  std::uint32_t wait_s = 0;
};
/// The peer acknowledged our introduction: its candidates and offer, and the
/// offer we made (we are the controlling side and the QUIC client).
struct Introduced {
  PeerCandidates candidates;
  IntroductionOffer remote;
  IntroductionOffer local;
  std::uint64_t id = 0;
};
/// Another peer asked for us: its candidates and offer, and the offer we
/// answered with (we are the controlled side and the QUIC server).
struct IntroductionReceived {
  PeerCandidates candidates;
  IntroductionOffer remote;
  IntroductionOffer local;
  std::uint64_t id = 0;
};
/// The introduction did not reach the peer (no answer, the peer left, it did
/// not register within the wait).
struct IntroductionFailed {
  std::string peer;
  std::uint64_t id = 0;
  int error_code = 0;
  std::string reason;
};
struct RequestFailed {  ///< an error response
  std::uint16_t method = 0;
  std::string peer;
  int error_code = 0;
  std::string reason;
};
struct RequestTimedOut {  ///< no answer after all retransmissions
  std::uint16_t method = 0;
  std::string peer;
};
using Event = std::variant<Registered, LookupResult, IntroductionPending, Introduced, IntroductionReceived,
                           IntroductionFailed, RequestFailed, RequestTimedOut>;
/// Short name for logs and tests ("registered", "lookup", ...).
std::string_view event_name(const Event& e);

struct ClientConfig {
  std::string name;
  /// The secret that proves ownership of `name` (16..64 bytes; 32 random bytes is right).
  Bytes key;
  std::vector<SocketAddress> host_candidates;
  /// SHA-256 of our certificate, handed to peers in introductions (32 bytes).
  Bytes certificate_fingerprint = Bytes(32, 0);
  /// Our TURN relayed address, handed to peers in our offers (RELAY-CANDIDATE).
  std::optional<SocketAddress> relay_candidate;
  /// Our NAT's mapping, handed to peers in our offers (BIRTHDAY) when we take part in birthday punching.
  std::optional<Mapping> birthday;
  /// ICE credentials and tie-breakers (fresh per introduction); null: the system's.
  Random* random = nullptr;
  std::uint32_t lifetime_s = 300;
  /// Refresh when this fraction of the granted lifetime has passed.
  double refresh_at = 0.5;
  /// While registered, a STUN Binding indication goes to the server when
  /// nothing else was sent to it for this long, so the NAT keeps our mapping
  /// (common NATs drop idle UDP mappings after 30-120 s, far sooner than a
  /// refresh at half of 300 s). 0: no keepalives.
  Timestamp keepalive = 15 * kNanosPerSecond;
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
  /// Asks to be introduced to `peer`, with fresh ICE credentials. wait_s > 0:
  /// when the peer is not registered yet, the server may hold the request that
  /// long and introduce both sides when it registers.
  void introduce(const std::string& peer, Timestamp now, std::uint32_t wait_s = 0);

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
  std::uint64_t keepalives_sent() const { return keepalives_sent_; }
  const ClientConfig& config() const { return config_; }

 private:
  struct Pending {
    stun::ClientTransaction tx;
    std::uint16_t method;
    std::string peer;
    IntroductionOffer offer;  // Introduce: what we offered
  };
  struct Asked {  // an introduction we asked for, waiting for its result
    std::string peer;
    IntroductionOffer offer;
    bool reported = false;
    Timestamp forget_at = 0;
  };
  struct Answered {  // an introduction we received: the same answer on retransmissions
    IntroductionOffer offer;
    Timestamp forget_at = 0;
  };
  void start(stun::Message m, std::string peer, Timestamp now, IntroductionOffer offer = {});
  IntroductionOffer make_offer();
  void handle_server_request(const stun::Message& m, Timestamp now);
  void answer(const stun::Message& request, std::optional<IntroductionOffer> offer, std::optional<int> error);
  void forget_old(Timestamp now);
  void pump(Timestamp now);
  void sent_at(Timestamp now);

  ClientConfig config_;
  std::map<stun::TransactionId, Pending> pending_;
  std::vector<Bytes> outgoing_;
  std::vector<Event> events_;
  bool registered_ = false;
  std::optional<Timestamp> refresh_due_;
  std::optional<Timestamp> keepalive_due_;
  std::map<std::uint64_t, Asked> asked_;
  std::map<std::uint64_t, Answered> answered_;
  std::uint64_t keepalives_sent_ = 0;
};

}  // namespace quiclab::rendezvous
