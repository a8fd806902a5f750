#include "transport/h3/alt_svc.hpp"

#include <sys/socket.h>

#include <charconv>

#include "transport/core/log.hpp"
#include "transport/h3/client.hpp"
#include "transport/http/happy_eyeballs.hpp"

namespace quiclab::h3 {

std::optional<std::uint16_t> parse_alt_svc_h3(std::string_view value, std::string_view origin_host) {
  // alt-value = protocol-id "=" quoted-string *( OWS ";" OWS parameter ), comma separated.
  std::size_t pos = 0;
  while (pos < value.size()) {
    auto comma = value.find(',', pos);
    auto item = value.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? value.size() : comma + 1;
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    if (item.substr(0, 4) != "h3=\"") continue;  // Only final HTTP/3, not drafts ("h3-29").
    auto authority = item.substr(4);
    auto quote = authority.find('"');
    if (quote == std::string_view::npos) continue;
    authority = authority.substr(0, quote);
    auto colon = authority.rfind(':');
    if (colon == std::string_view::npos) continue;
    auto host = authority.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    // Another host would need its own certificate check and DNS: not followed.
    if (!host.empty() && host != origin_host) continue;
    auto port_text = authority.substr(colon + 1);
    unsigned port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || port == 0 || port > 65535) continue;
    return static_cast<std::uint16_t>(port);
  }
  return std::nullopt;
}

AltSvcClient::AltSvcClient(uv::Loop& loop, http::Url origin, http::ClientOptions options,
                           std::unique_ptr<http::Client> h2)
    : loop_(loop), origin_(std::move(origin)), options_(std::move(options)), h2_(std::move(h2)) {}

AltSvcClient::~AltSvcClient() { *alive_ = false; }

void AltSvcClient::connect(std::function<void(Status)> on_ready) {
  open_clients_ = 1;
  h2_->connect(std::move(on_ready));
}

void AltSvcClient::submit(http::ClientRequest request, http::BodyCallback on_body, http::CompleteCallback on_complete) {
  if (!first_sent_) {
    // The first request goes over HTTP/2; its response decides for the rest.
    first_sent_ = true;
    auto alive = alive_;
    h2_->submit(std::move(request), std::move(on_body),
                [this, alive, done = std::move(on_complete)](http::ClientResponse&& r) mutable {
                  if (*alive) decide(r);
                  done(std::move(r));
                });
    return;
  }
  if (!decided_) {
    waiting_.emplace_back(std::move(request), std::move(on_body), std::move(on_complete));
    return;
  }
  route(std::move(request), std::move(on_body), std::move(on_complete));
}

void AltSvcClient::route(http::ClientRequest request, http::BodyCallback on_body, http::CompleteCallback on_complete) {
  if (h3_) {
    request.url.port = origin_.port;  // :authority stays the origin's
    h3_->submit(std::move(request), std::move(on_body), std::move(on_complete));
  } else {
    h2_->submit(std::move(request), std::move(on_body), std::move(on_complete));
  }
}

void AltSvcClient::decide(const http::ClientResponse& first) {
  if (decided_) return;
  decided_ = true;
  std::optional<std::uint16_t> port;
  if (!first.error) {
    if (auto v = http::find_header(first.headers, "alt-svc")) port = parse_alt_svc_h3(*v, origin_.host);
  }
  if (port) {
    log::info("alt-svc: {} offers h3 on port {}; switching to HTTP/3", origin_.authority(), *port);
    http::Url target = origin_;
    target.port = *port;
    // The HTTP/2 connection's name is raced again for QUIC (its addresses may
    // answer differently over UDP).
    h3_ = std::make_unique<http::RacingClient>(
        loop_, target, SOCK_DGRAM, options_.attempt_delay_ms,
        [this, target](const SocketAddress& remote,
                       std::optional<Timestamp> clock_start) -> std::unique_ptr<http::Client> {
          auto o = options_;
          o.remote = remote;
          o.clock_start = clock_start;
          return std::make_unique<h3::Client>(loop_, target, std::move(o));
        });
    ++open_clients_;
    h3_->connect([](Status st) {
      if (!st) log::warn("alt-svc: HTTP/3 connection failed: {}", st.error().message);
    });
    // HTTP/2 is no longer needed: let it close gracefully.
    auto alive = alive_;
    h2_->close([this, alive] {
      if (!*alive) return;
      --open_clients_;
      maybe_closed();
    });
  }
  while (!waiting_.empty()) {
    auto [rq, body, done] = std::move(waiting_.front());
    waiting_.pop_front();
    route(std::move(rq), std::move(body), std::move(done));
  }
}

void AltSvcClient::close(std::function<void()> on_closed, bool abort) {
  on_closed_ = std::move(on_closed);
  close_requested_ = true;
  abort_ = abort;
  auto alive = alive_;
  auto one_closed = [this, alive] {
    if (!*alive) return;
    --open_clients_;
    maybe_closed();
  };
  if (h3_) {
    h3_->close(one_closed, abort);
  } else {
    h2_->close(one_closed, abort);
  }
}

void AltSvcClient::maybe_closed() {
  if (!close_requested_ || open_clients_ > 0) return;
  auto cb = std::move(on_closed_);
  on_closed_ = nullptr;
  if (cb) cb();
}

http::ConnectionInfo AltSvcClient::info() const { return h3_ ? h3_->info() : h2_->info(); }

}  // namespace quiclab::h3
