// HTTP/2 client over TCP+TLS on the libuv loop: nghttp2 (sans-IO session) over
// tls::Session (OpenSSL memory BIOs) over uv::TcpStream. One Client is one
// connection to one origin; many requests run on it as concurrent streams.
#pragma once

#include <functional>
#include <memory>

#include "transport/core/uv.hpp"
#include "transport/http/client.hpp"

namespace quiclab::h2 {

/// An HTTP/2 connection to one origin (scheme, host, port of `origin`).
///
/// - connect(): resolves the host, opens TCP, runs the TLS handshake with ALPN
///   "h2", SNI and certificate verification (ClientOptions::insecure / ca_file),
///   then sends the connection preface and SETTINGS (initial stream window =
///   ClientOptions::stream_window, connection window = connection_window,
///   server push disabled).
/// - submit(): requests queue up and are started while fewer than
///   min(ClientOptions::max_concurrent_streams, the server's
///   SETTINGS_MAX_CONCURRENT_STREAMS) streams are open. Request bodies are
///   pulled from ClientRequest::body as flow control allows.
/// - Every request completes exactly once, with a ClientResponse whose `error`
///   is set on a transport failure: connect refused, TLS failure (e.g.
///   certificate verification), ALPN mismatch, RST_STREAM from the server,
///   GOAWAY before the stream was processed, the connection dropping, or
///   no bytes from the server for ClientOptions::timeout_ms.
/// - RequestTiming uses the loop's monotonic clock (uv_hrtime); `start`,
///   `connected` and `handshake_done` are the connection's and the same for
///   every request on it.
///
/// Callback rules: callbacks run on the loop thread. on_ready, on_complete and
/// on_closed are never called from inside connect()/submit()/close() nor from
/// inside nghttp2; they may submit more requests, close the client or destroy
/// it. BodyCallback runs while nghttp2 parses a DATA frame: it may submit, but
/// must not destroy the client. Destroying the Client drops the connection at
/// once without calling any further callback.
class Client final : public http::Client {
 public:
  Client(uv::Loop& loop, http::Url origin, http::ClientOptions options);
  ~Client() override;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void connect(std::function<void(Status)> on_ready) override;
  void submit(http::ClientRequest request, http::BodyCallback on_body, http::CompleteCallback on_complete) override;
  void close(std::function<void()> on_closed, bool abort = false) override;
  http::ConnectionInfo info() const override;

  /// Streams open right now (for load generators and tests).
  std::size_t streams_in_flight() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace quiclab::h2
