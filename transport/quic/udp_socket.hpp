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
  bool gro = true;                 ///< Ask for UDP_GRO on receive (ignored if the kernel lacks it).
  bool gso = true;                 ///< Use UDP_SEGMENT on send when the kernel accepts it.
  bool ecn = true;                 ///< Read ECN on receive (IP_RECVTOS / IPV6_RECVTCLASS).
  bool pktinfo = true;             ///< Learn the local address per datagram (IP_PKTINFO).
  std::size_t recv_batch = 32;     ///< Messages per recvmmsg() call.
  std::size_t max_batches_per_wakeup = 8;  ///< Bounds work per readable event (fairness with other handles).
  int rcvbuf = 4 * 1024 * 1024;    ///< SO_RCVBUF request (0: kernel default).
  int sndbuf = 4 * 1024 * 1024;    ///< SO_SNDBUF request (0: kernel default).
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
  std::uint64_t send_blocked = 0;       ///< EAGAIN count.
  std::uint64_t send_errors = 0;
  std::uint64_t socket_errors = 0;      ///< Pending socket errors (ICMP) cleared after POLLERR; reading went on.
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
  /// Called with the errno of a pending socket error (an ICMP error such as
  /// ECONNREFUSED on a connected socket). The socket clears the error and
  /// keeps reading; the owner decides whether the error matters.
  void on_socket_error(std::function<void(int err)> cb);

  /// Sends `data` to `to`. When segment_size > 0 and smaller than data.size(),
  /// data holds several packets of segment_size bytes (the last may be shorter)
  /// and goes out as one GSO send (or one sendmsg per segment on fallback).
  /// `from` (optional) selects the source address (PKTINFO) for wildcard binds.
  /// At most max_gso_segments() segments and 65507 bytes per GSO call
  /// (otherwise the kernel answers EMSGSIZE, reported as SendStatus::error).
  SendResult send(const SocketAddress& to, ByteView data, std::size_t segment_size = 0, Ecn ecn = Ecn::not_ect,
                  const SocketAddress* from = nullptr);

  /// Calls cb once, when the socket becomes writable again (after SendStatus::blocked).
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

}  // namespace quiclab::quic
