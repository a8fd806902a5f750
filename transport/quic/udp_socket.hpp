// A UDP socket quiclab owns, driven by uv::Poll, for QUIC's data path.
//
// libuv 1.44's uv_udp_t exposes no control messages and cannot send with GSO,
// so QUIC endpoints (server and client) use this socket instead:
//   - receive: recvmmsg() into preallocated batch buffers; UDP_GRO when the
//     kernel has it (one coalesced buffer is split back into datagrams by the
//     gso_size control message); ECN codepoint of each datagram (IP_RECVTOS /
//     IPV6_RECVTCLASS); the local address each datagram was sent to
//     (IP_PKTINFO / IPV6_RECVPKTINFO), so a server bound to a wildcard address
//     can answer from the right address.
//   - send: one sendmsg() per batch of equal-sized packets with UDP_SEGMENT
//     (GSO); where the kernel refuses GSO (EIO / EINVAL, e.g. a device without
//     checksum offload) the batch is sent segment by segment and GSO stays off
//     for this socket. ECN is written per send (IP_TOS / IPV6_TCLASS cmsg).
//   - EAGAIN on send is reported as SendStatus::blocked with the count of bytes
//     the kernel took; the caller keeps the rest and calls wait_writable().
//
// No heap allocation or copy per datagram: the callback gets views into the
// batch buffers, valid only during the callback.
//
//   - errors: IP_RECVERR / IPV6_RECVERR, so an unconnected socket hears ICMP
//     errors too (port unreachable, ...), each with the destination of the
//     datagram that caused it, read from the error queue (MSG_ERRQUEUE). One
//     socket can talk to many peers (a server; a peer whose one socket
//     carries STUN, checks and QUIC) and still tell which peer refused.
//
// One socket, several consumers: a consumer (h3::Server, h3::Client, the
// rendezvous service, the STUN client) implements DatagramHandler and is
// handed a socket it does not own. attach() gives it the socket's callbacks
// when it is the only consumer; a socket shared by several goes through a
// dispatcher (p2p::SharedEndpoint) that routes each datagram to one of them.
//
// Callback rules: callbacks run on the loop thread. The socket may be closed
// (close() or destruction) from inside any callback; no further callback runs
// after that.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/result.hpp"

namespace quiclab::uv {
class Loop;
}

namespace quiclab::quic {

/// ECN codepoints (RFC 3168), the two low bits of the TOS / traffic class byte.
enum class Ecn : std::uint8_t { not_ect = 0, ect1 = 1, ect0 = 2, ce = 3 };

/// One received datagram. Views are valid only during the receive callback.
struct ReceivedDatagram {
  ByteView data;
  const SocketAddress& peer;   ///< Source address of the datagram.
  const SocketAddress& local;  ///< Address it was sent to (from PKTINFO), else the bound address.
  std::uint8_t ecn = 0;        ///< ECN bits (see Ecn), 0 when unknown.
};

struct UdpSocketOptions {
  bool gro = true;                         ///< Ask for UDP_GRO on receive (ignored if the kernel lacks it).
  bool gso = true;                         ///< Use UDP_SEGMENT on send when the kernel accepts it.
  bool ecn = true;                         ///< Read ECN on receive (IP_RECVTOS / IPV6_RECVTCLASS).
  bool pktinfo = true;                     ///< Learn the local address per datagram (IP_PKTINFO).
  std::size_t recv_batch = 32;             ///< Messages per recvmmsg() call.
  std::size_t max_batches_per_wakeup = 8;  ///< Bounds work per readable event (fairness with other handles).
  bool recverr = true;                     ///< IP_RECVERR: ICMP errors with their destination, also when unconnected.
  int rcvbuf = 4 * 1024 * 1024;            ///< SO_RCVBUF request (0: kernel default).
  int sndbuf = 4 * 1024 * 1024;            ///< SO_SNDBUF request (0: kernel default).
};

enum class SendStatus {
  sent,     ///< All bytes went to the kernel.
  blocked,  ///< EAGAIN: `bytes_sent` bytes (whole segments) went; wait_writable() before retrying the rest.
  error,    ///< Any other error (logged once per kind); the packets are dropped, as on a lossy path.
};

struct SendResult {
  SendStatus status = SendStatus::sent;
  std::size_t bytes_sent = 0;  ///< Always a multiple of segment_size, or the whole buffer.
  int error = 0;               ///< errno for SendStatus::error.
};

/// Counters for tests and benchmarks.
struct UdpSocketStats {
  std::uint64_t datagrams_received = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t recv_syscalls = 0;      ///< recvmmsg() calls that returned data.
  std::uint64_t gro_buffers = 0;        ///< Receive buffers that carried more than one datagram.
  std::uint64_t truncated_dropped = 0;  ///< Datagrams larger than the buffer (MSG_TRUNC), dropped.
  std::uint64_t datagrams_sent = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t send_syscalls = 0;
  std::uint64_t send_blocked = 0;  ///< EAGAIN count.
  std::uint64_t send_errors = 0;
  std::uint64_t socket_errors = 0;  ///< Pending socket errors (ICMP) cleared after POLLERR; reading went on.
  std::uint64_t icmp_errors = 0;    ///< Error-queue entries read (IP_RECVERR), each reported with its destination.
  bool gro_enabled = false;
  bool gso_enabled = false;
};

class UdpSocket {
 public:
  /// Called once per datagram (after GRO split), in arrival order.
  using DatagramCallback = std::function<void(const ReceivedDatagram&)>;
  /// Called after each recvmmsg() batch has been delivered: the place to flush
  /// the packets the batch produced (one send burst per batch, not per datagram).
  using BatchEndCallback = std::function<void()>;

  explicit UdpSocket(uv::Loop& loop);
  ~UdpSocket();
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  /// Creates a non-blocking socket of addr's family and binds it (port 0: any
  /// free port). An IPv6 wildcard bind accepts IPv4 too (v4-mapped addresses).
  /// Errors: socket()/bind() failures with errno text.
  Status bind(const SocketAddress& addr, const UdpSocketOptions& options = {});

  /// Starts delivering datagrams. on_batch_end may be null.
  Status start(DatagramCallback on_datagram, BatchEndCallback on_batch_end = nullptr);
  /// Stops reading (sends still work).
  void stop();
  /// Called with the errno of each socket error (an ICMP error such as
  /// ECONNREFUSED for port unreachable) and the destination of the datagram
  /// that caused it (empty when the kernel did not say: a connected socket
  /// without IP_RECVERR). The socket clears the error and keeps reading; the
  /// owner decides whether the error matters.
  using ErrorCallback = std::function<void(int err, const SocketAddress& to)>;
  void on_socket_error(ErrorCallback cb);

  /// Sends `data` to `to`. When segment_size > 0 and smaller than data.size(),
  /// data holds several packets of segment_size bytes (the last may be shorter)
  /// and goes out as one GSO send (or one sendmsg per segment on fallback).
  /// `from` (optional) selects the source address (PKTINFO) for wildcard binds.
  /// At most max_gso_segments() segments and 65507 bytes per GSO call
  /// (otherwise the kernel answers EMSGSIZE, reported as SendStatus::error).
  SendResult send(const SocketAddress& to, ByteView data, std::size_t segment_size = 0, Ecn ecn = Ecn::not_ect,
                  const SocketAddress* from = nullptr);

  /// A source address this socket does not own: a TURN relayed address, the
  /// local end of a QUIC path that runs through the relay. send() with
  /// `from` equal to it goes to `fn` (which wraps and sends to the TURN
  /// server) instead of the kernel, so QUIC endpoints keep one path model:
  /// each path has a local and a remote address, and the relayed path's
  /// local address differs from the direct one's (ngtcp2 0.12.1 migrates
  /// only to a path with a new local address). One function per address;
  /// a null fn removes it.
  using DivertFn = std::function<SendResult(const SocketAddress& to, ByteView data, std::size_t segment_size, Ecn ecn)>;
  void divert_source(const SocketAddress& from, DivertFn fn);

  /// Calls cb once, when the socket becomes writable again (after SendStatus::blocked).
  /// Each consumer of a shared socket may wait; all waiting callbacks run.
  void wait_writable(std::function<void()> cb);

  /// Largest segment count per GSO send (kernel limit UDP_MAX_SEGMENTS = 64).
  static constexpr std::size_t max_gso_segments() { return 64; }
  bool gso_enabled() const;
  SocketAddress local_address() const;
  int fd() const;
  const UdpSocketStats& stats() const;
  /// Closes the socket; safe from inside callbacks; idempotent.
  void close();

 private:
  struct Impl;
  // Shared so a callback in flight keeps the buffers alive if the owner
  // destroys the socket from inside that callback.
  std::shared_ptr<Impl> impl_;
};

/// A consumer of datagrams that does not own its socket (see the top of this
/// file). All calls come from the loop thread, from inside the socket's
/// callbacks; the handler may close or replace the socket from inside them.
class DatagramHandler {
 public:
  virtual ~DatagramHandler() = default;
  /// One datagram (views valid only during the call).
  virtual void handle_datagram(const ReceivedDatagram& d) = 0;
  /// After each receive batch: the place to send what the batch produced.
  virtual void handle_batch_end() {}
  /// An ICMP error for a datagram the socket sent to `to` (see on_socket_error()).
  virtual void handle_socket_error(int err, const SocketAddress& to) {
    (void)err;
    (void)to;
  }
};

/// How an adapter given a socket uses it: as its only consumer (it calls
/// attach() and stops reading when it is done), or as one of several, with
/// the owner routing datagrams to its DatagramHandler methods.
enum class Attach : std::uint8_t { exclusive, shared };

/// Makes `handler` the socket's only consumer: starts reading and routes
/// datagrams, batch ends and errors to it. handler must outlive the
/// socket's reading (call socket.stop() or close() first).
Status attach(UdpSocket& socket, DatagramHandler& handler);

/// Creates and binds a socket (the adapters' common first step).
Result<std::unique_ptr<UdpSocket>> open_udp(uv::Loop& loop, const SocketAddress& addr,
                                            const UdpSocketOptions& options = {});

/// The local address the kernel's routing table would use to reach `remote`
/// (connect() on a throw-away UDP socket, which sends nothing). A consumer
/// of a wildcard-bound socket needs it as the local end of a QUIC path
/// before the first datagram arrives. Errors: no route (ENETUNREACH ...).
Result<SocketAddress> route_source(const SocketAddress& remote);

}  // namespace quiclab::quic
