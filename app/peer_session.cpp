#include "app/peer_session.hpp"

#include <fmt/format.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "app/fetch_json.hpp"
#include "p2p/ice_agent.hpp"
#include "p2p/rendezvous_client.hpp"
#include "p2p/shared_endpoint.hpp"
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
  Forward rendezvous_handler, check_handler, quic_handler;

  tls::CertificatePaths cert;
  Bytes fingerprint;

  std::optional<rendezvous::Client> rv;
  uv::DeadlineTimer::Id rv_timer = 0;
  bool registered_once = false;
  SocketAddress mapped;

  // The current attempt.
  std::unique_ptr<ice::Agent> agent;
  uv::DeadlineTimer::Id agent_timer = 0;
  std::vector<std::pair<SocketAddress, Bytes>> early_checks;
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
      if (rv) {
        if (!rv->handle_datagram(d.data, now()))
          log::debug("peer: ignored a datagram from the rendezvous server ({} bytes)", d.data.size());
        flush_rv();
      }
    };
    check_handler.datagram = [this](const quic::ReceivedDatagram& d) {
      if (agent) {
        agent->handle_datagram(d.peer, d.data, now());
        flush_agent();
      } else if (early_checks.size() < kMaxEarlyChecks) {
        early_checks.emplace_back(d.peer, Bytes(d.data.begin(), d.data.end()));
      } else {
        ++early_checks_dropped;
      }
    };
    quic_handler.datagram = [this](const quic::ReceivedDatagram& d) {
      if (quic::DatagramHandler* h = quic_target()) {
        if (first_quic_at == 0) first_quic_at = now();
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
    if (auto st = endpoint->start(); !st) return st;
    monitor.emplace(loop);
    monitor->start(100, 100, [this] { tick(); });

    if (config.signal_stdio) return start_manual();

    rendezvous::ClientConfig rc;
    rc.name = config.name;
    rc.key = config.key;
    rc.host_candidates = config.hosts;
    rc.certificate_fingerprint = fingerprint;
    rc.keepalive = config.keepalive;
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
    nlohmann::json list = nlohmann::json::array();
    std::string text;
    for (const auto& c : candidates) {
      list.push_back(candidate_json(c));
      text += (text.empty() ? "" : ", ") + candidate_text(c);
    }
    emit({{"event", "introduced"},
          {"peer", peer},
          {"role", controlling ? "controlling" : "controlled"},
          {"candidates", list},
          {"fingerprint", quic::tls::fingerprint_text(peer_fingerprint)}},
         fmt::format("introduced to '{}' ({}; we are {} and the QUIC {}): candidates {}", peer,
                     quic::tls::fingerprint_text(peer_fingerprint).substr(0, 23) + "…",
                     controlling ? "controlling" : "controlled", controlling ? "client" : "server",
                     text.empty() ? "none" : text));
    if (!controlling && !config.checks_only) start_server();
    agent->set_remote(std::move(creds), std::move(candidates), now());
    for (auto& [from, data] : std::exchange(early_checks, {})) agent->handle_datagram(from, data, now());
    flush_agent();
  }

  void flush_agent() {
    if (!agent) return;
    for (;;) {
      auto out = agent->take_datagrams();
      auto events = agent->take_events();
      if (out.empty() && events.empty()) break;
      for (auto& d : out) send(d.to, d.data);
      for (auto& e : events) {
        on_agent(e);
        if (!agent) return;
      }
    }
    if (timer) timer->rearm();
  }

  const ice::Pair* pair_for(const SocketAddress& remote) const {
    for (const auto& p : agent->pairs())
      if (p.remote.address == remote) return &p;
    return nullptr;
  }

  void on_agent(const ice::Event& e) {
    if (const auto* c = std::get_if<ice::CheckResult>(&e)) {
      const auto* p = pair_for(c->remote);
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
      emit({{"event", "connected"},
            {"peer", peer_name},
            {"local", candidate_json(k->local)},
            {"remote", candidate_json(k->remote)},
            {"path", "direct"},
            {"ms_since_introduction", to_ms(connected_at - introduced_at)},
            {"rtt_ms", ms_or_null(k->rtt)}},
           fmt::format("connected to '{}': {} <-> {}, direct, {:.1f} ms after the introduction{}", peer_name,
                       candidate_text(k->local), candidate_text(k->remote), to_ms(connected_at - introduced_at),
                       k->rtt ? fmt::format(", rtt {:.1f} ms", to_ms(*k->rtt)) : ""));
      if (config.checks_only) {
        checks_done.emplace(loop);
        checks_done->start(1000, 0, [this] { finish(Outcome::direct, "checks only (--checks-only)", kOk); });
      } else if (controlling) {
        start_client(k->remote.address);
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
        finish(Outcome::failed, "the path to the peer was lost: " + f->reason, kTransport);
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
    server = std::make_unique<h3::Server>(loop, *app, server_config, *socket);
    if (auto st = server->start(quic::Attach::shared); !st) {
      server.reset();
      finish(Outcome::failed, "cannot start the HTTP/3 server: " + st.error().message, kTransport);
    }
    first_quic_at = 0;
    quic_reported = false;
  }

  void start_client(const SocketAddress& remote) {
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
    h3::QuicTuning tuning;
    // Keepalive on the nominated path, at QUIC's level: a PING after 1 s of
    // silence keeps the NAT mappings fresh and, when our NAT rebinds mid-
    // transfer, is the packet that shows the server our new address.
    tuning.keep_alive_ms = 1000;
    client = std::make_unique<h3::Client>(loop, origin, o, tuning, h3::ClientEndpoint{socket, quic::Attach::shared});
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
        if (--fetches_left == 0) close_client();
      });
    }
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
            {"remote", selected_remote ? selected_remote->address.to_string() : ""},
            {"handshake_ms", first_quic_at ? to_ms(now() - first_quic_at) : 0.0},
            {"peer_fingerprint", quic::tls::fingerprint_text(remote_fingerprint)}},
           fmt::format("QUIC connection from '{}' accepted ({:.1f} ms handshake; its certificate matches its pin)",
                       peer_name, first_quic_at ? to_ms(now() - first_quic_at) : 0.0));
    }
  }

  void tick() {
    watch_server();
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
      if (agent) {
        timer->remove(agent_timer);
        agent.reset();
      }
      selected_remote.reset();
      phase = Phase::waiting;
      return;
    }
    finish(outcome, reason, code);
  }

  void report_result(Outcome outcome, const std::string& reason, int code) {
    if (result_reported) return;
    result_reported = true;
    exit_code = code;
    nlohmann::json j{{"event", "result"},
                     {"outcome", outcome == Outcome::direct ? "direct" : "failed"},
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
    emit(std::move(j), outcome == Outcome::direct
                           ? fmt::format("result: direct{}", reason.empty() ? "" : " (" + reason + ")")
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
    }
    agent.reset();
    rv.reset();
    if (endpoint) endpoint->stop();
    client.reset();
    server.reset();
    timer.reset();
    if (monitor) monitor->close();
    monitor.reset();
    if (checks_done) checks_done->close();
    checks_done.reset();
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
