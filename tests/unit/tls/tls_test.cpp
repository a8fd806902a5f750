#include "transport/tls/tls.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

using namespace quiclab;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path =
      fs::temp_directory_path() / ("quiclab-tls-" + std::to_string(::getpid()) + "-" + std::to_string(rand()));
  ~TempDir() { fs::remove_all(path); }
};

// Shuttles ciphertext between two sessions until neither has anything to say.
void pump(tls::Session& a, tls::Session& b) {
  for (int i = 0; i < 20; ++i) {
    (void)a.handshake();
    (void)b.handshake();
    auto ab = a.take_output();
    auto ba = b.take_output();
    if (ab.empty() && ba.empty()) return;
    b.feed(ab);
    a.feed(ba);
  }
}
}  // namespace

TEST_CASE("self-signed certificate, in-memory TLS 1.3 handshake with ALPN h2", "[tls]") {
  TempDir dir;
  auto paths = tls::generate_self_signed(dir.path);
  REQUIRE(paths.ok());
  auto server_ctx = tls::Context::server({paths->cert, paths->key, {"h2"}});
  REQUIRE(server_ctx.ok());
  auto client_ctx = tls::Context::client({{"h2"}, false, paths->cert});
  REQUIRE(client_ctx.ok());

  tls::Session server(*server_ctx);
  tls::Session client(*client_ctx, "localhost");
  pump(client, server);
  REQUIRE(client.established());
  REQUIRE(server.established());
  CHECK(client.alpn() == "h2");
  CHECK(server.alpn() == "h2");
  CHECK(client.version() == "TLSv1.3");

  REQUIRE(client.write(as_bytes("hello")).ok());
  server.feed(client.take_output());
  Bytes buf(100);
  auto n = server.read(buf);
  REQUIRE(n.ok());
  CHECK(as_string(ByteView(buf.data(), *n)) == "hello");
}

TEST_CASE("verification fails for the wrong name and for an unknown CA", "[tls]") {
  TempDir dir;
  auto paths = tls::generate_self_signed(dir.path, {"localhost"});
  REQUIRE(paths.ok());
  auto server_ctx = tls::Context::server({paths->cert, paths->key, {"h2"}});
  REQUIRE(server_ctx.ok());
  SECTION("wrong host name") {
    auto client_ctx = tls::Context::client({{"h2"}, false, paths->cert});
    tls::Session server(*server_ctx);
    tls::Session client(*client_ctx, "example.org");
    pump(client, server);
    auto r = client.handshake();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("verify") != std::string::npos);
  }
  SECTION("no ALPN overlap is refused") {
    auto client_ctx = tls::Context::client({{"http/1.1"}, true, {}});
    tls::Session server(*server_ctx);
    tls::Session client(*client_ctx, "localhost");
    pump(client, server);
    CHECK_FALSE(server.established());
    CHECK_FALSE(client.handshake().ok());
  }
}

TEST_CASE("a missing certificate file is a clear error", "[tls]") {
  auto ctx = tls::Context::server({"/nonexistent/cert.pem", "/nonexistent/key.pem", {"h2"}});
  REQUIRE_FALSE(ctx.ok());
  CHECK(ctx.error().message.find("/nonexistent/cert.pem") != std::string::npos);
}

TEST_CASE("read: close_notify is a clean close, a corrupted record a TLS failure", "[tls][error]") {
  TempDir dir;
  auto paths = tls::generate_self_signed(dir.path);
  REQUIRE(paths.ok());
  auto server_ctx = tls::Context::server({paths->cert, paths->key, {"h2"}});
  REQUIRE(server_ctx.ok());
  auto client_ctx = tls::Context::client({{"h2"}, false, paths->cert});
  REQUIRE(client_ctx.ok());
  Bytes buf(100);

  SECTION("close_notify") {
    tls::Session server(*server_ctx);
    tls::Session client(*client_ctx, "localhost");
    pump(client, server);
    REQUIRE(server.established());
    client.shutdown();
    server.feed(client.take_output());
    auto n = server.read(buf);
    REQUIRE_FALSE(n.ok());
    CHECK(n.error().is_clean_close());
    CHECK(n.error().domain == ErrorDomain::tls);
    CHECK_FALSE(server.peer_alert());
  }
  SECTION("a record whose authentication tag does not verify") {
    tls::Session server(*server_ctx);
    tls::Session client(*client_ctx, "localhost");
    pump(client, server);
    REQUIRE(server.established());
    REQUIRE(client.write(as_bytes("hello")).ok());
    auto record = client.take_output();
    REQUIRE(record.size() > 10);
    record.back() ^= 0x01;
    server.feed(record);
    auto n = server.read(buf);
    REQUIRE_FALSE(n.ok());
    INFO(n.error().message);
    CHECK_FALSE(n.error().is_clean_close());
    CHECK(n.error().domain == ErrorDomain::tls);
    CHECK(n.error().code == SSL_ERROR_SSL);  // the very value that once meant "closed"
    CHECK_FALSE(server.peer_alert());        // we raised it; the peer sent nothing
    // The failure sticks: later reads report it again.
    auto again = server.read(buf);
    REQUIRE_FALSE(again.ok());
    CHECK_FALSE(again.error().is_clean_close());
  }
}
