// The HTTP/2 server: nghttp2's sans-IO session over a tls::Session (OpenSSL
// memory BIOs) over a uv::TcpStream, all on one libuv loop.
//
// Data path per connection:
//   socket -> TcpStream read -> tls::Session::feed/read -> nghttp2_session_mem_recv
//   nghttp2_session_send -> one plaintext batch -> one SSL_write -> one uv_write
// Response bodies are pulled from http::BodySource only when the stream's and
// the connection's flow-control windows and the socket's write queue allow
// (NGHTTP2_DATA_FLAG_NO_COPY: DATA payload goes straight from the source into
// the TLS plaintext batch), so a 100 MB body to a slow reader costs at most
// ServerConfig::write_high_water plus one batch of memory.
//
// Protocol errors from a peer end in what RFC 9113 prescribes (GOAWAY or
// RST_STREAM with the error code, mostly chosen by nghttp2), a warn-level log
// line naming the peer and the reason, and a count in Metrics; other
// connections are unaffected.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "transport/core/address.hpp"
#include "transport/core/connection_record.hpp"
#include "transport/core/result.hpp"
#include "transport/core/uv.hpp"
#include "transport/http/app.hpp"
#include "transport/tls/tls.hpp"

namespace quiclab::h2 {

struct ServerConfig {
  SocketAddress listen;        ///< Address to bind; port 0 picks a free port.
  std::filesystem::path cert;  ///< PEM certificate chain.
  std::filesystem::path key;   ///< PEM private key.
  int backlog = 1024;
  /// TCP congestion control for accepted connections (TCP_CONGESTION on the
  /// listener, which they inherit); empty: the kernel's default.
  std::string tcp_congestion;

  /// SETTINGS_MAX_CONCURRENT_STREAMS we advertise (nghttp2 refuses streams beyond it).
  std::uint32_t max_concurrent_streams = 100;
  /// SETTINGS_INITIAL_WINDOW_SIZE we advertise: the per-stream receive window.
  std::uint32_t stream_window = 1024 * 1024;
  /// The connection-level receive window (raised from 65535 by a WINDOW_UPDATE on stream 0).
  std::uint32_t connection_window = 16 * 1024 * 1024;
  /// SETTINGS_MAX_HEADER_LIST_SIZE we advertise and enforce: a request whose header
  /// list (RFC 9113 6.5.2 accounting: name + value + 32 per field) is larger gets 431.
  std::uint32_t max_header_list_size = 64 * 1024;

  /// Slowloris guard: TLS handshake, connection preface and the first request's
  /// complete header block must arrive within this time, or the connection is closed.
  std::uint64_t header_timeout_ms = 10'000;
  /// A connection that makes no progress (no bytes read, no write completed) for
  /// this long is closed (GOAWAY NO_ERROR first when the session is up).
  std::uint64_t idle_timeout_ms = 120'000;
  /// On shutdown(), connections still busy after this long are closed hard.
  std::uint64_t drain_timeout_ms = 30'000;

  /// Back-pressure: no new frames are produced while libuv holds more than this
  /// many bytes not yet accepted by the kernel; producing resumes on drain.
  std::size_t write_high_water = 256 * 1024;
  /// TLS record sizing (tls::RecordSizing): records of one TCP segment (the
  /// connection's MSS, TCP_MAXSEG) for the first `records_full_after` bytes of
  /// a connection and again after 1 s without a write, 16 KiB records
  /// otherwise. false: 16 KiB records always (OpenSSL's default), which cost a
  /// large response's first byte a round trip on a fresh connection.
  bool dynamic_records = true;
  /// TCP_MAXSEG on the listener (0: the route's): caps the MSS of accepted
  /// connections, e.g. 1460 to give loopback Ethernet's segments.
  std::uint32_t tcp_mss = 0;
  /// The only TLS 1.3 cipher suite / group offered (IANA names,
  /// transport/core/tls_names.hpp); empty: OpenSSL's defaults.
  std::string tls_cipher, tls_group;
  std::uint64_t records_full_after = 1024 * 1024;
  /// TCP's internal pacing on every accepted socket (tcp_info.hpp,
  /// enable_tcp_pacing): Cubic and Reno do not pace by themselves unless the
  /// qdisc is fq; QUIC stacks do. false: the kernel's behaviour.
  bool tcp_pacing = false;
  /// Called once per connection when it closes, with what its TCP did
  /// (TCP_INFO at accept and at close); empty: nothing is recorded.
  ConnectionRecordSink on_connection_end;
  /// When not empty, an Alt-Svc header with this value on every response
  /// (e.g. `h3=":8443"`, set by the serve command when HTTP/3 runs too).
  std::string alt_svc;
};

class Connection;

/// Accepts TLS connections and serves HTTP/2 from an http::App. Single-threaded:
/// every method must be called on the loop's thread. The server must outlive
/// neither the loop nor the App.
class Server {
 public:
  Server(uv::Loop& loop, const http::App& app, ServerConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Loads the certificate, binds and listens. Errors: certificate/key not
  /// loadable, bind or listen failure (message says which).
  Status start();
  /// The bound address (with the real port when listening on port 0).
  SocketAddress local_address() const;

  /// Graceful shutdown (RFC 9113 6.8): stops accepting, sends every connection a
  /// GOAWAY with last-stream-id 2^31-1 and a PING, then on the PING's ACK the final
  /// GOAWAY carrying the last stream id we processed; in-flight streams finish,
  /// then connections close. on_done runs (from a loop callback, never from inside
  /// this call) once no connection is left, at the latest after drain_timeout_ms.
  void shutdown(std::function<void()> on_done);
  /// Closes every connection and the listener at once (second Ctrl-C).
  void close_now();

  std::size_t connection_count() const { return connections_.size(); }
  const ServerConfig& config() const { return config_; }

 private:
  friend class Connection;
  void on_accept(uv::TcpStream stream);
  /// Called by a connection once it closed; the object is deleted on a later loop turn.
  void retire(Connection* c);
  void reap();

  uv::Loop& loop_;
  const http::App& app_;
  ServerConfig config_;
  http::StreamPolicy policy_;  // what the shared request pipeline needs from config_
  std::optional<tls::Context> tls_;
  uv::TcpServer listener_;
  uv::Timer reaper_;
  uv::Timer drain_timer_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> retired_;
  std::function<void()> on_shutdown_done_;
  bool draining_ = false;
  struct Callbacks;
  std::unique_ptr<Callbacks> callbacks_;  // nghttp2 callbacks and options, shared by all sessions
};

}  // namespace quiclab::h2
