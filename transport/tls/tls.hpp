// TLS over byte streams with OpenSSL 3.0 memory BIOs: the TCP socket is ours
// (libuv), OpenSSL only sees bytes. Used by the HTTP/2 server and client.
// (QUIC uses GnuTLS through ngtcp2's crypto backend: see transport/quic.)
#pragma once

#include <openssl/ssl.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "transport/core/buffer.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/result.hpp"

namespace quiclab::tls {

/// Text of the OpenSSL error queue (emptied), e.g. "error:0A000086:SSL routines::certificate verify failed".
std::string openssl_errors();

/// The name of a TLS AlertDescription, e.g. 40 -> "handshake failure".
const char* alert_name(int description);

struct CertificatePaths {
  std::filesystem::path cert;  ///< PEM certificate (chain)
  std::filesystem::path key;   ///< PEM private key
};

/// Generates a self-signed ECDSA P-256 (or Ed25519) certificate valid for the given DNS names
/// and IP addresses (as subjectAltName), for days days, and writes it as PEM to
/// dir/cert.pem and dir/key.pem (key mode 0600). Creates dir if needed.
/// ed25519 keys sign deterministically with signatures of one size: the
/// in-memory simulations use them so that a seed fixes every packet size.
enum class KeyType { ecdsa_p256, ed25519 };
Result<CertificatePaths> generate_self_signed(const std::filesystem::path& dir,
                                              const std::vector<std::string>& names = {"localhost", "127.0.0.1", "::1"},
                                              int days = 30, KeyType key_type = KeyType::ecdsa_p256);

struct ServerOptions {
  std::filesystem::path cert;
  std::filesystem::path key;
  std::vector<std::string> alpn = {"h2"};  ///< In preference order; a client offering none of them is refused.
  /// TLS 1.3 cipher suite and key-exchange group to allow, by IANA name
  /// (transport/core/tls_names.hpp); empty: OpenSSL's defaults.
  std::string cipher, group;
};

struct ClientOptions {
  std::vector<std::string> alpn = {"h2"};
  bool insecure = false;          ///< Skip certificate verification.
  std::filesystem::path ca_file;  ///< Trust these CAs; system store when empty.
  std::string cipher, group;      ///< As in ServerOptions.
};

/// An SSL_CTX configured for TLS 1.3 (1.2 allowed for clients' compatibility only
/// when ALPN still yields h2). SSLKEYLOGFILE is honoured: when set, session keys
/// are appended there in NSS key log format.
class Context {
 public:
  static Result<Context> server(const ServerOptions& options);
  static Result<Context> client(const ClientOptions& options);

  SSL_CTX* get() const { return ctx_.get(); }
  bool is_server() const { return server_; }

 private:
  struct Free {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  std::shared_ptr<SSL_CTX> ctx_;
  bool server_ = false;
};

/// Dynamic record sizing. A TLS record is decrypted only once it has arrived
/// whole, so a full 16 KiB record on a fresh TCP connection, whose initial
/// window holds 10 segments (14 480 bytes with a 1448-byte MSS), cannot be
/// read before the next round trip brings its tail: a whole round trip added
/// to the first response byte. As production servers do (Google's frontends,
/// nginx's ssl_dynamic_record_size, h2o, Go's crypto/tls), records start at
/// about one TCP segment each, become full-size once `full_after` bytes went
/// out small (the window is large by then), and start small again after
/// `idle` without a write (the window may have collapsed, RFC 7661).
struct RecordSizing {
  std::size_t small_bytes = 0;  ///< plaintext per record while small; 0: off (OpenSSL's full 16 KiB records)
  std::uint64_t full_after = 1024 * 1024;
  Timestamp idle = 1 * kNanosPerSecond;
};
/// The plaintext of a record that fills one TCP segment of `mss` bytes: the
/// segment less the record's overhead (5-byte header, then a 16-byte AEAD tag
/// and the inner content-type byte in TLS 1.3: 22 bytes; an 8-byte explicit
/// nonce and the tag in TLS 1.2 AES-GCM: 29 bytes). At least 512.
constexpr std::size_t one_segment_record(std::size_t mss, bool tls13 = true) {
  const std::size_t overhead = tls13 ? 22 : 29;
  return mss > overhead + 512 ? mss - overhead : 512;
}

/// One TLS connection driven through BIOs in memory (a memory BIO in, our own
/// appending BIO out).
///   network bytes in  -> feed()
///   decrypted bytes   <- read()
///   application bytes -> write()
///   bytes for network <- take_output() / pending_output()
class Session {
 public:
  /// server_name: SNI and the name to verify (clients only; empty for none).
  Session(const Context& ctx, const std::string& server_name = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Hands ciphertext from the peer to OpenSSL.
  void feed(ByteView ciphertext);
  /// Advances the handshake. Returns true once it is complete; an Error when it failed.
  Result<bool> handshake();
  bool established() const { return established_; }
  /// Decrypts into dst. Returns bytes read; 0 when nothing is available now; an
  /// Error when the peer sent close_notify (Error::is_clean_close()), or an
  /// Error of domain tls on a TLS failure (a fatal alert from the peer, a bad
  /// record): then peer_alert() tells which alert, if the peer sent one.
  Result<std::size_t> read(MutableByteView dst);
  /// Encrypts data; the ciphertext appears in the output buffer. `now`
  /// (monotonic) drives the record sizing's idle rule; without it the
  /// steady clock's.
  Status write(ByteView data);
  Status write(ByteView data, Timestamp now);
  /// Record sizing for what write() encrypts from now on (default: off).
  void set_record_sizing(const RecordSizing& sizing) { sizing_ = sizing; }
  /// Bytes written since the records last started small (for tests and the parity table).
  std::uint64_t small_phase_bytes() const { return small_phase_bytes_; }
  /// Records written so far, and how many of them were small.
  std::uint64_t records() const { return records_; }
  std::uint64_t small_records() const { return small_records_; }
  /// Clients: resume this stored session (from on_new_session) in the
  /// handshake; a session the server no longer accepts means a full handshake.
  /// Call before the first handshake(). Error: bytes that are not a session.
  Status resume(ByteView der);
  /// Clients: each resumable session ticket the server sends, as DER bytes
  /// (i2d_SSL_SESSION), from inside read() or handshake().
  void on_new_session(std::function<void(Bytes)> fn) { on_new_session_ = std::move(fn); }
  /// The handshake resumed a session (a ticket was accepted).
  bool resumed() const;
  /// (Called by the context's ticket callback.)
  void deliver_session(SSL_SESSION* sess);
  /// Sends close_notify (nothing once the session failed).
  void shutdown();
  /// Ciphertext waiting to be sent (moves it out).
  Bytes take_output();
  std::size_t pending_output() const;

  /// Negotiated ALPN protocol ("" if none).
  std::string alpn() const;
  std::string version() const;
  std::string cipher() const;
  /// The negotiated key-exchange group in tls_names' spelling ("x25519"), empty before the handshake.
  std::string group() const;
  SSL* ssl() const { return ssl_; }
  /// The fatal alert the peer sent (its TLS AlertDescription), once handshake(),
  /// read() or write() failed because of one.
  std::optional<int> peer_alert() const { return peer_alert_; }

 private:
  /// Turns the OpenSSL error queue (emptied) into an Error; notes a received alert.
  Error fail(int ssl_error, const char* what);

  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // network -> OpenSSL
  BIO* wbio_ = nullptr;  // OpenSSL -> network: appends to out_
  Bytes out_;            // ciphertext not yet taken by take_output()
  bool established_ = false;
  bool closed_ = false;  // close_notify received
  std::optional<int> peer_alert_;
  std::optional<Error> failure_;  // the first error, reported again on later calls
  RecordSizing sizing_;
  std::uint64_t small_phase_bytes_ = 0;  // written since the records (re)started small
  std::optional<Timestamp> last_write_;
  std::uint64_t records_ = 0, small_records_ = 0;
  std::function<void(Bytes)> on_new_session_;
};

}  // namespace quiclab::tls
