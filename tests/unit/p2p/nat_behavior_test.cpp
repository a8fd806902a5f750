// RFC 5780 discovery against the rendezvous server core through a simulated NAT,
// all in memory on simulated time, for each mapping and filtering behaviour.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "p2p/nat_behavior.hpp"
#include "p2p/rendezvous_server.hpp"

using namespace quiclab;
using namespace quiclab::stun;
using namespace quiclab::rendezvous;

namespace {

SocketAddress addr(const char* ip, std::uint16_t port) { return SocketAddress::from_ip(ip, port).value(); }

// A NAT with one inside host: outbound packets get a public port chosen by the
// mapping behaviour; inbound packets pass if the filtering behaviour allows them.
struct SimulatedNat {
  NatBehavior mapping = NatBehavior::EndpointIndependent;
  NatBehavior filtering = NatBehavior::EndpointIndependent;
  SocketAddress inside = addr("10.0.0.1", 1000);
  std::map<std::string, std::uint16_t> ports;  // mapping key -> public port
  std::set<std::string> contacted;             // filtering keys of destinations we sent to
  std::uint16_t next_port = 20000;

  std::string key(const SocketAddress& dst, NatBehavior b) const {
    if (b == NatBehavior::EndpointIndependent) return "*";
    if (b == NatBehavior::AddressDependent) return dst.ip();
    return dst.to_string();
  }
  SocketAddress outbound(const SocketAddress& dst) {
    auto k = key(dst, mapping);
    if (!ports.count(k)) ports[k] = next_port++;
    contacted.insert(key(dst, filtering));
    return addr("203.0.113.5", ports[k]);
  }
  bool inbound_allowed(const SocketAddress& src) const {
    return filtering == NatBehavior::EndpointIndependent || contacted.count(key(src, filtering)) > 0;
  }
};

NatBehaviorResult run(NatBehavior mapping, NatBehavior filtering) {
  ServerConfig cfg;
  cfg.local[kPrimary] = addr("192.0.2.1", 3478);
  cfg.local[kAltPort] = addr("192.0.2.1", 3479);
  cfg.local[kAltIp] = addr("192.0.2.2", 3478);
  cfg.local[kAltBoth] = addr("192.0.2.2", 3479);
  Server server(cfg);
  SimulatedNat nat;
  nat.mapping = mapping;
  nat.filtering = filtering;
  ManualClock clock(kNanosPerSecond);
  NatBehaviorDiscovery d(cfg.local[kPrimary], nat.inside, true);
  d.start(clock.now());
  for (int steps = 0; steps < 1000 && !d.done(); ++steps) {
    auto datagrams = d.take_datagrams();
    for (auto& dg : datagrams) {
      int socket = -1;
      for (int i = 0; i < 4; ++i) {
        if (cfg.local[static_cast<std::size_t>(i)] == dg.to) socket = i;
      }
      REQUIRE(socket >= 0);
      std::vector<OutgoingDatagram> out;
      server.handle_datagram(socket, nat.outbound(dg.to), dg.data, clock.now(), out);
      for (auto& o : out) {
        auto from = cfg.local[static_cast<std::size_t>(o.socket)];
        if (nat.inbound_allowed(from)) d.handle_datagram(from, o.data, clock.now());
      }
    }
    if (datagrams.empty() && !d.done()) {
      REQUIRE(d.expiry());
      clock.set(*d.expiry());
      d.handle_expiry(clock.now());
    }
  }
  REQUIRE(d.done());
  return d.result();
}

}  // namespace

TEST_CASE("RFC 5780 discovery names each mapping and filtering behaviour", "[p2p][nat]") {
  const NatBehavior all[] = {NatBehavior::EndpointIndependent, NatBehavior::AddressDependent,
                             NatBehavior::AddressAndPortDependent};
  for (auto mapping : all) {
    for (auto filtering : all) {
      INFO("mapping " << to_string(mapping) << ", filtering " << to_string(filtering));
      auto r = run(mapping, filtering);
      CHECK(r.error.empty());
      CHECK(r.behind_nat);
      CHECK(r.mapped.ip() == "203.0.113.5");
      CHECK(r.mapping == mapping);
      CHECK(r.filtering == filtering);
    }
  }
}

TEST_CASE("a server without OTHER-ADDRESS gives mapped address but no behaviour", "[p2p][nat]") {
  ServerConfig cfg;
  cfg.local[kPrimary] = addr("192.0.2.1", 3478);
  Server server(cfg);
  ManualClock clock(kNanosPerSecond);
  NatBehaviorDiscovery d(cfg.local[kPrimary], addr("10.0.0.1", 1000), true);
  d.start(clock.now());
  auto dg = d.take_datagrams();
  REQUIRE(dg.size() == 1);
  std::vector<OutgoingDatagram> out;
  server.handle_datagram(kPrimary, addr("203.0.113.5", 20000), dg[0].data, clock.now(), out);
  REQUIRE(out.size() == 1);
  d.handle_datagram(cfg.local[kPrimary], out[0].data, clock.now());
  REQUIRE(d.done());
  CHECK(d.result().mapped.to_string() == "203.0.113.5:20000");
  CHECK_THAT(d.result().error, Catch::Contains("OTHER-ADDRESS"));
}
