// TLS failures after the handshake are failures, not clean closes: a peer
// that sends a fatal alert to `quiclab serve`'s HTTP/2 port is logged and
// counted in quiclab_tls_failures_total{reason="peer_alert"}, and a
// close_notify still is a clean close that counts nothing.
// (OpenSSL's SSL_ERROR_SSL is 1, the value the clean-close code once had.)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "tests/gnutls_peer.hpp"
#include "tests/h2/support.hpp"

using namespace quiclab;
using namespace quiclab::test;

namespace {

int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// The value of one sample line of the server's /metrics (-1 when absent).
long metric(const test::Server& srv, const std::string& sample) {
  auto m = run({"curl", "--http2", "-sS", "--cacert", srv.cert().string(), "--max-time", "30", srv.url("/metrics")});
  if (m.exit_code != 0) return -2;
  auto at = m.out.find("\n" + sample + " ");
  if (at == std::string::npos) return -1;
  return std::stol(m.out.substr(at + sample.size() + 2));
}

const std::string kPeerAlert = "quiclab_tls_failures_total{protocol=\"h2\",reason=\"peer_alert\"}";
const std::string kProtocolErrors = "quiclab_protocol_errors_total{protocol=\"h2\"}";

}  // namespace

TEST_CASE("a fatal TLS alert after the handshake is a TLS failure, logged and counted, not a clean close",
          "[h2][tls][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  CHECK(metric(srv, kPeerAlert) == 0);

  int fd = connect_loopback(srv.port());
  REQUIRE(fd >= 0);
  std::string why;
  auto peer = GnutlsPeer::client(fd, &why);
  INFO(why);
  REQUIRE(peer);
  REQUIRE(peer->alpn() == "h2");
  static const char kMagic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  const std::uint8_t settings[9] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
  REQUIRE(peer->send(kMagic, sizeof kMagic - 1));
  REQUIRE(peer->send(settings, sizeof settings));
  auto first = peer->recv(5000);
  INFO("gnutls: " << gnutls_strerror(peer->last_error));
  REQUIRE(!first.empty());  // the server's SETTINGS: the session is up

  // access_denied (49), encrypted with the application traffic keys.
  REQUIRE(peer->send_fatal_alert(GNUTLS_A_ACCESS_DENIED));
  CHECK(peer->wait_tcp_closed(10000));  // the server gives up on the connection
  peer.reset();
  ::close(fd);

  INFO(srv.log());
  CHECK(srv.wait_for_log({"TLS failure (peer_alert)", "access denied"}));
  CHECK(srv.log().find("peer sent close_notify") == std::string::npos);
  CHECK(metric(srv, kPeerAlert) == 1);
  CHECK(metric(srv, kProtocolErrors) == 1);
}

TEST_CASE("a record that does not decrypt is a TLS failure 'record', and the peer is told with an alert",
          "[h2][tls][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  int fd = connect_loopback(srv.port());
  REQUIRE(fd >= 0);
  std::string why;
  auto peer = GnutlsPeer::client(fd, &why);
  INFO(why);
  REQUIRE(peer);
  REQUIRE(!peer->recv(5000).empty());  // the server's SETTINGS
  // An application_data record of 40 bytes that no key produced, written
  // past GnuTLS straight to the socket.
  std::uint8_t record[5 + 40] = {0x17, 0x03, 0x03, 0x00, 40};
  for (std::size_t i = 5; i < sizeof record; ++i) record[i] = static_cast<std::uint8_t>(i * 7);
  REQUIRE(::send(fd, record, sizeof record, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof record));
  // The server's bad_record_mac alert arrives as a fatal alert on our side.
  CHECK(peer->recv(10000).empty());
  CHECK(peer->last_error == GNUTLS_E_FATAL_ALERT_RECEIVED);
  peer.reset();
  ::close(fd);
  INFO(srv.log());
  CHECK(srv.wait_for_log({"TLS failure (record)"}));
  CHECK(metric(srv, "quiclab_tls_failures_total{protocol=\"h2\",reason=\"record\"}") == 1);
  CHECK(metric(srv, kPeerAlert) == 0);
}

TEST_CASE("close_notify after the handshake is a clean close: no TLS failure counted", "[h2][tls][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  REQUIRE(c->send_preface());
  REQUIRE(c->read_frame(5000));
  REQUIRE(c->close_notify());
  CHECK(c->wait_closed(10000));
  INFO(srv.log());
  CHECK(srv.wait_for_log({"peer sent close_notify"}));
  CHECK(metric(srv, kPeerAlert) == 0);
  CHECK(metric(srv, kProtocolErrors) == 0);
}
