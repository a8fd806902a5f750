#include "transport/core/address.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <charconv>
#include <cstring>

namespace quiclab {

SocketAddress::SocketAddress(const sockaddr* sa) {
  if (sa == nullptr) return;
  if (sa->sa_family == AF_INET) {
    std::memcpy(&storage_, sa, sizeof(sockaddr_in));
  } else if (sa->sa_family == AF_INET6) {
    std::memcpy(&storage_, sa, sizeof(sockaddr_in6));
  }
}

Result<SocketAddress> SocketAddress::from_ip(std::string_view ip, uint16_t port) {
  std::string host(ip);
  SocketAddress a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return a;
  }
  a = SocketAddress();
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return a;
  }
  return make_error(ErrorDomain::generic, EINVAL, "not a numeric IP address: '" + host + "'");
}

Result<SocketAddress> SocketAddress::parse(std::string_view text, std::optional<uint16_t> default_port) {
  std::string_view host;
  std::string_view port_text;
  if (text.empty()) return make_error(ErrorDomain::generic, EINVAL, "empty address");
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos)
      return make_error(ErrorDomain::generic, EINVAL, "missing ']' in '" + std::string(text) + "'");
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return make_error(ErrorDomain::generic, EINVAL, "expected ':PORT' after ']' in '" + std::string(text) + "'");
      port_text = rest.substr(1);
    }
  } else {
    auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') != colon) {
      // Several colons and no brackets: a bare IPv6 address without a port.
      host = text;
    } else if (colon != std::string_view::npos) {
      host = text.substr(0, colon);
      port_text = text.substr(colon + 1);
    } else {
      host = text;
    }
  }
  if (host.empty()) return make_error(ErrorDomain::generic, EINVAL, "missing host in '" + std::string(text) + "'");
  uint16_t port = 0;
  if (port_text.empty()) {
    if (!default_port)
      return make_error(ErrorDomain::generic, EINVAL, "missing ':PORT' in '" + std::string(text) + "'");
    port = *default_port;
  } else {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || value > 65535) {
      return make_error(ErrorDomain::generic, EINVAL,
                        "bad port '" + std::string(port_text) + "' in '" + std::string(text) + "'");
    }
    port = static_cast<uint16_t>(value);
  }
  if (auto numeric = from_ip(host, port); numeric.ok()) return numeric;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string host_str(host);
  int rc = getaddrinfo(host_str.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return make_error(ErrorDomain::generic, EINVAL, "cannot resolve '" + host_str + "': " + gai_strerror(rc));
  }
  SocketAddress a(res->ai_addr);
  freeaddrinfo(res);
  a.set_port(port);
  return a;
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

void SocketAddress::set_port(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

std::string SocketAddress::ip() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof buf);
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof buf);
  } else {
    return "";
  }
  return buf;
}

std::string SocketAddress::to_string() const {
  if (empty()) return "(none)";
  if (is_v6()) return "[" + ip() + "]:" + std::to_string(port());
  return ip() + ":" + std::to_string(port());
}

socklen_t SocketAddress::size() const {
  if (family() == AF_INET) return sizeof(sockaddr_in);
  if (family() == AF_INET6) return sizeof(sockaddr_in6);
  return 0;
}

bool SocketAddress::same_ip(const SocketAddress& o) const {
  if (family() != o.family()) return false;
  if (family() == AF_INET) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr,
                       &reinterpret_cast<const sockaddr_in*>(&o.storage_)->sin_addr, 4) == 0;
  }
  if (family() == AF_INET6) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr,
                       &reinterpret_cast<const sockaddr_in6*>(&o.storage_)->sin6_addr, 16) == 0;
  }
  return true;
}

bool operator==(const SocketAddress& a, const SocketAddress& b) { return a.same_ip(b) && a.port() == b.port(); }

std::size_t SocketAddress::hash() const {
  std::size_t h = std::hash<int>()(family()) ^ (std::hash<uint16_t>()(port()) << 1);
  const auto* p = reinterpret_cast<const unsigned char*>(&storage_);
  std::size_t off = family() == AF_INET6 ? offsetof(sockaddr_in6, sin6_addr) : offsetof(sockaddr_in, sin_addr);
  std::size_t len = family() == AF_INET6 ? 16 : 4;
  for (std::size_t i = 0; i < len; ++i) h = h * 131 + p[off + i];
  return h;
}

}  // namespace quiclab
