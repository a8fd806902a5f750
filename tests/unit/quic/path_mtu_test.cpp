// The datagram-size rule (path_mtu.hpp): what --max-udp-payload accepts, which
// peers count as loopback, and what reaches ngtcp2's settings.
#include "transport/quic/path_mtu.hpp"

#include <catch2/catch.hpp>
#include <string>

using namespace quiclab;
using namespace quiclab::quic;

TEST_CASE("udp payload option: auto or a byte count from 1200 to 65507", "[quic][mtu]") {
  auto a = parse_udp_payload_policy("auto");
  REQUIRE(a);
  CHECK(a->forced == 0);
  CHECK(parse_udp_payload_policy("1200")->forced == 1200);
  CHECK(parse_udp_payload_policy("1452")->forced == 1452);
  CHECK(parse_udp_payload_policy("65507")->forced == 65507);
  for (const char* bad : {"", "1199", "65508", "0", "-1", "12k", "1452 ", " 1452", "AUTO", "99999999999999999999999"}) {
    std::string why;
    INFO(bad);
    CHECK_FALSE(parse_udp_payload_policy(bad, &why));
    CHECK(why.find("expected 'auto' or a UDP payload size in bytes from 1200 to 65507") != std::string::npos);
    CHECK(why.find(std::string("got '") + bad + "'") != std::string::npos);
  }
}

TEST_CASE("loopback peers: 127/8, ::1 and v4-mapped 127/8 only", "[quic][mtu]") {
  for (const char* ip : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"}) {
    INFO(ip);
    CHECK(is_loopback(*SocketAddress::from_ip(ip, 443)));
  }
  for (const char* ip :
       {"10.0.0.1", "128.0.0.1", "126.255.255.255", "0.0.0.0", "::", "::2", "::ffff:10.0.0.1", "fe80::1"}) {
    INFO(ip);
    CHECK_FALSE(is_loopback(*SocketAddress::from_ip(ip, 443)));
  }
}

TEST_CASE("automatic size: the loopback route's MTU for loopback peers, ngtcp2's default elsewhere", "[quic][mtu]") {
  const UdpPayloadPolicy automatic;
  // Linux's loopback MTU is 65536; capped at kMaxLocalUdpPayload.
  auto v4 = max_udp_payload_for(*SocketAddress::from_ip("127.0.0.1", 4433), automatic);
  CHECK(v4 > NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE);
  CHECK(v4 <= kMaxLocalUdpPayload);
  auto v6 = max_udp_payload_for(*SocketAddress::from_ip("::1", 4433), automatic);
  CHECK(v6 > NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE);
  CHECK(v6 <= kMaxLocalUdpPayload);
  // Not loopback: nothing is assumed (the route is not even looked up).
  CHECK(max_udp_payload_for(*SocketAddress::from_ip("10.0.0.1", 4433), automatic) == 0);
  CHECK(max_udp_payload_for(*SocketAddress::from_ip("2001:db8::1", 4433), automatic) == 0);
  // Forced: the same for every peer.
  CHECK(max_udp_payload_for(*SocketAddress::from_ip("10.0.0.1", 4433), UdpPayloadPolicy{1300}) == 1300);
  CHECK(max_udp_payload_for(*SocketAddress::from_ip("127.0.0.1", 4433), UdpPayloadPolicy{1452}) == 1452);
}

TEST_CASE("the cores' rule is pure: the adapter's probe result for loopback peers, forced sizes win", "[quic][mtu]") {
  const UdpPayloadPolicy automatic;
  // The number is whatever the adapter measured; nothing is asked of the kernel.
  CHECK(udp_payload_for(*SocketAddress::from_ip("127.0.0.1", 4433), automatic, 4321) == 4321);
  CHECK(udp_payload_for(*SocketAddress::from_ip("::1", 4433), automatic, 4321) == 4321);
  CHECK(udp_payload_for(*SocketAddress::from_ip("::ffff:127.0.0.2", 4433), automatic, 4321) == 4321);
  CHECK(udp_payload_for(*SocketAddress::from_ip("127.0.0.1", 4433), automatic, 0) == 0);
  CHECK(udp_payload_for(*SocketAddress::from_ip("10.0.0.1", 4433), automatic, 4321) == 0);
  CHECK(udp_payload_for(*SocketAddress::from_ip("10.0.0.1", 4433), UdpPayloadPolicy{1300}, 4321) == 1300);
  CHECK(udp_payload_for(*SocketAddress::from_ip("127.0.0.1", 4433), UdpPayloadPolicy{1300}, 4321) == 1300);
  // The adapters' probe agrees with the convenience wrapper.
  const auto lo = *SocketAddress::from_ip("127.0.0.1", 4433);
  CHECK(probe_loopback_udp_payload(lo) == max_udp_payload_for(lo, automatic));
}

TEST_CASE("payload sizes reach ngtcp2's settings and transport parameters", "[quic][mtu]") {
  ngtcp2_settings s;
  ngtcp2_settings_default(&s);
  const auto default_tx = s.max_tx_udp_payload_size;
  apply_udp_payload(s, 0);
  CHECK(s.max_tx_udp_payload_size == default_tx);
  CHECK(s.no_pmtud == 0);

  apply_udp_payload(s, 1300);  // lower: only the ceiling moves, discovery stays
  CHECK(s.max_tx_udp_payload_size == 1300);
  CHECK(s.no_pmtud == 0);
  CHECK(s.no_tx_udp_payload_size_shaping == 0);

  apply_udp_payload(s, 16384);  // known-large path: no shaping, no probing
  CHECK(s.max_tx_udp_payload_size == 16384);
  CHECK(s.no_pmtud == 1);
  CHECK(s.no_tx_udp_payload_size_shaping == 1);

  ngtcp2_transport_params p;
  ngtcp2_transport_params_default(&p);
  const auto default_rx = p.max_udp_payload_size;
  advertise_udp_payload(p, UdpPayloadPolicy{});
  CHECK(p.max_udp_payload_size == default_rx);
  advertise_udp_payload(p, UdpPayloadPolicy{1400});
  CHECK(p.max_udp_payload_size == 1400);
}
