// quiclab rendezvous: STUN Binding (RFC 8489, RFC 5780 with --alt-address) and
// the rendezvous protocol of docs/rendezvous-protocol.md on one UDP port.
#include <csignal>
#include <iostream>

#include "app/commands.hpp"
#include "p2p/rendezvous_service.hpp"
#include "transport/core/log.hpp"

namespace {

using namespace quiclab;

struct Options {
  std::string listen;
  std::string alt_address;
  rendezvous::ServerConfig limits;
};

void print_metrics(const rendezvous::Service& service) { std::cout << service.core().metrics_text() << std::flush; }

int run(const Options& o) {
  auto listen = SocketAddress::parse(o.listen);
  if (!listen) {
    std::cerr << "quiclab rendezvous: --listen: " << listen.error().message << "\n";
    return cli::kExitUsage;
  }
  uv::Loop loop;
  rendezvous::Service service(loop, o.limits);
  std::optional<std::string> alt;
  if (!o.alt_address.empty()) alt = o.alt_address;
  auto sockets = rendezvous::bind_sockets(loop, *listen, alt);
  if (!sockets) {
    std::cerr << "quiclab rendezvous: " << sockets.error().message << "\n";
    return sockets.error().domain == ErrorDomain::config ? cli::kExitUsage : cli::kExitTransport;
  }
  if (auto st = service.start(std::move(*sockets)); !st) {
    std::cerr << "quiclab rendezvous: " << st.error().message << "\n";
    return cli::kExitTransport;
  }
  const auto& l = service.local();
  // One machine-readable line so scripts can learn ports chosen with :0.
  std::cout << "listening primary=" << l[0].to_string();
  if (!l[3].empty()) {
    std::cout << " alt-port=" << l[1].to_string() << " alt-ip=" << l[2].to_string() << " alt-both=" << l[3].to_string();
  }
  std::cout << std::endl;
  log::info("rendezvous: listening on {}{}", l[0].to_string(),
            l[3].empty() ? std::string(" (no alternate address: RFC 5780 CHANGE-REQUEST answered with 420)")
                         : " with alternate " + l[3].to_string());

  uv::Signal usr1(loop), intr(loop), term(loop);
  (void)usr1.start(SIGUSR1, [&](int) { print_metrics(service); });
  auto quit = [&](int signum) {
    log::info("rendezvous: signal {}, shutting down", signum);
    print_metrics(service);
    service.stop();
    usr1.close();
    intr.close();
    term.close();
  };
  (void)intr.start(SIGINT, quit);
  (void)term.start(SIGTERM, quit);
  loop.run();
  loop.close();
  return cli::kExitOk;
}

quiclab::cli::Registration reg{
    "rendezvous", "STUN server (RFC 8489/5780) and peer rendezvous on one UDP port",
    [](CLI::App& sub) -> quiclab::cli::Runner {
      auto o = std::make_shared<Options>();
      sub.add_option("--listen", o->listen, "ADDR:PORT to listen on (port 0 picks one)")->required();
      sub.add_option(
          "--alt-address", o->alt_address,
          "a second local IP for RFC 5780 (OTHER-ADDRESS, CHANGE-REQUEST); adds sockets (A,P+1), (A2,P), (A2,P+1)");
      sub.add_option("--max-registrations", o->limits.max_registrations, "registrations in total")
          ->capture_default_str();
      sub.add_option("--max-registrations-per-source", o->limits.max_registrations_per_source,
                     "registrations per source IP")
          ->capture_default_str();
      sub.add_option("--rate", o->limits.requests_per_second_per_source, "requests per second per source IP")
          ->capture_default_str();
      sub.add_option("--burst", o->limits.request_burst_per_source, "request burst per source IP")
          ->capture_default_str();
      sub.add_option("--default-lifetime", o->limits.default_lifetime_s, "registration lifetime (s) when none is asked")
          ->capture_default_str();
      sub.add_option("--max-lifetime", o->limits.max_lifetime_s, "longest registration lifetime (s)")
          ->capture_default_str();
      sub.footer("Counters are printed to stdout in Prometheus text format on SIGUSR1 and at exit (SIGINT/SIGTERM).");
      return [o] { return run(*o); };
    }};

}  // namespace
