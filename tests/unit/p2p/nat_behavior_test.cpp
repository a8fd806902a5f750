// RFC 5780 discovery against the rendezvous server core through a simulated NAT,
// all in memory on simulated time, for each mapping and filtering behaviour.
#include "p2p/nat_behavior.hpp"

#include <catch2/catch.hpp>

#include "p2p/rendezvous_server.hpp"
#include "tests/unit/sim/nat_sim.hpp"

using namespace quiclab;
using namespace quiclab::stun;
using namespace quiclab::rendezvous;

namespace {

SocketAddress addr(const char* ip, std::uint16_t port) { return SocketAddress::from_ip(ip, port).value(); }

sim::Dependence dependence(NatBehavior b) {
  switch (b) {
    case NatBehavior::AddressDependent:
      return sim::Dependence::address_dependent;
    case NatBehavior::AddressAndPortDependent:
      return sim::Dependence::address_and_port_dependent;
    default:
      return sim::Dependence::endpoint_independent;
  }
}

NatBehaviorResult run(NatBehavior mapping, NatBehavior filtering, bool mapping_only = false,
                      std::size_t* datagrams_sent = nullptr) {
  ServerConfig cfg;
  cfg.local[kPrimary] = addr("192.0.2.1", 3478);
  cfg.local[kAltPort] = addr("192.0.2.1", 3479);
  cfg.local[kAltIp] = addr("192.0.2.2", 3478);
  cfg.local[kAltBoth] = addr("192.0.2.2", 3479);
  Server server(cfg);
  sim::NatConfig nc;
  nc.mapping = dependence(mapping);
  nc.filtering = dependence(filtering);
  nc.port_preservation = false;  // so "behind NAT" is visible in the port too
  nc.udp_timeout = 3600 * kNanosPerSecond;
  sim::Nat nat(nc);
  const SocketAddress inside = addr("10.0.0.1", 1000);
  ManualClock clock(kNanosPerSecond);
  NatBehaviorDiscovery d(cfg.local[kPrimary], inside, true);
  if (mapping_only) d.mapping_only();
  d.start(clock.now());
  for (int steps = 0; steps < 1000 && !d.done(); ++steps) {
    auto datagrams = d.take_datagrams();
    if (datagrams_sent) *datagrams_sent += datagrams.size();
    for (auto& dg : datagrams) {
      int socket = -1;
      for (int i = 0; i < 4; ++i) {
        if (cfg.local[static_cast<std::size_t>(i)] == dg.to) socket = i;
      }
      REQUIRE(socket >= 0);
      std::vector<OutgoingDatagram> out;
      server.handle_datagram(socket, nat.outbound(inside, dg.to, clock.now()), dg.data, clock.now(), out);
      for (auto& o : out) {
        auto from = cfg.local[static_cast<std::size_t>(o.socket)];
        if (nat.inbound(from, o.to, clock.now())) d.handle_datagram(from, o.data, clock.now());
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

TEST_CASE("mapping-only discovery names the mapping without the filtering tests' waits", "[p2p][nat]") {
  const NatBehavior all[] = {NatBehavior::EndpointIndependent, NatBehavior::AddressDependent,
                             NatBehavior::AddressAndPortDependent};
  for (auto mapping : all) {
    INFO("mapping " << to_string(mapping));
    std::size_t sent = 0;
    // Port-dependent filtering: the full discovery would wait out two CHANGE-REQUEST timeouts.
    auto r = run(mapping, NatBehavior::AddressAndPortDependent, true, &sent);
    CHECK(r.error.empty());
    CHECK(r.mapping == mapping);
    CHECK(r.filtering == NatBehavior::Unknown);
    CHECK(sent == (mapping == NatBehavior::EndpointIndependent ? 2u : 3u));  // test I, mapping II (and III)
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
