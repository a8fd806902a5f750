// One client interface for HTTP/2 (TCP+TLS) and HTTP/3 (QUIC). Requests and
// streams are shared; the transports below differ. Every request records the
// same timing milestones so the two protocols can be compared field by field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "transport/core/address.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/result.hpp"
#include "transport/http/message.hpp"

namespace quiclab::http {

/// An https URL. Only "https" is accepted (both protocols run over TLS).
struct Url {
  std::string scheme = "https";
  std::string host;  ///< Without brackets for IPv6.
  std::uint16_t port = 443;
  std::string path = "/";  ///< Path and query, as sent in ":path".

  /// "host:port" with brackets around IPv6, as sent in ":authority".
  std::string authority() const;
  std::string to_string() const;
  /// Parses "https://host[:port]/path?query". Errors say what was wrong.
  static Result<Url> parse(std::string_view text);
};

/// Milestones of one request, in nanoseconds on a monotonic clock (0: not reached).
/// For HTTP/3, `connected` is when the first QUIC packet was sent (there is no
/// separate transport connect) and `handshake_done` when the QUIC handshake completed.
struct RequestTiming {
  Timestamp start = 0;           ///< The client started work on this request's connection.
  Timestamp connected = 0;       ///< TCP connect completed (H2).
  Timestamp handshake_done = 0;  ///< TLS (H2) or QUIC (H3) handshake completed.
  Timestamp request_sent = 0;    ///< The whole request (headers and body) was handed to the transport.
  Timestamp first_byte = 0;      ///< The first byte of the response (HEADERS) arrived.
  Timestamp complete = 0;        ///< The response ended (END_STREAM / FIN).
};

struct ClientRequest {
  std::string method = "GET";
  Url url;
  Headers headers;                   ///< Extra regular headers.
  std::shared_ptr<BodySource> body;  ///< Request body (POST), or null.
};

struct ClientResponse {
  std::string url;
  int status = 0;  ///< 0 when no response arrived.
  Headers headers;
  std::uint64_t body_bytes = 0;
  Bytes body;  ///< Kept only when ClientOptions::keep_body.
  RequestTiming timing;
  std::optional<Error> error;  ///< Transport or stream error (RST_STREAM, reset, timeout).
  std::string protocol;        ///< "h3" when HTTP/3 carried it; empty: the client's default protocol.
};

/// Called for each chunk of response body, in order; may be null.
using BodyCallback = std::function<void(ByteView chunk)>;
/// Called exactly once per request, when it completed or failed.
using CompleteCallback = std::function<void(ClientResponse&&)>;

struct ClientOptions {
  bool insecure = false;          ///< Skip certificate verification.
  std::filesystem::path ca_file;  ///< Trust these CAs (PEM); system store when empty.
  /// H3: trust exactly the server certificate with this SHA-256 (32 bytes)
  /// instead of CAs and names: a peer pins the fingerprint its introduction
  /// carried. Empty: the usual verification.
  Bytes pinned_sha256;
  /// H3: the certificate to present when the server asks for one (peers pin each other).
  std::filesystem::path client_cert_file, client_key_file;
  std::uint32_t max_concurrent_streams = 100;          ///< Requests in flight at once on the connection.
  std::uint32_t stream_window = 16 * 1024 * 1024;      ///< Per-stream receive window.
  std::uint32_t connection_window = 64 * 1024 * 1024;  ///< Connection receive window.
  bool keep_body = false;                              ///< Keep response bodies in ClientResponse::body.
  /// Keep the URL and the header fields in each ClientResponse. A load
  /// generator needs neither and turns this off: they are two to eight heap
  /// allocations per request, a fifth of the client's CPU on 1 KB responses.
  bool keep_metadata = true;
  std::uint64_t timeout_ms = 30000;    ///< Idle timeout for the connection.
  std::filesystem::path session_file;  ///< Store/resume TLS session tickets (H3: 0-RTT; H2: resumption).
  std::filesystem::path qlog_dir;      ///< H3: write one qlog file per connection here (empty: none).
  std::size_t max_udp_payload = 0;     ///< H3: 0 automatic (transport/quic/path_mtu.hpp), else this many bytes.
  /// H3: ACK-eliciting packets received before an immediate ACK (ngtcp2's
  /// ack_thresh). 0: h3::QuicTuning's default (8, fewer ACKs on fast paths);
  /// 2 acknowledges every second packet, as Linux TCP's delayed ACK does.
  std::size_t ack_thresh = 0;
  /// The only TLS 1.3 cipher suite / key-exchange group to offer, by IANA
  /// name (transport/core/tls_names.hpp); empty: the TLS library's choice.
  std::string tls_cipher, tls_group;
  /// Connect to this address instead of the URL's host (which still gives SNI
  /// and :authority). Clients never resolve names themselves: RacingClient
  /// (happy_eyeballs.hpp) resolves on the loop and sets this per attempt.
  std::optional<SocketAddress> remote;
  /// RFC 8305 Connection Attempt Delay between the addresses of one name.
  std::uint64_t attempt_delay_ms = 250;
  /// When the connection's clock starts (ClientResponse::timing.start); now,
  /// at connect, when empty. RacingClient sets the first attempt's start, so
  /// time lost on addresses that failed shows in "connect".
  std::optional<Timestamp> clock_start;
};

/// Facts about the connection, for reports.
struct ConnectionInfo {
  std::string protocol;     ///< "h2" or "h3"
  std::string tls_version;  ///< e.g. "TLSv1.3"
  std::string alpn;
  std::string tls_cipher;            ///< negotiated suite, IANA name ("TLS_AES_128_GCM_SHA256")
  std::string tls_group;             ///< negotiated key exchange ("x25519")
  std::string tls_library;           ///< "OpenSSL" (HTTP/2) or "GnuTLS" (HTTP/3)
  bool resumed = false;              ///< TLS session resumption happened
  bool early_data_accepted = false;  ///< H3 0-RTT accepted by the server
  std::string local_address;
  std::string peer_address;
};

class Client {
 public:
  virtual ~Client() = default;
  /// Starts connecting; on_ready is called once, when the handshake completed or failed.
  /// Requests may be submitted before that; they are sent when possible.
  virtual void connect(std::function<void(Status)> on_ready) = 0;
  /// Queues a request; at most ClientOptions::max_concurrent_streams are in flight.
  virtual void submit(ClientRequest request, BodyCallback on_body, CompleteCallback on_complete) = 0;
  /// Closes gracefully (GOAWAY / CONNECTION_CLOSE) once in-flight requests are done
  /// (or at once when abort is true); on_closed runs when the transport is gone.
  /// Requests still pending complete with an error.
  virtual void close(std::function<void()> on_closed, bool abort = false) = 0;
  virtual ConnectionInfo info() const = 0;
};

}  // namespace quiclab::http
