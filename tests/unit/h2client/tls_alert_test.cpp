// h2::Client against a server that sends a fatal TLS alert mid-connection (a
// GnuTLS server on a thread, real loopback socket): the request in flight
// fails with a TLS error naming the alert, never as "closed by the server",
// and a connection the server broke while idle reports that failure to the
// next request instead of passing for a clean close.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include "tests/gnutls_peer.hpp"
#include "transport/core/uv.hpp"
#include "transport/h2/client.hpp"
#include "transport/tls/tls.hpp"

using namespace quiclab;
namespace fs = std::filesystem;

namespace {

/// Accepts one connection, does the TLS handshake, waits until the client sent
/// `wait_for_headers` ? its first HEADERS frame : its preface, then sends a
/// fatal access_denied alert and waits for the client to hang up.
class AlertingServer {
 public:
  explicit AlertingServer(bool wait_for_headers) {
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("quiclab-h2client-alert-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
    auto c = tls::generate_self_signed(dir_, {"localhost", "127.0.0.1"});
    REQUIRE(c.ok());
    cert_ = *c;
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(listen_fd_, 1) == 0);
    socklen_t len = sizeof sa;
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this, wait_for_headers] { serve(wait_for_headers); });
  }
  ~AlertingServer() {
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::uint16_t port() const { return port_; }
  const tls::CertificatePaths& cert() const { return cert_; }
  std::string why;  // set by the thread when it could not do its part
  std::atomic<bool> alert_sent{false};

 private:
  void serve(bool wait_for_headers) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      why = "accept failed";
      return;
    }
    auto peer = test::GnutlsPeer::server(fd, cert_.cert.string(), cert_.key.string(), &why);
    if (peer) {
      // Client preface: 24 bytes of magic, then frames; look for HEADERS (type 1).
      std::vector<std::uint8_t> in;
      std::size_t at = 24;
      bool seen = false;
      while (!seen) {
        auto chunk = peer->recv(10000);
        if (chunk.empty()) break;
        in.insert(in.end(), chunk.begin(), chunk.end());
        while (!seen && in.size() >= at + 9) {
          std::size_t length = (std::size_t{in[at]} << 16) | (std::size_t{in[at + 1]} << 8) | in[at + 2];
          seen = !wait_for_headers || in[at + 3] == 1;
          at += 9 + length;
        }
      }
      if (!seen) why = "the client's preface or request never came";
      // The server's own (empty) SETTINGS first, so the client's session is fully up.
      const std::uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
      peer->send(settings, sizeof settings);
      if (!wait_for_headers) peer->recv(200);  // the client's SETTINGS ACK, if it comes
      alert_sent = peer->send_fatal_alert(GNUTLS_A_ACCESS_DENIED);
      peer->wait_tcp_closed(10000);
    }
    ::close(fd);
  }

  fs::path dir_;
  tls::CertificatePaths cert_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

http::ClientOptions options_for(const AlertingServer& s) {
  http::ClientOptions o;
  o.ca_file = s.cert().cert;
  o.timeout_ms = 20000;
  return o;
}

}  // namespace

TEST_CASE("h2 client: a fatal TLS alert mid-request is a TLS error, not a clean close", "[h2client][tls]") {
  AlertingServer server(/*wait_for_headers=*/true);
  uv::Loop loop;
  auto url = *http::Url::parse("https://127.0.0.1:" + std::to_string(server.port()) + "/health");
  auto client = std::make_unique<h2::Client>(loop, url, options_for(server));
  std::optional<Status> ready;
  std::optional<http::ClientResponse> resp;
  client->connect([&](Status st) { ready = st; });
  http::ClientRequest req;
  req.url = url;
  client->submit(req, nullptr, [&](http::ClientResponse&& r) { resp = std::move(r); });
  loop.run();
  client.reset();
  loop.run();
  INFO(server.why);
  CHECK(server.why.empty());
  // The thread records the send after the bytes left, so the client can have
  // read the alert first: wait (bounded) for the thread to get there.
  for (int i = 0; i < 1000 && !server.alert_sent; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(server.alert_sent);
  REQUIRE(ready);
  CHECK(ready->ok());
  REQUIRE(resp);
  REQUIRE(resp->error);
  INFO(resp->error->message);
  CHECK(resp->error->domain == ErrorDomain::tls);
  CHECK_FALSE(resp->error->is_clean_close());
  CHECK(resp->error->message.find("access denied") != std::string::npos);
  CHECK(resp->error->message.find("closed by the server") == std::string::npos);
  CHECK(loop.close().empty());
}

TEST_CASE("h2 client: a fatal TLS alert on an idle connection is the failure later requests report",
          "[h2client][tls]") {
  AlertingServer server(/*wait_for_headers=*/false);
  uv::Loop loop;
  auto url = *http::Url::parse("https://127.0.0.1:" + std::to_string(server.port()) + "/health");
  auto client = std::make_unique<h2::Client>(loop, url, options_for(server));
  std::optional<Status> ready;
  client->connect([&](Status st) { ready = st; });
  // Runs until the server's alert ended the connection (the loop has nothing left).
  loop.run();
  REQUIRE(ready);
  CHECK(ready->ok());
  // The thread records the send after the bytes left, so the client can have
  // read the alert first: wait (bounded) for the thread to get there.
  for (int i = 0; i < 1000 && !server.alert_sent; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(server.alert_sent);
  std::optional<http::ClientResponse> resp;
  http::ClientRequest req;
  req.url = url;
  client->submit(req, nullptr, [&](http::ClientResponse&& r) { resp = std::move(r); });
  loop.run();
  client.reset();
  loop.run();
  REQUIRE(resp);
  REQUIRE(resp->error);
  INFO(resp->error->message);
  CHECK(resp->error->domain == ErrorDomain::tls);
  CHECK(resp->error->message.find("access denied") != std::string::npos);
  CHECK(loop.close().empty());
}
