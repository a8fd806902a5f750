#include "transport/core/uv.hpp"

#include <algorithm>
#include <catch2/catch.hpp>

#include "transport/core/buffer.hpp"

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
  REQUIRE(server
              .listen(*addr, 16,
                      [&](uv::TcpStream s) {
                        auto conn = std::make_unique<uv::TcpStream>(std::move(s));
                        auto* c = conn.get();
                        accepted.push_back(std::move(conn));
                        REQUIRE(c->read_start([c](ByteView d) { (void)c->write(Bytes(d.begin(), d.end())); },
                                              [c](int) { c->close(); }));
                      })
              .ok());
  auto bound = server.local_address();
  REQUIRE(bound.port() != 0);

  uv::TcpStream client(loop);
  std::string got;
  REQUIRE(client
              .connect(bound,
                       [&](Status st) {
                         REQUIRE(st.ok());
                         REQUIRE(client.write(Bytes{'p', 'i', 'n', 'g'}).ok());
                         REQUIRE(client
                                     .read_start(
                                         [&](ByteView d) {
                                           got.append(as_string(d));
                                           if (got.size() == 4) {
                                             client.close();
                                             server.close();
                                           }
                                         },
                                         [&](int) { client.close(); })
                                     .ok());
                       })
              .ok());
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

TEST_CASE("buffer pool hands warm buffers back, bounded", "[core][buffer]") {
  auto a = buffer_pool::take(100 * 1024);
  REQUIRE(a.capacity() >= 100 * 1024);
  const auto* first = a.data();
  a.assign(1000, 7);
  buffer_pool::give(std::move(a));
  auto b = buffer_pool::take(90 * 1024);
  CHECK(b.data() == first);  // the same allocation, emptied
  CHECK(b.empty());
  // Small buffers are not worth keeping; the stock never grows past its bound.
  auto before = buffer_pool::stocked();
  buffer_pool::give(Bytes(10));
  CHECK(buffer_pool::stocked() == before);
  std::vector<Bytes> many;
  for (int i = 0; i < 20; ++i) many.push_back(buffer_pool::take(64 * 1024));
  CHECK(buffer_pool::stocked() == 0);
  for (auto& m : many) buffer_pool::give(std::move(m));
  CHECK(buffer_pool::stocked() == 8);
  // Nor does it keep very large ones.
  auto huge = buffer_pool::take(8 * 1024 * 1024);
  auto n = buffer_pool::stocked();
  buffer_pool::give(std::move(huge));
  CHECK(buffer_pool::stocked() == n);
}

TEST_CASE("TCP writes larger than the socket buffer arrive whole and in order", "[core][uv]") {
  // The first write mostly goes out at once (uv_try_write); the rest of it and
  // the writes behind it queue in libuv while the reader is paused.
  uv::Loop loop;
  uv::TcpServer server(loop);
  std::unique_ptr<uv::TcpStream> conn;
  constexpr std::size_t kChunk = 4 * 1024 * 1024;
  constexpr int kChunks = 4;
  REQUIRE(server
              .listen(*SocketAddress::from_ip("127.0.0.1", 0), 4,
                      [&](uv::TcpStream s) {
                        conn = std::make_unique<uv::TcpStream>(std::move(s));
                        for (int i = 0; i < kChunks; ++i) {
                          Bytes chunk(kChunk);
                          for (std::size_t j = 0; j < kChunk; ++j)
                            chunk[j] = static_cast<std::uint8_t>((j * 7 + static_cast<std::size_t>(i)) & 0xff);
                          REQUIRE(conn->write(std::move(chunk)).ok());
                        }
                        REQUIRE(conn->write(Bytes{}, [&](Status st) { CHECK(st.ok()); }).ok());
                      })
              .ok());
  uv::TcpStream client(loop);
  uv::Timer pause(loop);
  std::size_t got = 0;
  bool in_order = true;
  REQUIRE(client
              .connect(server.local_address(),
                       [&](Status st) {
                         REQUIRE(st.ok());
                         pause.start(100, 0, [&] {
                           REQUIRE(client
                                       .read_start(
                                           [&](ByteView d) {
                                             for (auto byte : d) {
                                               std::size_t i = got / kChunk, j = got % kChunk;
                                               if (byte != static_cast<std::uint8_t>((j * 7 + i) & 0xff))
                                                 in_order = false;
                                               ++got;
                                             }
                                             if (got == kChunk * kChunks) {
                                               client.close();
                                               conn->close();
                                               server.close();
                                             }
                                           },
                                           [&](int) { client.close(); })
                                       .ok());
                         });
                       })
              .ok());
  loop.run();
  CHECK(got == kChunk * kChunks);
  CHECK(in_order);
  pause.close();
  conn.reset();
  CHECK(loop.close().empty());
}
