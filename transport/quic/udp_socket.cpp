#include "transport/quic/udp_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "transport/core/log.hpp"
#include "transport/core/uv.hpp"

namespace quiclab::quic {

namespace {

// Room for GRO size, TOS/TCLASS and PKTINFO (v4 or v6) control messages.
constexpr std::size_t kCmsgSpace =
    CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(in6_pktinfo)) + 64;
// A GRO buffer can hold up to 64 KiB of coalesced datagrams.
constexpr std::size_t kGroBufferSize = 65535;
// Without GRO one buffer holds one datagram; anything above QUIC's largest
// sensible size is truncated and dropped.
constexpr std::size_t kPlainBufferSize = 65535;

int set_int_opt(int fd, int level, int name, int value) { return ::setsockopt(fd, level, name, &value, sizeof value); }

std::string errno_text(int err) { return std::string(std::strerror(err)); }

// The errno values an ICMP error leaves pending on a socket.
bool is_icmp_errno(int err) {
  return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EMSGSIZE || err == EHOSTDOWN ||
         err == ENONET || err == EPROTO;
}

}  // namespace

struct UdpSocket::Impl : std::enable_shared_from_this<UdpSocket::Impl> {
  explicit Impl(uv::Loop& l) : loop(l) {}
  ~Impl() { close(); }

  uv::Loop& loop;
  int fd = -1;
  std::unique_ptr<uv::Poll> poll;
  UdpSocketOptions options;
  SocketAddress bound;
  bool wildcard = false;
  bool closed = false;
  bool reading = false;
  DatagramCallback on_datagram;
  // Source addresses that are not ours (divert_source): few (one TURN allocation), so a vector.
  std::vector<std::pair<SocketAddress, DivertFn>> diverts;
  BatchEndCallback on_batch_end;
  std::vector<std::function<void()>> on_writable;  // one per waiting consumer
  ErrorCallback on_socket_error;
  UdpSocketStats stats;
  bool logged_send_error = false;

  // Receive batch, preallocated once.
  std::size_t buffer_size = 0;
  std::vector<std::uint8_t> buffers;
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iovs;
  std::vector<sockaddr_storage> names;
  std::vector<std::array<std::uint8_t, kCmsgSpace>> controls;
  SocketAddress peer_scratch;
  SocketAddress local_scratch;

  void update_poll() {
    if (!poll) return;
    int events = 0;
    if (reading) events |= UV_READABLE;
    if (!on_writable.empty()) events |= UV_WRITABLE;
    if (events == 0) {
      poll->stop();
      return;
    }
    std::weak_ptr<Impl> weak = weak_from_this();
    auto st = poll->start(events, [weak](int status, int ev) {
      auto self = weak.lock();
      if (!self) return;
      self->on_events(status, ev);
    });
    if (!st) log::warn("udp: poll start failed: {}", st.error().message);
  }

  void on_events(int status, int ev) {
    auto keep = shared_from_this();
    if (status < 0) {
      // libuv stops the poll on POLLERR (reported as UV_EBADF). On a UDP
      // socket that is an ICMP error: read the error queue (IP_RECVERR: each
      // entry names the destination) and the pending error (SO_ERROR, which
      // clears it), tell the owner, and poll again, or the socket would never
      // be read again.
      std::size_t queued = drain_errors();
      if (closed) return;
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        log::warn("udp: poll error: {}; getsockopt(SO_ERROR): {}", uv::error_text(status), errno_text(errno));
        return;  // not a socket we can use any more
      }
      ++stats.socket_errors;
      log::debug("udp: socket error {} ({}); reading on", err, err ? errno_text(err) : "none");
      update_poll();
      // With IP_RECVERR the queue entries already reported this error.
      if (err != 0 && queued == 0) report_error(err, SocketAddress{});
      return;
    }
    if ((ev & UV_WRITABLE) && !on_writable.empty()) {
      auto waiting = std::move(on_writable);
      on_writable.clear();
      update_poll();
      for (auto& cb : waiting) {
        cb();
        if (closed) return;
      }
    }
    if ((ev & UV_READABLE) && reading) receive();
  }

  void receive() {
    for (std::size_t round = 0; round < options.max_batches_per_wakeup && reading && !closed; ++round) {
      const std::size_t n = msgs.size();
      for (std::size_t i = 0; i < n; ++i) {
        msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
        msgs[i].msg_hdr.msg_controllen = kCmsgSpace;
        msgs[i].msg_hdr.msg_flags = 0;
        msgs[i].msg_len = 0;
      }
      int got = ::recvmmsg(fd, msgs.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
      if (got < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) return;
        if (err == EINTR) continue;
        if (is_icmp_errno(err)) {
          // A pending ICMP error, returned once instead of data: report it
          // (with its destination when the error queue has it), read on.
          ++stats.socket_errors;
          if (drain_errors() == 0 && !closed) report_error(err, SocketAddress{});
          continue;
        }
        log::warn("udp: recvmmsg failed: {}", errno_text(err));
        return;
      }
      if (got == 0) return;
      ++stats.recv_syscalls;
      for (int i = 0; i < got && !closed && reading; ++i) deliver(msgs[static_cast<std::size_t>(i)]);
      if (closed) return;
      if (on_batch_end) {
        auto cb = on_batch_end;  // copy: the owner may replace callbacks from inside
        cb();
        if (closed) return;
      }
      if (static_cast<std::size_t>(got) < n) return;  // drained
    }
  }

  void report_error(int err, const SocketAddress& to) {
    if (!on_socket_error) return;
    auto cb = on_socket_error;  // copy: may close the socket
    cb(err, to);
  }

  // Reads the error queue (IP_RECVERR / IPV6_RECVERR) and reports each entry
  // with the destination of the datagram that caused it. Bounded per call;
  // what is left raises POLLERR again on the next loop turn.
  std::size_t drain_errors() {
    std::size_t n = 0;
    for (int i = 0; i < 64 && !closed && fd >= 0; ++i) {
      sockaddr_storage name{};
      alignas(cmsghdr) std::uint8_t control[256];
      std::uint8_t payload[64];  // the start of the offending datagram; unused
      iovec iov{payload, sizeof payload};
      msghdr h{};
      h.msg_name = &name;
      h.msg_namelen = sizeof name;
      h.msg_iov = &iov;
      h.msg_iovlen = 1;
      h.msg_control = control;
      h.msg_controllen = sizeof control;
      if (::recvmsg(fd, &h, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN: the queue is empty
      }
      ++n;
      ++stats.icmp_errors;
      int err = 0;
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
        if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
            (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
          sock_extended_err ee{};
          std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
          err = static_cast<int>(ee.ee_errno);
        }
      }
      SocketAddress to = h.msg_namelen > 0 ? SocketAddress(reinterpret_cast<const sockaddr*>(&name)) : SocketAddress{};
      log::debug("udp: ICMP error {} for {}", err ? errno_text(err) : "?", to.empty() ? "?" : to.to_string());
      if (err != 0) report_error(err, to);
    }
    return n;
  }

  void deliver(mmsghdr& m) {
    auto& h = m.msg_hdr;
    if (h.msg_flags & MSG_TRUNC) {
      ++stats.truncated_dropped;
      log::debug("udp: dropped a truncated datagram ({} byte buffer)", buffer_size);
      return;
    }
    int gso_size = 0;
    std::uint8_t ecn = 0;
    local_scratch = bound;
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        std::memcpy(&gso_size, CMSG_DATA(c), sizeof gso_size);
      } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) {
        ecn = *CMSG_DATA(c) & 0x3;
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS) {
        int tclass = 0;
        std::memcpy(&tclass, CMSG_DATA(c), sizeof tclass);
        ecn = static_cast<std::uint8_t>(tclass & 0x3);
      } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && wildcard) {
        in_pktinfo pi;
        std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
        if (bound.is_v6()) {
          // A v4 datagram on a dual-stack socket: the local address is v4-mapped.
          sockaddr_in6 a{};
          a.sin6_family = AF_INET6;
          a.sin6_port = htons(bound.port());
          a.sin6_addr.s6_addr[10] = 0xff;
          a.sin6_addr.s6_addr[11] = 0xff;
          std::memcpy(&a.sin6_addr.s6_addr[12], &pi.ipi_addr, 4);
          local_scratch = SocketAddress(reinterpret_cast<const sockaddr*>(&a));
        } else {
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_port = htons(bound.port());
          a.sin_addr = pi.ipi_addr;
          local_scratch = SocketAddress(reinterpret_cast<const sockaddr*>(&a));
        }
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && wildcard) {
        in6_pktinfo pi;
        std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(bound.port());
        a.sin6_addr = pi.ipi6_addr;
        local_scratch = SocketAddress(reinterpret_cast<const sockaddr*>(&a));
      }
    }
    peer_scratch = SocketAddress(reinterpret_cast<const sockaddr*>(h.msg_name));
    auto* base = static_cast<const std::uint8_t*>(h.msg_iov[0].iov_base);
    std::size_t len = m.msg_len;
    std::size_t seg = gso_size > 0 ? static_cast<std::size_t>(gso_size) : len;
    if (seg == 0) seg = len;  // empty datagram
    if (len > seg) ++stats.gro_buffers;
    std::size_t off = 0;
    do {
      std::size_t part = std::min(seg, len - off);
      ++stats.datagrams_received;
      stats.bytes_received += part;
      ReceivedDatagram d{ByteView(base + off, part), peer_scratch, local_scratch, ecn};
      auto cb = on_datagram;  // hold the callable while it runs
      if (cb) cb(d);
      off += part;
    } while (off < len && !closed && reading);
  }

  SendResult send(const SocketAddress& to, ByteView data, std::size_t segment_size, Ecn ecn,
                  const SocketAddress* from) {
    SendResult r;
    if (closed || fd < 0) {
      r.status = SendStatus::error;
      r.error = EBADF;
      return r;
    }
    if (segment_size == 0 || segment_size >= data.size()) segment_size = 0;
    if (segment_size != 0 && stats.gso_enabled) {
      int rc = send_one(to, data, segment_size, ecn, from);
      if (rc == 0) {
        stats.datagrams_sent += (data.size() + segment_size - 1) / segment_size;
        r.bytes_sent = data.size();
        return r;
      }
      if (rc == EAGAIN || rc == EWOULDBLOCK) {
        ++stats.send_blocked;
        r.status = SendStatus::blocked;
        return r;
      }
      if (rc == EIO || rc == EINVAL || rc == ENOPROTOOPT || rc == EOPNOTSUPP) {
        // The device or kernel refuses GSO: remember, then fall back below.
        log::info("udp: GSO send refused ({}); sending segments one by one from now on", errno_text(rc));
        stats.gso_enabled = false;
      } else {
        return fail(r, rc);
      }
    }
    std::size_t step = segment_size == 0 ? data.size() : segment_size;
    while (r.bytes_sent < data.size() || data.empty()) {
      std::size_t part = std::min(step, data.size() - r.bytes_sent);
      int rc = send_one(to, data.subspan(r.bytes_sent, part), 0, ecn, from);
      if (rc == EAGAIN || rc == EWOULDBLOCK) {
        ++stats.send_blocked;
        r.status = SendStatus::blocked;
        return r;
      }
      if (rc != 0) return fail(r, rc);
      ++stats.datagrams_sent;
      r.bytes_sent += part;
      if (data.empty()) break;
    }
    return r;
  }

  SendResult fail(SendResult r, int err) {
    ++stats.send_errors;
    if (!logged_send_error) {
      log::warn("udp: sendmsg failed: {} (further send errors are counted, not logged)", errno_text(err));
      logged_send_error = true;
    }
    r.status = SendStatus::error;
    r.error = err;
    return r;
  }

  // One sendmsg(); returns 0 or errno.
  int send_one(const SocketAddress& to, ByteView data, std::size_t segment_size, Ecn ecn, const SocketAddress* from) {
    alignas(cmsghdr) std::uint8_t control[kCmsgSpace]{};
    iovec iov{const_cast<std::uint8_t*>(data.data()), data.size()};
    msghdr h{};
    SocketAddress dest = to;
    // A dual-stack socket must address v4 peers as v4-mapped v6.
    sockaddr_in6 mapped{};
    if (bound.is_v6() && to.family() == AF_INET) {
      auto* v4 = reinterpret_cast<const sockaddr_in*>(to.sa());
      mapped.sin6_family = AF_INET6;
      mapped.sin6_port = v4->sin_port;
      mapped.sin6_addr.s6_addr[10] = 0xff;
      mapped.sin6_addr.s6_addr[11] = 0xff;
      std::memcpy(&mapped.sin6_addr.s6_addr[12], &v4->sin_addr, 4);
      dest = SocketAddress(reinterpret_cast<const sockaddr*>(&mapped));
    }
    h.msg_name = const_cast<sockaddr*>(dest.sa());
    h.msg_namelen = dest.size();
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = control;
    h.msg_controllen = sizeof control;
    std::size_t used = 0;
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    const bool v6 = dest.is_v6();
    const bool v4_mapped_peer =
        v6 && IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<const sockaddr_in6*>(dest.sa())->sin6_addr);
    if (segment_size != 0) {
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
      auto seg = static_cast<std::uint16_t>(segment_size);
      std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
      used += CMSG_SPACE(sizeof(std::uint16_t));
      c = CMSG_NXTHDR(&h, c);
    }
    if (ecn != Ecn::not_ect) {
      int tos = static_cast<int>(ecn);
      if (v6 && !v4_mapped_peer) {
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_TCLASS;
      } else {
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_TOS;
      }
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &tos, sizeof tos);
      used += CMSG_SPACE(sizeof(int));
      c = CMSG_NXTHDR(&h, c);
    }
    if (from != nullptr && wildcard && !from->empty()) {
      if (from->is_v6() && !IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<const sockaddr_in6*>(from->sa())->sin6_addr)) {
        in6_pktinfo pi{};
        pi.ipi6_addr = reinterpret_cast<const sockaddr_in6*>(from->sa())->sin6_addr;
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof pi);
        std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
        used += CMSG_SPACE(sizeof pi);
      } else {
        in_pktinfo pi{};
        if (from->is_v6())
          std::memcpy(&pi.ipi_spec_dst, &reinterpret_cast<const sockaddr_in6*>(from->sa())->sin6_addr.s6_addr[12], 4);
        else
          pi.ipi_spec_dst = reinterpret_cast<const sockaddr_in*>(from->sa())->sin_addr;
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof pi);
        std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
        used += CMSG_SPACE(sizeof pi);
      }
    }
    h.msg_controllen = used;
    if (used == 0) h.msg_control = nullptr;
    bool retried = false;
    for (;;) {
      ++stats.send_syscalls;
      auto n = ::sendmsg(fd, &h, MSG_DONTWAIT);
      if (n >= 0) {
        stats.bytes_sent += data.size();
        return 0;
      }
      if (errno == EINTR) continue;
      // A pending ICMP error (sk_err) fails the next send, whoever it goes
      // to, and is cleared by it: on a socket that talks to many peers that
      // would drop a datagram to a healthy one. The error queue still holds
      // the entry with its destination (reported on POLLERR), so send again.
      if (!retried && is_icmp_errno(errno)) {
        retried = true;
        continue;
      }
      return errno;
    }
  }

  void close() {
    if (closed) return;
    closed = true;
    reading = false;
    on_datagram = nullptr;
    on_batch_end = nullptr;
    on_writable.clear();
    // uv_close() on the poll handle removes the fd from epoll at once, so the
    // fd can be closed right after.
    poll.reset();
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

UdpSocket::UdpSocket(uv::Loop& loop) : impl_(std::make_shared<Impl>(loop)) {}
UdpSocket::~UdpSocket() {
  if (impl_) impl_->close();
}

Status UdpSocket::bind(const SocketAddress& addr, const UdpSocketOptions& options) {
  auto& s = *impl_;
  if (s.fd >= 0) return make_error(ErrorDomain::os, EINVAL, "udp: socket already bound");
  if (addr.empty()) return make_error(ErrorDomain::os, EINVAL, "udp: bind address is empty");
  s.options = options;
  int fd = ::socket(addr.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(ErrorDomain::os, errno, "udp: socket(): " + errno_text(errno));
  const bool v6 = addr.is_v6();
  if (v6) set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
  if (options.rcvbuf > 0) set_int_opt(fd, SOL_SOCKET, SO_RCVBUF, options.rcvbuf);
  if (options.sndbuf > 0) set_int_opt(fd, SOL_SOCKET, SO_SNDBUF, options.sndbuf);
  if (::bind(fd, addr.sa(), addr.size()) != 0) {
    int err = errno;
    ::close(fd);
    return make_error(ErrorDomain::os, err, "udp: bind " + addr.to_string() + ": " + errno_text(err));
  }
  s.fd = fd;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  s.bound = SocketAddress(reinterpret_cast<const sockaddr*>(&ss));
  if (v6) {
    auto* a6 = reinterpret_cast<const sockaddr_in6*>(s.bound.sa());
    s.wildcard = IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr);
  } else {
    s.wildcard = reinterpret_cast<const sockaddr_in*>(s.bound.sa())->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  // Options are best effort: each one missing only costs speed or information.
  if (options.ecn) {
    set_int_opt(fd, IPPROTO_IP, IP_RECVTOS, 1);
    if (v6) set_int_opt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, 1);
  }
  if (options.pktinfo && s.wildcard) {
    set_int_opt(fd, IPPROTO_IP, IP_PKTINFO, 1);
    if (v6) set_int_opt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
  }
  if (options.recverr) {
    set_int_opt(fd, SOL_IP, IP_RECVERR, 1);
    if (v6) set_int_opt(fd, SOL_IPV6, IPV6_RECVERR, 1);
  }
  // Path MTU discovery is QUIC's job (DPLPMTUD); the kernel must not fragment.
  if (v6) set_int_opt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE);
  set_int_opt(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE);
  s.stats.gro_enabled = options.gro && set_int_opt(fd, SOL_UDP, UDP_GRO, 1) == 0;
  if (options.gso) {
    // Probe: the kernel has UDP_SEGMENT if it accepts the option on the socket.
    s.stats.gso_enabled = set_int_opt(fd, SOL_UDP, UDP_SEGMENT, 0) == 0;
  }
  s.buffer_size = s.stats.gro_enabled ? kGroBufferSize : kPlainBufferSize;
  const std::size_t n = std::max<std::size_t>(1, options.recv_batch);
  s.buffers.assign(n * s.buffer_size, 0);
  s.msgs.assign(n, mmsghdr{});
  s.iovs.assign(n, iovec{});
  s.names.assign(n, sockaddr_storage{});
  s.controls.assign(n, {});
  for (std::size_t i = 0; i < n; ++i) {
    s.iovs[i] = iovec{s.buffers.data() + i * s.buffer_size, s.buffer_size};
    auto& h = s.msgs[i].msg_hdr;
    h.msg_name = &s.names[i];
    h.msg_namelen = sizeof(sockaddr_storage);
    h.msg_iov = &s.iovs[i];
    h.msg_iovlen = 1;
    h.msg_control = s.controls[i].data();
    h.msg_controllen = kCmsgSpace;
  }
  s.poll = std::make_unique<uv::Poll>(s.loop, fd);
  log::debug("udp: bound {} (gro {}, gso {})", s.bound.to_string(), s.stats.gro_enabled, s.stats.gso_enabled);
  return {};
}

Status UdpSocket::start(DatagramCallback on_datagram, BatchEndCallback on_batch_end) {
  auto& s = *impl_;
  if (s.fd < 0 || s.closed) return make_error(ErrorDomain::os, EBADF, "udp: socket not bound");
  s.on_datagram = std::move(on_datagram);
  s.on_batch_end = std::move(on_batch_end);
  s.reading = true;
  s.update_poll();
  return {};
}

void UdpSocket::on_socket_error(ErrorCallback cb) { impl_->on_socket_error = std::move(cb); }

void UdpSocket::stop() {
  impl_->reading = false;
  impl_->update_poll();
}

SendResult UdpSocket::send(const SocketAddress& to, ByteView data, std::size_t segment_size, Ecn ecn,
                           const SocketAddress* from) {
  if (from && !impl_->diverts.empty()) {
    for (auto& [addr, fn] : impl_->diverts)
      if (addr == *from) return fn(to, data, segment_size, ecn);
  }
  return impl_->send(to, data, segment_size, ecn, from);
}

void UdpSocket::divert_source(const SocketAddress& from, DivertFn fn) {
  auto& d = impl_->diverts;
  d.erase(std::remove_if(d.begin(), d.end(), [&](const auto& e) { return e.first == from; }), d.end());
  if (fn) d.emplace_back(from, std::move(fn));
}

void UdpSocket::wait_writable(std::function<void()> cb) {
  if (impl_->closed) return;
  impl_->on_writable.push_back(std::move(cb));
  impl_->update_poll();
}

bool UdpSocket::gso_enabled() const { return impl_->stats.gso_enabled; }
SocketAddress UdpSocket::local_address() const { return impl_->bound; }
int UdpSocket::fd() const { return impl_->fd; }
const UdpSocketStats& UdpSocket::stats() const { return impl_->stats; }
void UdpSocket::close() { impl_->close(); }

Status attach(UdpSocket& socket, DatagramHandler& handler) {
  socket.on_socket_error([&handler](int err, const SocketAddress& to) { handler.handle_socket_error(err, to); });
  return socket.start([&handler](const ReceivedDatagram& d) { handler.handle_datagram(d); },
                      [&handler] { handler.handle_batch_end(); });
}

Result<std::unique_ptr<UdpSocket>> open_udp(uv::Loop& loop, const SocketAddress& addr,
                                            const UdpSocketOptions& options) {
  auto socket = std::make_unique<UdpSocket>(loop);
  if (auto st = socket->bind(addr, options); !st) return st.error();
  return socket;
}

Result<SocketAddress> route_source(const SocketAddress& remote) {
  if (remote.empty()) return make_error(ErrorDomain::os, EINVAL, "udp: no remote address to route to");
  int fd = ::socket(remote.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(ErrorDomain::os, errno, "udp: socket(): " + errno_text(errno));
  SocketAddress local;
  int err = 0;
  socklen_t len = SocketAddress::capacity();
  if (::connect(fd, remote.sa(), remote.size()) != 0 || ::getsockname(fd, local.sa(), &len) != 0) err = errno;
  ::close(fd);
  if (err != 0) return make_error(ErrorDomain::os, err, "cannot reach " + remote.to_string() + ": " + errno_text(err));
  local.set_port(0);
  return local;
}

}  // namespace quiclab::quic
