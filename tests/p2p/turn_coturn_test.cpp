// The TURN client (p2p/turn_client.*) against the real coturn (Debian's
// turnserver) on loopback, over plain UDP sockets: time-limited credentials
// (use-auth-secret) get an allocation, wrong and expired ones do not; data goes
// to a peer as Send indications, then as ChannelData once the channel is bound
// (the first byte of what coturn sends us says which), byte-exact both ways;
// release ends the allocation.
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <ctime>
#include <filesystem>
#include <memory>

#include "p2p/turn_client.hpp"
#include "process.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/random.hpp"
#include "udp_test_socket.hpp"

using namespace quiclab;
using quiclab::test::UdpSocket;

namespace {

Timestamp now_ns() { return SteadyClock::instance().now(); }

const std::string kSecret = "e2e-secret-4f1c9a";  // a test's own coturn; nothing else uses it

std::uint16_t free_udp_port() {
  UdpSocket probe;
  return probe.local().port();
}

// coturn on 127.0.0.1, use-auth-secret, loopback peers allowed (it denies them by default).
struct Coturn {
  std::unique_ptr<quiclab::test::ChildProcess> process;
  SocketAddress address;
  std::string dir;
  Coturn() {
    char tmpl[] = "/tmp/quiclab-coturn-e2e-XXXXXX";
    dir = mkdtemp(tmpl);
    for (int attempt = 0; attempt < 5 && !address.port(); ++attempt) {
      const auto port = free_udp_port();
      process = std::make_unique<quiclab::test::ChildProcess>(std::vector<std::string>{"/usr/bin/turnserver",
                                                                                       "-n",
                                                                                       "--listening-ip",
                                                                                       "127.0.0.1",
                                                                                       "--relay-ip",
                                                                                       "127.0.0.1",
                                                                                       "-p",
                                                                                       std::to_string(port),
                                                                                       "--use-auth-secret",
                                                                                       "--static-auth-secret",
                                                                                       kSecret,
                                                                                       "--realm",
                                                                                       "quiclab.test",
                                                                                       "--allow-loopback-peers",
                                                                                       "--no-tcp",
                                                                                       "--no-tls",
                                                                                       "--no-dtls",
                                                                                       "--no-tcp-relay",
                                                                                       "--no-cli",
                                                                                       "--no-multicast-peers",
                                                                                       "--fingerprint",
                                                                                       "--user-quota",
                                                                                       "10",
                                                                                       "--total-quota",
                                                                                       "100",
                                                                                       "--log-file",
                                                                                       dir + "/turn.log",
                                                                                       "--simple-log",
                                                                                       "--pidfile",
                                                                                       dir + "/turn.pid",
                                                                                       "--userdb",
                                                                                       dir + "/turndb",
                                                                                       "--min-port",
                                                                                       "49152",
                                                                                       "--max-port",
                                                                                       "65535"});
      // Ready when it answers (any answer) to an Allocate.
      UdpSocket s;
      auto target = SocketAddress::from_ip("127.0.0.1", port).value();
      for (int i = 0; i < 50 && process->alive(); ++i) {
        stun::Message m;
        m.method = stun::method::kBinding;
        m.transaction_id = stun::random_transaction_id();
        s.send(target, stun::encode(m));
        if (s.recv(100)) {
          address = target;
          break;
        }
      }
    }
    REQUIRE(address.port() != 0);
  }
  ~Coturn() {
    process.reset();
    std::filesystem::remove_all(dir);
  }
  std::string log() const { return quiclab::test::read_file(dir + "/turn.log"); }
};

// A TURN client on its own socket, driven by hand.
struct TurnSide {
  UdpSocket socket;
  SystemRandom random;
  std::unique_ptr<turn::Client> client;
  SocketAddress server;
  std::vector<turn::Event> events;
  std::vector<turn::Inner> inner;
  std::uint64_t channel_data_in = 0, indications_in = 0;
  TurnSide(const SocketAddress& s, turn::Credentials c) : server(s) {
    turn::ClientConfig config;
    config.credentials = std::move(c);
    config.transaction.rto = 200 * kNanosPerMilli;
    client = std::make_unique<turn::Client>(config, random);
  }
  void flush() {
    for (auto& d : client->take_datagrams()) socket.send(server, d);
    for (auto& e : client->take_events()) events.push_back(std::move(e));
  }
  // Runs until done() or the deadline.
  template <class Done>
  bool run(Done done, Timestamp budget = 10 * kNanosPerSecond) {
    const auto until = now_ns() + budget;
    while (now_ns() < until) {
      flush();
      if (done()) return true;
      int wait_ms = 20;
      if (auto e = client->expiry(); e && *e > now_ns())
        wait_ms = static_cast<int>(std::min<Timestamp>((*e - now_ns()) / kNanosPerMilli + 1, 20));
      SocketAddress from;
      if (auto d = socket.recv(wait_ms, &from); d && from == server) {
        if (!d->empty() && (*d)[0] >= 0x40 && (*d)[0] <= 0x4F) ++channel_data_in;
        if (auto in = client->handle_datagram(*d, now_ns())) {
          if (!in->channel) ++indications_in;
          inner.push_back(std::move(*in));
        }
      }
      if (auto e = client->expiry(); e && *e <= now_ns()) client->handle_expiry(now_ns());
    }
    flush();
    return done();
  }
  template <class T>
  const T* last() const {
    for (auto it = events.rbegin(); it != events.rend(); ++it)
      if (auto* p = std::get_if<T>(&*it)) return p;
    return nullptr;
  }
  bool allocate() {
    client->start(now_ns());
    return run([&] { return last<turn::Allocated>() || last<turn::AllocationFailed>(); }) &&
           client->state() == turn::Client::State::allocated;
  }
};

turn::Credentials valid_credentials(const std::string& name) {
  return turn::time_limited_credentials(kSecret, name, static_cast<std::int64_t>(std::time(nullptr)) + 3600);
}

}  // namespace

TEST_CASE("coturn: time-limited credentials get an allocation, wrong and expired ones do not", "[coturn]") {
  Coturn coturn;
  TurnSide good(coturn.address, valid_credentials("alice"));
  REQUIRE(good.allocate());
  const auto* a = good.last<turn::Allocated>();
  REQUIRE(a);
  CHECK(a->relayed.ip() == "127.0.0.1");
  CHECK(a->mapped == good.socket.local());
  CHECK(a->lifetime_s > 0);
  INFO("password algorithm coturn asked for: " << static_cast<int>(good.client->algorithm()));

  TurnSide wrong(coturn.address, turn::time_limited_credentials("not-the-secret", "mallory",
                                                                static_cast<std::int64_t>(std::time(nullptr)) + 3600));
  CHECK(!wrong.allocate());
  REQUIRE(wrong.last<turn::AllocationFailed>());
  CHECK(wrong.last<turn::AllocationFailed>()->code == 401);

  TurnSide expired(coturn.address,
                   turn::time_limited_credentials(kSecret, "old", static_cast<std::int64_t>(std::time(nullptr)) - 60));
  CHECK(!expired.allocate());
  REQUIRE(expired.last<turn::AllocationFailed>());
  CHECK(expired.last<turn::AllocationFailed>()->code == 401);

  // The secret is nowhere in coturn's log; the refused usernames are.
  const auto log = coturn.log();
  CHECK(log.find(kSecret) == std::string::npos);
  CHECK(log.find(":old>") != std::string::npos);

  good.client->release(now_ns());
  CHECK(good.run([&] { return good.last<turn::Released>() != nullptr; }));
}

TEST_CASE("coturn: relayed data byte-exact, Send/Data indications then ChannelData", "[coturn]") {
  Coturn coturn;
  TurnSide side(coturn.address, valid_credentials("bob"));
  REQUIRE(side.allocate());
  const auto relayed = *side.client->relayed();
  UdpSocket peer;  // the far end: sends back what it gets

  side.client->create_permission(peer.local(), now_ns());
  REQUIRE(side.run([&] { return side.client->has_permission(peer.local()); }));

  auto echo_round = [&](std::size_t chunks, std::size_t size, bool expect_channel) {
    Bytes sent_all, got_all;
    SeededRandom content(chunks);
    for (std::size_t i = 0; i < chunks; ++i) {
      Bytes chunk(size);
      content.fill(chunk.data(), chunk.size());
      auto w = side.client->wrap(peer.local(), chunk);
      REQUIRE(w);
      CHECK(((*w)[0] == 0x40) == expect_channel);
      side.socket.send(coturn.address, *w);
      SocketAddress from;
      auto at_peer = peer.recv(2000, &from);
      REQUIRE(at_peer);
      CHECK(from == relayed);
      CHECK(*at_peer == chunk);
      peer.send(relayed, *at_peer);
      const auto before = side.inner.size();
      REQUIRE(side.run([&] { return side.inner.size() > before; }, 2 * kNanosPerSecond));
      CHECK(side.inner.back().peer == peer.local());
      CHECK(side.inner.back().channel == expect_channel);
      sent_all.insert(sent_all.end(), chunk.begin(), chunk.end());
      got_all.insert(got_all.end(), side.inner.back().data.begin(), side.inner.back().data.end());
    }
    CHECK(got_all == sent_all);
  };

  echo_round(8, 1000, false);  // before the channel: Send and Data indications
  CHECK(side.client->stats().send_indications == 8);
  CHECK(side.indications_in == 8);

  side.client->bind_channel(peer.local(), now_ns());
  REQUIRE(side.run([&] { return side.client->channel(peer.local()).has_value(); }));
  echo_round(1024, 1024, true);  // 1 MB each way as ChannelData
  CHECK(side.client->stats().channel_data_sent == 1024);
  CHECK(side.channel_data_in == 1024);

  side.client->release(now_ns());
  REQUIRE(side.run([&] { return side.last<turn::Released>() != nullptr; }));
  // After the release nothing relayed reaches the application (coturn 4.6.1 may
  // still forward on the channel for a moment; the client drops it).
  peer.send(relayed, Bytes{1, 2, 3});
  if (auto late = side.socket.recv(300)) CHECK(!side.client->handle_datagram(*late, now_ns()));
}
