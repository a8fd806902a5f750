// The connectivity-check agent: ICE (RFC 8445) reduced to one component and
// one socket, sans-IO. Datagrams, candidates and a timestamp in; datagrams,
// events and the next deadline out.
//
// What it does, and where it departs from the RFC on purpose:
//   - Candidates: host and server-reflexive ones come from the adapter;
//     peer-reflexive ones are learned from incoming checks (remote) and from
//     the XOR-MAPPED-ADDRESS of check responses (local). Relay candidates
//     (a TURN allocation, p2p/turn_client.hpp) have the lowest type
//     preference and are a second base: their checks leave through the relay
//     (Datagram::via_relay) and what arrives through it is handed in with
//     via_relay. Host and reflexive candidates share the socket's base, so a
//     pair is identified by its remote address and whether it is relayed
//     (RFC 8445 6.1.2.4 prunes pairs whose local candidate is reflexive to
//     their base; with two bases that leaves two pairs per remote address).
//     Our relay is paired with the peer's host, reflexive and peer-reflexive
//     candidates, never with its relay (one relay hop is enough).
//   - Priorities by RFC 8445's formulas (5.1.2.1 and 6.1.2.3), no frozen
//     state (one component, one stream: every pair starts Waiting).
//   - One check every Ta (50 ms) across the agent, triggered checks first,
//     then the highest-priority waiting pair; retransmissions from 500 ms,
//     doubling, for a bounded number of transmissions.
//   - Checks carry USERNAME (remote:local), PRIORITY, ICE-CONTROLLING or
//     ICE-CONTROLLED with the tie-breaker, MESSAGE-INTEGRITY over the short-
//     term password and FINGERPRINT. A check that fails authentication is
//     ignored and counted (no error response: it tells a scanner nothing).
//   - A check may arrive before the peer's credentials (its introduction):
//     it is answered (the answer uses our own password), its source becomes a
//     peer-reflexive candidate, and the triggered check waits until the
//     credentials are known.
//   - Nomination: the controlling side nominates the first pair that succeeds
//     with one more check carrying USE-CANDIDATE, sent at once (not paced:
//     it goes to an address that has just answered); both sides report
//     `connected` for that pair. Role conflicts are repaired with 487 and the
//     tie-breaker (7.3.1.1).
//   - Relayed pairs (our relay, or the peer's relay candidate) are held back:
//     the controlling side nominates one only when no direct pair has
//     succeeded within relay_wait of the first check (2 s: LiveKit measured
//     longer per-type waits costing about a second per connection), or at
//     once with relay_only. Connected over a relayed pair, checks on the
//     direct pairs go on; the first that succeeds is nominated too (both
//     sides are our agents) and both report PathChanged: the relay becomes
//     the fallback the owner may release.
//   - Consent freshness (RFC 7675) on the selected pair: a check every 5 s
//     ± 20 %; no answer for 30 s and the path is lost.
//   - A verdict for every attempt: connected, or failed with a reason a person
//     understands, at the latest `timeout` after start.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "p2p/stun.hpp"
#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/random.hpp"

namespace quiclab::ice {

enum class CandidateType : std::uint8_t { host, srflx, prflx, relay };
std::string_view to_string(CandidateType t);

struct Candidate {
  CandidateType type = CandidateType::host;
  SocketAddress address;
  std::uint32_t priority = 0;  ///< 0: the agent computes it (local candidates)
};

/// RFC 8445 5.1.2.1 for component 1: 2^24 type preference + 2^8 local
/// preference + 255. Type preferences: host 126, prflx 110, srflx 100, relay 0.
std::uint32_t candidate_priority(CandidateType type, std::uint16_t local_preference = 65535);
/// RFC 8445 6.1.2.3: 2^32 min(G, D) + 2 max(G, D) + (G > D ? 1 : 0).
std::uint64_t pair_priority(std::uint32_t controlling, std::uint32_t controlled);

struct Credentials {
  std::string ufrag;
  std::string password;
};
/// Fresh credentials from ice-chars (RFC 8445 5.3): an 8-character ufrag
/// (48 bits) and a 24-character password (144 bits).
Credentials random_credentials(Random& random);

struct AgentConfig {
  bool controlling = false;
  std::uint64_t tie_breaker = 0;
  Credentials local;
  Timestamp ta = 50 * kNanosPerMilli;
  Timestamp initial_rto = 500 * kNanosPerMilli;
  unsigned max_transmissions = 7;
  Timestamp timeout = 10 * kNanosPerSecond;  ///< verdict at the latest this long after start
  Timestamp consent_interval = 5 * kNanosPerSecond;
  Timestamp consent_timeout = 30 * kNanosPerSecond;
  std::size_t max_pairs = 64;  ///< bounds what a flood of checks from new addresses can pin
  Timestamp relay_wait =
      2 * kNanosPerSecond;  ///< controlling: how long a direct pair may take before a relayed one is nominated
  bool relay_only = false;  ///< only relayed pairs (no direct checks at all)
};

enum class PairState : std::uint8_t { waiting, in_progress, succeeded, failed };
std::string_view to_string(PairState s);

struct Pair {
  Candidate local;  ///< the base's host candidate, or the local prflx a response revealed
  Candidate remote;
  PairState state = PairState::waiting;
  std::uint64_t priority = 0;
  bool nominated = false;
  bool nominate_on_success = false;  ///< controlled: a USE-CANDIDATE check came before our check succeeded
  std::optional<Timestamp> rtt;
  bool relayed = false;  ///< the local end is our relay: checks and data go through the TURN server
};
/// Through a relay: ours (local end) or the peer's (remote relay candidate).
inline bool is_relayed(const Pair& p) { return p.relayed || p.remote.type == CandidateType::relay; }

// ---- events ----
struct CheckResult {
  SocketAddress remote;
  bool success = false;
  std::optional<Timestamp> rtt;
  std::string detail;    ///< e.g. "timeout after 7 transmissions", "487 role conflict"
  bool relayed = false;  ///< the check went through our relay (the pair's local side is the relay)
};
struct Connected {
  Candidate local;
  Candidate remote;
  Timestamp since_start = 0;
  std::optional<Timestamp> rtt;
};
/// Connected over a relayed pair, a direct pair was nominated and took over.
struct PathChanged {
  Candidate local;
  Candidate remote;
  Timestamp since_start = 0;
  std::optional<Timestamp> rtt;
};
struct Failed {
  std::string reason;
};
struct RoleChanged {
  bool controlling = false;
};
using Event = std::variant<CheckResult, Connected, Failed, RoleChanged, PathChanged>;

struct Datagram {
  SocketAddress to;
  Bytes data;
  bool via_relay = false;  ///< send through our TURN allocation (wrap it), not from the socket
};

struct AgentStats {
  std::uint64_t checks_sent = 0;
  std::uint64_t retransmissions = 0;
  std::uint64_t requests_received = 0;   ///< authenticated checks from the peer
  std::uint64_t responses_received = 0;  ///< authenticated answers to our checks
  std::uint64_t bad_credentials = 0;     ///< wrong USERNAME or MESSAGE-INTEGRITY: ignored
  std::uint64_t bad_messages = 0;        ///< not decodable, or not a Binding
  std::uint64_t role_conflicts = 0;
  std::uint64_t prflx_remote = 0;
  std::uint64_t prflx_local = 0;
  std::uint64_t pairs_refused = 0;  ///< over max_pairs
  std::uint64_t consent_checks = 0;
};

class Agent {
 public:
  enum class State : std::uint8_t { checking, connected, failed };

  /// random must outlive the agent (transaction IDs, consent jitter).
  Agent(AgentConfig config, Random& random, Timestamp now);

  /// A host or server-reflexive candidate of our socket (priority computed
  /// when 0). Host candidates also decide which families we can pair.
  void add_local_candidate(Candidate c);
  const std::vector<Candidate>& local_candidates() const { return local_; }

  /// The peer's credentials and candidates (from the introduction). Once.
  void set_remote(Credentials remote, std::vector<Candidate> candidates, Timestamp now);
  bool has_remote() const { return remote_credentials_.has_value(); }

  /// A STUN datagram that the demultiplexer routed to the checks.
  /// via_relay: it came through our TURN allocation (from: the peer's address as the relay saw it).
  void handle_datagram(const SocketAddress& from, ByteView data, Timestamp now, bool via_relay = false);
  std::optional<Timestamp> expiry() const;
  void handle_expiry(Timestamp now);

  std::vector<Datagram> take_datagrams() { return std::exchange(out_, {}); }
  std::vector<Event> take_events() { return std::exchange(events_, {}); }

  State state() const { return state_; }
  bool controlling() const { return config_.controlling; }
  /// The nominated pair once connected.
  const Pair* selected() const;
  const std::vector<Pair>& pairs() const { return pairs_; }
  const AgentStats& stats() const { return stats_; }
  const AgentConfig& config() const { return config_; }

 private:
  struct Transaction {
    std::size_t pair = 0;
    Bytes request;
    Timestamp first_sent = 0, last_sent = 0, next_at = 0, rto = 0;
    unsigned transmissions = 0;
    bool use_candidate = false;
    bool consent = false;
    bool controlling = false;  // the role the check was sent in
    bool cancelled = false;    // replaced by a triggered check: no retransmission, answer still taken
  };

  std::optional<std::size_t> find_pair(const SocketAddress& remote, bool relayed) const;
  std::optional<std::size_t> add_pair(const Candidate& remote, bool relayed);
  void add_pairs_for(const Candidate& remote);
  Candidate local_for(const SocketAddress& remote, bool relayed) const;
  const Candidate* local_relay(const SocketAddress& remote) const;
  bool checking_pairs() const { return state_ == State::checking || upgrading_; }
  void change_path(std::size_t pair, Timestamp now);
  void reprioritize();
  void handle_request(const stun::Message& m, const SocketAddress& from, Timestamp now, bool via_relay);
  void handle_response(const stun::Message& m, const SocketAddress& from, Timestamp now, bool via_relay);
  void send_check(std::size_t pair, bool use_candidate, bool consent, Timestamp now);
  void send_answer(const stun::Message& request, const SocketAddress& to, std::optional<int> error, bool via_relay);
  void enqueue_triggered(std::size_t pair, bool use_candidate);
  void schedule_next_check(Timestamp now);
  void pair_succeeded(std::size_t pair, const Transaction& t, const SocketAddress& mapped, Timestamp now);
  void select(std::size_t pair, Timestamp now);
  void switch_role(Timestamp now);
  void fail(std::string reason);
  std::string failure_reason() const;
  bool can_send_checks() const { return remote_credentials_.has_value(); }

  AgentConfig config_;
  Random& random_;
  Timestamp start_;
  State state_ = State::checking;
  std::vector<Candidate> local_;
  std::optional<Credentials> remote_credentials_;
  std::vector<Pair> pairs_;
  std::deque<std::pair<std::size_t, bool>> triggered_;  // pair, use_candidate
  std::map<stun::TransactionId, Transaction> transactions_;
  std::optional<Timestamp> next_check_at_;
  Timestamp last_check_ = 0;
  bool any_check_sent_ = false;
  std::optional<std::size_t> nominating_;
  std::optional<std::size_t> selected_;
  std::optional<Timestamp> checks_started_;
  std::optional<Timestamp> relay_deadline_;  // controlling: a relayed pair succeeded and waits for this
  bool upgrading_ = false;                   // connected over a relayed pair, still checking direct ones
  Timestamp consent_expires_ = 0;
  std::optional<Timestamp> next_consent_at_;
  std::vector<Datagram> out_;
  std::vector<Event> events_;
  AgentStats stats_;
};

}  // namespace quiclab::ice
