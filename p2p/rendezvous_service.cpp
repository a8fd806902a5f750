#include "p2p/rendezvous_service.hpp"

#include "transport/core/log.hpp"

namespace quiclab::rendezvous {

Service::Service(uv::Loop& loop, ServerConfig config) : loop_(loop), config_(std::move(config)) {}

Status Service::bind_all(const SocketAddress& listen, const std::optional<std::string>& alt_ip) {
  for (auto& s : sockets_) s.reset();
  local_ = {};
  auto bind_one = [&](int index, const SocketAddress& at) -> Status {
    auto udp = std::make_unique<uv::Udp>(loop_, /*batch_receive=*/true);
    if (auto st = udp->bind(at); !st) return st;
    local_[static_cast<std::size_t>(index)] = udp->local_address();
    sockets_[static_cast<std::size_t>(index)] = std::move(udp);
    return {};
  };
  if (auto st = bind_one(kPrimary, listen); !st) return st;
  if (!alt_ip) return {};
  auto alt = SocketAddress::from_ip(*alt_ip, local_[kPrimary].port());
  if (!alt) return alt.error();
  if (alt->family() != listen.family())
    return make_error(ErrorDomain::config, EINVAL, "--alt-address must be the same family as --listen");
  // P' = P + 1 like other RFC 5780 servers; when taken, any free port will do,
  // since clients learn it from OTHER-ADDRESS.
  SocketAddress alt_port_at = local_[kPrimary];
  std::uint16_t p = local_[kPrimary].port();
  alt_port_at.set_port(p < 65535 ? static_cast<std::uint16_t>(p + 1) : 0);
  if (auto st = bind_one(kAltPort, alt_port_at); !st) {
    alt_port_at.set_port(0);
    if (auto st2 = bind_one(kAltPort, alt_port_at); !st2) return st2;
  }
  if (auto st = bind_one(kAltIp, *alt); !st) return st;
  SocketAddress both = *alt;
  both.set_port(local_[kAltPort].port());
  return bind_one(kAltBoth, both);
}

Status Service::start(const SocketAddress& listen, const std::optional<std::string>& alt_ip) {
  Status st = bind_all(listen, alt_ip);
  // With an ephemeral port the matching ports on the alternate address may be
  // taken by chance; try a few fresh picks before giving up.
  for (int attempt = 0; !st && listen.port() == 0 && attempt < 10; ++attempt) st = bind_all(listen, alt_ip);
  if (!st) return st;
  config_.local = local_;
  server_ = std::make_unique<Server>(config_);
  for (int i = 0; i < 4; ++i) {
    auto& sock = sockets_[static_cast<std::size_t>(i)];
    if (!sock) continue;
    auto rc = sock->recv_start([this, i](ByteView data, const SocketAddress& from) {
      out_.clear();
      server_->handle_datagram(i, from, data, uv::Loop::hrtime(), out_);
      for (const auto& d : out_) {
        auto& via = sockets_[static_cast<std::size_t>(d.socket)];
        if (!via) continue;
        if (auto sent = via->send(d.to, d.data); !sent) log::debug("rendezvous: {}", sent.error().message);
      }
      timer_->rearm();
    });
    if (!rc) return rc;
  }
  // Housekeeping: armed while the core tracks something (Server::expiry()).
  timer_ = std::make_unique<uv::DeadlineTimer>(loop_);
  timer_->add(*server_);
  return {};
}

void Service::stop() {
  for (auto& s : sockets_) s.reset();
  timer_.reset();
}

}  // namespace quiclab::rendezvous
