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
//   - Birthday-paradox punching (BirthdayConfig) for the one cell checks
//     cannot open: the peer behind an endpoint-dependent ("symmetric")
//     mapping opens many sockets, each a base of its own, and sends one check
//     from each to the other's reflexive address (its NAT now holds that many
//     mappings towards it); the peer behind the endpoint-independent mapping
//     then probes random ports of the first one's public IP with checks,
//     paced, within a budget. A probe that lands on one of the mappings is an
//     authenticated check like any other: it is answered from that socket, and
//     the pair (that base, the prober's address) is checked and nominated as
//     usual. Probes and the first checks from the extra bases belong to no
//     pair (hundreds of them would swamp the check list); an answer to one
//     makes the pair it proves.
//   - A verdict for every attempt: connected, or failed with a reason a person
//     understands, at the latest `timeout` after start (later with birthday
//     punching: its probe window counts).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
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

/// Birthday-paradox punching (see the top of this file). The roles come from
/// the two sides' mapping behaviour (the offers' BIRTHDAY attribute): `open`
/// behind the endpoint-dependent mapping, `probe` behind the endpoint-
/// independent one. The expected number of probes until one lands is about
/// ports / sockets (64 512 / 256 = 252): 2.5 s at 100 probes/s; the chance
/// that 1024 probes all miss is (1 - 256/64512)^1024, about 1.7 %.
struct BirthdayConfig {
  enum class Role : std::uint8_t { none, open, probe };
  Role role = Role::none;
  /// Starts this long after the first check when no direct pair has succeeded
  /// by then (the cells where checks alone work are done well before).
  Timestamp wait = 1 * kNanosPerSecond;
  std::size_t sockets = 256;        ///< open: extra sockets (the adapter opens them, add_birthday_base)
  std::size_t probes = 1024;        ///< probe: the budget
  unsigned rate = 100;              ///< probe: probes per second
  std::uint16_t first_port = 1024;  ///< probe: the port range a NAT allocates from (Linux: 1024-65535)
  std::uint16_t last_port = 65535;
};
std::string_view to_string(BirthdayConfig::Role r);

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
  BirthdayConfig birthday;
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
  bool relayed = false;    ///< the local end is our relay: checks and data go through the TURN server
  std::uint16_t base = 0;  ///< 0: the socket; k > 0: birthday socket k (Agent::add_birthday_base)
};
/// Through a relay: ours (local end) or the peer's (remote relay candidate).
inline bool is_relayed(const Pair& p) { return p.relayed || p.remote.type == CandidateType::relay; }

// ---- events ----
struct CheckResult {
  SocketAddress remote;
  bool success = false;
  std::optional<Timestamp> rtt;
  std::string detail;      ///< e.g. "timeout after 7 transmissions", "487 role conflict"
  bool relayed = false;    ///< the check went through our relay (the pair's local side is the relay)
  std::uint16_t base = 0;  ///< the pair's base (0: the socket)
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
/// Birthday punching began: `open` wants BirthdayConfig::sockets sockets
/// (add_birthday_base for each, which sends their first checks to target);
/// `probe` probes random ports of target's IP from now on.
struct BirthdayStarted {
  BirthdayConfig::Role role = BirthdayConfig::Role::none;
  SocketAddress target;
  Timestamp since_start = 0;
};
/// Birthday punching ended: a probe landed (hit), or it was no longer needed,
/// or the budget ran out. The extra sockets other than the selected pair's
/// base may close.
struct BirthdayEnded {
  bool hit = false;
  std::string detail;
  std::uint64_t probes = 0;  ///< probes we sent (probe role)
  std::uint64_t sprays = 0;  ///< first checks from the extra bases (open role)
  Timestamp since_start = 0;
};
struct RoleChanged {
  bool controlling = false;
};
using Event = std::variant<CheckResult, Connected, Failed, RoleChanged, PathChanged, BirthdayStarted, BirthdayEnded>;

struct Datagram {
  SocketAddress to;
  Bytes data;
  bool via_relay = false;  ///< send through our TURN allocation (wrap it), not from the socket
  std::uint16_t base = 0;  ///< 0: from the socket; k > 0: from birthday socket k
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
  std::uint64_t birthday_sprays = 0;  ///< first checks from extra bases (open)
  std::uint64_t birthday_probes = 0;  ///< probes to random ports (probe)
  std::uint64_t birthday_hits = 0;    ///< authenticated packets that came through a birthday mapping
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
  /// via_relay: it came through our TURN allocation (from: the peer's address as the relay saw it);
  /// base: the birthday socket it arrived on (0: the socket).
  void handle_datagram(const SocketAddress& from, ByteView data, Timestamp now, bool via_relay = false,
                       std::uint16_t base = 0);
  /// Birthday punching, open role, after BirthdayStarted: one more socket,
  /// bound at `local`. Its first check to the target goes out at once.
  /// Returns the base number its datagrams carry (Datagram::base).
  std::uint16_t add_birthday_base(const SocketAddress& local, Timestamp now);
  /// The birthday socket bound at base k (k > 0), or nullptr.
  const Candidate* birthday_base(std::uint16_t k) const;
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

  struct Probe {
    SocketAddress to;
    std::uint16_t base = 0;
    Timestamp sent = 0;
    bool controlling = false;  // the role it was sent in
  };
  enum class BirthdayPhase : std::uint8_t { idle, running, done };

  std::optional<std::size_t> find_pair(const SocketAddress& remote, bool relayed, std::uint16_t base = 0) const;
  std::optional<std::size_t> add_pair(const Candidate& remote, bool relayed, std::uint16_t base = 0);
  void add_pairs_for(const Candidate& remote);
  Candidate local_for(const SocketAddress& remote, bool relayed, std::uint16_t base = 0) const;
  Timestamp verdict_deadline() const;
  bool direct_pair_succeeded() const;
  void birthday_step(Timestamp now);
  void send_probe(const SocketAddress& to, std::uint16_t base, Timestamp now);
  bool handle_probe_answer(const stun::Message& m, const SocketAddress& from, Timestamp now, std::uint16_t base);
  void end_birthday(bool hit, std::string detail, Timestamp now);
  const Candidate* local_relay(const SocketAddress& remote) const;
  bool checking_pairs() const { return state_ == State::checking || upgrading_; }
  void change_path(std::size_t pair, Timestamp now);
  void reprioritize();
  void handle_request(const stun::Message& m, const SocketAddress& from, Timestamp now, bool via_relay,
                      std::uint16_t base);
  void handle_response(const stun::Message& m, const SocketAddress& from, Timestamp now, bool via_relay,
                       std::uint16_t base);
  Bytes encode_check(const Candidate& local, bool relayed, bool use_candidate, stun::TransactionId& id);
  void send_check(std::size_t pair, bool use_candidate, bool consent, Timestamp now);
  void send_answer(const stun::Message& request, const SocketAddress& to, std::optional<int> error, bool via_relay,
                   std::uint16_t base);
  void enqueue_triggered(std::size_t pair, bool use_candidate);
  void schedule_next_check(Timestamp now);
  void pair_succeeded(std::size_t pair, const Transaction& t, const SocketAddress& mapped, Timestamp now);
  void select(std::size_t pair, Timestamp now);
  void switch_role(Timestamp now);
  void fail(std::string reason, Timestamp now);
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
  // Birthday punching.
  BirthdayPhase birthday_ = BirthdayPhase::idle;
  std::optional<SocketAddress> birthday_target_;
  Timestamp birthday_started_ = 0;
  std::optional<Timestamp> next_probe_at_;
  std::optional<Timestamp> birthday_end_at_;
  std::vector<Candidate> birthday_bases_;        // base k is birthday_bases_[k - 1]
  std::set<std::uint16_t> probed_ports_;         // each port once
  std::map<stun::TransactionId, Probe> probes_;  // unpaired checks whose answer would prove a pair
  std::vector<Datagram> out_;
  std::vector<Event> events_;
  AgentStats stats_;
};

}  // namespace quiclab::ice
