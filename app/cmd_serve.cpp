// quiclab serve: the HTTP/2 (TCP+TLS) server, and later HTTP/3 (QUIC) on the
// same port number, all on one libuv loop with one App and one Metrics.
//
// Structure (kept so that each protocol is a small, separate block in run()):
//   1. options -> configs      2. loop, certificate, Metrics, App
//   3. start each server, print "listening <proto> <transport> <addr>" on stdout
//   4. SIGINT/SIGTERM: every server drains gracefully; a second signal closes at once
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "transport/core/log.hpp"
#include "transport/core/uv.hpp"
#include "transport/h2/server.hpp"
#include "transport/h3/server.hpp"
#include "transport/http/app.hpp"
#include "transport/tls/tls.hpp"

namespace quiclab::cli {
namespace {

namespace fs = std::filesystem;

struct ServeOptions {
  std::string listen = "127.0.0.1:8443";
  std::string cert;
  std::string key;
  std::string root;
  std::string state_dir;
  std::string alt_svc;
  std::uint32_t max_concurrent_streams = 100;
  std::uint32_t stream_window = 1024 * 1024;
  std::uint32_t connection_window = 16 * 1024 * 1024;
  std::uint32_t max_header_list_size = 64 * 1024;
  std::uint64_t header_timeout_ms = 10'000;
  std::uint64_t idle_timeout_ms = 120'000;
  std::uint64_t drain_timeout_ms = 30'000;
  std::size_t max_request_body = 64 * 1024 * 1024;
  std::uint64_t max_buffered_bodies = 512ULL * 1024 * 1024;
  std::uint64_t max_buffered_bodies_per_connection = 128ULL * 1024 * 1024;
  bool no_h3 = false;        // HTTP/3 (QUIC over UDP) is on by default
  bool retry = false;        // H3: validate every client address with Retry
  std::string qlog_dir;      // H3: one qlog file per connection
  std::string cc = "cubic";  // H3: ngtcp2's congestion controller
  std::string tcp_cc;        // H2: the TCP congestion control (empty: the kernel default)
  std::string tls_records = "dynamic";
  std::uint32_t tcp_mss = 0;
  std::string tcp_pacing = "off", quic_pacing = "on";  // each stack's own behaviour by default
  std::string conn_log;                                // one JSON line per ended connection
  std::string tls_cipher, tls_group;                   // both stacks: the only suite / group accepted
  quic::UdpPayloadPolicy udp_payload;                  // H3: datagram size (path_mtu.hpp)
};

// Many connections need many descriptors: take the hard limit.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// Prints the line tests and scripts wait for, and flushes it at once.
void announce(std::string_view proto, std::string_view transport, const SocketAddress& addr) {
  std::printf("listening %.*s %.*s %s\n", static_cast<int>(proto.size()), proto.data(),
              static_cast<int>(transport.size()), transport.data(), addr.to_string().c_str());
  std::fflush(stdout);
}

// One JSON object per line: fields a stack cannot report are null.
std::string record_json(const ConnectionRecord& r) {
  auto opt = [](const auto& v) -> nlohmann::json { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json j = {
      {"protocol", r.protocol},
      {"peer", r.peer},
      {"duration_ms", r.duration_ms},
      {"start_unix_ms", r.start_unix_ms},
      {"congestion_control", r.congestion_control},
      {"segment_bytes", r.segment_bytes},
      {"initial_cwnd_bytes", r.initial_cwnd_bytes},
      {"initial_cwnd_packets", r.initial_cwnd_packets},
      {"paced", r.paced},
      {"pacing_ss_pct", opt(r.pacing_ss_pct)},
      {"pacing_ca_pct", opt(r.pacing_ca_pct)},
      {"bytes_sent", r.bytes_sent},
      {"packets_sent", r.packets_sent},
      {"retransmitted_packets", opt(r.retransmitted_packets)},
      {"retransmitted_bytes", opt(r.retransmitted_bytes)},
      {"timeouts", opt(r.timeouts)},
      {"congestion_events", opt(r.congestion_events)},
      {"min_rtt_ms", r.min_rtt_ms},
      {"smoothed_rtt_ms", r.smoothed_rtt_ms},
      {"timer_ms", r.timer_ms},
      {"final_cwnd_bytes", r.final_cwnd_bytes},
      {"resumed", opt(r.resumed)},
      {"early_data", opt(r.early_data)},
      {"tls_records_small", opt(r.tls_records_small)},
      {"tls_records_full", opt(r.tls_records_full)},
  };
  return j.dump() + "\n";
}

int run(const ServeOptions& o) {
  raise_fd_limit();
  auto listen = SocketAddress::parse(o.listen);
  if (!listen) {
    log::error("serve: --listen {}: {}", o.listen, listen.error().message);
    return kExitUsage;
  }
  if (o.cert.empty() != o.key.empty()) {
    log::error("serve: --cert and --key go together");
    return kExitUsage;
  }

  uv::Loop loop;

  // Certificate: the given one, or a fresh self-signed ECDSA P-256 one.
  tls::CertificatePaths cert{o.cert, o.key};
  std::optional<fs::path> remove_at_exit;
  if (o.cert.empty()) {
    fs::path dir = o.state_dir.empty() ? fs::temp_directory_path() / ("quiclab-serve-" + std::to_string(::getpid()))
                                       : fs::path(o.state_dir);
    auto generated = tls::generate_self_signed(dir);
    if (!generated) {
      log::error("serve: {}", generated.error().message);
      return kExitInternal;
    }
    cert = *generated;
    if (o.state_dir.empty()) remove_at_exit = dir;
    log::info("serve: no --cert given: generated a self-signed ECDSA P-256 certificate {} (key {}){}",
              cert.cert.string(), cert.key.string(), remove_at_exit ? ", removed at exit" : "");
  }

  // --conn-log: appended, one line per write, flushed at once, so a reader
  // polling the file never sees half a record.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> conn_log(nullptr, &std::fclose);
  ConnectionRecordSink record_sink;
  if (!o.conn_log.empty()) {
    conn_log.reset(std::fopen(o.conn_log.c_str(), "a"));
    if (!conn_log) {
      log::error("serve: --conn-log {}: {}", o.conn_log, std::strerror(errno));
      return kExitUsage;
    }
    record_sink = [f = conn_log.get()](const ConnectionRecord& r) {
      const std::string line = record_json(r);
      std::fwrite(line.data(), 1, line.size(), f);
      std::fflush(f);
    };
  }

  http::Metrics metrics;
  http::AppConfig app_config;
  if (!o.root.empty()) {
    std::error_code ec;
    if (!fs::is_directory(o.root, ec)) {
      log::error("serve: --root {} is not a directory", o.root);
      return kExitUsage;
    }
    app_config.root = fs::path(o.root);
  }
  app_config.max_request_body = o.max_request_body;
  app_config.max_buffered_body_bytes = o.max_buffered_bodies;
  app_config.max_buffered_body_bytes_per_connection = o.max_buffered_bodies_per_connection;
  http::App app(app_config, metrics);

  // Every running server registers how to drain it; shutdown completes when all did.
  std::vector<std::function<void(std::function<void()>)>> drains;
  std::vector<std::function<void()>> hard_stops;

  // ---- HTTP/3 over QUIC: UDP on the same port number as TCP ----
  // It binds first so that with port 0 the TCP listener can take the port UDP
  // got, and the H2 responses can advertise it (Alt-Svc). That TCP port may be
  // taken by someone else (UDP and TCP ports are allocated independently): with
  // port 0 we then let both go and try another UDP port, a bounded number of times.
  constexpr int kPortAttempts = 16;
  std::unique_ptr<quic::UdpSocket> h3_socket;
  std::unique_ptr<h3::Server> h3_server;
  std::unique_ptr<h2::Server> h2_server_owner;
  for (int attempt = 1;; ++attempt) {
    SocketAddress tcp_listen = *listen;
    std::string alt_svc = o.alt_svc;
    if (!o.no_h3) {
      h3::ServerConfig h3_config;
      h3_config.cert_file = cert.cert;
      h3_config.key_file = cert.key;
      h3_config.tls_cipher = o.tls_cipher;
      h3_config.tls_group = o.tls_group;
      h3_config.quic.retry = o.retry;
      h3_config.qlog_dir = o.qlog_dir;
      h3_config.quic.cc_algo = *quic::cc_algo_from_name(o.cc);  // --cc admits only known names
      h3_config.quic.udp_payload = o.udp_payload;
      h3_config.quic.idle_timeout = o.idle_timeout_ms * kNanosPerMilli;
      h3_config.quic.shutdown_timeout = o.drain_timeout_ms * kNanosPerMilli;
      h3_config.quic.pacing = o.quic_pacing == "on";
      h3_config.quic.on_connection_end = record_sink;
      // One header section limit for both protocols.
      h3_config.max_header_list_size = o.max_header_list_size;
      // With port 0 the port is known only once bound, so the Alt-Svc value
      // (the same on both protocols) must be known before: pick the port first.
      if (alt_svc.empty() && listen->port() != 0) alt_svc = "h3=\":" + std::to_string(listen->port()) + "\"";
      h3_config.alt_svc = alt_svc;
      auto socket = quic::open_udp(loop, *listen, h3_config.udp);
      if (!socket) {
        log::error("serve: HTTP/3: {}", socket.error().message);
        return kExitTransport;
      }
      h3_socket = std::move(*socket);
      h3_server = std::make_unique<h3::Server>(loop, app, h3_config, *h3_socket);
      if (auto st = h3_server->start(); !st) {
        log::error("serve: HTTP/3: {}", st.error().message);
        return kExitTransport;
      }
      tcp_listen.set_port(h3_server->local_address().port());
      if (alt_svc.empty()) {
        alt_svc = "h3=\":" + std::to_string(tcp_listen.port()) + "\"";
        h3_server->set_alt_svc(alt_svc);
      }
    }

    // ---- HTTP/2 over TCP+TLS ----
    h2::ServerConfig h2_config;
    h2_config.listen = tcp_listen;
    h2_config.tcp_congestion = o.tcp_cc;
    h2_config.dynamic_records = o.tls_records == "dynamic";
    h2_config.tcp_mss = o.tcp_mss;
    h2_config.tcp_pacing = o.tcp_pacing == "on";
    h2_config.on_connection_end = record_sink;
    h2_config.tls_cipher = o.tls_cipher;
    h2_config.tls_group = o.tls_group;
    h2_config.cert = cert.cert;
    h2_config.key = cert.key;
    h2_config.max_concurrent_streams = o.max_concurrent_streams;
    h2_config.stream_window = o.stream_window;
    h2_config.connection_window = o.connection_window;
    h2_config.max_header_list_size = o.max_header_list_size;
    h2_config.header_timeout_ms = o.header_timeout_ms;
    h2_config.idle_timeout_ms = o.idle_timeout_ms;
    h2_config.drain_timeout_ms = o.drain_timeout_ms;
    h2_config.alt_svc = alt_svc;
    h2_server_owner = std::make_unique<h2::Server>(loop, app, h2_config);
    auto st = h2_server_owner->start();
    if (st) break;
    const bool port_taken = st.error().domain == ErrorDomain::uv && st.error().code == UV_EADDRINUSE;
    if (h3_server && listen->port() == 0 && port_taken && attempt < kPortAttempts) {
      log::debug("serve: TCP port {} is taken; trying another UDP port", tcp_listen.port());
      h2_server_owner.reset();
      h3_server->close_now();
      h3_server.reset();
      h3_socket->close();
      h3_socket.reset();
      continue;
    }
    log::error("serve: HTTP/2: {}", st.error().message);
    return kExitTransport;
  }
  h2::Server& h2_server = *h2_server_owner;
  announce("h2", "tcp", h2_server.local_address());
  drains.push_back([&](std::function<void()> done) { h2_server.shutdown(std::move(done)); });
  hard_stops.push_back([&] { h2_server.close_now(); });
  if (h3_server) {
    announce("h3", "udp", h3_server->local_address());
    drains.push_back([&](std::function<void()> done) { h3_server->shutdown(std::move(done)); });
    hard_stops.push_back([&] { h3_server->close_now(); });
  }

  // ---- Signals: first SIGINT/SIGTERM drains, the second one closes at once ----
  uv::Signal sigint(loop), sigterm(loop);
  int signals_seen = 0;
  std::size_t drained = 0;
  auto on_signal = [&](int signum) {
    if (++signals_seen > 1) {
      log::warn("serve: second signal ({}): closing all connections now", signum);
      for (auto& stop : hard_stops) stop();
      return;
    }
    log::info("serve: signal {}: draining (send it again to close at once)", signum);
    for (auto& drain : drains) {
      drain([&] {
        if (++drained == drains.size()) {
          log::info("serve: all servers drained");
          sigint.close();
          sigterm.close();
        }
      });
    }
  };
  for (auto* s : {&sigint, &sigterm}) {
    if (auto st = s->start(s == &sigint ? SIGINT : SIGTERM, on_signal); !st) {
      log::error("serve: {}", st.error().message);
      return kExitInternal;
    }
  }

  loop.run();
  if (remove_at_exit) {
    std::error_code ec;
    fs::remove_all(*remove_at_exit, ec);
  }
  return kExitOk;
}

Registration reg{
    "serve", "HTTP/2 (TCP+TLS) server; HTTP/3 on the same port when available", [](CLI::App& sub) -> Runner {
      auto o = std::make_shared<ServeOptions>();
      sub.add_option("--listen", o->listen, "ADDR:PORT to listen on (port 0: any free port)")->capture_default_str();
      sub.add_option("--cert", o->cert, "PEM certificate chain (default: generate a self-signed one)");
      sub.add_option("--key", o->key, "PEM private key for --cert");
      sub.add_option("--root", o->root, "serve static files: /PATH is ROOT/PATH");
      sub.add_option("--state-dir", o->state_dir,
                     "where a generated certificate is kept (default: a temp dir removed at exit)");
      sub.add_option("--alt-svc", o->alt_svc, "Alt-Svc header value added to every response");
      sub.add_option("--max-concurrent-streams", o->max_concurrent_streams,
                     "SETTINGS_MAX_CONCURRENT_STREAMS we advertise")
          ->capture_default_str();
      sub.add_option("--stream-window", o->stream_window,
                     "per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE), bytes")
          ->capture_default_str()
          ->check(CLI::Range(1u, 0x7fffffffu));
      sub.add_option("--connection-window", o->connection_window, "connection receive window, bytes")
          ->capture_default_str()
          ->check(CLI::Range(65535u, 0x7fffffffu));
      sub.add_option("--max-header-list-size", o->max_header_list_size,
                     "largest request header list accepted (larger: 431), bytes")
          ->capture_default_str();
      sub.add_option("--header-timeout", o->header_timeout_ms,
                     "ms for TLS + preface + first request headers (slowloris guard)")
          ->capture_default_str();
      sub.add_option("--idle-timeout", o->idle_timeout_ms, "ms without progress before a connection is closed")
          ->capture_default_str();
      sub.add_option("--drain-timeout", o->drain_timeout_ms, "ms a graceful shutdown waits for in-flight streams")
          ->capture_default_str();
      sub.add_option("--max-request-body", o->max_request_body, "largest request body accepted (larger: 413), bytes")
          ->capture_default_str();
      sub.add_option("--max-buffered-bodies", o->max_buffered_bodies,
                     "request body bytes buffered at once by the whole server (beyond: 503), bytes")
          ->capture_default_str();
      sub.add_option("--max-buffered-bodies-per-connection", o->max_buffered_bodies_per_connection,
                     "request body bytes buffered at once per connection (beyond: 503), bytes")
          ->capture_default_str();
      sub.add_flag("--no-h3", o->no_h3, "do not serve HTTP/3 (QUIC over UDP)");
      sub.add_flag("--retry", o->retry, "HTTP/3: validate every client address with a Retry round trip");
      sub.add_option("--qlog-dir", o->qlog_dir, "HTTP/3: write one qlog file per connection into DIR");
      sub.add_option("--cc", o->cc,
                     "HTTP/3: ngtcp2's congestion control (cubic, "
                     "reno, bbr, bbr2)")
          ->check(
              [](const std::string& v) {
                return quic::cc_algo_from_name(v) ? std::string()
                                                  : "unknown congestion control '" + v + "' (cubic, reno, bbr, bbr2)";
              },
              "ALGO")
          ->capture_default_str();
      add_udp_payload_option(sub, o->udp_payload);
      sub.add_option("--tcp-cc", o->tcp_cc,
                     "HTTP/2: TCP congestion control for its connections (e.g. cubic, bbr; default: the "
                     "kernel's net.ipv4.tcp_congestion_control)");
      sub.add_option("--tls-records", o->tls_records,
                     "HTTP/2: TLS record sizes: 'dynamic' (one TCP segment each for the first 1 MiB and after 1 s "
                     "idle, then 16 KiB) or 'full' (always 16 KiB)")
          ->check(CLI::IsMember({"dynamic", "full"}))
          ->capture_default_str();
      sub.add_option("--tcp-mss", o->tcp_mss,
                     "HTTP/2: cap the TCP MSS of accepted connections (TCP_MAXSEG; 0: the route's)")
          ->check(CLI::Range(0u, 65495u));
      sub.add_option("--tcp-pacing", o->tcp_pacing,
                     "HTTP/2: TCP's internal pacing on every connection (SO_MAX_PACING_RATE; at "
                     "net.ipv4.tcp_pacing_ss_ratio/ca_ratio of cwnd/srtt); 'off': only BBR or an fq qdisc paces")
          ->check(CLI::IsMember({"on", "off"}))
          ->capture_default_str();
      sub.add_option("--quic-pacing", o->quic_pacing,
                     "HTTP/3: ngtcp2's pacing after the handshake (1.25 x cwnd/srtt); 'off': bursts up to cwnd")
          ->check(CLI::IsMember({"on", "off"}))
          ->capture_default_str();
      sub.add_option("--conn-log", o->conn_log,
                     "append one JSON line per ended connection to FILE: what its transport did (controller, "
                     "MSS/datagram size, initial window, pacing, retransmissions, timeouts, RTT, RTO/PTO)");
      add_tls_suite_options(sub, o->tls_cipher, o->tls_group, "HTTP/2 and HTTP/3: accept");
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace quiclab::cli
