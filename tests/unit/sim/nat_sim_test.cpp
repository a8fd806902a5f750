// The NAT simulator (tests/unit/sim/nat_sim.hpp) held to RFC 4787's
// definitions, and a minimal punching exchange through it that reproduces the
// matrix the hole-punching issue expects: which NAT pairs allow a direct path,
// and where only a peer-reflexive address makes it.
#include "tests/unit/sim/nat_sim.hpp"

#include <catch2/catch.hpp>
#include <set>
#include <string>

using namespace quiclab;
using sim::Dependence;
using sim::NatConfig;

namespace {

SocketAddress addr(const char* ip, std::uint16_t port) { return SocketAddress::from_ip(ip, port).value(); }

const SocketAddress kInside = addr("10.0.1.2", 5000);
const SocketAddress kServer1 = addr("192.0.2.1", 3478);
const SocketAddress kServer1b = addr("192.0.2.1", 3479);
const SocketAddress kServer2 = addr("192.0.2.2", 3478);

}  // namespace

TEST_CASE("nat sim: mapping behaviours give one port per endpoint, per remote IP, or per remote IP:port",
          "[sim][nat]") {
  for (auto m :
       {Dependence::endpoint_independent, Dependence::address_dependent, Dependence::address_and_port_dependent}) {
    INFO(sim::to_string(m));
    NatConfig c;
    c.mapping = m;
    sim::Nat nat(c);
    auto a = nat.outbound(kInside, kServer1, 0);
    auto b = nat.outbound(kInside, kServer1b, 0);  // same IP, other port
    auto d = nat.outbound(kInside, kServer2, 0);   // other IP
    CHECK(a.ip() == "203.0.113.5");
    CHECK(a.port() == 5000);  // port preservation for the first mapping
    CHECK((a == b) == (m != Dependence::address_and_port_dependent));
    CHECK((a == d) == (m == Dependence::endpoint_independent));
    CHECK(nat.outbound(kInside, kServer1, 1) == a);  // the same destination keeps its mapping
  }
}

TEST_CASE("nat sim: without port preservation the public port is not the inside one", "[sim][nat]") {
  NatConfig c;
  c.port_preservation = false;
  sim::Nat nat(c);
  auto a = nat.outbound(kInside, kServer1, 0);
  CHECK(a.port() != kInside.port());
  CHECK(a.port() >= c.port_base);
  // A second inside host with the same port never shares a public port.
  NatConfig p;
  sim::Nat kept(p);
  auto x = kept.outbound(kInside, kServer1, 0);
  auto y = kept.outbound(addr("10.0.1.3", 5000), kServer1, 0);
  CHECK(x.port() == 5000);
  CHECK(y.port() != 5000);
}

TEST_CASE("nat sim: filtering lets in anyone, those IPs sent to, or exactly those IP:ports", "[sim][nat]") {
  for (auto f :
       {Dependence::endpoint_independent, Dependence::address_dependent, Dependence::address_and_port_dependent}) {
    INFO(sim::to_string(f));
    NatConfig c;
    c.filtering = f;
    sim::Nat nat(c);
    auto pub = nat.outbound(kInside, kServer1, 0);
    CHECK(nat.inbound(kServer1, pub, 1) == kInside);
    CHECK(nat.inbound(kServer1b, pub, 1).has_value() == (f != Dependence::address_and_port_dependent));
    CHECK(nat.inbound(kServer2, pub, 1).has_value() == (f == Dependence::endpoint_independent));
    // Nobody gets in where nothing was mapped.
    CHECK_FALSE(nat.inbound(kServer1, addr("203.0.113.5", 6000), 1));
  }
}

TEST_CASE("nat sim: a mapping dies udp_timeout after its last outbound packet", "[sim][nat]") {
  NatConfig c = NatConfig::port_restricted();
  c.udp_timeout = 30 * kNanosPerSecond;
  sim::Nat nat(c);
  auto pub = nat.outbound(kInside, kServer1, 0);
  // Outbound keepalives every 15 s keep it; inbound alone does not.
  for (Timestamp t = 15; t <= 120; t += 15) {
    CHECK(nat.inbound(kServer1, pub, t * kNanosPerSecond) == kInside);
    (void)nat.outbound(kInside, kServer1, t * kNanosPerSecond);
  }
  const Timestamp last = 120 * kNanosPerSecond;
  CHECK(nat.inbound(kServer1, pub, last + 29 * kNanosPerSecond) == kInside);
  CHECK_FALSE(nat.inbound(kServer1, pub, last + 30 * kNanosPerSecond));
  CHECK(nat.stats().mappings_expired == 1);
  CHECK(nat.stats().inbound_no_mapping == 1);
  // With inbound refresh (conntrack-like), answers keep it alive too.
  c.inbound_refresh = true;
  sim::Nat both(c);
  auto p2 = both.outbound(kInside, kServer1, 0);
  for (Timestamp t = 20; t <= 200; t += 20) CHECK(both.inbound(kServer1, p2, t * kNanosPerSecond) == kInside);
}

TEST_CASE("nat sim: hairpinning reaches a host behind the same NAT only when on", "[sim][nat]") {
  for (bool hairpin : {false, true}) {
    INFO("hairpin " << hairpin);
    sim::Network net;
    NatConfig c = NatConfig::full_cone();
    c.hairpin = hairpin;
    net.add_nat("10.0.1.", c);
    const auto a = addr("10.0.1.2", 5000), b = addr("10.0.1.3", 6000);
    // b's mapping exists (b sent to the server), a sends to b's public address.
    net.send(b, kServer1, as_bytes("hi"), 0);
    net.send(a, addr("203.0.113.5", 6000), as_bytes("hairpin"), 0);
    auto got = net.take_due(kNanosPerSecond);
    std::size_t to_b = 0;
    for (auto& d : got) to_b += d.to == b ? 1 : 0;
    CHECK(to_b == (hairpin ? 1u : 0u));
    // Host to host on the LAN works either way.
    net.send(a, b, as_bytes("lan"), kNanosPerSecond);
    auto lan = net.take_due(2 * kNanosPerSecond);
    REQUIRE(lan.size() == 1);
    CHECK(lan[0].from == a);
    CHECK(lan[0].to == b);
  }
}

namespace {

// The least a punching exchange needs, to check the NAT model: each side
// learns its server-reflexive address from the server, gets the other's host
// and reflexive addresses, pings every known address of the other every
// 50 ms, answers a ping with a pong to wherever it came from (learning that
// address: peer-reflexive) and is done on its first pong.
struct Punch {
  enum class Outcome { direct, direct_prflx, none };
  Outcome outcome = Outcome::none;
  std::vector<std::string> log;
};

struct Side {
  explicit Side(SocketAddress h) : host(h) {}
  SocketAddress host;
  std::optional<SocketAddress> srflx;
  std::vector<SocketAddress> introduced;  // the other's host and srflx
  std::set<std::string> targets;
  std::vector<SocketAddress> target_list;
  std::optional<SocketAddress> won;
  void add_target(const SocketAddress& a) {
    if (targets.insert(a.to_string()).second) target_list.push_back(a);
  }
  bool prflx() const {
    if (!won) return false;
    for (auto& i : introduced)
      if (i == *won) return false;
    return true;
  }
};

Punch punch(NatConfig a_nat, NatConfig b_nat, bool same_nat, std::uint64_t seed, double loss = 0) {
  sim::Network net(seed);
  net.set_loss(loss);
  a_nat.public_ip = "203.0.113.1";
  b_nat.public_ip = "203.0.113.2";
  net.add_nat("10.0.1.", a_nat);
  if (!same_nat) net.add_nat("10.0.2.", b_nat);
  Side a(addr("10.0.1.2", 5000)), b(addr(same_nat ? "10.0.1.3" : "10.0.2.2", 5000));
  const SocketAddress server = addr("192.0.2.1", 3478);
  std::map<std::string, std::pair<SocketAddress, SocketAddress>> seen_by_server;  // host -> (host, reflexive)
  auto side_of = [&](const SocketAddress& to) -> Side& { return to == a.host ? a : b; };
  auto text = [](const std::string& t) { return Bytes(t.begin(), t.end()); };

  net.send(a.host, server, text("bind " + a.host.to_string()), 0);
  net.send(b.host, server, text("bind " + b.host.to_string()), 0);
  const Timestamp step = 50 * kNanosPerMilli, deadline = 5 * kNanosPerSecond;
  for (Timestamp now = 0; now <= deadline; now += kNanosPerMilli) {
    for (auto& d : net.take_due(now)) {
      std::string msg(as_string(d.data));
      std::vector<std::string> w;
      for (std::size_t pos = 0; pos <= msg.size();) {
        auto sp = msg.find(' ', pos);
        if (sp == std::string::npos) sp = msg.size();
        w.push_back(msg.substr(pos, sp - pos));
        pos = sp + 1;
      }
      if (d.to == server) {
        // The server: tell the sender its reflexive address; introduce when both came.
        seen_by_server[w.at(1)] = {SocketAddress::parse(w.at(1)).value(), d.from};
        net.send(server, d.from, text("mapped " + d.from.to_string()), now);
        if (seen_by_server.size() == 2) {
          for (auto& [k, me_seen] : seen_by_server) {
            for (auto& [k2, other] : seen_by_server) {
              if (k2 == k) continue;
              net.send(server, me_seen.second,
                       text("introduce " + other.first.to_string() + " " + other.second.to_string()), now);
            }
          }
        }
        continue;
      }
      Side& me = side_of(d.to);
      if (w[0] == "introduce") {
        me.introduced = {SocketAddress::parse(w.at(1)).value(), SocketAddress::parse(w.at(2)).value()};
        for (auto& t : me.introduced) me.add_target(t);
      } else if (w[0] == "mapped") {
        me.srflx = SocketAddress::parse(w.at(1)).value();
      } else if (w[0] == "ping") {
        me.add_target(d.from);  // peer-reflexive when it is new
        net.send(me.host, d.from, text("pong"), now);
      } else if (w[0] == "pong" && !me.won) {
        me.won = d.from;
      }
    }
    if (now % step == 0) {
      for (Side* s : {&a, &b}) {
        // Until introduced, ask the server again every 200 ms (loss).
        if (s->introduced.empty() && now % (4 * step) == 0 && now > 0)
          net.send(s->host, server, text("bind " + s->host.to_string()), now);
        if (s->won) continue;
        for (auto& t : s->target_list) net.send(s->host, t, text("ping"), now);
      }
    }
    if (a.won && b.won) break;
  }
  Punch p;
  if (a.won && b.won) p.outcome = a.prflx() || b.prflx() ? Punch::Outcome::direct_prflx : Punch::Outcome::direct;
  p.log = net.log();
  return p;
}

}  // namespace

TEST_CASE("nat sim: punching through each pair of NAT types gives the expected matrix", "[sim][nat][p2p]") {
  using O = Punch::Outcome;
  const std::pair<const char*, NatConfig> types[] = {
      {"full-cone", NatConfig::full_cone()},
      {"address-restricted", NatConfig::address_restricted()},
      {"port-restricted", NatConfig::port_restricted()},
      {"symmetric", NatConfig::symmetric()},
  };
  // Rows A, columns B, as in docs/p2p.md and the hole-punching issue.
  const O expected[4][4] = {
      {O::direct, O::direct, O::direct, O::direct_prflx},
      {O::direct, O::direct, O::direct, O::direct_prflx},
      {O::direct, O::direct, O::direct, O::none},
      {O::direct_prflx, O::direct_prflx, O::none, O::none},
  };
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      INFO(types[i].first << " <-> " << types[j].first);
      CHECK(static_cast<int>(punch(types[i].second, types[j].second, false, 1).outcome) ==
            static_cast<int>(expected[i][j]));
    }
  }
  // Behind one NAT without hairpin: the host candidates meet on the LAN.
  CHECK(static_cast<int>(punch(NatConfig::symmetric(), NatConfig::symmetric(), true, 1).outcome) ==
        static_cast<int>(O::direct));
}

TEST_CASE("nat sim: the same seed gives the same event sequence, with loss", "[sim][nat]") {
  auto one = punch(NatConfig::port_restricted(), NatConfig::full_cone(), false, 42, 0.05);
  auto two = punch(NatConfig::port_restricted(), NatConfig::full_cone(), false, 42, 0.05);
  auto other = punch(NatConfig::port_restricted(), NatConfig::full_cone(), false, 43, 0.05);
  CHECK(one.log == two.log);
  CHECK(one.log != other.log);
  CHECK(static_cast<int>(one.outcome) == static_cast<int>(Punch::Outcome::direct));
}
