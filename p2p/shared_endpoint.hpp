// One UDP socket shared by the peer's cores: the rendezvous client's STUN,
// the connectivity checks, TURN and QUIC (DESIGN.md, "One UDP socket per
// peer"). p2p::Demultiplexer decides per datagram which core gets it; this is
// the libuv-side dispatcher that hands it over.
//
// The handlers are the cores' adapters (quic::DatagramHandler): h3::Client or
// h3::Server with quic::Attach::shared, the rendezvous service, a STUN client.
// One handler may take several routes. A route without a handler drops its
// datagrams (counted), as a closed port would.
//
// Every handler gets handle_batch_end() once per receive batch (whether or not
// the batch held datagrams for it: cheap, and a core that was only written to
// by a timer flushes there too) and every ICMP error with its destination
// (each decides whether it is about its peer).
#pragma once

#include <array>
#include <cstdint>

#include "p2p/demux.hpp"
#include "transport/quic/udp_socket.hpp"

namespace quiclab::p2p {

struct SharedEndpointStats {
  std::array<std::uint64_t, 4> routed{};  ///< Datagrams per Route (index: the enum's value).
  std::uint64_t unhandled = 0;            ///< Datagrams of a route without a handler, dropped.
};

class SharedEndpoint final : public quic::DatagramHandler {
 public:
  /// socket must be bound and outlive this object (or stop() first).
  explicit SharedEndpoint(quic::UdpSocket& socket) : socket_(socket) {}
  ~SharedEndpoint() override;
  SharedEndpoint(const SharedEndpoint&) = delete;
  SharedEndpoint& operator=(const SharedEndpoint&) = delete;

  /// Who gets the datagrams of `route`; nullptr drops them. Handlers must
  /// outlive their registration; changing one from inside a callback takes
  /// effect with the next datagram.
  void set_handler(Route route, quic::DatagramHandler* handler);
  Demultiplexer& demux() { return demux_; }
  const Demultiplexer& demux() const { return demux_; }

  /// Takes the socket's callbacks (the endpoint becomes its only direct consumer).
  Status start();
  /// Stops reading; the socket stays open.
  void stop();

  quic::UdpSocket& socket() { return socket_; }
  const SharedEndpointStats& stats() const { return stats_; }

  void handle_datagram(const quic::ReceivedDatagram& d) override;
  void handle_batch_end() override;
  void handle_socket_error(int err, const SocketAddress& to) override;

 private:
  // Each distinct handler once, in route order (a handler may take several routes).
  template <class F>
  void for_each_handler(F&& f);

  quic::UdpSocket& socket_;
  Demultiplexer demux_;
  std::array<quic::DatagramHandler*, 4> handlers_{};
  SharedEndpointStats stats_;
  bool started_ = false;
};

}  // namespace quiclab::p2p
