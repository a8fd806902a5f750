#include "app/peer_session.hpp"

#include <fmt/format.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "app/fetch_json.hpp"
#include "p2p/ice_agent.hpp"
#include "p2p/nat_behavior.hpp"
#include "p2p/rendezvous_client.hpp"
#include "p2p/shared_endpoint.hpp"
#include "p2p/turn_client.hpp"
#include "transport/core/datagram_kind.hpp"
#include "transport/core/deadline_timer.hpp"
#include "transport/core/log.hpp"
#include "transport/core/random.hpp"
#include "transport/h3/client.hpp"
#include "transport/h3/server.hpp"
#include "transport/http/app.hpp"
#include "transport/quic/tls_backend.hpp"
#include "transport/quic/udp_socket.hpp"
#include "transport/tls/tls.hpp"

namespace quiclab::peer {

namespace {

// The exit codes of DESIGN.md / the issue (cli::ExitCode has the same values).
constexpr int kOk = 0, kHttpError = 1, kTransport = 3, kNoPath = 4;

// Checks that arrive before the agent exists (the peer heard of us first) are
// kept and fed to it when it comes; bounded, so a scanner pins nothing.
constexpr std::size_t kMaxEarlyChecks = 32;
// After nomination, how long the controlled side waits for the QUIC handshake.
constexpr Timestamp kQuicWait = 15 * kNanosPerSecond;
// The controlled side releases its allocation once the path moved to a
// direct pair and no QUIC came through the relay for this long (the client
// migrates; packets in flight on the relay still arrive for a moment).
constexpr Timestamp kRelayQuiet = 3 * kNanosPerSecond;
constexpr std::size_t kRelayUdpPayload = 1400;  // relay_safe_payload()

// What a /bytes/N fetch has seen of the generated pattern.
struct ByteCheck {
  std::optional<std::uint64_t> expected;
  std::uint64_t offset = 0;
  bool mismatch = false;
};

// A DatagramHandler made of functions: the endpoint's per-route handlers.
struct Forward final : quic::DatagramHandler {
  std::function<void(const quic::ReceivedDatagram&)> datagram;
  std::function<void()> batch_end;
  std::function<void(int, const SocketAddress&)> socket_error;
  void handle_datagram(const quic::ReceivedDatagram& d) override {
    if (datagram) datagram(d);
  }
  void handle_batch_end() override {
    if (batch_end) batch_end();
  }
  void handle_socket_error(int err, const SocketAddress& to) override {
    if (socket_error) socket_error(err, to);
  }
};

struct EarlyCheck {
  SocketAddress from;
  Bytes data;
  bool via_relay = false;
};

nlohmann::json candidate_json(const ice::Candidate& c) {
  return {{"type", std::string(ice::to_string(c.type))}, {"address", c.address.to_string()}};
}

std::string candidate_text(const ice::Candidate& c) {
  return fmt::format("{} {}", ice::to_string(c.type), c.address.to_string());
}

nlohmann::json ms_or_null(std::optional<Timestamp> t) {
  return t ? nlohmann::json(to_ms(*t)) : nlohmann::json(nullptr);
}

bool link_local_v6(const SocketAddress& a) {
  if (!a.is_v6()) return false;
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.sa());
  return in6->sin6_addr.s6_addr[0] == 0xfe && (in6->sin6_addr.s6_addr[1] & 0xc0) == 0x80;
}

// Every non-loopback address of the socket's family (RFC 8445 5.1.1.1), IPv6
// link-local ones left out (they need a scope the peer cannot know).
std::vector<SocketAddress> interface_addresses(int family) {
  std::vector<SocketAddress> out;
  uv_interface_address_t* list = nullptr;
  int n = 0;
  if (uv_interface_addresses(&list, &n) != 0) return out;
  for (int i = 0; i < n; ++i) {
    if (list[i].is_internal) continue;
    SocketAddress a(reinterpret_cast<const sockaddr*>(&list[i].address));
    if (a.empty() || a.family() != family || link_local_v6(a)) continue;
    if (std::find_if(out.begin(), out.end(), [&](const SocketAddress& x) { return x.same_ip(a); }) == out.end())
      out.push_back(a);
  }
  uv_free_interface_addresses(list, n);
  return out;
}

// The reason a person reads when the introduction did not happen.
std::string introduction_failure(int code, const std::string& reason, const std::string& peer) {
  if (code == 404) return fmt::format("peer '{}' is not registered with the rendezvous server", peer);
  if (code == 408) return fmt::format("the introduction did not reach peer '{}' (no answer)", peer);
  return fmt::format("introduction to '{}' failed: {} {}", peer, code, reason);
}

}  // namespace

struct PeerSession::Impl {
  enum class Phase { starting, registering, waiting, checking, connected, done };

  uv::Loop& loop;
  PeerConfig config;
  ReportFn report;
  std::function<void(const std::string&)> write_offer;
  Timestamp t0 = uv::Loop::hrtime();
  Phase phase = Phase::starting;
  int exit_code = kNoPath;
  bool result_reported = false;
  bool torn_down = false;

  std::shared_ptr<quic::UdpSocket> socket;
  std::unique_ptr<p2p::SharedEndpoint> endpoint;
  std::unique_ptr<uv::DeadlineTimer> timer;
  std::optional<uv::Timer> monitor;
  std::optional<uv::Timer> checks_done;
  std::optional<uv::Timer> linger;  // --wait-direct-ms: fetches done over a relay, a direct path may still come
  Forward rendezvous_handler, check_handler, quic_handler, turn_handler;

  tls::CertificatePaths cert;
  Bytes fingerprint;

  std::optional<rendezvous::Client> rv;
  uv::DeadlineTimer::Id rv_timer = 0;
  bool registered_once = false;
  SocketAddress mapped;

  // The current attempt.
  std::unique_ptr<ice::Agent> agent;
  uv::DeadlineTimer::Id agent_timer = 0;
  std::vector<EarlyCheck> early_checks;
  std::uint64_t early_checks_dropped = 0;
  std::string peer_name;
  bool controlling = false;
  Bytes remote_fingerprint;
  Timestamp introduced_at = 0;
  Timestamp connected_at = 0;
  std::optional<ice::Candidate> selected_remote;
  std::optional<p2p::Offer> local_offer;  // manual signalling

  // QUIC and HTTP/3.
  http::Metrics metrics;
  std::unique_ptr<http::App> app;
  h3::ServerConfig server_config;
  std::unique_ptr<h3::Server> server;
  std::unique_ptr<h3::Client> client;
  Timestamp first_quic_at = 0;
  bool quic_reported = false;
  std::size_t fetches_left = 0;
  bool fetch_http_error = false, fetch_failed = false;
  std::uint64_t sessions = 0;
  std::uint64_t quic_refused = 0;

  // The relay (TURN through coturn).
  std::optional<turn::Client> turn;
  uv::DeadlineTimer::Id turn_timer = 0;
  std::optional<SocketAddress> relayed;  // our allocation's relayed address
  bool relay_settled = false;            // allocated or failed: registration (or the offer) may go on
  bool relay_released = false;
  bool on_relay = false;  // the selected pair runs through a relay
  // Where the latest QUIC packet came from, and whether through our relay: the
  // controlled side can serve QUIC before its own view of the pair settles.
  std::optional<SocketAddress> last_quic_from;
  bool last_quic_via_relay = false;
  std::optional<Timestamp> path_changed_at;
  Timestamp last_relayed_quic = 0;
  std::uint64_t relayed_quic_in = 0;

  // Birthday punching: our NAT's mapping (measured before registering), the
  // role of this attempt, and the extra sockets of the open role (base k is
  // birthday_sockets[k - 1]; closed ones are null).
  std::optional<stun::NatBehaviorDiscovery> discovery;
  uv::DeadlineTimer::Id discovery_timer = 0;
  bool mapping_settled = false;
  std::optional<rendezvous::Mapping> our_mapping;
  ice::BirthdayConfig::Role birthday_role = ice::BirthdayConfig::Role::none;
  struct BirthdaySocket {
    std::shared_ptr<quic::UdpSocket> socket;
    SocketAddress local;
    std::uint16_t base = 0;
  };
  std::vector<BirthdaySocket> birthday_sockets;
  std::size_t birthday_opened = 0;
  std::optional<bool> birthday_hit;

  Impl(uv::Loop& l, PeerConfig c, ReportFn r, std::function<void(const std::string&)> w)
      : loop(l), config(std::move(c)), report(std::move(r)), write_offer(std::move(w)) {}

  static Timestamp now() { return uv::Loop::hrtime(); }

  void emit(nlohmann::json j, std::string text) {
    j["t_ms"] = to_ms(now() - t0);
    // Wall clock, so that two peers' lines (one machine, any namespaces) can
    // be put on one time line (bench/p2p/ladder.py).
    j["wall_ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
    report(Report{std::move(j), fmt::format("[{:9.1f} ms] {}", to_ms(now() - t0), text)});
  }

  // ---- start ----
  Status start() {
    const bool v6 =
        config.rendezvous ? config.rendezvous->is_v6() : (!config.hosts.empty() && config.hosts.front().is_v6());
    auto bind_at = config.bind ? *config.bind : *SocketAddress::from_ip(v6 ? "::" : "0.0.0.0", 0);
    auto opened = quic::open_udp(loop, bind_at);
    if (!opened) return opened.error();
    socket = std::move(*opened);
    const auto port = socket->local_address().port();

    std::vector<SocketAddress> hosts = config.hosts;
    if (config.auto_hosts) hosts = interface_addresses(socket->local_address().family());
    for (auto& h : hosts) h.set_port(port);
    config.hosts = hosts;

    auto made = tls::generate_self_signed(config.work_dir, {config.name + ".peer.invalid"});
    if (!made) return made.error();
    cert = *made;
    auto fp = quic::tls::certificate_sha256(cert.cert);
    if (!fp) return fp.error();
    fingerprint = *fp;

    endpoint = std::make_unique<p2p::SharedEndpoint>(*socket);
    timer = std::make_unique<uv::DeadlineTimer>(loop);
    rendezvous_handler.datagram = [this](const quic::ReceivedDatagram& d) {
      if (discovery && !discovery->done()) {
        discovery->handle_datagram(d.peer, d.data, now());
        flush_discovery();
      } else if (rv) {
        if (!rv->handle_datagram(d.data, now()))
          log::debug("peer: ignored a datagram from the rendezvous server ({} bytes)", d.data.size());
        flush_rv();
      }
    };
    check_handler.datagram = [this](const quic::ReceivedDatagram& d) {
      if (discovery && !discovery->done()) {
        // The mapping tests' answers come from the server's alternate address.
        discovery->handle_datagram(d.peer, d.data, now());
        flush_discovery();
      } else if (agent) {
        agent->handle_datagram(d.peer, d.data, now());
        flush_agent();
      } else if (early_checks.size() < kMaxEarlyChecks) {
        early_checks.push_back({d.peer, Bytes(d.data.begin(), d.data.end()), false});
      } else {
        ++early_checks_dropped;
      }
    };
    quic_handler.datagram = [this](const quic::ReceivedDatagram& d) {
      if (quic::DatagramHandler* h = quic_target()) {
        if (first_quic_at == 0) first_quic_at = now();
        last_quic_from = d.peer;
        last_quic_via_relay = false;
        h->handle_datagram(d);
      } else {
        refused(d.peer, "no session is open");
      }
    };
    quic_handler.batch_end = [this] {
      if (auto* h = quic_target()) h->handle_batch_end();
      watch_server();
    };
    quic_handler.socket_error = [this](int err, const SocketAddress& to) {
      if (auto* h = quic_target()) h->handle_socket_error(err, to);
    };
    endpoint->set_handler(p2p::Route::rendezvous, &rendezvous_handler);
    endpoint->set_handler(p2p::Route::connectivity_check, &check_handler);
    endpoint->set_handler(p2p::Route::quic, &quic_handler);
    if (config.rendezvous) endpoint->demux().set_rendezvous_server(*config.rendezvous);
    if (config.turn) {
      turn_handler.datagram = [this](const quic::ReceivedDatagram& d) { from_turn_server(d.data); };
      endpoint->demux().set_turn_server(config.turn->server);
      endpoint->set_handler(p2p::Route::turn, &turn_handler);
    }
    if (auto st = endpoint->start(); !st) return st;
    monitor.emplace(loop);
    monitor->start(100, 100, [this] { tick(); });

    // The relayed address and our NAT's mapping go into our offers: both first.
    if (config.birthday) start_discovery();
    if (config.turn) start_turn();
    return maybe_start_signalling();
  }

  Status maybe_start_signalling() {
    if ((config.turn && !relay_settled) || (config.birthday && !mapping_settled)) return {};
    if (phase != Phase::starting) return {};
    return start_signalling();
  }

  // ---- our NAT's mapping (birthday punching) ----
  void start_discovery() {
    stun::TransactionConfig tc;
    tc.rto = 250 * kNanosPerMilli;
    tc.rc = 4;
    tc.rm = 4;
    discovery.emplace(*config.rendezvous, socket->local_address(), true, tc);
    discovery->mapping_only();
    discovery_timer = timer->add(*discovery, [this] { flush_discovery(); });
    discovery->start(now());
    flush_discovery();
  }

  void flush_discovery() {
    if (!discovery) return;
    for (auto& d : discovery->take_datagrams()) send(d.to, d.data);
    if (timer) timer->rearm();
    if (!discovery->done() || mapping_settled) return;
    mapping_settled = true;
    const auto& r = discovery->result();
    if (!r.error.empty()) {
      emit({{"event", "nat_mapping"}, {"error", r.error}, {"birthday", false}},
           fmt::format("--birthday: our NAT's mapping is unknown ({}): birthday punching is off", r.error));
    } else {
      our_mapping = r.mapping == stun::NatBehavior::EndpointIndependent ? rendezvous::Mapping::endpoint_independent
                                                                        : rendezvous::Mapping::endpoint_dependent;
      const bool dependent = our_mapping == rendezvous::Mapping::endpoint_dependent;
      emit({{"event", "nat_mapping"},
            {"mapping", std::string(stun::to_string(r.mapping))},
            {"mapped", r.mapped.to_string()},
            {"behind_nat", r.behind_nat},
            {"birthday", true}},
           fmt::format("our NAT's mapping: {} (mapped {}); birthday punching: we {} when the peer's is {}",
                       stun::to_string(r.mapping), r.mapped.to_string(),
                       dependent ? "open extra sockets" : "probe its ports",
                       dependent ? "endpoint-independent" : "endpoint-dependent"));
    }
    // Destroyed later on this turn: we are inside its flush.
    auto t = std::make_shared<uv::Timer>(loop);
    t->start(0, 0, [this, t] {
      t->close();
      if (timer && discovery_timer) timer->remove(discovery_timer);
      discovery_timer = 0;
      discovery.reset();
    });
    if (auto st = maybe_start_signalling(); !st) finish(Outcome::failed, st.error().message, kNoPath);
  }

  Status start_signalling() {
    if (config.signal_stdio) return start_manual();

    rendezvous::ClientConfig rc;
    rc.name = config.name;
    rc.key = config.key;
    rc.host_candidates = config.hosts;
    rc.certificate_fingerprint = fingerprint;
    rc.keepalive = config.keepalive;
    rc.relay_candidate = relayed;
    rc.birthday = our_mapping;
    rv.emplace(rc);
    rv_timer = timer->add(*rv, [this] { flush_rv(); });
    phase = Phase::registering;
    std::string hosts_text;
    for (const auto& h : config.hosts) hosts_text += (hosts_text.empty() ? "" : ", ") + h.to_string();
    log::info("peer: socket {}, host candidates: {}", socket->local_address().to_string(),
              hosts_text.empty() ? "none" : hosts_text);
    rv->register_name(now());
    flush_rv();
    return {};
  }

  quic::DatagramHandler* quic_target() {
    if (client) return client.get();
    if (server) return server.get();
    return nullptr;
  }

  void send(const SocketAddress& to, ByteView data) {
    auto r = socket->send(to, data);
    if (r.status != quic::SendStatus::sent)
      log::debug("peer: cannot send to {}: {}", to.to_string(),
                 r.status == quic::SendStatus::blocked ? "socket buffer full" : std::strerror(r.error));
  }

  // ---- the relay ----
  void start_turn() {
    turn::ClientConfig tc;
    tc.credentials = {config.turn->username, config.turn->password};
    turn.emplace(tc, Random::system());
    turn_timer = timer->add(*turn, [this] { flush_turn(); });
    log::info("peer: allocating a relay on {} as '{}'", config.turn->server.to_string(), config.turn->username);
    turn->start(now());
    flush_turn();
  }

  void flush_turn() {
    if (!turn) return;
    for (;;) {
      auto out = turn->take_datagrams();
      auto events = turn->take_events();
      if (out.empty() && events.empty()) break;
      for (auto& d : out) send(config.turn->server, d);
      for (auto& e : events) {
        on_turn(e);
        if (!turn) return;
      }
    }
    if (timer) timer->rearm();
  }

  // Sends what the TURN client queued (a CreatePermission a wrap() asked
  // for) without handling its events: safe from inside a QUIC send.
  void send_turn_requests() {
    if (!turn) return;
    for (auto& d : turn->take_datagrams()) send(config.turn->server, d);
    if (timer) timer->rearm();
  }

  // Once the allocation succeeded or failed: register (or write the offer).
  void relay_settled_now() {
    if (relay_settled) return;
    relay_settled = true;
    if (auto st = maybe_start_signalling(); !st) finish(Outcome::failed, st.error().message, kNoPath);
  }

  void on_turn(const turn::Event& e) {
    if (const auto* a = std::get_if<turn::Allocated>(&e)) {
      relayed = a->relayed;
      // QUIC sent "from" the relayed address leaves through the relay.
      socket->divert_source(a->relayed, [this](const SocketAddress& to, ByteView data, std::size_t seg, quic::Ecn) {
        return send_relayed(to, data, seg);
      });
      emit({{"event", "relay"},
            {"server", config.turn->server.to_string()},
            {"relayed", a->relayed.to_string()},
            {"mapped", a->mapped.to_string()},
            {"lifetime_s", a->lifetime_s},
            {"rtt_ms", to_ms(a->rtt)}},
           fmt::format("relay allocated on {}: relayed address {} (mapped {}), lifetime {} s, {:.1f} ms",
                       config.turn->server.to_string(), a->relayed.to_string(), a->mapped.to_string(), a->lifetime_s,
                       to_ms(a->rtt)));
      if (agent) agent->add_local_candidate({ice::CandidateType::relay, a->relayed, 0});
      relay_settled_now();
    } else if (const auto* f = std::get_if<turn::AllocationFailed>(&e)) {
      // The TURN client's reason already starts with the code ("401 Unauthorized ...").
      const std::string why = f->reason;
      emit({{"event", "relay_failed"}, {"server", config.turn->server.to_string()}, {"code", f->code}, {"reason", why}},
           fmt::format("no relay from {}: {}", config.turn->server.to_string(), why));
      if (config.relay_only) {
        finish(Outcome::failed, "no relay (--relay-only): " + why, kNoPath);
        return;
      }
      relay_settled_now();
    } else if (const auto* l = std::get_if<turn::AllocationLost>(&e)) {
      emit({{"event", "relay_lost"}, {"reason", l->reason}}, "the relay allocation was lost: " + l->reason);
    } else if (const auto* p = std::get_if<turn::PermissionResult>(&e)) {
      if (!p->ok)
        log::info(
            "peer: TURN permission for {} refused ({}): the relay does not reach that address, other "
            "candidates go on",
            p->peer.ip(), p->detail);
    } else if (const auto* c = std::get_if<turn::ChannelResult>(&e)) {
      if (c->ok)
        log::info("peer: TURN channel 0x{:04x} bound to {}", c->channel, c->peer.to_string());
      else
        log::warn("peer: TURN channel for {} refused: {}", c->peer.to_string(), c->detail);
    } else if (std::holds_alternative<turn::Released>(e)) {
      log::info("peer: relay allocation released");
    }
  }

  // QUIC packets (segment_size each, GSO style) for `to` through the relay:
  // one ChannelData (or Send indication) per packet.
  quic::SendResult send_relayed(const SocketAddress& to, ByteView data, std::size_t seg) {
    if (!turn || !config.turn) return {quic::SendStatus::error, 0, ENETUNREACH};
    // The hot path: once the permission is installed (the usual case, a
    // burst of a transfer), no request is queued and the timer needs no
    // rearming; only a missing permission asks for one (and sends it).
    const bool asked = !turn->has_permission(to);
    if (asked) turn->create_permission(to, now());
    auto done = [&](quic::SendResult r) {
      if (asked) send_turn_requests();
      return r;
    };
    // The wrapped packets go out as GSO batches too: ChannelData adds the
    // same 4 bytes to every packet (a Send indication the same padded header),
    // so a burst of equal QUIC packets stays a burst of equal datagrams, one
    // sendmsg for up to 64 of them instead of one each (the relayed sender's
    // CPU was the limit in the lab). wrap() counts a packet when it wraps it:
    // on a blocked socket the counters run ahead by the unsent few.
    const std::size_t step = seg ? seg : data.size();
    std::size_t off = 0, batch_off = 0, wseg = 0, in_batch = 0;
    Bytes batch;
    auto flush = [&]() -> std::optional<quic::SendResult> {
      if (batch.empty()) return std::nullopt;
      auto r = socket->send(config.turn->server, batch, in_batch > 1 ? wseg : 0);
      if (r.status == quic::SendStatus::blocked)
        return quic::SendResult{quic::SendStatus::blocked, batch_off + (wseg ? r.bytes_sent / wseg : 0) * step, 0};
      batch.clear();
      in_batch = 0;
      return std::nullopt;
    };
    while (off < data.size()) {
      const std::size_t n = std::min(step, data.size() - off);
      auto wrapped = turn->wrap(to, data.subspan(off, n));
      if (!wrapped) return done({quic::SendStatus::error, 0, ENETUNREACH});  // no allocation (lost or released)
      // A batch takes one more while every datagram in it is full-size (only the last may be shorter).
      const bool fits = in_batch > 0 && batch.size() == in_batch * wseg && wrapped->size() <= wseg &&
                        in_batch < quic::UdpSocket::max_gso_segments() && batch.size() + wrapped->size() <= 65507;
      if (!fits) {
        if (auto r = flush()) return done(*r);
        wseg = wrapped->size();
        batch_off = off;
      }
      batch.insert(batch.end(), wrapped->begin(), wrapped->end());
      ++in_batch;
      off += n;
    }
    if (auto r = flush()) return done(*r);
    return done({quic::SendStatus::sent, data.size(), 0});
  }

  // A check for `to` that leaves through our allocation.
  void send_via_relay(const SocketAddress& to, ByteView data) {
    if (!turn) return;
    turn->create_permission(to, now());
    if (auto wrapped = turn->wrap(to, data)) send(config.turn->server, *wrapped);
  }

  void from_turn_server(ByteView data) {
    if (!turn) return;
    auto inner = turn->handle_datagram(data, now());
    flush_turn();
    if (!inner || !turn) return;
    if (is_stun_message(inner->data)) {
      if (agent) {
        agent->handle_datagram(inner->peer, inner->data, now(), true);
        flush_agent();
      } else if (early_checks.size() < kMaxEarlyChecks) {
        early_checks.push_back({inner->peer, std::move(inner->data), true});
      } else {
        ++early_checks_dropped;
      }
      return;
    }
    quic::DatagramHandler* h = quic_target();
    if (!h || !relayed) {
      refused(inner->peer, "no session is open (through the relay)");
      return;
    }
    if (first_quic_at == 0) first_quic_at = now();
    ++relayed_quic_in;
    last_relayed_quic = now();
    last_quic_from = inner->peer;
    last_quic_via_relay = true;
    quic::ReceivedDatagram d{inner->data, inner->peer, *relayed, 0};
    h->handle_datagram(d);
  }

  void release_relay(const std::string& why) {
    if (!turn || relay_released || config.keep_relay) return;
    if (turn->state() != turn::Client::State::allocated) return;
    relay_released = true;
    turn->release(now());
    flush_turn();
    emit({{"event", "relay_released"}, {"reason", why}}, "relay released: " + why);
  }

  // ---- the rendezvous client ----
  void flush_rv() {
    if (!rv) return;
    for (;;) {
      auto out = rv->take_datagrams();
      auto events = rv->take_events();
      if (out.empty() && events.empty()) break;
      for (auto& d : out) send(*config.rendezvous, d);
      for (auto& e : events) {
        on_rendezvous(e);
        if (!rv) return;
      }
    }
    if (timer) timer->rearm();
  }

  void on_rendezvous(const rendezvous::Event& e) {
    if (const auto* r = std::get_if<rendezvous::Registered>(&e)) {
      if (r->lifetime_s == 0) return;
      mapped = r->mapped;
      if (registered_once) {
        log::debug("peer: registration refreshed ({} s)", r->lifetime_s);
        return;
      }
      registered_once = true;
      emit({{"event", "registered"},
            {"name", config.name},
            {"mapped", r->mapped.to_string()},
            {"local", socket->local_address().to_string()},
            {"lifetime_s", r->lifetime_s}},
           fmt::format("registered as '{}' with {}: mapped address {} (socket {}), lifetime {} s", config.name,
                       config.rendezvous->to_string(), r->mapped.to_string(), socket->local_address().to_string(),
                       r->lifetime_s));
      if (config.connect) {
        phase = Phase::checking;
        rv->introduce(*config.connect, now(), config.wait_s);
      } else {
        phase = Phase::waiting;
        emit({{"event", "waiting"}}, "waiting to be introduced");
      }
    } else if (const auto* p = std::get_if<rendezvous::IntroductionPending>(&e)) {
      if (p->wait_s > 0)
        emit({{"event", "introduction_pending"}, {"peer", p->peer}, {"wait_s", p->wait_s}},
             fmt::format("'{}' is not registered yet: the server holds the introduction up to {} s", p->peer,
                         p->wait_s));
    } else if (const auto* in = std::get_if<rendezvous::Introduced>(&e)) {
      begin_attempt(true, in->candidates.name, in->local, in->remote, in->candidates);
    } else if (const auto* rec = std::get_if<rendezvous::IntroductionReceived>(&e)) {
      if (agent) {
        log::info("peer: introduction from '{}' ignored: an attempt with '{}' is running", rec->candidates.name,
                  peer_name);
        return;
      }
      begin_attempt(false, rec->candidates.name, rec->local, rec->remote, rec->candidates);
    } else if (const auto* f = std::get_if<rendezvous::IntroductionFailed>(&e)) {
      if (config.connect && !agent)
        finish(Outcome::failed, introduction_failure(f->error_code, f->reason, f->peer), kNoPath);
    } else if (const auto* rf = std::get_if<rendezvous::RequestFailed>(&e)) {
      std::string why = fmt::format("rendezvous server refused {}: {} {}",
                                    rf->method == stun::method::kIntroduce ? "the introduction" : "the request",
                                    rf->error_code, rf->reason);
      if (rf->method == stun::method::kIntroduce) why = introduction_failure(rf->error_code, rf->reason, rf->peer);
      if (!registered_once || (config.connect && !agent))
        finish(Outcome::failed, why, kNoPath);
      else
        log::warn("peer: {}", why);
    } else if (const auto* t = std::get_if<rendezvous::RequestTimedOut>(&e)) {
      std::string why = fmt::format("the rendezvous server {} did not answer{}", config.rendezvous->to_string(),
                                    t->method == stun::method::kIntroduce ? " the introduction request" : "");
      if (!registered_once || (config.connect && !agent))
        finish(Outcome::failed, why, kNoPath);
      else
        log::warn("peer: {}", why);
    }
  }

  std::vector<ice::Candidate> local_candidates() const {
    std::vector<ice::Candidate> out;
    for (const auto& h : config.hosts) out.push_back({ice::CandidateType::host, h, 0});
    if (!mapped.empty() &&
        std::none_of(out.begin(), out.end(), [&](const ice::Candidate& c) { return c.address == mapped; }))
      out.push_back({ice::CandidateType::srflx, mapped, 0});
    if (relayed) out.push_back({ice::CandidateType::relay, *relayed, 0});
    return out;
  }

  // ---- one attempt: checks, then QUIC ----
  void begin_attempt(bool as_controlling, const std::string& peer, const rendezvous::IntroductionOffer& local,
                     const rendezvous::IntroductionOffer& remote, const rendezvous::PeerCandidates& where) {
    std::vector<ice::Candidate> remote_candidates;
    for (const auto& h : where.hosts) remote_candidates.push_back({ice::CandidateType::host, h, 0});
    if (!where.reflexive.empty() && std::none_of(remote_candidates.begin(), remote_candidates.end(),
                                                 [&](const ice::Candidate& c) { return c.address == where.reflexive; }))
      remote_candidates.push_back({ice::CandidateType::srflx, where.reflexive, 0});
    if (remote.relay) remote_candidates.push_back({ice::CandidateType::relay, *remote.relay, 0});
    remote_relays = remote.relay.has_value() && !config.direct_only;
    // Birthday punching when one side's mapping depends on the destination and the other's does not.
    birthday_role = ice::BirthdayConfig::Role::none;
    if (our_mapping && remote.birthday && *our_mapping != *remote.birthday && !config.relay_only)
      birthday_role = *our_mapping == rendezvous::Mapping::endpoint_dependent ? ice::BirthdayConfig::Role::open
                                                                              : ice::BirthdayConfig::Role::probe;
    start_agent(as_controlling, peer, {local.ufrag, local.password}, local.tie_breaker, local_candidates());
    introduce_remote(peer, {remote.ufrag, remote.password}, remote.fingerprint, remote_candidates);
  }

  void start_agent(bool as_controlling, const std::string& peer, ice::Credentials local, std::uint64_t tie_breaker,
                   std::vector<ice::Candidate> locals) {
    controlling = as_controlling;
    peer_name = peer;
    ice::AgentConfig ac;
    ac.controlling = as_controlling;
    ac.tie_breaker = tie_breaker;
    ac.local = std::move(local);
    ac.timeout = config.timeout;
    ac.relay_wait = config.relay_wait;
    ac.relay_only = config.relay_only;
    if (config.birthday) {
      ac.birthday.role = birthday_role;
      ac.birthday.sockets = config.birthday->sockets;
      ac.birthday.probes = config.birthday->probes;
      ac.birthday.rate = config.birthday->rate;
      ac.birthday.wait = config.birthday->wait;
    }
    agent = std::make_unique<ice::Agent>(ac, Random::system(), now());
    for (auto& c : locals) agent->add_local_candidate(c);
    agent_timer = timer->add(*agent, [this] { flush_agent(); });
    phase = Phase::checking;
  }

  void introduce_remote(const std::string& peer, ice::Credentials creds, const Bytes& peer_fingerprint,
                        std::vector<ice::Candidate> candidates) {
    peer_name = peer;
    remote_fingerprint = peer_fingerprint;
    introduced_at = now();
    if (config.direct_only)
      std::erase_if(candidates, [](const ice::Candidate& c) { return c.type == ice::CandidateType::relay; });
    // Permissions first: the peer's checks reach our relayed address only
    // from IPs we allowed (TURN permissions ignore the port).
    if (turn && relayed) {
      for (const auto& c : candidates)
        if (c.type != ice::CandidateType::relay) turn->create_permission(c.address, now());
      flush_turn();
    }
    nlohmann::json list = nlohmann::json::array();
    std::string text;
    for (const auto& c : candidates) {
      list.push_back(candidate_json(c));
      text += (text.empty() ? "" : ", ") + candidate_text(c);
    }
    nlohmann::json intro{{"event", "introduced"},
                         {"peer", peer},
                         {"role", controlling ? "controlling" : "controlled"},
                         {"candidates", list},
                         {"fingerprint", quic::tls::fingerprint_text(peer_fingerprint)}};
    if (config.birthday) intro["birthday"] = std::string(ice::to_string(birthday_role));
    emit(std::move(intro), fmt::format("introduced to '{}' ({}; we are {} and the QUIC {}): candidates {}", peer,
                                       quic::tls::fingerprint_text(peer_fingerprint).substr(0, 23) + "…",
                                       controlling ? "controlling" : "controlled", controlling ? "client" : "server",
                                       text.empty() ? "none" : text));
    if (!controlling && !config.checks_only) start_server();
    agent->set_remote(std::move(creds), std::move(candidates), now());
    for (auto& c : std::exchange(early_checks, {})) agent->handle_datagram(c.from, c.data, now(), c.via_relay);
    flush_agent();
  }

  void flush_agent() {
    if (!agent) return;
    for (;;) {
      auto out = agent->take_datagrams();
      auto events = agent->take_events();
      if (out.empty() && events.empty()) break;
      for (auto& d : out) {
        if (d.via_relay)
          send_via_relay(d.to, d.data);
        else if (d.base > 0)
          send_from_base(d.base, d.to, d.data);
        else
          send(d.to, d.data);
      }
      for (auto& e : events) {
        on_agent(e);
        if (!agent) return;
      }
    }
    send_turn_requests();
    if (timer) timer->rearm();
  }

  const ice::Pair* pair_for(const SocketAddress& remote, bool through_relay, std::uint16_t base) const {
    for (const auto& p : agent->pairs())
      if (p.remote.address == remote && p.relayed == through_relay && p.base == base) return &p;
    return nullptr;
  }

  // ---- birthday punching: the open role's extra sockets ----
  BirthdaySocket* birthday_socket(std::uint16_t base) {
    if (base == 0 || base > birthday_sockets.size()) return nullptr;
    auto& b = birthday_sockets[base - 1];
    return b.socket ? &b : nullptr;
  }

  void send_from_base(std::uint16_t base, const SocketAddress& to, ByteView data) {
    auto* b = birthday_socket(base);
    if (!b) return;
    auto r = b->socket->send(to, data);
    if (r.status != quic::SendStatus::sent)
      log::debug("peer: birthday socket {} cannot send to {}", b->local.to_string(), to.to_string());
  }

  // The agent asks for the open role's sockets: bound on the address our
  // route to the peer leaves from, any port (the NAT gives each mapping a
  // port of its own). Small receive buffers: one of them at most carries the
  // session.
  void open_birthday_sockets(const SocketAddress& target) {
    auto source = quic::route_source(target);
    if (!source) {
      log::warn("peer: birthday punching: no route to {}: {}", target.to_string(), source.error().message);
      return;
    }
    SocketAddress bind_at = *source;
    bind_at.set_port(0);
    quic::UdpSocketOptions opts;
    opts.gro = false;
    opts.recv_batch = 1;
    opts.pktinfo = false;
    const std::size_t n = config.birthday ? config.birthday->sockets : 0;
    for (std::size_t i = 0; i < n && agent; ++i) {
      auto opened = quic::open_udp(loop, bind_at, opts);
      if (!opened) {
        log::warn("peer: birthday punching: socket {} of {}: {} (going on with {})", i + 1, n, opened.error().message,
                  birthday_opened);
        break;
      }
      BirthdaySocket b;
      b.socket = std::move(*opened);
      b.local = b.socket->local_address();
      b.base = agent->add_birthday_base(b.local, now());
      if (b.base == 0) break;
      const std::uint16_t base = b.base;
      const SocketAddress local = b.local;
      (void)b.socket->start([this, base, local](const quic::ReceivedDatagram& d) { from_base(base, local, d); },
                            [this] {
                              if (auto* h = quic_target()) h->handle_batch_end();
                            });
      // QUIC on this base: ngtcp2's path has this local address; the shared socket sends it from here.
      auto* sock = b.socket.get();
      socket->divert_source(local, [sock](const SocketAddress& to, ByteView data, std::size_t seg, quic::Ecn ecn) {
        return sock->send(to, data, seg, ecn);
      });
      birthday_sockets.push_back(std::move(b));
      ++birthday_opened;
    }
    flush_agent();
  }

  void from_base(std::uint16_t base, const SocketAddress& local, const quic::ReceivedDatagram& d) {
    if (is_stun_message(d.data)) {
      if (agent) {
        agent->handle_datagram(d.peer, d.data, now(), false, base);
        flush_agent();
      }
      return;
    }
    quic::DatagramHandler* h = quic_target();
    if (!h) {
      refused(d.peer, "no session is open (birthday socket)");
      return;
    }
    if (first_quic_at == 0) first_quic_at = now();
    last_quic_from = d.peer;
    last_quic_via_relay = false;
    quic::ReceivedDatagram in{d.data, d.peer, local, d.ecn};
    h->handle_datagram(in);
  }

  // Every birthday socket but the selected pair's (keep: its base, 0 for none).
  void close_birthday_sockets(std::uint16_t keep) {
    for (auto& b : birthday_sockets) {
      if (!b.socket || b.base == keep) continue;
      if (socket) socket->divert_source(b.local, nullptr);
      b.socket->close();
      // Destroyed later on this turn: a callback of it may be running.
      auto t = std::make_shared<uv::Timer>(loop);
      t->start(0, 0, [s = std::move(b.socket), t]() mutable {
        s.reset();
        t->close();
      });
    }
  }

  std::uint16_t selected_base() const {
    const ice::Pair* p = agent ? agent->selected() : nullptr;
    return p ? p->base : 0;
  }
  std::optional<SocketAddress> base_local(std::uint16_t base) {
    auto* b = birthday_socket(base);
    return b ? std::optional<SocketAddress>(b->local) : std::nullopt;
  }

  void on_agent(const ice::Event& e) {
    if (const auto* c = std::get_if<ice::CheckResult>(&e)) {
      const auto* p = pair_for(c->remote, c->relayed, c->base);
      nlohmann::json j{{"event", "check"},
                       {"remote", c->remote.to_string()},
                       {"result", c->success ? "success" : "failure"},
                       {"rtt_ms", ms_or_null(c->rtt)}};
      if (p) j["pair"] = {{"local", candidate_json(p->local)}, {"remote", candidate_json(p->remote)}};
      if (!c->detail.empty()) j["detail"] = c->detail;
      emit(std::move(j),
           fmt::format("check {} -> {}: {}{}{}", p ? candidate_text(p->local) : "?",
                       p ? candidate_text(p->remote) : c->remote.to_string(), c->success ? "success" : "failure",
                       c->rtt ? fmt::format(", rtt {:.1f} ms", to_ms(*c->rtt)) : "",
                       c->detail.empty() ? "" : " (" + c->detail + ")"));
    } else if (const auto* k = std::get_if<ice::Connected>(&e)) {
      connected_at = now();
      selected_remote = k->remote;
      phase = Phase::connected;
      const ice::Pair* sel = agent->selected();
      const bool through_our_relay = sel && sel->relayed;
      on_relay = sel && ice::is_relayed(*sel);
      emit({{"event", "connected"},
            {"peer", peer_name},
            {"local", candidate_json(k->local)},
            {"remote", candidate_json(k->remote)},
            {"path", on_relay ? "relayed" : "direct"},
            {"ms_since_introduction", to_ms(connected_at - introduced_at)},
            {"rtt_ms", ms_or_null(k->rtt)}},
           fmt::format("connected to '{}': {} <-> {}, {}, {:.1f} ms after the introduction{}", peer_name,
                       candidate_text(k->local), candidate_text(k->remote), on_relay ? "relayed" : "direct",
                       to_ms(connected_at - introduced_at),
                       k->rtt ? fmt::format(", rtt {:.1f} ms", to_ms(*k->rtt)) : ""));
      if (through_our_relay && turn) {
        // Data through our allocation as ChannelData (4 bytes of overhead, not 36).
        turn->bind_channel(k->remote.address, now());
        flush_turn();
      }
      if (!on_relay) close_birthday_sockets(sel ? sel->base : 0);
      if (config.checks_only) {
        checks_done.emplace(loop);
        checks_done->start(1000, 0, [this] { finish(Outcome::direct, "checks only (--checks-only)", kOk); });
      } else if (controlling) {
        start_client(k->remote.address, through_our_relay ? relayed : base_local(sel ? sel->base : 0));
      }
    } else if (const auto* pc = std::get_if<ice::PathChanged>(&e)) {
      on_path_changed(*pc);
    } else if (const auto* bs = std::get_if<ice::BirthdayStarted>(&e)) {
      const bool open = bs->role == ice::BirthdayConfig::Role::open;
      nlohmann::json j{{"event", "birthday"},
                       {"role", std::string(ice::to_string(bs->role))},
                       {"target", open ? bs->target.to_string() : bs->target.ip()},
                       {"ms_since_introduction", to_ms(now() - introduced_at)}};
      if (open) {
        j["sockets"] = config.birthday->sockets;
      } else {
        j["probes"] = config.birthday->probes;
        j["rate"] = config.birthday->rate;
      }
      emit(std::move(j), open ? fmt::format("birthday punching: opening {} sockets, each sends one check to {}",
                                            config.birthday->sockets, bs->target.to_string())
                              : fmt::format("birthday punching: probing random ports of {}, at most {} probes at {}/s",
                                            bs->target.ip(), config.birthday->probes, config.birthday->rate));
      if (open) open_birthday_sockets(bs->target);
    } else if (const auto* be = std::get_if<ice::BirthdayEnded>(&e)) {
      birthday_hit = be->hit;
      emit({{"event", "birthday_ended"},
            {"hit", be->hit},
            {"detail", be->detail},
            {"probes", be->probes},
            {"sprays", be->sprays},
            {"sockets", birthday_opened},
            {"ms_since_introduction", to_ms(now() - introduced_at)}},
           fmt::format("birthday punching {}: {} ({} probes, {} sockets)", be->hit ? "found a mapping" : "ended",
                       be->detail, be->probes, birthday_opened));
      if (!be->hit) {
        close_birthday_sockets(selected_base());
        stop_lingering();  // nothing else will take over from the relay
      }
    } else if (const auto* f = std::get_if<ice::Failed>(&e)) {
      if (phase == Phase::connected && !controlling && server && server->connection_count() > 0) {
        // The client's NAT may have rebound: QUIC validated its new path
        // (RFC 9000 9.3, which ngtcp2 0.12.1 does on the server side) and
        // carries on, while our consent checks still go to the old address.
        // QUIC's path validation is the consent for its own traffic, and its
        // idle timeout ends the session if the peer is really gone.
        log::warn("peer: {}; the QUIC connection carries on (its own path validation and idle timeout decide)",
                  f->reason);
      } else if (phase == Phase::connected) {
        finish(Outcome::failed,
               fmt::format("the path to the peer{} was lost: {}",
                           on_relay && config.turn ? " through the relay " + config.turn->server.to_string()
                           : on_relay              ? " through its relay"
                                                   : "",
                           f->reason),
               kTransport);
      } else {
        end_attempt(Outcome::failed, f->reason, kNoPath);
      }
    } else if (const auto* r = std::get_if<ice::RoleChanged>(&e)) {
      controlling = r->controlling;
      emit({{"event", "role_changed"}, {"controlling", r->controlling}},
           fmt::format("role conflict repaired: we are now {}", r->controlling ? "controlling" : "controlled"));
    }
  }

  // Accept a QUIC connection only from a remote candidate of the current
  // attempt: one the integrity-protected introduction (or offer) named, or a
  // peer-reflexive one learned from a check that carried our ICE password.
  // Waiting for our own check on that pair to succeed would refuse the
  // client's first Initial whenever its nomination overtakes our check (a
  // restricted NAT drops our first checks) and cost a whole PTO; the address
  // only decides who may start a handshake, the pinned certificates decide
  // who completes one.
  bool accept_from(const SocketAddress& remote) {
    if (!agent) {
      refused(remote, "no attempt is running");
      return false;
    }
    // The nominated pair is one of them (succeeded).
    for (const auto& p : agent->pairs())
      if (p.remote.address == remote && p.state != ice::PairState::failed) return true;
    refused(remote, "not a candidate of the current attempt");
    return false;
  }

  // Refused QUIC datagrams are counted; the log says so for the 1st, 2nd,
  // 4th, 8th ... (a flood cannot fill the log, and builds no string).
  void refused(const SocketAddress& from, std::string_view why) {
    ++quic_refused;
    if ((quic_refused & (quic_refused - 1)) == 0)
      log::info("peer: QUIC from {} refused: {} ({} refused so far)", from.to_string(), why, quic_refused);
  }

  // With a relay in play, datagrams of a size every hop carries: a relayed
  // packet gains 4 bytes (ChannelData) or 36 (a Data or Send indication) and
  // coturn drops what does not fit its buffers, so the loopback rule's 16 KiB
  // datagrams (path_mtu.hpp) stalled every relayed transfer after the
  // handshake. 1400 + 36 + IPv6's 48 header bytes still fit a 1500-byte MTU.
  // Forced on both sides, it is also our advertised max_udp_payload_size.
  // 0 (automatic) when neither side can relay.
  std::size_t relay_safe_payload() const {
    return (config.turn && !config.direct_only) || remote_relays ? kRelayUdpPayload : 0;
  }
  bool remote_relays = false;  // the peer offered a relay candidate this attempt

  void start_server() {
    if (!app) {
      http::AppConfig ac;
      ac.root = config.root;
      app = std::make_unique<http::App>(ac, metrics);
    }
    server_config = {};
    server_config.cert_file = cert.cert;
    server_config.key_file = cert.key;
    server_config.pinned_client_sha256 = remote_fingerprint;
    server_config.quic.accept_initial = [this](const SocketAddress& remote) { return accept_from(remote); };
    server_config.quic.shutdown_timeout = kNanosPerSecond;
    server_config.quic.udp_payload.forced = relay_safe_payload();
    server = std::make_unique<h3::Server>(loop, *app, server_config, *socket);
    if (auto st = server->start(quic::Attach::shared); !st) {
      server.reset();
      finish(Outcome::failed, "cannot start the HTTP/3 server: " + st.error().message, kTransport);
    }
    first_quic_at = 0;
    quic_reported = false;
  }

  // The agent moved the selected pair from a relayed one to a direct one:
  // the QUIC client migrates (RFC 9000 9.2) to the direct path; the relay
  // stays until that path is validated, then is released (--keep-relay keeps it).
  void on_path_changed(const ice::PathChanged& pc) {
    path_changed_at = now();
    on_relay = false;
    selected_remote = pc.remote;
    emit({{"event", "path_changed"},
          {"peer", peer_name},
          {"path", "direct"},
          {"local", candidate_json(pc.local)},
          {"remote", candidate_json(pc.remote)},
          {"ms_since_introduction", to_ms(now() - introduced_at)},
          {"ms_since_connected", to_ms(now() - connected_at)},
          {"rtt_ms", ms_or_null(pc.rtt)}},
         fmt::format("path changed: direct {} <-> {}, {:.1f} ms after the relayed connection{}",
                     candidate_text(pc.local), candidate_text(pc.remote), to_ms(now() - connected_at),
                     pc.rtt ? fmt::format(", rtt {:.1f} ms", to_ms(*pc.rtt)) : ""));
    close_birthday_sockets(selected_base());
    if (!controlling || !client) return;
    SocketAddress local = socket->local_address();
    if (auto b = base_local(selected_base())) {
      local = *b;  // the pair's base is a birthday socket
    } else if (local.ip() == "0.0.0.0" || local.ip() == "::") {
      auto source = quic::route_source(pc.remote.address);
      if (!source) {
        log::warn("peer: cannot migrate to {}: {}", pc.remote.address.to_string(), source.error().message);
        on_relay = true;
        return;
      }
      const auto port = local.port();
      local = *source;
      local.set_port(port);
    }
    if (auto st = client->migrate(local, pc.remote.address); !st) {
      on_relay = true;
      emit({{"event", "quic_path"}, {"ok", false}, {"reason", st.error().message}},
           "QUIC stays on the relay: " + st.error().message);
    }
  }

  void start_client(const SocketAddress& remote, std::optional<SocketAddress> relayed_local = std::nullopt) {
    http::Url origin;
    origin.host = remote.ip();
    origin.port = remote.port();
    http::ClientOptions o;
    o.remote = remote;
    o.pinned_sha256 = remote_fingerprint;
    o.client_cert_file = cert.cert;
    o.client_key_file = cert.key;
    o.timeout_ms = 30000;
    o.max_concurrent_streams = 100;
    o.max_udp_payload = relay_safe_payload();
    h3::QuicTuning tuning;
    // Keepalive on the nominated path, at QUIC's level: a PING after 1 s of
    // silence keeps the NAT mappings fresh and, when our NAT rebinds mid-
    // transfer, is the packet that shows the server our new address.
    tuning.keep_alive_ms = 1000;
    client = std::make_unique<h3::Client>(loop, origin, o, tuning,
                                          h3::ClientEndpoint{socket, quic::Attach::shared, relayed_local});
    client->on_path_validated([this](const SocketAddress& vlocal, const SocketAddress& vremote, bool ok) {
      emit({{"event", "quic_path"},
            {"ok", ok},
            {"local", vlocal.to_string()},
            {"remote", vremote.to_string()},
            {"ms_since_path_changed", path_changed_at ? nlohmann::json(to_ms(now() - *path_changed_at)) : nullptr}},
           ok ? fmt::format("QUIC moved to {} -> {} (path validated{})", vlocal.to_string(), vremote.to_string(),
                            path_changed_at
                                ? fmt::format(", {:.1f} ms after the path change", to_ms(now() - *path_changed_at))
                                : "")
              : fmt::format("QUIC path {} -> {} not validated: it stays on the relay", vlocal.to_string(),
                            vremote.to_string()));
      if (ok) {
        release_relay("the direct path is validated");
        stop_lingering();
      } else {
        on_relay = true;
      }
    });
    const Timestamp started = now();
    client->connect([this, started, remote, origin](Status st) {
      if (!st) {
        finish(Outcome::failed, "QUIC handshake with the peer failed: " + st.error().message, kTransport);
        return;
      }
      const auto info = client->info();
      emit({{"event", "quic"},
            {"role", "client"},
            {"remote", remote.to_string()},
            {"handshake_ms", to_ms(now() - started)},
            {"alpn", info.alpn},
            {"peer_fingerprint", quic::tls::fingerprint_text(remote_fingerprint)}},
           fmt::format("QUIC handshake with {} done in {:.1f} ms ({}; the peer's certificate matches its pin)",
                       remote.to_string(), to_ms(now() - started), info.alpn));
      fetch_all(origin);
    });
  }

  void fetch_all(const http::Url& origin) {
    fetches_left = config.gets.size();
    if (fetches_left == 0) {
      close_client();
      return;
    }
    for (const auto& path : config.gets) {
      http::ClientRequest req;
      req.url = origin;
      req.url.path = path.empty() || path[0] != '/' ? "/" + path : path;
      const std::string url_text = req.url.to_string();
      // /bytes/N bodies are checked against the generated pattern, byte for
      // byte, as `quiclab get --verify-bytes` does.
      auto check = std::make_shared<ByteCheck>();
      std::string_view p = req.url.path;
      p = p.substr(0, p.find('?'));
      if (p.substr(0, 7) == "/bytes/") check->expected = http::parse_size(p.substr(7));
      http::BodyCallback on_body;
      if (check->expected)
        on_body = [check](ByteView chunk) {
          if (!check->mismatch && !http::check_generated(check->offset, chunk)) check->mismatch = true;
          check->offset += chunk.size();
        };
      client->submit(std::move(req), std::move(on_body), [this, url_text, check](http::ClientResponse&& r) {
        auto j = app::fetch_json(url_text, r, "h3");
        j["event"] = "fetch";
        std::optional<std::string> verify_error;
        if (check->expected && !r.error && r.status == 200) {
          if (check->mismatch)
            verify_error = "body differs from the generated /bytes pattern";
          else if (r.body_bytes != *check->expected)
            verify_error = fmt::format("got {} bytes, expected {}", r.body_bytes, *check->expected);
          j["verified"] = !verify_error;
          if (verify_error) j["verify_error"] = *verify_error;
        }
        if (r.error || verify_error)
          fetch_failed = true;
        else if (r.status >= 400)
          fetch_http_error = true;
        const auto& t = r.timing;
        auto ms = [&](Timestamp at) {
          auto v = app::since_connection_start(t, at);
          return v ? fmt::format("{:.1f}", *v) : std::string("-");
        };
        emit(std::move(j), r.error
                               ? fmt::format("GET {}: {}", url_text, r.error->message)
                               : fmt::format("GET {}: {}, {} bytes{}, ttfb {} ms, total {} ms (since the QUIC start)",
                                             url_text, r.status, r.body_bytes,
                                             verify_error      ? " (" + *verify_error + ")"
                                             : check->expected ? " (verified)"
                                                               : "",
                                             ms(t.first_byte), ms(t.complete)));
        if (--fetches_left == 0) fetches_done();
      });
    }
  }

  // The fetches are done. Over a relay with --wait-direct-ms, the connection
  // stays up (QUIC keepalives) until a direct path took over, or the wait
  // ran out, or nothing can take over any more (birthday punching ended
  // without a hit and no direct check is left).
  void fetches_done() {
    if (on_relay && config.wait_direct > 0 && client && !linger) {
      emit({{"event", "waiting_direct"}, {"max_ms", to_ms(config.wait_direct)}},
           fmt::format("fetches done over the relay: waiting up to {:.0f} ms for a direct path (--wait-direct-ms)",
                       to_ms(config.wait_direct)));
      linger.emplace(loop);
      linger->start(config.wait_direct / kNanosPerMilli, 0, [this] { stop_lingering(); });
      return;
    }
    close_client();
  }
  void stop_lingering() {
    if (!linger) return;
    linger->close();
    linger.reset();
    close_client();
  }

  void close_client() {
    if (!client) return;
    client->close([this] {
      int code = fetch_failed ? kTransport : fetch_http_error ? kHttpError : kOk;
      finish(Outcome::direct,
             fetch_failed       ? "a fetch failed"
             : fetch_http_error ? "a fetch got an HTTP error"
                                : "",
             code);
    });
  }

  // The controlled side: report the handshake, notice the end of the session.
  void watch_server() {
    if (!server || quic_reported) return;
    if (server->quic_stats().handshakes_completed > 0) {
      quic_reported = true;
      ++sessions;
      emit({{"event", "quic"},
            {"role", "server"},
            {"remote", selected_remote  ? selected_remote->address.to_string()
                       : last_quic_from ? last_quic_from->to_string()
                                        : ""},
            {"handshake_ms", first_quic_at ? to_ms(now() - first_quic_at) : 0.0},
            {"peer_fingerprint", quic::tls::fingerprint_text(remote_fingerprint)}},
           fmt::format("QUIC connection from '{}' accepted ({:.1f} ms handshake; its certificate matches its pin)",
                       peer_name, first_quic_at ? to_ms(now() - first_quic_at) : 0.0));
    }
  }

  void tick() {
    watch_server();
    if (path_changed_at && !controlling && turn && !relay_released &&
        now() - std::max(*path_changed_at, last_relayed_quic) > kRelayQuiet)
      release_relay("the path moved to a direct pair and no QUIC came through the relay for 3 s");
    if (!server || controlling) return;
    const auto& s = server->quic_stats();
    if (quic_reported && server->connection_count() == 0) {
      end_attempt(Outcome::direct, "", kOk);
    } else if (!quic_reported && phase == Phase::connected && now() - connected_at > kQuicWait) {
      end_attempt(Outcome::failed,
                  fmt::format("no QUIC connection from '{}' within {} s of the nomination ({} refused)", peer_name,
                              kQuicWait / kNanosPerSecond, s.dropped_not_accepted),
                  kTransport);
    }
  }

  // An attempt ended. With --stay the controlled side waits for the next
  // introduction; otherwise this is the verdict.
  void end_attempt(Outcome outcome, const std::string& reason, int code) {
    if (config.stay && !controlling && !config.signal_stdio && rv) {
      report_result(outcome, reason, code);
      result_reported = false;
      if (server) {
        server->close_now();
        // Destroyed on the next turn: we may be inside its callbacks.
        auto* s = server.release();
        auto t = std::make_shared<uv::Timer>(loop);
        t->start(0, 0, [s, t] {
          delete s;
          t->close();
        });
      }
      close_birthday_sockets(0);
      birthday_sockets.clear();
      birthday_opened = 0;
      birthday_hit.reset();
      if (agent) {
        timer->remove(agent_timer);
        agent.reset();
      }
      selected_remote.reset();
      on_relay = false;
      last_quic_from.reset();
      last_quic_via_relay = false;
      path_changed_at.reset();
      phase = Phase::waiting;
      return;
    }
    finish(outcome, reason, code);
  }

  void report_result(Outcome outcome, const std::string& reason, int code) {
    if (result_reported) return;
    result_reported = true;
    exit_code = code;
    // A controlled side that served QUIC before its triggered check through
    // the relay came back has no selected pair; where the QUIC came from says.
    const bool relayed_session = on_relay || (!controlling && !selected_remote && last_quic_via_relay);
    if (outcome == Outcome::direct && relayed_session) outcome = Outcome::relayed;
    nlohmann::json j{{"event", "result"},
                     {"outcome", outcome == Outcome::direct    ? "direct"
                                 : outcome == Outcome::relayed ? "relayed"
                                                               : "failed"},
                     {"reason", reason},
                     {"exit_code", code}};
    if (!peer_name.empty()) j["peer"] = peer_name;
    // New paths QUIC validated (the client's NAT rebinding, RFC 9000 9.3).
    if (server) j["path_validations"] = server->quic_stats().path_validations;
    if (agent) {
      const auto& st = agent->stats();
      j["checks_sent"] = st.checks_sent;
      j["checks_received"] = st.requests_received;
      j["bad_credentials"] = st.bad_credentials;
      if (const auto* p = agent->selected()) {
        j["local"] = candidate_json(p->local);
        j["remote"] = candidate_json(p->remote);
      }
    }
    if (turn) {
      const auto& t = turn->stats();
      j["relay"] = {{"relayed", relayed ? relayed->to_string() : ""},
                    {"channel_data_sent", t.channel_data_sent},
                    {"channel_data_received", t.channel_data_received},
                    {"send_indications", t.send_indications},
                    {"data_indications", t.data_indications},
                    {"quic_in", relayed_quic_in},
                    {"released", relay_released}};
    }
    if (path_changed_at) j["path_changed_ms"] = to_ms(*path_changed_at - connected_at);
    if (config.birthday) {
      // Its packet cost: the probes (probe role) or the first checks from the extra sockets (open role).
      nlohmann::json b{
          {"role", std::string(ice::to_string(birthday_role))},
          {"mapping", our_mapping ? (*our_mapping == rendezvous::Mapping::endpoint_dependent ? "endpoint-dependent"
                                                                                             : "endpoint-independent")
                                  : "unknown"},
          {"hit", birthday_hit ? nlohmann::json(*birthday_hit) : nlohmann::json(nullptr)},
          {"sockets", birthday_opened},
          {"on_birthday_socket", selected_base() > 0}};
      if (agent) {
        b["probes"] = agent->stats().birthday_probes;
        b["sprays"] = agent->stats().birthday_sprays;
      }
      j["birthday"] = std::move(b);
    }
    emit(std::move(j), outcome != Outcome::failed
                           ? fmt::format("result: {}{}", outcome == Outcome::relayed ? "relayed" : "direct",
                                         reason.empty() ? "" : " (" + reason + ")")
                           : fmt::format("result: failed: {}", reason));
  }

  void finish(Outcome outcome, const std::string& reason, int code) {
    report_result(outcome, reason, code);
    teardown();
  }

  void teardown() {
    if (torn_down) return;
    torn_down = true;
    phase = Phase::done;
    if (rv && rv->registered()) {
      // Free the name at once; best effort, nobody waits for the answer.
      rv->refresh(now(), 0);
      for (auto& d : rv->take_datagrams()) send(*config.rendezvous, d);
    }
    if (client) {
      client->close(nullptr, true);
    }
    if (server) server->close_now();
    if (turn && turn->state() == turn::Client::State::allocated) {
      // Free the allocation at once (Refresh, LIFETIME 0); best effort.
      turn->release(now());
      for (auto& d : turn->take_datagrams()) send(config.turn->server, d);
    }
    // Later on this turn: we may be inside a callback of what we destroy.
    auto t = std::make_shared<uv::Timer>(loop);
    t->start(0, 0, [this, t] {
      t->close();
      release();
    });
  }

  void release() {
    if (timer) {
      if (agent_timer) timer->remove(agent_timer);
      if (rv_timer) timer->remove(rv_timer);
      if (turn_timer) timer->remove(turn_timer);
    }
    agent.reset();
    rv.reset();
    if (socket && relayed) socket->divert_source(*relayed, nullptr);
    close_birthday_sockets(0);
    birthday_sockets.clear();
    if (discovery_timer && timer) timer->remove(discovery_timer);
    discovery_timer = 0;
    discovery.reset();
    turn.reset();
    if (endpoint) endpoint->stop();
    client.reset();
    server.reset();
    timer.reset();
    if (monitor) monitor->close();
    monitor.reset();
    if (checks_done) checks_done->close();
    checks_done.reset();
    if (linger) linger->close();
    linger.reset();
    if (socket) socket->close();
  }

  // ---- manual signalling ----
  Status start_manual() {
    Random& r = Random::system();
    p2p::Offer o;
    o.name = config.name;
    o.controlling = config.controlling_stdio;
    auto creds = ice::random_credentials(r);
    o.ice.ufrag = creds.ufrag;
    o.ice.password = creds.password;
    while (o.ice.tie_breaker == 0)
      r.fill(reinterpret_cast<std::uint8_t*>(&o.ice.tie_breaker), sizeof o.ice.tie_breaker);
    o.ice.fingerprint = fingerprint;
    start_agent(o.controlling, "", creds, o.ice.tie_breaker, local_candidates());
    o.candidates = agent->local_candidates();
    local_offer = o;
    write_offer(p2p::offer_to_json(o));
    emit({{"event", "offer"}, {"role", o.controlling ? "controlling" : "controlled"}},
         fmt::format("offer written ({} candidates); waiting for the other side's on standard input",
                     o.candidates.size()));
    return {};
  }

  void offer_received(const std::string& line) {
    if (!config.signal_stdio || !agent || agent->has_remote()) return;
    auto o = p2p::offer_from_json(line);
    if (!o) {
      finish(Outcome::failed, "the other side's offer is malformed: " + o.error().message, kNoPath);
      return;
    }
    introduce_remote(o->name.empty() ? std::string("peer") : o->name, {o->ice.ufrag, o->ice.password},
                     o->ice.fingerprint, o->candidates);
  }
};

PeerSession::PeerSession(uv::Loop& loop, PeerConfig config, ReportFn report,
                         std::function<void(const std::string&)> write_offer)
    : impl_(std::make_unique<Impl>(loop, std::move(config), std::move(report), std::move(write_offer))) {}

PeerSession::~PeerSession() = default;

Status PeerSession::start() { return impl_->start(); }

void PeerSession::offer_received(const std::string& line) { impl_->offer_received(line); }

void PeerSession::interrupt() {
  if (impl_->result_reported) {
    impl_->teardown();
    return;
  }
  const bool served = impl_->sessions > 0;
  impl_->finish(served ? Outcome::direct : Outcome::failed, "interrupted", served ? kOk : kNoPath);
}

int PeerSession::exit_code() const { return impl_->exit_code; }

}  // namespace quiclab::peer
