// libuv adapter for the rendezvous server core: serves on UDP sockets it is
// given (one, or four for RFC 5780 with an alternate address; bind_sockets()
// binds them), feeds datagrams and its housekeeping deadline (one
// uv::DeadlineTimer) into rendezvous::Server, and sends what it returns. The
// primary socket may be shared with other consumers (QUIC): then the owner
// routes STUN to handle_datagram().
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "p2p/rendezvous_server.hpp"
#include "transport/core/deadline_timer.hpp"
#include "transport/core/uv.hpp"
#include "transport/quic/udp_socket.hpp"

namespace quiclab::rendezvous {

/// Indexed by SocketIndex; entries 1-3 are null without an alternate address.
using Sockets = std::array<std::shared_ptr<quic::UdpSocket>, 4>;

/// Binds `listen` (port 0 picks one) and, with `alt_ip`, the other three
/// sockets of RFC 5780: (A, P'), (A2, P), (A2, P') with P' = P + 1 when free,
/// else any free port. Errors: bind failures, with the address in the
/// message; an alternate address of the other family.
Result<Sockets> bind_sockets(uv::Loop& loop, const SocketAddress& listen, const std::optional<std::string>& alt_ip);

class Service {
 public:
  /// config.local is filled in by start(); the other fields are the limits.
  Service(uv::Loop& loop, ServerConfig config);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  /// Serves on `sockets` (bound; sockets[kPrimary] required). exclusive: the
  /// service reads them itself; shared: the owner routes the STUN datagrams
  /// of sockets[i] to handle_datagram(i, d).
  Status start(Sockets sockets, quic::Attach attach = quic::Attach::exclusive);
  /// Stops reading the sockets it read and stops the timer; the sockets stay
  /// open for their other owners (they close when the last owner lets go).
  void stop();

  /// One datagram that arrived on sockets[index]; the timer is re-armed at the
  /// end of each receive batch (handler(index).handle_batch_end()).
  void handle_datagram(int index, const quic::ReceivedDatagram& d);
  /// The DatagramHandler for sockets[index] (0-3), to register with a
  /// dispatcher (p2p::SharedEndpoint) when the socket is shared.
  quic::DatagramHandler& handler(int index);

  /// Bound addresses by SocketIndex (empty entries when there is no alternate).
  const std::array<SocketAddress, 4>& local() const { return local_; }
  const Server& core() const { return *server_; }
  /// Answers that could not be sent (socket buffer full or a send error);
  /// STUN clients retransmit, so they are dropped, not queued.
  std::uint64_t send_failures() const { return send_failures_; }

 private:
  struct Reader;

  uv::Loop& loop_;
  ServerConfig config_;
  std::array<SocketAddress, 4> local_;
  Sockets sockets_;
  std::array<std::unique_ptr<Reader>, 4> readers_;
  std::array<bool, 4> attached_{};
  std::unique_ptr<Server> server_;
  std::unique_ptr<uv::DeadlineTimer> timer_;
  std::vector<OutgoingDatagram> out_;
  std::uint64_t send_failures_ = 0;
};

}  // namespace quiclab::rendezvous
