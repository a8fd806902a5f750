// One real UDP socket on each side carries STUN and greased QUIC at once:
// the seam the hole-punching peer stands on (issue 10, section 1).
//
// Server side: one socket, a p2p::SharedEndpoint in front of an h3::Server
// (Attach::shared) and the rendezvous service's Binding responder. Client
// side: one socket, a SharedEndpoint in front of an h3::Client (Attach::shared)
// and a STUN client that asks for its mapped address before, during and after
// an HTTP/3 request. Both ngtcp2 endpoints advertise grease_quic_bit, so about
// half of the connections clear the fixed bit (first byte 0x00-0x3F, the range
// of STUN's first byte); seeds are tried until both directions were seen
// greased, and every run must route every datagram right.
#include "p2p/shared_endpoint.hpp"

#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <optional>

#include "p2p/nat_behavior.hpp"
#include "p2p/rendezvous_service.hpp"
#include "transport/core/random.hpp"
#include "transport/core/uv.hpp"
#include "transport/h3/client.hpp"
#include "transport/h3/server.hpp"
#include "transport/http/app.hpp"
#include "transport/tls/tls.hpp"

using namespace quiclab;

namespace {

// Counts QUIC datagrams with the fixed bit cleared, then hands them on.
struct GreaseCounter final : quic::DatagramHandler {
  explicit GreaseCounter(quic::DatagramHandler& n) : next(n) {}
  void handle_datagram(const quic::ReceivedDatagram& d) override {
    ++quic;
    if (!d.data.empty() && (d.data[0] & 0x40) == 0) ++greased;
    next.handle_datagram(d);
  }
  void handle_batch_end() override { next.handle_batch_end(); }
  void handle_socket_error(int err, const SocketAddress& to) override { next.handle_socket_error(err, to); }
  quic::DatagramHandler& next;
  int quic = 0;
  int greased = 0;
};

// A STUN Binding client (stun::NatBehaviorDiscovery, test I only) on a socket
// it shares: the endpoint routes the rendezvous server's STUN here.
struct StunClient final : quic::DatagramHandler {
  StunClient(uv::Loop& loop, quic::UdpSocket& s, SocketAddress server) : socket(s), server_(server), timer(loop) {}

  void run(std::function<void()> then) {
    done = std::move(then);
    stun::TransactionConfig tc;
    tc.rto = 100 * kNanosPerMilli;
    discovery.emplace(server_, socket.local_address(), false, tc);
    discovery->start(uv::Loop::hrtime());
    pump();
  }
  void handle_datagram(const quic::ReceivedDatagram& d) override {
    if (!discovery) return;
    ++received;
    discovery->handle_datagram(d.peer, d.data, uv::Loop::hrtime());
    pump();
  }
  void pump() {
    for (auto& d : discovery->take_datagrams()) (void)socket.send(d.to, d.data);
    if (discovery->done()) {
      timer.stop();
      results.push_back(discovery->result());
      discovery.reset();
      if (auto f = std::exchange(done, nullptr)) f();
      return;
    }
    if (auto e = discovery->expiry()) {
      auto now = uv::Loop::hrtime();
      timer.start(*e > now ? (*e - now) / kNanosPerMilli + 1 : 0, 0, [this] {
        discovery->handle_expiry(uv::Loop::hrtime());
        pump();
      });
    }
  }

  quic::UdpSocket& socket;
  SocketAddress server_;
  uv::Timer timer;
  std::optional<stun::NatBehaviorDiscovery> discovery;
  std::vector<stun::NatBehaviorResult> results;
  std::function<void()> done;
  int received = 0;
};

struct RunResult {
  int status = 0;
  std::uint64_t body_bytes = 0;
  std::string error;
  int greased_to_client = 0, greased_to_server = 0;
};

RunResult run_once(const tls::CertificatePaths& cert, std::uint64_t seed) {
  RunResult out;
  uv::Loop loop;
  SeededRandom server_random(seed), client_random(seed * 7919 + 1);

  // ---- server: one socket, HTTP/3 and STUN ----
  auto opened = quic::open_udp(loop, *SocketAddress::from_ip("127.0.0.1", 0));
  REQUIRE(opened);
  std::shared_ptr<quic::UdpSocket> server_socket = std::move(*opened);
  http::Metrics metrics;
  http::App app({}, metrics);
  h3::ServerConfig sc;
  sc.cert_file = cert.cert;
  sc.key_file = cert.key;
  sc.quic.shutdown_timeout = kNanosPerSecond;
  sc.random = &server_random;
  h3::Server server(loop, app, sc, *server_socket);
  REQUIRE(server.start(quic::Attach::shared));
  rendezvous::Service stun_server(loop, {});
  REQUIRE(stun_server.start({server_socket, nullptr, nullptr, nullptr}, quic::Attach::shared));
  p2p::SharedEndpoint server_endpoint(*server_socket);
  GreaseCounter server_quic(server);
  // The server has no rendezvous server of its own: STUN from anyone is a
  // "check" in the demultiplexer's terms, and the Binding responder takes it.
  server_endpoint.set_handler(p2p::Route::connectivity_check, &stun_server.handler(rendezvous::kPrimary));
  server_endpoint.set_handler(p2p::Route::quic, &server_quic);
  REQUIRE(server_endpoint.start());
  const SocketAddress server_addr = server_socket->local_address();

  // ---- client: one socket, HTTP/3 and STUN ----
  auto copened = quic::open_udp(loop, *SocketAddress::from_ip("127.0.0.1", 0));
  REQUIRE(copened);
  std::shared_ptr<quic::UdpSocket> client_socket = std::move(*copened);
  http::ClientOptions opt;
  opt.insecure = true;
  opt.timeout_ms = 10000;
  h3::QuicTuning tuning;
  tuning.random = &client_random;
  const std::string base = "https://127.0.0.1:" + std::to_string(server_addr.port());
  h3::Client client(loop, *http::Url::parse(base + "/"), opt, tuning,
                    {client_socket, quic::Attach::shared, std::nullopt});
  p2p::SharedEndpoint client_endpoint(*client_socket);
  client_endpoint.demux().set_rendezvous_server(server_addr);
  GreaseCounter client_quic(client);
  StunClient stun(loop, *client_socket, server_addr);
  client_endpoint.set_handler(p2p::Route::rendezvous, &stun);
  client_endpoint.set_handler(p2p::Route::quic, &client_quic);
  REQUIRE(client_endpoint.start());

  uv::Timer guard(loop);
  bool finished = false;
  auto finish = [&] {
    finished = true;
    guard.stop();
    client.close([&] {
      server.shutdown([&] {
        stun_server.stop();
        server_endpoint.stop();
        client_endpoint.stop();
      });
    });
  };
  // STUN before the handshake, QUIC, STUN while the connection is open.
  stun.run([&] {
    client.connect([](Status) {});
    http::ClientRequest r;
    r.url = *http::Url::parse(base + "/bytes/200000");
    client.submit(std::move(r), nullptr, [&](http::ClientResponse&& resp) {
      out.status = resp.status;
      out.body_bytes = resp.body_bytes;
      if (resp.error) out.error = resp.error->message;
      stun.run(finish);
    });
  });
  guard.start(15000, 0, [&] { loop.stop(); });  // a bound on a broken run, not a timing check
  loop.run();
  CHECK(finished);
  REQUIRE(stun.results.size() == 2);
  for (const auto& r : stun.results) {
    CHECK(r.error.empty());
    CHECK(r.mapped == client_socket->local_address());  // loopback: no NAT
  }
  // Every STUN answer reached the STUN client, every QUIC packet the QUIC core.
  CHECK(client_endpoint.stats().routed[static_cast<int>(p2p::Route::rendezvous)] ==
        static_cast<std::uint64_t>(stun.received));
  CHECK(stun.received >= 2);
  CHECK(client_endpoint.stats().routed[static_cast<int>(p2p::Route::connectivity_check)] == 0);
  CHECK(client_endpoint.stats().routed[static_cast<int>(p2p::Route::quic)] ==
        static_cast<std::uint64_t>(client_quic.quic));
  CHECK(server_endpoint.stats().routed[static_cast<int>(p2p::Route::connectivity_check)] >= 2);
  CHECK(server_endpoint.stats().unhandled == 0);
  CHECK(client_endpoint.stats().unhandled == 0);
  CHECK(client.ignored_datagrams() == 0);
  // The QUIC server never answered STUN (no stateless reset for a Binding request).
  CHECK(server.quic_stats().dropped_stun == 0);  // never even offered to it
  out.greased_to_client = client_quic.greased;
  out.greased_to_server = server_quic.greased;
  guard.close();
  client_socket->close();
  server_socket->close();
  return out;
}

}  // namespace

TEST_CASE("shared endpoint: greased QUIC and STUN share one real socket on each side", "[p2p][demux][h3][udp]") {
  auto dir = std::filesystem::temp_directory_path() / ("quiclab-shared-endpoint-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto cert = tls::generate_self_signed(dir);
  REQUIRE(cert);
  bool to_client = false, to_server = false;
  int runs = 0;
  for (std::uint64_t seed = 1; seed <= 24 && !(to_client && to_server); ++seed, ++runs) {
    auto r = run_once(*cert, seed);
    INFO("seed " << seed << ": " << r.error);
    CHECK(r.status == 200);
    CHECK(r.body_bytes == 200000);
    to_client = to_client || r.greased_to_client > 0;
    to_server = to_server || r.greased_to_server > 0;
  }
  INFO("runs: " << runs);
  CHECK(to_client);
  CHECK(to_server);
  std::filesystem::remove_all(dir);
}
