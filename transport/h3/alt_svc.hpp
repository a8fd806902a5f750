// Following Alt-Svc (RFC 7838) from HTTP/2 to HTTP/3.
//
// AltSvcClient starts on an HTTP/2 connection and sends only the first
// request there. When that response carries `Alt-Svc: h3=":PORT"` (or
// h3="host:PORT" for the same host), every later request goes over HTTP/3 to
// that port; otherwise they all stay on HTTP/2. Requests submitted before the
// first response arrived wait for that decision.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#include "transport/http/client.hpp"

namespace quiclab::uv {
class Loop;
}

namespace quiclab::h3 {

/// The port of the first h3 alternative in an Alt-Svc field value that points
/// at the same host (":PORT", "host:PORT" with host equal to origin_host, or
/// "[v6]:PORT"), if any. "clear" and other protocols give nullopt.
std::optional<std::uint16_t> parse_alt_svc_h3(std::string_view value, std::string_view origin_host);

class AltSvcClient final : public http::Client {
 public:
  /// h2: the HTTP/2 client for origin (not yet connected).
  AltSvcClient(uv::Loop& loop, http::Url origin, http::ClientOptions options, std::unique_ptr<http::Client> h2);
  ~AltSvcClient() override;

  void connect(std::function<void(Status)> on_ready) override;
  void submit(http::ClientRequest request, http::BodyCallback on_body, http::CompleteCallback on_complete) override;
  void close(std::function<void()> on_closed, bool abort = false) override;
  /// The HTTP/3 connection's facts once switched, else the HTTP/2 one's.
  http::ConnectionInfo info() const override;
  /// True once requests go over HTTP/3.
  bool switched() const { return h3_ != nullptr; }

 private:
  void decide(const http::ClientResponse& first);
  void route(http::ClientRequest request, http::BodyCallback on_body, http::CompleteCallback on_complete);
  void maybe_closed();

  uv::Loop& loop_;
  http::Url origin_;
  http::ClientOptions options_;
  std::unique_ptr<http::Client> h2_;
  std::unique_ptr<http::Client> h3_;
  bool first_sent_ = false;
  bool decided_ = false;
  std::deque<std::tuple<http::ClientRequest, http::BodyCallback, http::CompleteCallback>> waiting_;
  std::function<void()> on_closed_;
  bool close_requested_ = false;
  bool abort_ = false;
  int open_clients_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace quiclab::h3
