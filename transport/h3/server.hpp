// The HTTP/3 server: nghttp3 over the QUIC server core (transport/quic), on the
// caller's libuv loop, serving the shared http::App (the same routes as HTTP/2).
//
// Layers:
//   quic::UdpSocket   our UDP socket (recvmmsg + GRO in, GSO out, ECN)
//   quic::ServerCore  sans-IO ngtcp2 connections, demultiplexed by connection ID
//   H3 application    per connection: nghttp3 server session, request
//                     assembly, responses pulled from http::BodySource
//   h3::Server        this adapter: timer + core over a socket it is given
//                     (it does not own it: a peer's socket also carries STUN)
//
// Requests go through the shared pipeline (http::ServerStream): bodies are
// buffered up to AppConfig::max_request_body and within the body budgets
// (larger ones get 413 or 503 at once, and STOP_SENDING stops the upload). Response bodies are pulled
// as QUIC flow control allows: sources with stable_view() are sent without a
// copy; other sources (files) go through a bounded buffer freed as the peer
// acknowledges it.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "transport/core/address.hpp"
#include "transport/core/result.hpp"
#include "transport/http/app.hpp"
#include "transport/quic/server_core.hpp"
#include "transport/quic/udp_socket.hpp"

namespace quiclab::uv {
class Loop;
}

namespace quiclab::h3 {

struct ServerConfig {
  std::filesystem::path cert_file;    ///< PEM certificate (e.g. tls::generate_self_signed output).
  std::filesystem::path key_file;     ///< PEM private key.
  std::filesystem::path keylog_file;  ///< NSS key log; empty: $SSLKEYLOGFILE when set.
  /// When set (32 bytes): only clients presenting the certificate with this
  /// SHA-256 complete the handshake (a peer accepting exactly its partner).
  Bytes pinned_client_sha256;
  /// The only TLS 1.3 cipher suite / group offered (IANA names,
  /// transport/core/tls_names.hpp); empty: GnuTLS's NORMAL set.
  std::string tls_cipher, tls_group;
  quic::ServerCoreConfig quic;  ///< retry, limits, windows, datagram size.
  /// One <id>.sqlog file per connection here (created if missing); Server
  /// turns it into quic.qlog unless that is already set.
  std::filesystem::path qlog_dir;
  quic::UdpSocketOptions udp;  ///< GSO/GRO/ECN switches and batch sizes, for whoever binds the socket.
  /// Per stream, at most this many response bytes handed to QUIC and not yet
  /// acknowledged (zero-copy sources); bounds the pointers nghttp3 holds.
  std::size_t max_unacked_per_stream = 16 * 1024 * 1024;
  /// Same, for sources that must be copied (files): the buffer per stream.
  std::size_t max_buffered_per_stream = 1024 * 1024;
  /// The largest request header section (name + value + 32 per field), the same
  /// accounting and default as HTTP/2's max_header_list_size; announced as
  /// SETTINGS_MAX_FIELD_SECTION_SIZE. Larger sections get 431.
  std::uint64_t max_header_list_size = 64 * 1024;
  /// When not empty, an Alt-Svc header with this value on every response, as on HTTP/2.
  std::string alt_svc;
  /// Connection IDs, tokens, the reset secret and ngtcp2's draws; null: the
  /// system's. Seeded in tests that need a given draw; must outlive the server.
  Random* random = nullptr;
};

/// The HTTP/3 application for a quic::ServerCore: one nghttp3 server
/// session per connection, serving `app`. h3::Server uses it over its socket;
/// cores driven without one (the in-memory simulation, a peer that shares
/// its socket with STUN) take it directly. app and config must outlive the core.
/// `policy` (header limit, Alt-Svc) must outlive the core too; the overload
/// without it keeps its own, made from config.
quic::ApplicationFactory application_factory(const http::App& app, const ServerConfig& config,
                                             const http::StreamPolicy& policy);
quic::ApplicationFactory application_factory(const http::App& app, const ServerConfig& config);

class Server final : public quic::DatagramHandler {
 public:
  /// app (and its Metrics), loop and endpoint (a bound socket, see
  /// quic::open_udp) must outlive the server.
  Server(uv::Loop& loop, const http::App& app, const ServerConfig& config, quic::UdpSocket& endpoint);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Loads the certificate and starts serving on the endpoint. Attach::exclusive
  /// (the usual case) takes the endpoint's receive callbacks; with
  /// Attach::shared the owner routes QUIC datagrams to handle_datagram() and
  /// calls handle_batch_end() after each batch (a socket that also carries
  /// STUN, see p2p::SharedEndpoint). Errors: unreadable certificate/key.
  Status start(quic::Attach attach = quic::Attach::exclusive);
  /// The endpoint's bound address.
  SocketAddress local_address() const;
  /// Sets the Alt-Svc value of later responses (when it depends on the bound port).
  void set_alt_svc(std::string value);
  /// Graceful shutdown: GOAWAY on every connection, CONNECTION_CLOSE once its
  /// requests are done (or after ServerCoreConfig::shutdown_timeout); then the
  /// server stops reading an exclusive endpoint (the owner closes it) and done
  /// runs (once, on the loop).
  void shutdown(std::function<void()> done);

  /// Closes every connection now (CONNECTION_CLOSE, no draining); a pending
  /// shutdown() completes.
  void close_now();

  void handle_datagram(const quic::ReceivedDatagram& d) override;
  void handle_batch_end() override;

  const quic::ServerCoreStats& quic_stats() const;
  const quic::UdpSocketStats& udp_stats() const;
  std::size_t connection_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace quiclab::h3
