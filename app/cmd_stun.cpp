// quiclab stun: a STUN client. Prints the mapped (server-reflexive) address and,
// with --nat-behavior, the RFC 5780 mapping and filtering behaviour.
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "app/commands.hpp"
#include "p2p/nat_behavior.hpp"
#include "transport/core/deadline_timer.hpp"
#include "transport/core/log.hpp"
#include "transport/core/uv.hpp"
#include "transport/quic/udp_socket.hpp"

namespace {

using namespace quiclab;

struct Options {
  std::string server;
  bool behavior = false;
  bool json = false;
  std::string bind;
  unsigned rto_ms = 250;
  unsigned rc = 5;
  unsigned rm = 8;
};

// The STUN client is the socket's only consumer: datagrams go to the discovery
// core, ICMP errors (a server that is not there) are logged.
struct Reader final : quic::DatagramHandler {
  explicit Reader(std::function<void(const quic::ReceivedDatagram&)> f) : on_datagram(std::move(f)) {}
  void handle_datagram(const quic::ReceivedDatagram& d) override { on_datagram(d); }
  void handle_socket_error(int err, const SocketAddress& to) override {
    log::info("stun: {} from {}", std::strerror(err), to.empty() ? std::string("?") : to.to_string());
  }
  std::function<void(const quic::ReceivedDatagram&)> on_datagram;
};

int run(const Options& o) {
  auto server = SocketAddress::parse(o.server, 3478);
  if (!server) {
    std::cerr << "quiclab stun: " << server.error().message << "\n";
    return cli::kExitUsage;
  }
  auto bind_at =
      o.bind.empty() ? SocketAddress::from_ip(server->is_v6() ? "::" : "0.0.0.0", 0) : SocketAddress::parse(o.bind, 0);
  if (!bind_at) {
    std::cerr << "quiclab stun: --bind: " << bind_at.error().message << "\n";
    return cli::kExitUsage;
  }
  uv::Loop loop;
  quic::UdpSocketOptions socket_options;
  socket_options.gro = false;
  socket_options.gso = false;
  socket_options.rcvbuf = socket_options.sndbuf = 0;  // a few small datagrams
  socket_options.recv_batch = 4;
  auto opened = quic::open_udp(loop, *bind_at, socket_options);
  if (!opened) {
    std::cerr << "quiclab stun: " << opened.error().message << "\n";
    return cli::kExitTransport;
  }
  quic::UdpSocket& udp = **opened;
  SocketAddress local = udp.local_address();
  // With a wildcard bind, the address to compare with the mapped one is the
  // one the route to the server uses.
  if (auto src = quic::route_source(*server);
      src && (o.bind.empty() || bind_at->ip() == "0.0.0.0" || bind_at->ip() == "::")) {
    auto port = local.port();
    local = *src;
    local.set_port(port);
  }
  stun::TransactionConfig tc;
  tc.rto = Timestamp{o.rto_ms} * kNanosPerMilli;
  tc.rc = o.rc;
  tc.rm = o.rm;
  stun::NatBehaviorDiscovery discovery(*server, local, o.behavior, tc);
  std::optional<uv::DeadlineTimer> timer(std::in_place, loop);
  std::function<void()> flush;
  timer->add(discovery, [&] { flush(); });

  flush = [&] {
    for (auto& d : discovery.take_datagrams()) {
      if (auto r = udp.send(d.to, d.data); r.status != quic::SendStatus::sent)
        log::warn("stun: cannot send to {}: {}", d.to.to_string(),
                  r.status == quic::SendStatus::blocked ? "socket buffer full" : std::strerror(r.error));
    }
    if (discovery.done()) {
      udp.close();
      timer.reset();
      return;
    }
    timer->rearm();
  };
  Reader reader([&](const quic::ReceivedDatagram& d) {
    discovery.handle_datagram(d.peer, d.data, uv::Loop::hrtime());
    flush();
  });
  if (auto st = quic::attach(udp, reader); !st) {
    std::cerr << "quiclab stun: " << st.error().message << "\n";
    return cli::kExitTransport;
  }
  discovery.start(uv::Loop::hrtime());
  flush();
  loop.run();
  loop.close();

  const auto& r = discovery.result();
  bool ok = r.error.empty();
  if (o.json) {
    nlohmann::json j;
    j["server"] = server->to_string();
    j["local"] = r.local.to_string();
    j["ok"] = ok;
    if (!r.mapped.empty()) {
      j["mapped"] = r.mapped.to_string();
      j["behind_nat"] = r.behind_nat;
    }
    if (r.other_address) j["other_address"] = r.other_address->to_string();
    if (o.behavior) {
      j["mapping"] = std::string(stun::to_string(r.mapping));
      j["filtering"] = std::string(stun::to_string(r.filtering));
    }
    if (!ok) j["error"] = r.error;
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << "server:             " << server->to_string() << "\n";
    std::cout << "local address:      " << r.local.to_string() << "\n";
    if (!r.mapped.empty()) {
      std::cout << "mapped address:     " << r.mapped.to_string() << "\n";
      std::cout << "behind NAT:         " << (r.behind_nat ? "yes" : "no") << "\n";
    }
    if (r.other_address) std::cout << "other address:      " << r.other_address->to_string() << "\n";
    if (o.behavior) {
      std::cout << "mapping behavior:   " << stun::to_string(r.mapping) << "\n";
      std::cout << "filtering behavior: " << stun::to_string(r.filtering) << "\n";
    }
    if (!ok) std::cout << "error:              " << r.error << "\n";
    std::cout << std::flush;
  }
  return ok ? cli::kExitOk : cli::kExitTransport;
}

quiclab::cli::Registration reg{
    "stun", "STUN client: mapped address and RFC 5780 NAT behaviour discovery",
    [](CLI::App& sub) -> quiclab::cli::Runner {
      auto o = std::make_shared<Options>();
      sub.add_option("server", o->server, "SERVER:PORT (port defaults to 3478)")->required();
      sub.add_flag("--nat-behavior", o->behavior, "run the RFC 5780 mapping and filtering tests");
      sub.add_flag("--json", o->json, "print one JSON object");
      sub.add_option("--bind", o->bind, "local ADDR[:PORT] to send from (default: any)");
      sub.add_option("--rto-ms", o->rto_ms, "initial retransmission timeout")->capture_default_str();
      sub.add_option("--rc", o->rc, "transmissions per test before giving up")->capture_default_str();
      sub.add_option("--rm", o->rm, "final wait, in RTOs")->capture_default_str();
      return [o] { return run(*o); };
    }};

}  // namespace
