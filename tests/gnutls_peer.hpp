// A blocking GnuTLS peer on a connected socket, for tests that need a TLS peer
// misbehaving in ways OpenSSL's public API cannot produce: gnutls_alert_send()
// sends a fatal alert, encrypted like any record, after the handshake.
// Header-only: used by the h2 server tests and the h2 client unit tests.
#pragma once

#include <gnutls/gnutls.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace quiclab::test {

class GnutlsPeer {
 public:
  /// TLS client on fd (ALPN h2, no certificate check). Null and *why on failure.
  static std::unique_ptr<GnutlsPeer> client(int fd, std::string* why) { return start(fd, GNUTLS_CLIENT, {}, {}, why); }
  /// TLS server on fd with a PEM certificate and key (ALPN h2).
  static std::unique_ptr<GnutlsPeer> server(int fd, const std::string& cert, const std::string& key, std::string* why) {
    return start(fd, GNUTLS_SERVER, cert, key, why);
  }
  ~GnutlsPeer() {
    if (session_) gnutls_deinit(session_);
    if (cred_) gnutls_certificate_free_credentials(cred_);
  }
  GnutlsPeer(const GnutlsPeer&) = delete;
  GnutlsPeer& operator=(const GnutlsPeer&) = delete;

  std::string alpn() const {
    gnutls_datum_t p{};
    if (gnutls_alpn_get_selected_protocol(session_, &p) != 0) return {};
    return std::string(reinterpret_cast<const char*>(p.data), p.size);
  }
  bool send(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (n > 0) {
      auto rc = gnutls_record_send(session_, p, n);
      if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) continue;
      if (rc <= 0) return false;
      p += rc;
      n -= static_cast<std::size_t>(rc);
    }
    return true;
  }
  /// Decrypted bytes; empty on close, error or timeout. Post-handshake
  /// messages (session tickets) are handled on the way.
  std::vector<std::uint8_t> recv(int timeout_ms) {
    std::vector<std::uint8_t> out(16384);
    for (;;) {
      if (gnutls_record_check_pending(session_) == 0) {
        pollfd pfd{fd_, POLLIN, 0};
        if (::poll(&pfd, 1, timeout_ms) <= 0) return {};
      }
      auto rc = gnutls_record_recv(session_, out.data(), out.size());
      if (rc > 0) {
        out.resize(static_cast<std::size_t>(rc));
        return out;
      }
      last_error = static_cast<int>(rc);
      if (rc == 0 || gnutls_error_is_fatal(static_cast<int>(rc)) != 0) return {};
    }
  }
  int last_error = 0;  ///< The last gnutls_record_recv error (for failure messages).
  /// A fatal alert (e.g. GNUTLS_A_ACCESS_DENIED), as an encrypted record.
  bool send_fatal_alert(gnutls_alert_description_t description) {
    return gnutls_alert_send(session_, GNUTLS_AL_FATAL, description) == GNUTLS_E_SUCCESS;
  }
  /// Waits until the peer closes the TCP connection (or timeout); true if it did.
  bool wait_tcp_closed(int timeout_ms) {
    std::uint8_t buf[4096];
    for (;;) {
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
  }

 private:
  GnutlsPeer() = default;

  static std::unique_ptr<GnutlsPeer> start(int fd, unsigned flags, const std::string& cert, const std::string& key,
                                           std::string* why) {
    std::unique_ptr<GnutlsPeer> p(new GnutlsPeer);
    p->fd_ = fd;
    auto fail = [&](const std::string& what, int rc) -> std::unique_ptr<GnutlsPeer> {
      if (why) *why = what + ": " + gnutls_strerror(rc);
      return nullptr;
    };
    int rc = gnutls_certificate_allocate_credentials(&p->cred_);
    if (rc != 0) return fail("credentials", rc);
    if (flags == GNUTLS_SERVER) {
      rc = gnutls_certificate_set_x509_key_file(p->cred_, cert.c_str(), key.c_str(), GNUTLS_X509_FMT_PEM);
      if (rc != 0) return fail("certificate " + cert, rc);
    }
    if ((rc = gnutls_init(&p->session_, flags)) != 0) return fail("gnutls_init", rc);
    if ((rc = gnutls_set_default_priority(p->session_)) != 0) return fail("priority", rc);
    if ((rc = gnutls_credentials_set(p->session_, GNUTLS_CRD_CERTIFICATE, p->cred_)) != 0) return fail("cred", rc);
    if (flags == GNUTLS_CLIENT) {
      rc = gnutls_server_name_set(p->session_, GNUTLS_NAME_DNS, "localhost", 9);
      if (rc != 0) return fail("server name", rc);
    }
    gnutls_datum_t h2{const_cast<unsigned char*>(reinterpret_cast<const unsigned char*>("h2")), 2};
    if ((rc = gnutls_alpn_set_protocols(p->session_, &h2, 1, 0)) != 0) return fail("alpn", rc);
    gnutls_transport_set_int(p->session_, fd);
    gnutls_handshake_set_timeout(p->session_, 20000);
    do {
      rc = gnutls_handshake(p->session_);
    } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
    if (rc < 0) return fail("handshake", rc);
    return p;
  }

  int fd_ = -1;
  gnutls_session_t session_ = nullptr;
  gnutls_certificate_credentials_t cred_ = nullptr;
};

}  // namespace quiclab::test
