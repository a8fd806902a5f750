// Certificate pinning for peers (issue 11): each side trusts exactly the
// certificate whose SHA-256 the introduction carried, over real loopback
// sockets: the right pins connect, a wrong one fails with a message that
// names both fingerprints, a client without a certificate is refused by a
// server that pins one.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "transport/core/uv.hpp"
#include "transport/h3/client.hpp"
#include "transport/h3/server.hpp"
#include "transport/http/app.hpp"
#include "transport/quic/tls_backend.hpp"
#include "transport/tls/tls.hpp"

using namespace quiclab;

namespace {

struct Outcome {
  int status = 0;
  std::string error;
  std::uint64_t handshakes = 0;
};

Outcome fetch(const tls::CertificatePaths& server_cert, const Bytes& server_pins_client, const Bytes& client_pins,
              const tls::CertificatePaths* client_cert) {
  Outcome out;
  uv::Loop loop;
  auto socket = quic::open_udp(loop, *SocketAddress::from_ip("127.0.0.1", 0));
  REQUIRE(socket);
  http::Metrics metrics;
  http::App app({}, metrics);
  h3::ServerConfig sc;
  sc.cert_file = server_cert.cert;
  sc.key_file = server_cert.key;
  sc.pinned_client_sha256 = server_pins_client;
  sc.quic.shutdown_timeout = kNanosPerSecond;
  h3::Server server(loop, app, sc, **socket);
  REQUIRE(server.start());
  http::ClientOptions opt;
  opt.pinned_sha256 = client_pins;
  if (client_cert) {
    opt.client_cert_file = client_cert->cert;
    opt.client_key_file = client_cert->key;
  }
  opt.timeout_ms = 5000;
  // The URL's host is not in the certificate's names: pinning ignores names.
  const std::string base = "https://127.0.0.1:" + std::to_string((*socket)->local_address().port());
  h3::Client client(loop, *http::Url::parse(base + "/"), opt);
  client.connect([](Status) {});
  http::ClientRequest r;
  r.url = *http::Url::parse(base + "/bytes/1000");
  client.submit(std::move(r), nullptr, [&](http::ClientResponse&& resp) {
    out.status = resp.status;
    if (resp.error) out.error = resp.error->message;
    client.close([&] { server.shutdown([&] { (*socket)->close(); }); });
  });
  uv::Timer guard(loop);
  guard.start(15000, 0, [&] { loop.stop(); });  // a bound, not a timing check
  loop.run();
  guard.close();
  out.handshakes = server.quic_stats().handshakes_completed;
  return out;
}

}  // namespace

TEST_CASE("h3 pinning: peers trust exactly the pinned certificates, both ways", "[h3][tls][pin]") {
  auto dir = std::filesystem::temp_directory_path() / ("quiclab-pin-" + std::to_string(::getpid()));
  auto server_cert = tls::generate_self_signed(dir / "server", {"peer-b.invalid"});
  auto client_cert = tls::generate_self_signed(dir / "client", {"peer-a.invalid"});
  REQUIRE(server_cert);
  REQUIRE(client_cert);
  auto server_fp = quic::tls::certificate_sha256(server_cert->cert);
  auto client_fp = quic::tls::certificate_sha256(client_cert->cert);
  REQUIRE(server_fp);
  REQUIRE(client_fp);
  CHECK(server_fp->size() == 32);
  CHECK(*server_fp != *client_fp);
  CHECK(quic::tls::fingerprint_text(*server_fp).size() == 32 * 3 - 1);

  SECTION("both pins right: the request is served") {
    auto o = fetch(*server_cert, *client_fp, *server_fp, &*client_cert);
    CHECK(o.error == "");
    CHECK(o.status == 200);
    CHECK(o.handshakes == 1);
  }
  SECTION("the client pins another certificate: refused, both fingerprints named") {
    auto o = fetch(*server_cert, *client_fp, *client_fp, &*client_cert);
    CHECK(o.status == 0);
    CHECK_THAT(o.error, Catch::Contains("certificate fingerprint mismatch"));
    CHECK_THAT(o.error, Catch::Contains(quic::tls::fingerprint_text(*server_fp)));
  }
  SECTION("the server pins another client: the handshake fails") {
    auto o = fetch(*server_cert, *server_fp, *server_fp, &*client_cert);
    CHECK(o.status == 0);
    CHECK_THAT(o.error, Catch::Contains("TLS"));
    CHECK(o.handshakes == 0);
  }
  SECTION("a client without a certificate: refused by a pinning server") {
    auto o = fetch(*server_cert, *client_fp, *server_fp, nullptr);
    CHECK(o.status == 0);
    CHECK(o.handshakes == 0);
  }
  SECTION("a malformed pin is a clear error") {
    auto o = fetch(*server_cert, {}, Bytes(7, 1), nullptr);
    CHECK_THAT(o.error, Catch::Contains("32 bytes"));
  }
  std::filesystem::remove_all(dir);
}
