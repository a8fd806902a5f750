#include "transport/h2/tcp_info.hpp"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <fstream>

namespace quiclab::h2 {

std::optional<TcpInfo> read_tcp_info(int fd) {
  // Room for fields newer than these headers: the kernel fills what it has
  // and says how much in len.
  alignas(8) std::array<unsigned char, 512> raw{};
  socklen_t len = static_cast<socklen_t>(raw.size());
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, raw.data(), &len) != 0) return std::nullopt;
  tcp_info ti{};
  std::memcpy(&ti, raw.data(), std::min<std::size_t>(len, sizeof ti));
  TcpInfo out;
  out.snd_cwnd = ti.tcpi_snd_cwnd;
  out.snd_mss = ti.tcpi_snd_mss;
  out.rtt_us = ti.tcpi_rtt;
  out.min_rtt_us = ti.tcpi_min_rtt;
  out.rto_us = ti.tcpi_rto;
  out.total_retrans = ti.tcpi_total_retrans;
  out.bytes_sent = ti.tcpi_bytes_sent;
  out.bytes_retrans = ti.tcpi_bytes_retrans;
  out.segs_out = ti.tcpi_segs_out;
  // Linux 6.7 layout after tcpi_snd_wnd: u32 rcv_wnd, u32 rehash, u16 total_rto,
  // u16 total_rto_recoveries, u32 total_rto_time.
  constexpr std::size_t total_rto_at = offsetof(tcp_info, tcpi_snd_wnd) + 12;
  if (len >= total_rto_at + 2) {
    std::uint16_t v = 0;
    std::memcpy(&v, raw.data() + total_rto_at, sizeof v);
    out.total_rto = v;
  }
  return out;
}

std::string tcp_congestion(int fd) {
  std::array<char, 32> name{};
  socklen_t len = static_cast<socklen_t>(name.size());
  if (::getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(), &len) != 0) return {};
  return std::string(name.data(), strnlen(name.data(), len));
}

bool enable_tcp_pacing(int fd) {
  // Only a finite cap moves the socket to SK_PACING_NEEDED (net/core/sock.c:
  // ~0U means "no cap" and leaves pacing off); 2^32 - 2 bytes/s, about
  // 34 Gbit/s, caps nothing a lab link carries.
  const unsigned int cap = ~0U - 1;
  return ::setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &cap, sizeof cap) == 0;
}

std::optional<std::uint32_t> tcp_pacing_ratio(const char* which) {
  std::ifstream in(std::string("/proc/sys/net/ipv4/tcp_pacing_") + which + "_ratio");
  std::uint32_t v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

}  // namespace quiclab::h2
