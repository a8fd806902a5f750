#include "transport/quic/udp_socket.hpp"

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <memory>
#include <vector>

#include "transport/core/uv.hpp"

using namespace quiclab;

namespace {
struct Received {
  std::vector<Bytes> datagrams;
  std::vector<std::uint8_t> ecn;
  std::vector<std::string> local;
  int batches = 0;
};

// refuse_gso: make the kernel refuse UDP_SEGMENT on the sender. Linux's
// udp_send_skb() rejects a GSO send with EINVAL on a socket that sends without
// UDP checksums (SO_NO_CHECK), as it does with EIO on devices without checksum
// offload: the same refusal our fallback exists for, made on demand.
void run_exchange(const char* ip, bool refuse_gso = false) {
  uv::Loop loop;
  quic::UdpSocket a(loop), b(loop);
  REQUIRE(a.bind(*SocketAddress::from_ip(ip, 0)));
  REQUIRE(b.bind(*SocketAddress::from_ip(ip, 0)));
  if (refuse_gso) {
    REQUIRE(a.gso_enabled());
    int one = 1;
    REQUIRE(::setsockopt(a.fd(), SOL_SOCKET, SO_NO_CHECK, &one, sizeof one) == 0);
  }
  Received got;
  uv::Timer guard(loop);
  REQUIRE(b.start(
      [&](const quic::ReceivedDatagram& d) {
        got.datagrams.emplace_back(d.data.begin(), d.data.end());
        got.ecn.push_back(d.ecn);
        got.local.push_back(d.local.to_string());
        if (got.datagrams.size() == 6) loop.stop();
      },
      [&] { ++got.batches; }));
  // Five 1200-byte packets and a 500-byte tail in one GSO send; then a plain one.
  Bytes burst(5 * 1200 + 500);
  for (std::size_t i = 0; i < burst.size(); ++i) burst[i] = static_cast<std::uint8_t>(i / 1200 + 1);
  auto r = a.send(b.local_address(), burst, 1200, quic::Ecn::ect0);
  REQUIRE(r.status == quic::SendStatus::sent);
  CHECK(r.bytes_sent == burst.size());
  guard.start(10000, 0, [&] { loop.stop(); });
  loop.run();
  REQUIRE(got.datagrams.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) {
    CHECK(got.datagrams[i].size() == (i < 5 ? 1200u : 500u));
    CHECK(got.datagrams[i][0] == i + 1);
    CHECK(got.ecn[i] == static_cast<std::uint8_t>(quic::Ecn::ect0));
    CHECK(got.local[i] == b.local_address().to_string());
  }
  CHECK(got.batches >= 1);
  CHECK(a.stats().datagrams_sent == 6);
  CHECK(a.gso_enabled() == !refuse_gso);  // refused once: segment by segment from then on
  a.close();
  b.close();
  guard.close();
  CHECK(loop.close().empty());
}
}  // namespace

TEST_CASE("udp socket: GSO burst arrives as separate datagrams with ECN (IPv4)", "[quic][udp]") {
  run_exchange("127.0.0.1");
}

TEST_CASE("udp socket: GSO burst arrives as separate datagrams with ECN (IPv6)", "[quic][udp]") { run_exchange("::1"); }

TEST_CASE("udp socket: where the kernel refuses GSO, the burst goes out segment by segment", "[quic][udp]") {
  run_exchange("127.0.0.1", /*refuse_gso=*/true);
}

TEST_CASE("udp socket: wildcard bind reports the local address per datagram", "[quic][udp]") {
  uv::Loop loop;
  quic::UdpSocket server(loop), client(loop);
  REQUIRE(server.bind(*SocketAddress::from_ip("0.0.0.0", 0)));
  REQUIRE(client.bind(*SocketAddress::from_ip("127.0.0.1", 0)));
  auto to = *SocketAddress::from_ip("127.0.0.1", server.local_address().port());
  std::string local;
  SocketAddress peer;
  REQUIRE(server.start([&](const quic::ReceivedDatagram& d) {
    local = d.local.to_string();
    peer = d.peer;
    // Reply from the address the datagram was sent to.
    server.send(d.peer, d.data, 0, quic::Ecn::not_ect, &d.local);
  }));
  bool replied = false;
  REQUIRE(client.start([&](const quic::ReceivedDatagram& d) {
    replied = d.peer == to;
    loop.stop();
  }));
  Bytes ping{1, 2, 3};
  REQUIRE(client.send(to, ping).status == quic::SendStatus::sent);
  uv::Timer guard(loop);
  guard.start(10000, 0, [&] { loop.stop(); });
  loop.run();
  CHECK(local == to.to_string());
  CHECK(replied);
  server.close();
  client.close();
  guard.close();
  CHECK(loop.close().empty());
}

TEST_CASE("udp socket: oversized datagrams up to 64 KiB are received whole", "[quic][udp]") {
  uv::Loop loop;
  quic::UdpSocket a(loop), b(loop);
  REQUIRE(a.bind(*SocketAddress::from_ip("127.0.0.1", 0)));
  REQUIRE(b.bind(*SocketAddress::from_ip("127.0.0.1", 0)));
  std::size_t size = 0;
  REQUIRE(b.start([&](const quic::ReceivedDatagram& d) {
    size = d.data.size();
    loop.stop();
  }));
  Bytes big(65000, 7);
  REQUIRE(a.send(b.local_address(), big).status == quic::SendStatus::sent);
  uv::Timer guard(loop);
  guard.start(10000, 0, [&] { loop.stop(); });
  loop.run();
  CHECK(size == big.size());
  a.close();
  b.close();
  guard.close();
  CHECK(loop.close().empty());
}

TEST_CASE("udp socket: an ICMP error on a connected socket is reported and reading goes on", "[quic][udp]") {
  // A port nobody listens on: bind it, then close it again.
  std::uint16_t port = 0;
  {
    uv::Loop tmp;
    quic::UdpSocket probe(tmp);
    REQUIRE(probe.bind(*SocketAddress::from_ip("127.0.0.1", 0)));
    port = probe.local_address().port();
    probe.close();
    tmp.run(UV_RUN_NOWAIT);
    CHECK(tmp.close().empty());
  }
  auto there = *SocketAddress::from_ip("127.0.0.1", port);
  uv::Loop loop;
  quic::UdpSocket a(loop);
  REQUIRE(a.bind(*SocketAddress::from_ip("127.0.0.1", 0)));
  REQUIRE(::connect(a.fd(), there.sa(), there.size()) == 0);
  std::vector<int> errors;
  Bytes got;
  a.on_socket_error([&](int err, const SocketAddress&) { errors.push_back(err); });
  REQUIRE(a.start([&](const quic::ReceivedDatagram& d) {
    got.assign(d.data.begin(), d.data.end());
    loop.stop();
  }));
  // The first send draws ICMP port unreachable: a pending ECONNREFUSED (POLLERR).
  a.send(there, Bytes{1});
  uv::Timer guard(loop), step(loop);
  std::unique_ptr<quic::UdpSocket> b;
  step.start(200, 0, [&] {
    // Now someone listens there and answers: the socket must still be read.
    b = std::make_unique<quic::UdpSocket>(loop);
    REQUIRE(b->bind(there));
    REQUIRE(b->send(a.local_address(), Bytes{4, 2}).status == quic::SendStatus::sent);
  });
  guard.start(10000, 0, [&] { loop.stop(); });
  loop.run();
  CHECK(errors == std::vector<int>{ECONNREFUSED});
  CHECK(a.stats().socket_errors == 1);
  CHECK(got == Bytes{4, 2});
  a.close();
  if (b) b->close();
  guard.close();
  step.close();
  CHECK(loop.close().empty());
}

namespace {
// A port nobody listens on: bind it, then close it again.
SocketAddress closed_port(const char* ip) {
  uv::Loop tmp;
  quic::UdpSocket probe(tmp);
  REQUIRE(probe.bind(*SocketAddress::from_ip(ip, 0)));
  auto there = probe.local_address();
  probe.close();
  tmp.run(UV_RUN_NOWAIT);
  CHECK(tmp.close().empty());
  return there;
}

// One unconnected socket talks to two peers: one is gone (ICMP port
// unreachable), one answers. The error must name the peer that is gone, and
// the answer from the other must still arrive: what a client sharing its
// socket (or racing addresses) needs to tell "refused" from "slow".
void unconnected_error(const char* ip) {
  const SocketAddress gone = closed_port(ip);
  uv::Loop loop;
  quic::UdpSocket a(loop), live(loop);
  REQUIRE(a.bind(*SocketAddress::from_ip(ip, 0)));
  REQUIRE(live.bind(*SocketAddress::from_ip(ip, 0)));
  std::vector<std::pair<int, SocketAddress>> errors;
  std::vector<Bytes> got;
  auto maybe_done = [&] {
    if (!errors.empty() && !got.empty()) loop.stop();
  };
  a.on_socket_error([&](int err, const SocketAddress& to) {
    errors.emplace_back(err, to);
    maybe_done();
  });
  REQUIRE(a.start([&](const quic::ReceivedDatagram& d) {
    got.emplace_back(d.data.begin(), d.data.end());
    maybe_done();
  }));
  REQUIRE(live.start([&](const quic::ReceivedDatagram& d) {
    REQUIRE(live.send(d.peer, Bytes{7, 7, 7}).status == quic::SendStatus::sent);
  }));
  REQUIRE(a.send(gone, Bytes{1, 2, 3}).status == quic::SendStatus::sent);
  REQUIRE(a.send(live.local_address(), Bytes{9}).status == quic::SendStatus::sent);
  uv::Timer guard(loop);
  guard.start(10000, 0, [&] { loop.stop(); });  // a bound, never the expected path
  loop.run();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].first == ECONNREFUSED);
  CHECK(errors[0].second == gone);
  CHECK(a.stats().icmp_errors == 1);
  CHECK(got == std::vector<Bytes>{Bytes{7, 7, 7}});
  a.close();
  live.close();
  guard.close();
  CHECK(loop.close().empty());
}
}  // namespace

TEST_CASE("udp socket: unconnected, an ICMP error names the peer that caused it (IPv4)", "[quic][udp]") {
  unconnected_error("127.0.0.1");
}

TEST_CASE("udp socket: unconnected, an ICMP error names the peer that caused it (IPv6)", "[quic][udp]") {
  unconnected_error("::1");
}

TEST_CASE("udp socket: several consumers can wait for writability on one socket", "[quic][udp]") {
  uv::Loop loop;
  quic::UdpSocket a(loop);
  REQUIRE(a.bind(*SocketAddress::from_ip("127.0.0.1", 0)));
  int woke = 0;
  a.wait_writable([&] { ++woke; });
  a.wait_writable([&] { ++woke; });
  uv::Timer guard(loop);
  guard.start(10000, 0, [&] { loop.stop(); });
  while (woke < 2 && loop.run(UV_RUN_ONCE)) {
  }
  CHECK(woke == 2);
  a.close();
  guard.close();
  CHECK(loop.close().empty());
}
