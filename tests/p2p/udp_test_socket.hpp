// A plain blocking UDP socket on 127.0.0.1 for the loopback end-to-end tests
// (a sans-IO core driven by hand, without libuv).
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <optional>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"

namespace quiclab::test {

class UdpSocket {
 public:
  UdpSocket() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    auto any = SocketAddress::from_ip("127.0.0.1", 0).value();
    REQUIRE(::bind(fd_, any.sa(), any.size()) == 0);
  }
  ~UdpSocket() { ::close(fd_); }
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;
  SocketAddress local() const {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    return SocketAddress(reinterpret_cast<sockaddr*>(&ss));
  }
  void send(const SocketAddress& to, ByteView data) { ::sendto(fd_, data.data(), data.size(), 0, to.sa(), to.size()); }
  /// One datagram, or nullopt after timeout_ms.
  std::optional<Bytes> recv(int timeout_ms, SocketAddress* from = nullptr) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
    Bytes buf(65536);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    auto n = ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<std::size_t>(n));
    if (from) *from = SocketAddress(reinterpret_cast<sockaddr*>(&ss));
    return buf;
  }

 private:
  int fd_ = -1;
};

}  // namespace quiclab::test
