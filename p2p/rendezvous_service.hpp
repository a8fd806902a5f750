// libuv adapter for the rendezvous server core: owns the UDP sockets (one, or
// four for RFC 5780 with an alternate address), feeds datagrams and its
// housekeeping deadline (one uv::DeadlineTimer) into rendezvous::Server, and sends what it returns.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "p2p/rendezvous_server.hpp"
#include "transport/core/deadline_timer.hpp"
#include "transport/core/uv.hpp"

namespace quiclab::rendezvous {

class Service {
 public:
  /// config.local is filled in by start(); the other fields are the limits.
  Service(uv::Loop& loop, ServerConfig config);

  /// Binds `listen` (port 0 picks one) and, with `alt_ip`, the other three
  /// sockets of RFC 5780: (A, P'), (A2, P), (A2, P') with P' = P + 1 when free,
  /// else any free port. Errors: bind failures, with the address in the message.
  Status start(const SocketAddress& listen, const std::optional<std::string>& alt_ip);
  /// Closes every socket and the timer.
  void stop();

  /// Bound addresses by SocketIndex (empty entries when there is no alternate).
  const std::array<SocketAddress, 4>& local() const { return local_; }
  const Server& core() const { return *server_; }

 private:
  Status bind_all(const SocketAddress& listen, const std::optional<std::string>& alt_ip);

  uv::Loop& loop_;
  ServerConfig config_;
  std::array<SocketAddress, 4> local_;
  std::array<std::unique_ptr<uv::Udp>, 4> sockets_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<uv::DeadlineTimer> timer_;
  std::vector<OutgoingDatagram> out_;
};

}  // namespace quiclab::rendezvous
