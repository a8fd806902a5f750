// The hole-punching peer behind `quiclab peer`: one UDP socket, and on it,
// through p2p::SharedEndpoint, the rendezvous client, the connectivity-check
// agent and HTTP/3 (docs/p2p.md).
//
//   register ──> (introduce PEER | wait to be introduced)
//            ──> checks on every candidate pair (ice::Agent)
//            ──> nominated pair: the controlling side opens QUIC to the
//                pair's remote (h3::Client), the controlled side accepts it
//                from that address only (h3::Server, accept_initial);
//                each pins the other's certificate from the introduction
//            ──> --get fetches over it, then a verdict.
//
// The cores are sans-IO; this is their libuv adapter: one uv::DeadlineTimer
// for the rendezvous client and the agent, the h3 client or server on the
// shared socket. Everything the user sees goes out as Report objects (one
// per step: registered, introduced, check, connected, quic, fetch, result),
// which cmd_peer prints as text or JSON lines.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "p2p/offer.hpp"
#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/uv.hpp"

namespace quiclab::peer {

/// A TURN server for a relay candidate (p2p/turn_client.hpp).
struct TurnSettings {
  SocketAddress server;
  std::string username;  ///< coturn long-term user, or "EXPIRY:NAME" (use-auth-secret)
  std::string password;  ///< never logged
};

/// Birthday-paradox punching (ice::BirthdayConfig): the budget and pace.
struct BirthdaySettings {
  std::size_t sockets = 256;             ///< behind an endpoint-dependent mapping: extra sockets
  std::size_t probes = 1024;             ///< behind an endpoint-independent one: probes to random ports
  unsigned rate = 100;                   ///< probes per second
  Timestamp wait = 1 * kNanosPerSecond;  ///< after the first check, when no direct pair works yet
};

struct PeerConfig {
  /// The rendezvous server; unset with manual signalling.
  std::optional<SocketAddress> rendezvous;
  std::string name;
  Bytes key;  ///< the registration key (rendezvous mode)
  /// Ask to be introduced to this peer (we are controlling and the QUIC client).
  std::optional<std::string> connect;
  std::uint32_t wait_s = 0;
  std::vector<std::string> gets;  ///< paths fetched over HTTP/3 once connected
  std::optional<std::filesystem::path> root;
  /// Host candidates: addresses (port ignored); auto_hosts gathers the interfaces' addresses.
  bool auto_hosts = true;
  std::vector<SocketAddress> hosts;
  std::optional<SocketAddress> bind;  ///< local address; default: the wildcard of the rendezvous server's family
  Timestamp timeout = 10 * kNanosPerSecond;
  Timestamp keepalive = 15 * kNanosPerSecond;
  bool stay = false;
  /// Stop after the connectivity checks (no QUIC): interop with ICE agents
  /// that do not speak QUIC (libnice). The verdict comes a second after the
  /// nomination, so the other side's last checks are still answered.
  bool checks_only = false;
  /// Manual signalling: print our offer as one JSON line, read the other's.
  bool signal_stdio = false;
  bool controlling_stdio = false;  ///< with signal_stdio: our role (the side with --connect controls)
  /// Where the self-signed certificate goes (a temporary directory, removed by the caller).
  std::filesystem::path work_dir;
  /// The relay: allocate on this TURN server before registering (or writing
  /// the offer) and offer the relayed address as a candidate.
  std::optional<TurnSettings> turn;
  bool relay_only = false;   ///< only relayed pairs
  bool direct_only = false;  ///< ignore the peer's relay candidate (and allocate nothing)
  bool keep_relay = false;   ///< keep the allocation once a direct path took over
  Timestamp relay_wait = 2 * kNanosPerSecond;
  /// After the fetches, over a relay: keep the connection up to this long for
  /// a direct path to take over (0: close at once).
  Timestamp wait_direct = 0;
  /// Birthday punching: measure our NAT's mapping (RFC 5780 mapping tests
  /// against the rendezvous server's alternate address) before registering,
  /// offer it (BIRTHDAY), and punch when one side's mapping is endpoint-
  /// dependent and the other's is not.
  std::optional<BirthdaySettings> birthday;
};

/// One step, as text and as a JSON object with an "event" field.
struct Report {
  nlohmann::json json;
  std::string text;
};

enum class Outcome { none, direct, relayed, failed };

class PeerSession {
 public:
  using ReportFn = std::function<void(const Report&)>;
  /// Offers (manual signalling) go out through write_offer and come in
  /// through offer_received().
  PeerSession(uv::Loop& loop, PeerConfig config, ReportFn report, std::function<void(const std::string&)> write_offer);
  ~PeerSession();
  PeerSession(const PeerSession&) = delete;
  PeerSession& operator=(const PeerSession&) = delete;

  /// Binds the socket, makes the certificate, registers (or prints the
  /// offer). Errors: the socket, the certificate.
  Status start();
  /// The other side's offer line (manual signalling).
  void offer_received(const std::string& line);
  /// Ctrl-C / SIGTERM: unregister, close what is open, report.
  void interrupt();

  /// The process exit code once the loop ran out (cli::ExitCode values).
  int exit_code() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace quiclab::peer
