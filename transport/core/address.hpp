// Socket addresses (IPv4 and IPv6) with parsing and printing.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "transport/core/result.hpp"

namespace quiclab {

class SocketAddress {
 public:
  SocketAddress() = default;
  /// Copies a sockaddr of family AF_INET or AF_INET6; others give an empty address.
  explicit SocketAddress(const sockaddr* sa);

  /// Parses "1.2.3.4:443", "[::1]:443", "localhost:443". With allow_no_port a bare
  /// host takes default_port. Host names are resolved with getaddrinfo (numeric
  /// addresses never touch the resolver).
  static Result<SocketAddress> parse(std::string_view text, std::optional<uint16_t> default_port = {});
  /// Builds an address from a numeric host ("127.0.0.1", "::1") and a port.
  static Result<SocketAddress> from_ip(std::string_view ip, uint16_t port);

  bool empty() const { return storage_.ss_family == AF_UNSPEC; }
  int family() const { return storage_.ss_family; }
  bool is_v6() const { return family() == AF_INET6; }
  uint16_t port() const;
  void set_port(uint16_t port);
  /// The IP address alone, without port or brackets.
  std::string ip() const;
  /// "1.2.3.4:5" or "[::1]:5".
  std::string to_string() const;

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t size() const;
  static constexpr socklen_t capacity() { return sizeof(sockaddr_storage); }

  /// Same family, IP and port.
  friend bool operator==(const SocketAddress& a, const SocketAddress& b);
  /// Same family and IP, any port.
  bool same_ip(const SocketAddress& other) const;
  std::size_t hash() const;

 private:
  sockaddr_storage storage_{};
};

}  // namespace quiclab

template <>
struct std::hash<quiclab::SocketAddress> {
  std::size_t operator()(const quiclab::SocketAddress& a) const noexcept { return a.hash(); }
};
