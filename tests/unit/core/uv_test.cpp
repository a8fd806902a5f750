#include <catch2/catch.hpp>

#include "transport/core/uv.hpp"

using namespace quiclab;

TEST_CASE("timer fires and the loop closes with no live handle", "[core][uv]") {
  uv::Loop loop;
  int fired = 0;
  {
    uv::Timer t(loop);
    t.start(1, 0, [&] { fired++; });
    loop.run();
  }
  CHECK(fired == 1);
  CHECK(loop.close().empty());
}

TEST_CASE("a timer may destroy itself from its own callback", "[core][uv]") {
  uv::Loop loop;
  auto t = std::make_unique<uv::Timer>(loop);
  int fired = 0;
  t->start(1, 1, [&] {
    fired++;
    t.reset();
  });
  loop.run();
  CHECK(fired == 1);
  CHECK(loop.close().empty());
}

TEST_CASE("loop close reports handles still open", "[core][uv]") {
  uv::Loop loop;
  uv::Timer t(loop);
  auto live = loop.close();
  REQUIRE(live.size() == 1);
  CHECK(live[0] == "timer");
  t.close();
  CHECK(loop.close().empty());
}

TEST_CASE("TCP echo over loopback", "[core][uv]") {
  uv::Loop loop;
  uv::TcpServer server(loop);
  std::vector<std::unique_ptr<uv::TcpStream>> accepted;
  auto addr = SocketAddress::from_ip("127.0.0.1", 0);
  REQUIRE(addr.ok());
  REQUIRE(server.listen(*addr, 16, [&](uv::TcpStream s) {
    auto conn = std::make_unique<uv::TcpStream>(std::move(s));
    auto* c = conn.get();
    accepted.push_back(std::move(conn));
    REQUIRE(c->read_start([c](ByteView d) { (void)c->write(Bytes(d.begin(), d.end())); },
                          [c](int) { c->close(); }));
  }).ok());
  auto bound = server.local_address();
  REQUIRE(bound.port() != 0);

  uv::TcpStream client(loop);
  std::string got;
  REQUIRE(client.connect(bound, [&](Status st) {
    REQUIRE(st.ok());
    REQUIRE(client.write(Bytes{'p', 'i', 'n', 'g'}).ok());
    REQUIRE(client.read_start(
        [&](ByteView d) {
          got.append(as_string(d));
          if (got.size() == 4) {
            client.close();
            server.close();
          }
        },
        [&](int) { client.close(); }).ok());
  }).ok());
  loop.run();
  CHECK(got == "ping");
  accepted.clear();
  CHECK(loop.close().empty());
}

TEST_CASE("connect failure is reported as a value", "[core][uv]") {
  uv::Loop loop;
  // Bind and close a listener to get a port that refuses connections.
  uint16_t port;
  {
    uv::TcpServer s(loop);
    REQUIRE(s.listen(*SocketAddress::from_ip("127.0.0.1", 0), 1, [](uv::TcpStream) {}).ok());
    port = s.local_address().port();
  }
  loop.run(UV_RUN_NOWAIT);
  uv::TcpStream c(loop);
  std::optional<Status> result;
  REQUIRE(c.connect(*SocketAddress::from_ip("127.0.0.1", port), [&](Status st) { result = st; }).ok());
  loop.run();
  REQUIRE(result);
  CHECK_FALSE(result->ok());
  CHECK(result->error().message.find("ECONNREFUSED") != std::string::npos);
  c.close();
  CHECK(loop.close().empty());
}

TEST_CASE("UDP send and receive on loopback", "[core][uv]") {
  uv::Loop loop;
  uv::Udp a(loop), b(loop);
  REQUIRE(a.bind(*SocketAddress::from_ip("127.0.0.1", 0)).ok());
  REQUIRE(b.bind(*SocketAddress::from_ip("127.0.0.1", 0)).ok());
  std::string got;
  SocketAddress from;
  REQUIRE(b.recv_start([&](ByteView d, const SocketAddress& f) {
    got = std::string(as_string(d));
    from = f;
    a.close();
    b.close();
  }).ok());
  REQUIRE(a.send(b.local_address(), as_bytes("hello")).ok());
  auto a_addr = a.local_address();
  loop.run();
  CHECK(got == "hello");
  CHECK(from == a_addr);
  CHECK(loop.close().empty());
}
