// Bad input over real UDP sockets against the running HTTP/3 server: random
// bytes, truncated and oversized datagrams, Initials with forged tokens and a
// bounded flood of real Initials from many source ports. The server must not
// crash, must keep serving a real client (gtlsclient) meanwhile and after, and
// its state must stay bounded. Cheap enough for the ASan+UBSan run.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <random>

#include "tests/h3/support.hpp"
#include "tests/unit/quic/client_initial.hpp"

using namespace quiclab;
using namespace quiclab::test;
namespace fs = std::filesystem;

namespace {

/// A plain blocking UDP socket on 127.0.0.1:0 for sending junk.
struct RawSocket {
  int fd = -1;
  SocketAddress local;
  RawSocket() {
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    auto a = *SocketAddress::from_ip("127.0.0.1", 0);
    ::bind(fd, a.sa(), a.size());
    int big = 1 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    local = SocketAddress(reinterpret_cast<sockaddr*>(&ss));
  }
  ~RawSocket() {
    if (fd >= 0) ::close(fd);
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  void send(const SocketAddress& to, ByteView data) const {
    (void)::sendto(fd, data.data(), data.size(), 0, to.sa(), to.size());
  }
};

}  // namespace

TEST_CASE("h3 bad input: junk, truncated, oversized, forged tokens and an Initial flood", "[sanitize]") {
  h3::ServerConfig config;
  config.quic.max_half_open = 400;
  config.quic.auto_retry_half_open = 100;
  config.quic.handshake_timeout = 3 * kNanosPerSecond;
  H3ServerHarness server(config);
  REQUIRE(server.ok());
  auto to = *SocketAddress::from_ip("127.0.0.1", server.port());
  TempDir tmp("h3-badinput");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  const auto rss_before = rss_kib();

  // A real client downloads while the junk flies.
  int client = spawn_process(gtlsclient(server, {"--download=" + dl.string()}, {"/bytes/20m"}), tmp.path() / "c1.log");
  REQUIRE(client > 0);

  std::mt19937 rng(7);
  ClientInitialBuilder builder;
  {
    RawSocket junk;
    for (int i = 0; i < 2000; ++i) {  // random bytes of every size, some long-header-looking
      Bytes b(1 + rng() % 1500);
      for (auto& x : b) x = static_cast<std::uint8_t>(rng());
      if (i % 3 == 0) b[0] |= 0xc0;
      junk.send(to, b);
    }
    Bytes huge(65000, 0xc3);  // oversized datagram
    for (int i = 0; i < 20; ++i) junk.send(to, huge);
    auto initial = builder.build(junk.local, to);
    REQUIRE(initial.size() >= 1200);
    for (std::size_t cut : {1ul, 7ul, 50ul, 500ul, 1100ul}) junk.send(to, ByteView(initial.data(), cut));
    // Initials carrying forged Retry / NEW_TOKEN tokens and random ones.
    for (int i = 0; i < 50; ++i) {
      Bytes token(40 + rng() % 60);
      for (auto& x : token) x = static_cast<std::uint8_t>(rng());
      if (i % 3 == 0) token[0] = NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY;
      if (i % 3 == 1) token[0] = NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR;
      junk.send(to, builder.build(junk.local, to, token));
    }
  }
  // A flood of genuine Initials from 500 source ports (bounded: 2 each).
  {
    std::vector<std::unique_ptr<RawSocket>> sockets;
    for (int i = 0; i < 500; ++i) sockets.push_back(std::make_unique<RawSocket>());
    for (int round = 0; round < 2; ++round)
      for (auto& s : sockets) s->send(to, builder.build(s->local, to));
  }

  auto r1 = wait_process(client, 300, tmp.path() / "c1.log");
  INFO(r1.log);
  CHECK(r1.exit_code == 0);
  CHECK(is_generated_body(dl / "20m", 20ULL * 1024 * 1024));
  // Half-open state is capped, whatever the flood did.
  CHECK(server.connections_now() <= 400 + 2);

  // After the flood, a new client is still served.
  auto r2 =
      run_process(gtlsclient(server, {"--download=" + dl.string()}, {"/bytes/123456"}), 300, tmp.path() / "c2.log");
  INFO(r2.log);
  CHECK(r2.exit_code == 0);
  CHECK(is_generated_body(dl / "123456", 123456));

  server.stop();
  CHECK(server.leaked_handles().empty());
  const auto& st = server.stats();
  CHECK(st.dropped_unknown > 0);
  CHECK(st.invalid_token_closes > 0);
  CHECK(st.retries_sent > 0);  // the flood pushed half-open connections past 100: Retry took over
  CHECK(st.handshakes_completed >= 2);
  CHECK(st.amplification_violations == 0);
  // Memory stays bounded (generous: the sanitizer build inflates it).
  CHECK(rss_kib() < rss_before + 400 * 1024);
}
