// TCP_INFO and TCP_CONGESTION of a connected socket, for the per-connection
// record (transport/core/connection_record.hpp). Kept apart from server.cpp
// because <linux/tcp.h>, which has the full struct, clashes with glibc's
// <netinet/tcp.h>.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace quiclab::h2 {

struct TcpInfo {
  std::uint32_t snd_cwnd = 0;  ///< packets
  std::uint32_t snd_mss = 0;
  std::uint32_t rtt_us = 0, min_rtt_us = 0, rto_us = 0;
  std::uint32_t total_retrans = 0;  ///< segments retransmitted over the connection's life
  std::uint64_t bytes_sent = 0, bytes_retrans = 0;
  std::uint32_t segs_out = 0;
  /// RTO expirations (tcpi_total_rto): only kernels from 6.7 report it; the
  /// length the kernel returns tells, so a build against older headers still reads it.
  std::optional<std::uint32_t> total_rto;
};

/// The socket's TCP_INFO; nullopt when getsockopt fails.
std::optional<TcpInfo> read_tcp_info(int fd);
/// The socket's congestion controller (TCP_CONGESTION); empty when unknown.
std::string tcp_congestion(int fd);
/// Asks for the kernel's own pacing on a socket whose controller does not
/// pace (Cubic, Reno): a (huge) SO_MAX_PACING_RATE switches TCP's internal
/// pacing on (at tcp_pacing_ss_ratio / tcp_pacing_ca_ratio of cwnd/srtt).
bool enable_tcp_pacing(int fd);
/// This namespace's net.ipv4.tcp_pacing_ss_ratio / ca_ratio (percent); nullopt when unreadable.
std::optional<std::uint32_t> tcp_pacing_ratio(const char* which);

}  // namespace quiclab::h2
