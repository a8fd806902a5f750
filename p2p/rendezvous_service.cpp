#include "p2p/rendezvous_service.hpp"

#include "transport/core/log.hpp"

namespace quiclab::rendezvous {

namespace {

// STUN answers are small and few per request: a modest buffer, no batching
// tricks beyond recvmmsg (which UdpSocket always uses).
quic::UdpSocketOptions stun_socket_options() {
  quic::UdpSocketOptions o;
  o.gro = false;
  o.gso = false;
  o.rcvbuf = 2 * 1024 * 1024;
  o.sndbuf = 1024 * 1024;
  return o;
}

Result<Sockets> bind_once(uv::Loop& loop, const SocketAddress& listen, const std::optional<std::string>& alt_ip) {
  Sockets sockets;
  auto bind_one = [&](int index, const SocketAddress& at) -> Status {
    auto udp = quic::open_udp(loop, at, stun_socket_options());
    if (!udp) return udp.error();
    sockets[static_cast<std::size_t>(index)] = std::move(*udp);
    return {};
  };
  if (auto st = bind_one(kPrimary, listen); !st) return st.error();
  if (!alt_ip) return sockets;
  const SocketAddress primary = sockets[kPrimary]->local_address();
  auto alt = SocketAddress::from_ip(*alt_ip, primary.port());
  if (!alt) return alt.error();
  if (alt->family() != listen.family())
    return make_error(ErrorDomain::config, EINVAL, "--alt-address must be the same family as --listen");
  // P' = P + 1 like other RFC 5780 servers; when taken, any free port will do,
  // since clients learn it from OTHER-ADDRESS.
  SocketAddress alt_port_at = primary;
  std::uint16_t p = primary.port();
  alt_port_at.set_port(p < 65535 ? static_cast<std::uint16_t>(p + 1) : 0);
  if (auto st = bind_one(kAltPort, alt_port_at); !st) {
    alt_port_at.set_port(0);
    if (auto st2 = bind_one(kAltPort, alt_port_at); !st2) return st2.error();
  }
  if (auto st = bind_one(kAltIp, *alt); !st) return st.error();
  SocketAddress both = *alt;
  both.set_port(sockets[kAltPort]->local_address().port());
  if (auto st = bind_one(kAltBoth, both); !st) return st.error();
  return sockets;
}

}  // namespace

Result<Sockets> bind_sockets(uv::Loop& loop, const SocketAddress& listen, const std::optional<std::string>& alt_ip) {
  auto sockets = bind_once(loop, listen, alt_ip);
  // With an ephemeral port the matching ports on the alternate address may be
  // taken by chance; try a few fresh picks before giving up.
  for (int attempt = 0; !sockets && listen.port() == 0 && attempt < 10; ++attempt)
    sockets = bind_once(loop, listen, alt_ip);
  return sockets;
}

// Routes one exclusive socket's datagrams to the service with its index.
struct Service::Reader final : quic::DatagramHandler {
  Reader(Service& s, int i) : service(s), index(i) {}
  void handle_datagram(const quic::ReceivedDatagram& d) override { service.handle_datagram(index, d); }
  // Once per receive batch, not per datagram: the core's expiry() walks its
  // introductions in flight.
  void handle_batch_end() override {
    if (service.timer_) service.timer_->rearm();
  }
  Service& service;
  int index;
};

Service::Service(uv::Loop& loop, ServerConfig config) : loop_(loop), config_(std::move(config)) {
  for (int i = 0; i < 4; ++i) readers_[static_cast<std::size_t>(i)] = std::make_unique<Reader>(*this, i);
}

quic::DatagramHandler& Service::handler(int index) { return *readers_.at(static_cast<std::size_t>(index)); }

Service::~Service() { stop(); }

Status Service::start(Sockets sockets, quic::Attach attach) {
  if (!sockets[kPrimary]) return make_error(ErrorDomain::config, EINVAL, "rendezvous: no primary socket");
  sockets_ = std::move(sockets);
  local_ = {};
  for (std::size_t i = 0; i < sockets_.size(); ++i)
    if (sockets_[i]) local_[i] = sockets_[i]->local_address();
  config_.local = local_;
  server_ = std::make_unique<Server>(config_);
  if (attach == quic::Attach::exclusive) {
    for (int i = 0; i < 4; ++i) {
      auto& sock = sockets_[static_cast<std::size_t>(i)];
      if (!sock) continue;
      attached_[static_cast<std::size_t>(i)] = true;
      if (auto st = quic::attach(*sock, *readers_[static_cast<std::size_t>(i)]); !st) return st;
    }
  }
  // Housekeeping: armed while the core tracks something (Server::expiry()).
  timer_ = std::make_unique<uv::DeadlineTimer>(loop_);
  timer_->add(*server_, [this] {
    // Retransmitted introductions and their reports.
    for (const auto& o : server_->take_datagrams()) {
      auto& via = sockets_[static_cast<std::size_t>(o.socket)];
      if (!via) continue;
      if (via->send(o.to, o.data).status != quic::SendStatus::sent) ++send_failures_;
    }
  });
  return {};
}

void Service::handle_datagram(int index, const quic::ReceivedDatagram& d) {
  if (!server_) return;
  out_.clear();
  server_->handle_datagram(index, d.peer, d.data, uv::Loop::hrtime(), out_);
  for (const auto& o : out_) {
    auto& via = sockets_[static_cast<std::size_t>(o.socket)];
    if (!via) continue;
    // From the address the request came to when the socket is a wildcard bind.
    auto r = via->send(o.to, o.data, 0, quic::Ecn::not_ect, o.socket == index ? &d.local : nullptr);
    if (r.status != quic::SendStatus::sent) ++send_failures_;
  }
}

void Service::stop() {
  for (std::size_t i = 0; i < sockets_.size(); ++i) {
    if (attached_[i] && sockets_[i]) sockets_[i]->stop();
    attached_[i] = false;
  }
  sockets_ = {};
  timer_.reset();
}

}  // namespace quiclab::rendezvous
