// The crypto seam: what QUIC code needs from a TLS 1.3 library.
//
// ngtcp2 drives the handshake through its crypto helper library
// (ngtcp2_crypto_gnutls today); all this seam does is build credentials and
// per-connection TLS sessions that ngtcp2 can drive. Only tls_gnutls.cpp
// includes GnuTLS headers, so an OpenSSL >= 3.5 backend can be added as a
// second implementation of these interfaces without touching the QUIC code.
//
// Binding a session to a connection: the QUIC code owns an
// ngtcp2_crypto_conn_ref whose get_conn returns its ngtcp2_conn; the backend
// stores the pointer in the TLS session (ngtcp2's crypto callbacks find the
// connection through it), and the QUIC code passes Session::native_handle() to
// ngtcp2_conn_set_tls_native_handle().
//
// ALPN is always "h3". Errors are values with the library's error text.
#pragma once

#include <ngtcp2/ngtcp2_crypto.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "transport/core/buffer.hpp"
#include "transport/core/result.hpp"

namespace quiclab::quic::tls {

/// The ALPN token of HTTP/3 (RFC 9114).
inline constexpr std::string_view kAlpnH3 = "h3";

/// One connection's TLS session.
class Session {
 public:
  virtual ~Session() = default;
  /// The library's session object, for ngtcp2_conn_set_tls_native_handle().
  virtual void* native_handle() = 0;
  /// The negotiated ALPN (empty before the handshake selected one).
  virtual std::string alpn() const = 0;
  /// True when the handshake resumed a session (ticket).
  virtual bool resumed() const = 0;
  /// Client only: true when valid resumption data was loaded, so 0-RTT may be sent.
  virtual bool resumption_offered() const = 0;
  /// True when the server accepted 0-RTT early data.
  virtual bool early_data_accepted() const = 0;
  /// "TLS1.3/AES-128-GCM"-style description, for logs and reports.
  virtual std::string description() const = 0;
  /// The negotiated cipher suite (IANA name, "TLS_AES_128_GCM_SHA256") and
  /// key-exchange group (transport/core/tls_names.hpp's spelling, "x25519");
  /// empty before the handshake chose them.
  virtual std::string cipher() const { return {}; }
  virtual std::string group() const { return {}; }
  /// Server only: sends a NewSessionTicket (call once the handshake completed).
  virtual Status send_session_ticket() = 0;
  /// Why the peer's certificate was refused (a pinned fingerprint that did not
  /// match ...); empty when it was not, or verification was the library's.
  virtual std::string verify_error() const { return {}; }
};

struct ServerConfig {
  std::filesystem::path cert_file;              ///< PEM certificate chain.
  std::filesystem::path key_file;               ///< PEM private key.
  bool early_data = true;                       ///< Accept 0-RTT on resumed sessions (anti-replay protected).
  std::uint32_t anti_replay_window_ms = 10000;  ///< How far ClientHello times may be apart from now.
  std::size_t anti_replay_capacity = 100000;    ///< Remembered ClientHellos; past it, 0-RTT is refused.
  /// NSS key log file; empty: $SSLKEYLOGFILE is honoured (when set).
  std::filesystem::path keylog_file;
  /// When set (32 bytes): the client must present a certificate, and exactly
  /// the one with this SHA-256 (a peer pinning the other peer's fingerprint).
  Bytes pinned_client_sha256;
  /// The only TLS 1.3 cipher suite / group allowed, by IANA name
  /// (transport/core/tls_names.hpp); empty: GnuTLS's NORMAL set.
  std::string cipher, group;
};

/// Shared by every server connection: certificate, session-ticket key, anti-replay state.
class ServerContext {
 public:
  virtual ~ServerContext() = default;
  /// Creates the TLS side of one server connection, bound to conn_ref (which
  /// must outlive the session). Errors: library failures (out of memory, bad config).
  virtual Result<std::unique_ptr<Session>> new_session(ngtcp2_crypto_conn_ref* conn_ref) = 0;
  /// 0-RTT attempts refused because the ClientHello was seen before (replays).
  virtual std::uint64_t replays_refused() const = 0;
};

/// Loads certificate and key and generates a session-ticket key.
/// Errors: unreadable or mismatched certificate/key files.
Result<std::unique_ptr<ServerContext>> make_server_context(const ServerConfig& config);

struct ClientConfig {
  bool insecure = false;              ///< Skip certificate verification.
  std::filesystem::path ca_file;      ///< PEM CAs to trust; system store when empty.
  std::filesystem::path keylog_file;  ///< As in ServerConfig.
  /// When set (32 bytes): trust exactly the server certificate with this
  /// SHA-256, whatever its issuer and names (pinning; replaces CA checks).
  Bytes pinned_sha256;
  /// A certificate to present when the server asks (mutual pinning).
  std::filesystem::path cert_file, key_file;
  std::string cipher, group;  ///< As in ServerConfig.
};

/// SHA-256 of the first certificate in a PEM file, over its DER encoding (what
/// pinning compares). Errors: unreadable file, no certificate in it.
Result<Bytes> certificate_sha256(const std::filesystem::path& pem_file);
/// "AB:CD:..." as SDP's a=fingerprint writes it.
std::string fingerprint_text(ByteView sha256);

struct ClientSessionOptions {
  std::string server_name;  ///< SNI and the name the certificate must match.
  Bytes resumption_data;    ///< A stored session (from on_new_session); empty: full handshake.
  /// Called with serialized session data each time the server sends a ticket;
  /// store it to resume later (resumption_data). May be null.
  std::function<void(Bytes session_data)> on_new_session;
};

class ClientContext {
 public:
  virtual ~ClientContext() = default;
  /// Creates the TLS side of one client connection bound to conn_ref. When
  /// resumption_data is set and valid, the session offers resumption (and
  /// 0-RTT: the caller may then send early data). Errors: invalid options,
  /// library failures; stale resumption_data is ignored, not an error.
  virtual Result<std::unique_ptr<Session>> new_session(ngtcp2_crypto_conn_ref* conn_ref,
                                                       const ClientSessionOptions& options) = 0;
};

Result<std::unique_ptr<ClientContext>> make_client_context(const ClientConfig& config);

/// "alert 42 (Certificate is bad)": a TLS AlertDescription with the backend's
/// name for it (the number alone when it has none).
std::string alert_text(unsigned alert);

}  // namespace quiclab::quic::tls
