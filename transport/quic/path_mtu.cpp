#include "transport/quic/path_mtu.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "transport/core/log.hpp"

namespace quiclab::quic {
namespace {

constexpr std::size_t kIpv4UdpHeaders = 20 + 8;
constexpr std::size_t kIpv6UdpHeaders = 40 + 8;

// The MTU the kernel's route to `peer` carries (IP_MTU / IPV6_MTU on a
// connected UDP socket; connect() on UDP sends nothing). 0 if unknown.
std::size_t route_mtu(const SocketAddress& peer) {
  int fd = ::socket(peer.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int mtu = 0;
  socklen_t len = sizeof mtu;
  bool ok = ::connect(fd, peer.sa(), peer.size()) == 0 &&
            (peer.is_v6() ? ::getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &len)
                          : ::getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &len)) == 0;
  ::close(fd);
  return ok && mtu > 0 ? static_cast<std::size_t>(mtu) : 0;
}

// The loopback route's MTU less the headers, capped; 0 (ngtcp2's default)
// when the kernel gives no answer or one no larger than that default.
std::size_t loopback_payload(const SocketAddress& peer) {
  const std::size_t mtu = route_mtu(peer);
  const std::size_t headers = peer.is_v6() ? kIpv6UdpHeaders : kIpv4UdpHeaders;
  const std::size_t payload = mtu > headers ? std::min(mtu - headers, kMaxLocalUdpPayload) : 0;
  const std::size_t used = payload > NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE ? payload : 0;
  log::debug("quic: loopback route MTU {}: datagrams of up to {} bytes to loopback peers", mtu,
             used != 0 ? used : NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE);
  return used;
}

}  // namespace

bool is_loopback(const SocketAddress& a) {
  if (a.family() == AF_INET) {
    auto ip = ntohl(reinterpret_cast<const sockaddr_in*>(a.sa())->sin_addr.s_addr);
    return (ip >> 24) == 127;
  }
  if (a.family() == AF_INET6) {
    const auto& ip = reinterpret_cast<const sockaddr_in6*>(a.sa())->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&ip)) return true;
    return IN6_IS_ADDR_V4MAPPED(&ip) && ip.s6_addr[12] == 127;
  }
  return false;
}

std::optional<UdpPayloadPolicy> parse_udp_payload_policy(std::string_view text, std::string* error) {
  if (text == "auto") return UdpPayloadPolicy{};
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < kMinUdpPayload || n > kMaxUdpPayload) {
    if (error != nullptr) {
      *error = "expected 'auto' or a UDP payload size in bytes from " + std::to_string(kMinUdpPayload) + " to " +
               std::to_string(kMaxUdpPayload) + ", got '" + std::string(text) + "'";
    }
    return std::nullopt;
  }
  return UdpPayloadPolicy{n};
}

std::size_t udp_payload_for(const SocketAddress& peer, const UdpPayloadPolicy& policy, std::size_t loopback_payload) {
  if (policy.forced != 0) return policy.forced;
  return is_loopback(peer) ? loopback_payload : 0;
}

std::size_t probe_loopback_udp_payload(const SocketAddress& peer) {
  // The loopback MTU does not change while we run: ask the kernel once per
  // family (thread-safe static initialisation), not once per connection.
  // The route to a loopback address of the family is the loopback device.
  if (peer.is_v6()) {
    static const std::size_t v6 = loopback_payload(*SocketAddress::from_ip("::1", 443));
    return v6;
  }
  static const std::size_t v4 = loopback_payload(*SocketAddress::from_ip("127.0.0.1", 443));
  return v4;
}

std::size_t max_udp_payload_for(const SocketAddress& peer, const UdpPayloadPolicy& policy) {
  if (policy.forced != 0 || !is_loopback(peer)) return udp_payload_for(peer, policy, 0);
  return udp_payload_for(peer, policy, probe_loopback_udp_payload(peer));
}

void apply_udp_payload(ngtcp2_settings& settings, std::size_t payload) {
  if (payload == 0) return;
  settings.max_tx_udp_payload_size = payload;
  if (payload > NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE) {
    // ngtcp2 then sends min(this, the peer's max_udp_payload_size parameter,
    // our buffer) from the first packet on.
    settings.no_tx_udp_payload_size_shaping = 1;
    settings.no_pmtud = 1;
  }
}

std::size_t tx_payload_limit(ngtcp2_conn* conn) {
  std::size_t limit = ngtcp2_conn_get_max_tx_udp_payload_size(conn);
  if (const auto* remote = ngtcp2_conn_get_remote_transport_params(conn);
      remote != nullptr && remote->max_udp_payload_size != 0) {
    limit = static_cast<std::size_t>(std::min<std::uint64_t>(limit, remote->max_udp_payload_size));
  }
  if (!ngtcp2_conn_get_handshake_completed(conn)) limit = std::min<std::size_t>(limit, NGTCP2_MAX_UDP_PAYLOAD_SIZE);
  return limit;
}

void advertise_udp_payload(ngtcp2_transport_params& params, const UdpPayloadPolicy& policy) {
  if (policy.forced != 0) params.max_udp_payload_size = policy.forced;
}

}  // namespace quiclab::quic
